"""A force's encrypted, day-partitioned store.

Layout under ``STORE/`` (see docs/force-store.md)::

    store.json                                    public metadata, no secrets
    keys/master.wrapped                           wrapped master secret or key-file marker
    keys/keyring.json                             data keys wrapped by the master wrapping key
    partitions/day=YYYY-MM-DD/reads.parquet.enc   one day's reads (vehicle, camera, read_at)
    quarantine/day=YYYY-MM-DD/rejects-<batch>.parquet.enc   rejected input rows of that day
    cameras/register.parquet.enc                  camera register keyed by token
    labels/convictions.parquet.enc                pseudonymised intelligence log
    derived/<name>/data.parquet.enc, manifest.json   derived artifacts and their source days
    logs/ingest.jsonl, logs/purge.jsonl           counts only
    privacy/                                      reserved for the DP ledger
    lock                                          retention.lock.store_lock

Every ``*.enc`` file is a sealed blob (:mod:`privacy.aead`) under its own data key: scope
``day:YYYY-MM-DD`` for a day's partition and quarantine files, ``register``,
``labels``, ``derived:<name>``; pseudonym epoch keys have scope ``epoch:<n>``. The associated
data binds the force, the file kind and the scope (a day, a derived artifact's source days), so
a file moved to another place, truncated or altered fails with :class:`PartitionIntegrityError`.
Destroying a key in the keyring is a cryptographic erase of every file it encrypted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from privacy.aead import SealedBlobError, open_sealed, read_header, seal
from privacy.keys import KeyMaterialError, MasterKey, MasterSecretSource
from privacy.pseudonym import VrmPseudonymiser, rekey_pseudonym_blocks, rekey_pseudonyms
from retention.keyring import (
    Keyring,
    KeyringError,
    MissingKeyError,
    day_scope,
    derived_scope,
    epoch_scope,
)
from retention.lock import store_lock
from retention.read_block import READS_SCHEMA, ReadBlock
from safefiles.atomic import atomic_write_bytes, fsync_dir, remove_file, stale_temp_files

__all__ = [
    "LABELS_SCHEMA",
    "READS_SCHEMA",
    "REGISTER_SCHEMA",
    "DerivedArtifact",
    "ForceStore",
    "PartitionIntegrityError",
    "RotationIncompleteError",
    "RotationReport",
    "StoreError",
    "open_store_from_env",
]

FORMAT_NAME = "anprfed-force-store"
FORMAT_VERSION = 1
META_NAME = "store.json"
PARTITION_NAME = "reads.parquet.enc"
REGISTER_SCOPE = "register"
LABELS_SCOPE = "labels"
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PARQUET_COMPRESSION = "zstd"

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


class StoreError(Exception):
    """Base class for store errors (messages name files, never raw values)."""


class PartitionIntegrityError(StoreError):
    """An encrypted file failed authentication: tampered, truncated, moved or its key erased."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"integrity check failed for {path}: {reason}; refusing to read it")


class RotationIncompleteError(StoreError):
    """A key rotation was interrupted; rerun ``anprfed force rotate-key`` to finish it."""


@dataclass(frozen=True)
class DerivedArtifact:
    """A derived artifact (e.g. a feature cache) and the day partitions it was computed from."""

    name: str
    path: Path
    source_days: tuple[date, ...]
    key_id: str


@dataclass(frozen=True)
class RotationReport:
    """What a completed key rotation did (counts only)."""

    old_epoch: int
    new_epoch: int
    partitions_rekeyed: int
    reads_rekeyed: int
    labels_rekeyed: int
    derived_removed: int
    destroyed_key_ids: tuple[str, ...]


def _day_dir_name(day: date) -> str:
    return f"day={day.isoformat()}"


def _table_to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=_PARQUET_COMPRESSION)
    return sink.getvalue()


def _reads_to_parquet(block: ReadBlock) -> bytes:
    """A day's reads in their on-disk form. Pseudonyms are random bytes (nothing to compress),
    camera tokens are dictionary-encoded and the time-ordered ``read_at`` delta-encoded, so a
    general-purpose codec would only cost time."""
    sink = io.BytesIO()
    pq.write_table(
        block.to_storage_table(),
        sink,
        compression="none",
        use_dictionary=["camera"],
        column_encoding={"read_at": "DELTA_BINARY_PACKED"},
        write_statistics=False,
    )
    return sink.getvalue()


