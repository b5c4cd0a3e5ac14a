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

:class:`ForceStore` is assembled from one class per thing it stores: day partitions
(:mod:`retention.partitions`), quarantine (:mod:`retention.quarantine`), the camera register and
label tables (:mod:`retention.catalog`), derived artifacts (:mod:`retention.derived`) and keys
and rotation (:mod:`retention.rotation`), over the sealed-file base
(:mod:`retention.sealed_files`). This module adds the lifecycle and the whole-day view.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from privacy.keys import KeyMaterialError, MasterSecretSource
from retention.catalog import LABELS_SCHEMA, REGISTER_SCHEMA, CatalogStore
from retention.derived import DerivedArtifact, DerivedStore
from retention.keyring import Keyring, KeyringError, epoch_scope
from retention.lock import store_lock
from retention.partitions import PARTITION_NAME, PartitionStore, day_dir_name, days_under
from retention.quarantine import QuarantineStore
from retention.read_block import READS_SCHEMA
from retention.rotation import KeyManagement, RotationReport
from retention.sealed_files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_NAME,
    NAME_OK,
    SealedFileStore,
    check_name,
)
from retention.store_errors import (
    PartitionIntegrityError,
    RotationIncompleteError,
    StoreError,
    UnsafePathError,
)
from safefiles.atomic import remove_file, stale_temp_files

__all__ = [
    "LABELS_SCHEMA",
    "PARTITION_NAME",
    "READS_SCHEMA",
    "REGISTER_SCHEMA",
    "CatalogStore",
    "DerivedArtifact",
    "DerivedStore",
    "ForceStore",
    "PartitionIntegrityError",
    "PartitionStore",
    "QuarantineStore",
    "RotationIncompleteError",
    "RotationReport",
    "SealedFileStore",
    "StoreError",
    "UnsafePathError",
    "days_under",
    "open_store_from_env",
]

STORE_FOLDERS = ("keys", "partitions", "quarantine", "cameras", "labels", "derived", "logs")


class ForceStore(KeyManagement, QuarantineStore):
    """One force's store. Get one with :meth:`create` or :meth:`open` (see module docstring).

    Methods that change the store do not take the store lock themselves; callers that run as
    a command (ingest, rotate-key, purge) hold :meth:`lock` around their work.
    """

    def __repr__(self) -> str:
        return f"ForceStore({str(self.root)!r}, force={self.force!r}, epoch={self.key_epoch})"

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, force: str, secret: MasterSecretSource) -> ForceStore:
        """Create an empty store at ``root`` with a fresh master secret protected by ``secret``.

        ``root`` must not exist or be an empty directory.
        """
        root = Path(root)
        if not force or not NAME_OK.match(force):
            raise StoreError("force name must be 1-64 letters, digits, '_', '.', or '-'")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root} already exists and is not an empty directory")
        root.mkdir(parents=True, exist_ok=True)
        for sub in (*STORE_FOLDERS, "privacy"):
            (root / sub).mkdir(exist_ok=True)
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

    def lock(self, holder: str, timeout: float = 0.0) -> contextlib.AbstractContextManager[Path]:
        """The store's exclusive lock (``retention.lock.store_lock``)."""
        return store_lock(self.root, holder, timeout)

    # --- the whole-day view (partitions, quarantine, day keys) -----------------------------

    def held_days(self) -> list[date]:
        """Every day the store holds anything for: partitions, quarantine, day keys."""
        days = set(self.days()) | set(self.quarantine_days())
        for e in self.keyring.entries():
            if e.scope.startswith("day:"):
                with contextlib.suppress(ValueError):
                    days.add(date.fromisoformat(e.scope[4:]))
        return sorted(days)

    def day_files(self, day: date) -> list[Path]:
        """Every file holding data of ``day``: its partition and quarantine files."""
        out: list[Path] = []
        for d in self.day_dirs(day):
            out += sorted(p for p in d.iterdir() if p.is_file())
        return out

    def day_dirs(self, day: date) -> list[Path]:
        """Directories of ``day`` (to remove once empty after a purge)."""
        name = day_dir_name(day)
        dirs = [self.root / "partitions" / name, self.root / "quarantine" / name]
        return [d for d in dirs if d.is_dir()]

    # --- crash leftovers --------------------------------------------------------------

    def clean_interrupted_writes(self) -> int:
        """Remove temp files left by a crashed writer; returns how many. Hold the store lock."""
        stale = stale_temp_files(self.root)
        for p in stale:
            remove_file(p)
        return len(stale)

    # --- accounting ------------------------------------------------------------------------

    def bytes_on_disk(self) -> int:
        """Total bytes of every file under the store root."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def append_log(self, name: str, record: dict[str, Any]) -> Path:
        """Append one JSON line to ``logs/<name>.jsonl`` (counts only: callers' duty) + fsync."""
        check_name(name, "log")
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
