"""Derived artifacts of a force store: ``derived/<name>/data.parquet.enc`` and ``manifest.json``.

A derived artifact (a feature cache, say) is computed from some day partitions; its manifest
lists those source days so a purge can find and remove every artifact built from a purged day.
Each artifact has its own data key (scope ``derived:<name>``); replacing or deleting it destroys
that key.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from privacy.aead import seal
from retention.keyring import derived_scope
from retention.sealed_files import SealedFileStore, check_name, table_to_parquet
from retention.store_errors import PartitionIntegrityError, StoreError
from safefiles.atomic import atomic_write_bytes, fsync_dir

DATA_NAME = "data.parquet.enc"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class DerivedArtifact:
    """A derived artifact (e.g. a feature cache) and the day partitions it was computed from."""

    name: str
    path: Path
    source_days: tuple[date, ...]
    key_id: str


def _context_scope(name: str, source_days: tuple[date, ...]) -> str:
    return f"{derived_scope(name)}|days={','.join(d.isoformat() for d in source_days)}"


class DerivedStore(SealedFileStore):
    """Derived artifacts and their source days (part of :class:`retention.store.ForceStore`)."""

    def write_derived(self, name: str, table: pa.Table, source_days: list[date]) -> DerivedArtifact:
        """Write a derived artifact under a fresh key of scope ``derived:<name>``.

        The manifest lists ``source_days`` (authenticated: they are bound into the
        ciphertext), so a purge can find and remove every artifact built from a purged day.
        Replacing an artifact destroys the previous key.
        """
        check_name(name, "derived artifact")
        days = tuple(sorted(set(source_days)))
        d = self.root / "derived" / name
        old_ids = self.keyring.key_ids_for_scope(derived_scope(name))
        key_id, key = self.keyring.new_key(derived_scope(name))
        data_path = d / DATA_NAME
        atomic_write_bytes(
            data_path,
            seal(
                key,
                key_id,
                self._context("derived", _context_scope(name, days)),
                table_to_parquet(table),
                self.key_epoch,
            ),
        )
        manifest = {
            "name": name,
            "source_days": [x.isoformat() for x in days],
            "key_id": key_id,
            "rows": len(table),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic_write_bytes(d / MANIFEST_NAME, json.dumps(manifest, indent=1).encode("utf-8"))
        for old in old_ids:
            self.keyring.destroy(old)
        return DerivedArtifact(name, data_path, days, key_id)

    def read_derived(self, name: str) -> pa.Table:
        """Read a derived artifact back (integrity-checked)."""
        art = next((a for a in self.derived_artifacts() if a.name == name), None)
        if art is None:
            raise StoreError(f"no derived artifact named {name}")
        _, plain = self._read_sealed(
            art.path, "derived", _context_scope(name, art.source_days), derived_scope(name)
        )
        try:
            return pq.read_table(pa.BufferReader(plain))
        except (pa.ArrowException, OSError):
            raise PartitionIntegrityError(
                art.path, "authenticated content is not Parquet"
            ) from None

    def derived_artifacts(self) -> list[DerivedArtifact]:
        """All derived artifacts with their source days (from each manifest)."""
        base = self.root / "derived"
        out: list[DerivedArtifact] = []
        for d in sorted(base.iterdir()) if base.is_dir() else []:
            manifest = d / MANIFEST_NAME
            if not d.is_dir():
                continue
            try:
                m = json.loads(manifest.read_text("utf-8"))
                days = tuple(date.fromisoformat(x) for x in m["source_days"])
                key_id = str(m["key_id"])
            except FileNotFoundError:
                # data without a manifest (crash between the two writes): its days are unknown,
                # so report it with no days and let the caller delete it.
                days, key_id = (), ""
            except (OSError, ValueError, KeyError, TypeError):
                raise StoreError(f"derived manifest {manifest} is malformed") from None
            out.append(DerivedArtifact(d.name, d / DATA_NAME, days, key_id))
        return out

    def delete_derived(self, name: str) -> None:
        """Destroy a derived artifact's key(s), then remove its files."""
        for key_id in self.keyring.key_ids_for_scope(derived_scope(name)):
            self.keyring.destroy(key_id)
        d = self.root / "derived" / name
        if d.exists():
            shutil.rmtree(d)
            fsync_dir(d.parent)