class ForceStore:
    """One force's store. Get one with :meth:`create` or :meth:`open` (see module docstring).

    Methods that change the store do not take the store lock themselves; callers that run as
    a command (ingest, rotate-key, purge) hold :meth:`lock` around their work.
    """

    def __init__(self, root: Path, meta: dict[str, Any], master: MasterKey) -> None:
        self.root = Path(root)
        self._meta = meta
        self._master = master
        self.keyring = Keyring(self.root / "keys" / Keyring.FILE_NAME, master.wrapping_key())

    def __repr__(self) -> str:
        return f"ForceStore({str(self.root)!r}, force={self.force!r}, epoch={self.key_epoch})"

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, force: str, secret: MasterSecretSource) -> ForceStore:
        """Create an empty store at ``root`` with a fresh master secret protected by ``secret``.

        ``root`` must not exist or be an empty directory.
        """
        root = Path(root)
        if not force or not _NAME_OK.match(force):
            raise StoreError("force name must be 1-64 letters, digits, '_', '.', or '-'")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root} already exists and is not an empty directory")
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("keys", "partitions", "quarantine", "cameras", "labels", "derived", "logs"):
            (root / sub).mkdir(exist_ok=True)
        (root / "privacy").mkdir(exist_ok=True)
        master, protection = secret.create(root / "keys")
        Keyring.create(root / "keys" / Keyring.FILE_NAME, master.wrapping_key())
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "force": force,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "key_epoch": 1,
            "key_protection": protection,
            "signing": {"algorithm": "ed25519", "public_key": master.public_key_hex()},
        }
        store = cls(root, meta, master)
        store.keyring.new_key(epoch_scope(1))
        store._save_meta()
        return store

    @classmethod
    def open(cls, root: Path, secret: MasterSecretSource) -> ForceStore:
        """Open an existing store; ``WrongPassphraseError`` if ``secret`` does not fit."""
        root = Path(root)
        meta = cls.read_meta(root)
        master = secret.load(root / "keys")
        if master.public_key_hex() != meta.get("signing", {}).get("public_key"):
            raise KeyMaterialError(f"{root / META_NAME} does not belong to this master secret")
        try:
            return cls(root, meta, master)
        except KeyringError as exc:
            raise StoreError(str(exc)) from None

    @staticmethod
    def read_meta(root: Path) -> dict[str, Any]:
        """The public ``store.json`` (no key material needed)."""
        path = Path(root) / META_NAME
        try:
            meta = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise StoreError(f"{root} is not an anprfed force store (no {META_NAME})") from None
        except (OSError, ValueError):
            raise StoreError(f"{path} is unreadable or not JSON") from None
        if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path} is not a version-{FORMAT_VERSION} anprfed force store")
        return meta

    def refresh(self) -> None:
        """Re-read store.json and the keyring (after another handle or process changed them)."""
        self._meta = self.read_meta(self.root)
        self.keyring.reload()

    def _save_meta(self) -> None:
        atomic_write_bytes(
            self.root / META_NAME, json.dumps(self._meta, indent=1).encode("utf-8"), 0o644
        )

    def lock(self, holder: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[Path]:
        """The store's exclusive lock (``retention.lock.store_lock``)."""
        return store_lock(self.root, holder, timeout)

    # --- properties ------------------------------------------------------------------------

    @property
    def force(self) -> str:
        """The force's name."""
        return str(self._meta["force"])

    @property
    def key_epoch(self) -> int:
        """Current pseudonym key epoch (bumped by every completed rotation)."""
        return int(self._meta["key_epoch"])

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the public metadata (store.json)."""
        return json.loads(json.dumps(self._meta))

    @property
    def master(self) -> MasterKey:
        """The unwrapped master key (``signing_key()``, ``camera_token_key()`` ...)."""
        return self._master

    @property
    def rotation_pending(self) -> dict[str, int] | None:
        """``{"from": n, "to": n+1}`` while a rotation is unfinished, else ``None``."""
        rot = self._meta.get("rotation")
        return dict(rot) if rot else None

    def pseudonymiser(self) -> VrmPseudonymiser:
        """The VRM pseudonymiser of the current epoch."""
        self._check_not_rotating()
        _, epoch_key = self.keyring.key_for_scope(epoch_scope(self.key_epoch))
        return VrmPseudonymiser(self._master.pseudonym_base_key(), epoch_key)

    # --- sealed files ----------------------------------------------------------------------

    def _context(self, kind: str, scope: str) -> bytes:
        return f"anprfed/v1|force={self.force}|kind={kind}|scope={scope}".encode()

    def _write_sealed(
        self, path: Path, kind: str, scope: str, key_scope: str, data: bytes, epoch: int = 0
    ) -> str:
        key_id, key = self.keyring.key_for_scope(key_scope, create=True)
        atomic_write_bytes(path, seal(key, key_id, self._context(kind, scope), data, epoch))
        return key_id

    def _read_sealed(self, path: Path, kind: str, scope: str, key_scope: str) -> tuple[int, bytes]:
        """Authenticate and decrypt a store file; returns ``(epoch, plaintext)``."""
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise PartitionIntegrityError(path, "file is missing") from None
        try:
            header = read_header(blob)
        except SealedBlobError as exc:
            raise PartitionIntegrityError(path, str(exc)) from None
        try:
            if self.keyring.scope_of(header.key_id) != key_scope:
                raise PartitionIntegrityError(path, "file is encrypted under another scope's key")
            key = self.keyring.unwrap(header.key_id)
        except MissingKeyError:
            raise PartitionIntegrityError(
                path, "its data key is not in the keyring (erased or foreign file)"
            ) from None
        except KeyringError as exc:
            raise PartitionIntegrityError(path, str(exc)) from None
        try:
            _, plain = open_sealed(key, blob, self._context(kind, scope))
        except SealedBlobError as exc:
            raise PartitionIntegrityError(path, str(exc)) from None
        return header.epoch, plain

    def _read_sealed_table(
        self, path: Path, kind: str, scope: str, key_scope: str, epochs: set[int] | None = None
    ) -> tuple[int, pa.Table]:
        epoch, plain = self._read_sealed(path, kind, scope, key_scope)
        if epochs is not None and epoch not in epochs:
            # another handle may have rotated the key since this one read store.json
            self.refresh()
            self._check_not_rotating()
            if epoch != self.key_epoch:
                raise PartitionIntegrityError(
                    path, f"pseudonym epoch {epoch} does not match the store's {self.key_epoch}"
                )
        try:
            return epoch, pq.read_table(pa.BufferReader(plain))
        except (pa.ArrowException, OSError):
            raise PartitionIntegrityError(path, "authenticated content is not Parquet") from None

    def _check_not_rotating(self) -> None:
        if self._meta.get("rotation"):
            raise RotationIncompleteError(
                f"a key rotation of {self.root} was interrupted; "
                "run `anprfed force rotate-key` again to finish it"
            )

    # --- day partitions --------------------------------------------------------------------

    def partition_path(self, day: date) -> Path:
        """Path of ``day``'s reads partition (it may not exist)."""
        return self.root / "partitions" / _day_dir_name(day) / PARTITION_NAME

    @staticmethod
    def _days_under(base: Path, filename: str | None) -> list[date]:
        out: list[date] = []
        if not base.is_dir():
            return out
        for d in base.iterdir():
            m = _DAY_DIR.match(d.name)
            if not m or not d.is_dir():
                continue
            if filename is not None and not (d / filename).is_file():
                continue
            if filename is None and not any(d.glob("*.parquet.enc")):
                continue
            with contextlib.suppress(ValueError):
                out.append(date.fromisoformat(m.group(1)))
        return sorted(out)

    def days(self) -> list[date]:
        """Sorted days that have a reads partition."""
        return self._days_under(self.root / "partitions", PARTITION_NAME)

    def quarantine_days(self) -> list[date]:
        """Sorted days that have quarantined (rejected) rows."""
        return self._days_under(self.root / "quarantine", None)

    def held_days(self) -> list[date]:
        """Every day the store holds anything for: partitions, quarantine, day keys."""
        days = set(self.days()) | set(self.quarantine_days())
        for e in self.keyring.entries():
            if e.scope.startswith("day:"):
                with contextlib.suppress(ValueError):
                    days.add(date.fromisoformat(e.scope[4:]))
        return sorted(days)

    def read_day_block(self, day: date) -> ReadBlock:
        """One day's reads in numeric form (empty if the day has no partition)."""
        self._check_not_rotating()
        path = self.partition_path(day)
        if not path.exists():
            return ReadBlock.empty()
        _, table = self._read_sealed_table(
            path, "reads", day_scope(day), day_scope(day), {self.key_epoch}
        )
        return self._storage_block(path, table)

    @staticmethod
    def _storage_block(path: Path, table: pa.Table) -> ReadBlock:
        try:
            return ReadBlock.from_storage_table(table)
        except (ValueError, KeyError, pa.ArrowException):
            raise PartitionIntegrityError(path, "content does not have the reads schema") from None

    def read_day(self, day: date, columns: list[str] | None = None) -> pa.Table:
        """One day's reads (vehicle, camera, read_at); ``PartitionIntegrityError`` if tampered.

        A day without a partition gives an empty table.
        """
        self._check_not_rotating()
        path = self.partition_path(day)
        if not path.exists():
            table = READS_SCHEMA.empty_table()
        else:
            _, stored = self._read_sealed_table(
                path, "reads", day_scope(day), day_scope(day), {self.key_epoch}
            )
            try:
                table = ReadBlock.storage_to_api(stored)
            except (ValueError, KeyError, pa.ArrowException):
                raise PartitionIntegrityError(path, "content is not a reads table") from None
        return table.select(columns) if columns else table

    def read_days(
        self, days: list[date] | None = None, columns: list[str] | None = None
    ) -> Iterator[tuple[date, pa.Table]]:
        """Yield ``(day, table)`` for each requested day (all partition days if ``None``)."""
        for day in sorted(self.days() if days is None else days):
            yield day, self.read_day(day, columns)

    def read_reads(self, start: date | None = None, end: date | None = None) -> pa.Table:
        """All reads of partition days in ``[start, end]`` (inclusive) concatenated."""
        days = [
            d for d in self.days() if (start is None or d >= start) and (end is None or d <= end)
        ]
        tables = [t for _, t in self.read_days(days)]
        return pa.concat_tables(tables) if tables else READS_SCHEMA.empty_table()

    def write_day(self, day: date, table: pa.Table) -> tuple[int, int]:
        """Merge ``table`` into ``day``'s partition atomically; returns ``(added, duplicates)``.

        Rows must all fall on ``day`` (UTC). Existing and new rows are de-duplicated exactly,
        so writing the same rows again adds nothing.
        """
        return self.merge_day_block(day, ReadBlock.from_table(table))

    def merge_day_block(self, day: date, block: ReadBlock) -> tuple[int, int]:
        """As :meth:`write_day` for a :class:`ReadBlock`; returns ``(added, duplicates)``."""
        self._check_not_rotating()
        if len(block):
            days = block.days()
            want = (day - date(1970, 1, 1)).days
            if int(days.min()) != want or int(days.max()) != want:
                raise StoreError(f"rows given for {day} fall on other days")
        existing = self.read_day_block(day)
        merged = ReadBlock.concat([existing, block]).sorted_unique()
        added = len(merged) - len(existing)
        if added:
            self._write_sealed(
                self.partition_path(day),
                "reads",
                day_scope(day),
                day_scope(day),
                _reads_to_parquet(merged),
                self.key_epoch,
            )
        return added, len(block) - added

    def day_files(self, day: date) -> list[Path]:
        """Every file holding data of ``day``: its partition and quarantine files."""
        name = _day_dir_name(day)
        out: list[Path] = []
        for d in [self.root / "partitions" / name, self.root / "quarantine" / name]:
            if d.is_dir():
                out += sorted(p for p in d.iterdir() if p.is_file())
        return out

    def day_dirs(self, day: date) -> list[Path]:
        """Directories of ``day`` (to remove once empty after a purge)."""
        name = _day_dir_name(day)
        dirs = [self.root / "partitions" / name, self.root / "quarantine" / name]
        return [d for d in dirs if d.is_dir()]

    # --- quarantine ------------------------------------------------------------------------

    def quarantine_path(self, day: date, batch: str) -> Path:
        """Path of one batch's quarantine file for ``day``."""
        return self.root / "quarantine" / _day_dir_name(day) / f"rejects-{batch}.parquet.enc"

    def write_quarantine(self, day: date, batch: str, table: pa.Table) -> Path:
        """Encrypt rejected rows of ``day`` under the day's key (overwrites the same batch)."""
        if not _NAME_OK.match(batch):
            raise StoreError("quarantine batch names are letters, digits, '_', '.', '-'")
        path = self.quarantine_path(day, batch)
        self._write_sealed(
            path,
            "quarantine",
            f"{day_scope(day)}|{batch}",
            day_scope(day),
            _table_to_parquet(table),
        )
        return path

    def quarantine_batches(self, day: date) -> list[str]:
        """Names of ``day``'s quarantine batches (one per ingest that rejected rows of it)."""
        d = self.root / "quarantine" / _day_dir_name(day)
        files = sorted(d.glob("rejects-*.parquet.enc")) if d.is_dir() else []
        return [p.name[len("rejects-") : -len(".parquet.enc")] for p in files]

    def read_quarantine_batch(self, day: date, batch: str) -> pa.Table:
        """One quarantine batch of ``day`` (row numbers, reasons and the raw content)."""
        return self._read_sealed_table(
            self.quarantine_path(day, batch),
            "quarantine",
            f"{day_scope(day)}|{batch}",
            day_scope(day),
        )[1]

    def read_quarantine(self, day: date) -> pa.Table | None:
        """All quarantined rows of ``day`` (row numbers, reasons and the raw content)."""
        tables = [self.read_quarantine_batch(day, b) for b in self.quarantine_batches(day)]
        return pa.concat_tables(tables, promote_options="default") if tables else None

    # --- crash leftovers --------------------------------------------------------------

    def clean_interrupted_writes(self) -> int:
        """Remove temp files left by a crashed writer; returns how many. Hold the store lock."""
        stale = stale_temp_files(self.root)
        for p in stale:
            remove_file(p)
        return len(stale)

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
            self.register_path,
            "register",
            REGISTER_SCOPE,
            REGISTER_SCOPE,
            _table_to_parquet(new),
        )
        return len(new)

    # --- labels ----------------------------------------------------------------------------

    def labels_file(self, kind: str = "convictions") -> Path:
        """Path of one encrypted, pseudonymised label table (``convictions``, ``truth`` ...)."""
        if not _NAME_OK.match(kind):
            raise StoreError("label kinds are letters, digits, '_', '.', '-'")
        return self.root / "labels" / f"{kind}.parquet.enc"

    @property
    def labels_path(self) -> Path:
        """Path of the encrypted, pseudonymised intelligence log (convictions)."""
        return self.labels_file("convictions")

    def _label_kinds(self) -> list[str]:
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

    def _write_labels_table(self, table: pa.Table, kind: str, epoch: int | None = None) -> None:
        self._write_sealed(
            self.labels_file(kind),
            "labels",
            f"{LABELS_SCOPE}:{kind}",
            LABELS_SCOPE,
            _table_to_parquet(table),
            self.key_epoch if epoch is None else epoch,
        )

    # --- derived artifacts -----------------------------------------------------------------

    def _derived_context_scope(self, name: str, source_days: tuple[date, ...]) -> str:
        return f"{derived_scope(name)}|days={','.join(d.isoformat() for d in source_days)}"

    def write_derived(self, name: str, table: pa.Table, source_days: list[date]) -> DerivedArtifact:
        """Write a derived artifact under a fresh key of scope ``derived:<name>``.

        The manifest lists ``source_days`` (authenticated: they are bound into the
        ciphertext), so a purge can find and remove every artifact built from a purged day.
        Replacing an artifact destroys the previous key.
        """
        if not _NAME_OK.match(name):
            raise StoreError("derived artifact names are letters, digits, '_', '.', '-'")
        days = tuple(sorted(set(source_days)))
        d = self.root / "derived" / name
        old_ids = self.keyring.key_ids_for_scope(derived_scope(name))
        key_id, key = self.keyring.new_key(derived_scope(name))
        data_path = d / "data.parquet.enc"
        atomic_write_bytes(
            data_path,
            seal(
                key,
                key_id,
                self._context("derived", self._derived_context_scope(name, days)),
                _table_to_parquet(table),
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
        atomic_write_bytes(d / "manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))
        for old in old_ids:
            self.keyring.destroy(old)
        return DerivedArtifact(name, data_path, days, key_id)

    def read_derived(self, name: str) -> pa.Table:
        """Read a derived artifact back (integrity-checked)."""
        art = next((a for a in self.derived_artifacts() if a.name == name), None)
        if art is None:
            raise StoreError(f"no derived artifact named {name}")
        _, plain = self._read_sealed(
            art.path,
            "derived",
            self._derived_context_scope(name, art.source_days),
            derived_scope(name),
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
            manifest = d / "manifest.json"
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
            out.append(DerivedArtifact(d.name, d / "data.parquet.enc", days, key_id))
        return out

    def delete_derived(self, name: str) -> None:
        """Destroy a derived artifact's key(s), then remove its files."""
        for key_id in self.keyring.key_ids_for_scope(derived_scope(name)):
            self.keyring.destroy(key_id)
        d = self.root / "derived" / name
        if d.exists():
            shutil.rmtree(d)
            fsync_dir(d.parent)

    # --- keys ------------------------------------------------------------------------------

    def day_key_ids(self, day: date) -> list[str]:
        """Key ids that encrypt data of ``day`` (its partition and quarantine)."""
        return self.keyring.key_ids_for_day(day)

    def has_key(self, key_id: str) -> bool:
        """Whether ``key_id`` is still in the keyring."""
        return self.keyring.has_key(key_id)

    def signing_key(self) -> Any:
        """The Ed25519 private key that signs the purge log (derived from the master)."""
        return self._master.signing_key()

    def signing_public_key_hex(self) -> str:
        """The purge-log verification key recorded in store.json."""
        return str(self._meta["signing"]["public_key"])

    def destroy_key(self, key_id: str) -> bool:
        """Remove a data key from the keyring (cryptographic erase); returns whether it existed."""
        return self.keyring.destroy(key_id)

    def rotate_pseudonym_key(self) -> RotationReport:
        """Re-key every stored pseudonym to a new epoch and destroy the old epoch key.

        Crash-safe and resumable: the pending rotation is recorded in store.json first, each
        partition is rewritten atomically with its new epoch in the authenticated header, and a
        rerun continues where it stopped. Derived artifacts (caches keyed by old pseudonyms)
        are deleted. Hold the store lock while calling this.
        """
        rot = self._meta.get("rotation")
        if not rot:
            old, new = self.key_epoch, self.key_epoch + 1
            self._meta["rotation"] = {"from": old, "to": new}
            self._save_meta()
        else:
            old, new = int(rot["from"]), int(rot["to"])
        _, old_key = self.keyring.key_for_scope(epoch_scope(old))
        _, new_key = self.keyring.key_for_scope(epoch_scope(new), create=True)
        partitions = reads = 0
        for day in self.days():
            path = self.partition_path(day)
            epoch, table = self._read_sealed_table(
                path, "reads", day_scope(day), day_scope(day), {old, new}
            )
            if epoch == new:
                continue
            block = self._storage_block(path, table)
            fresh = rekey_pseudonym_blocks(block.vehicle_bytes(), old_key, new_key)
            halves = np.frombuffer(fresh, dtype=">u8").reshape(-1, 2).astype(np.uint64)
            block = ReadBlock(halves[:, 0].copy(), halves[:, 1].copy(), block.camera, block.read_at)
            self._write_sealed(
                path, "reads", day_scope(day), day_scope(day), _reads_to_parquet(block), new
            )
            partitions += 1
            reads += len(block)
        labels = 0
        for kind in self._label_kinds():
            epoch, table = self._read_sealed_table(
                self.labels_file(kind), "labels", f"{LABELS_SCOPE}:{kind}", LABELS_SCOPE, {old, new}
            )
            if epoch == old:
                i = table.column_names.index("vehicle")
                table = table.set_column(
                    i, "vehicle", rekey_pseudonyms(table["vehicle"], old_key, new_key)
                )
                self._write_labels_table(table, kind, new)
                labels += len(table)
        derived = self.derived_artifacts()
        for art in derived:
            self.delete_derived(art.name)
        self._meta["key_epoch"] = new
        self._meta.pop("rotation", None)
        self._meta["rotated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._save_meta()
        destroyed = self.destroy_stale_epoch_keys()
        return RotationReport(old, new, partitions, reads, labels, len(derived), destroyed)

    def destroy_stale_epoch_keys(self) -> tuple[str, ...]:
        """Destroy every pseudonym epoch key older than the current epoch."""
        if self._meta.get("rotation"):
            return ()
        gone = []
        for e in self.keyring.entries():
            if e.scope.startswith("epoch:") and int(e.scope[6:]) < self.key_epoch:
                self.keyring.destroy(e.key_id)
                gone.append(e.key_id)
        return tuple(gone)

    # --- accounting ------------------------------------------------------------------------

    def bytes_on_disk(self) -> int:
        """Total bytes of every file under the store root."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def append_log(self, name: str, record: dict[str, Any]) -> Path:
        """Append one JSON line to ``logs/<name>.jsonl`` (counts only: callers' duty) + fsync."""
        if not _NAME_OK.match(name):
            raise StoreError("log names are letters, digits, '_', '.', '-'")
        path = self.root / "logs" / f"{name}.jsonl"
        path.parent.mkdir(exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return path


def open_store_from_env(root: Path) -> ForceStore:
    """Open a store with ``ANPRFED_KEY_FILE`` or ``ANPRFED_PASSPHRASE`` (for CLIs)."""
    return ForceStore.open(root, MasterSecretSource.from_env())
