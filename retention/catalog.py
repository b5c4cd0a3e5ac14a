"""Reference tables of a force store: the camera register and the pseudonymised label tables.

``cameras/register.parquet.enc`` maps camera tokens to location and road class (scope
``register``); ``labels/<kind>.parquet.enc`` holds pseudonymised labels such as the intelligence
log of convictions (scope ``labels``, bound to the pseudonym epoch).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from retention.sealed_files import SealedFileStore, check_name, table_to_parquet
from retention.store_errors import StoreError

REGISTER_SCOPE = "register"
LABELS_SCOPE = "labels"

REGISTER_SCHEMA = pa.schema(
    [
        pa.field("token", pa.string(), nullable=False),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("road_class", pa.string()),
    ]
)
LABELS_SCHEMA = pa.schema(
    [
        pa.field("vehicle", pa.string(), nullable=False),
        pa.field("offence_start", pa.timestamp("us", tz="UTC")),
        pa.field("offence_end", pa.timestamp("us", tz="UTC")),
        pa.field("conviction_date", pa.date32()),
    ]
)


class CatalogStore(SealedFileStore):
    """Camera register and label tables (part of :class:`retention.store.ForceStore`)."""

    # --- camera register -------------------------------------------------------------------

    @property
    def register_path(self) -> Path:
        """Path of the encrypted camera register."""
        return self.root / "cameras" / "register.parquet.enc"

    def read_cameras(self) -> pa.Table:
        """The camera register keyed by token: token, lat, lon, road_class (empty if none)."""
        if not self.register_path.exists():
            return REGISTER_SCHEMA.empty_table()
        _, t = self._read_sealed_table(
            self.register_path, "register", REGISTER_SCOPE, REGISTER_SCOPE
        )
        return t

    def write_cameras(self, table: pa.Table) -> int:
        """Merge camera rows (token, lat, lon, road_class) into the register; newer rows win.

        Returns the number of cameras in the register afterwards.
        """
        new = table.select(REGISTER_SCHEMA.names).cast(REGISTER_SCHEMA)
        old = self.read_cameras()
        if len(old):
            keep = pa.compute.invert(pa.compute.is_in(old["token"], value_set=new["token"]))
            new = pa.concat_tables([old.filter(keep), new])
        new = new.sort_by("token")
        self._write_sealed(
            self.register_path, "register", REGISTER_SCOPE, REGISTER_SCOPE, table_to_parquet(new)
        )
        return len(new)

    # --- labels ----------------------------------------------------------------------------

    def labels_file(self, kind: str = "convictions") -> Path:
        """Path of one encrypted, pseudonymised label table (``convictions``, ``truth`` ...)."""
        check_name(kind, "label kind")
        return self.root / "labels" / f"{kind}.parquet.enc"

    @property
    def labels_path(self) -> Path:
        """Path of the encrypted, pseudonymised intelligence log (convictions)."""
        return self.labels_file("convictions")

    def label_kinds(self) -> list[str]:
        """Kinds of label table the store holds (``convictions``, ``truth`` ...)."""
        d = self.root / "labels"
        return sorted(p.name[: -len(".parquet.enc")] for p in d.glob("*.parquet.enc"))

    def read_labels(self, kind: str = "convictions") -> pa.Table | None:
        """A pseudonymised label table, or ``None`` if none was loaded.

        ``convictions`` (the intelligence log) has :data:`LABELS_SCHEMA`; other kinds (e.g.
        the simulation's ``truth``) have a ``vehicle`` column plus their own columns.
        """
        self._check_not_rotating()
        path = self.labels_file(kind)
        if not path.exists():
            return None
        _, t = self._read_sealed_table(
            path, "labels", f"{LABELS_SCOPE}:{kind}", LABELS_SCOPE, {self.key_epoch}
        )
        return t

    def write_labels(self, table: pa.Table, kind: str = "convictions") -> tuple[int, int]:
        """Merge label rows into a label table; returns ``(added, duplicates)``.

        Rows are de-duplicated exactly, so loading the same log twice adds nothing.
        """
        self._check_not_rotating()
        if kind == "convictions":
            new = table.select(LABELS_SCHEMA.names).cast(LABELS_SCHEMA)
        else:
            if "vehicle" not in table.column_names:
                raise StoreError("a label table needs a 'vehicle' column of pseudonyms")
            new = table
        old = self.read_labels(kind)
        combined = pa.concat_tables([old, new]) if old is not None else new
        names = combined.column_names
        merged = combined.group_by(names, use_threads=False).aggregate([]).select(names)
        merged = merged.cast(combined.schema).sort_by([(c, "ascending") for c in names])
        before = len(old) if old is not None else 0
        added = len(merged) - before
        if added or old is None:
            self._write_labels_table(merged, kind)
        return added, len(new) - added

    def _read_labels_any_epoch(self, kind: str, epochs: set[int]) -> tuple[int, pa.Table]:
        return self._read_sealed_table(
            self.labels_file(kind), "labels", f"{LABELS_SCOPE}:{kind}", LABELS_SCOPE, epochs
        )

    def _write_labels_table(self, table: pa.Table, kind: str, epoch: int | None = None) -> None:
        self._write_sealed(
            self.labels_file(kind),
            "labels",
            f"{LABELS_SCOPE}:{kind}",
            LABELS_SCOPE,
            table_to_parquet(table),
            self.key_epoch if epoch is None else epoch,
        )
