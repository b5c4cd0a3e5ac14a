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
    spill/<build>/bucket-<k>.enc                  an example build's encrypted temporary buckets
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
import errno
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from privacy.keys import (
    PURGE_KEY_FILE_ENV,
    KeyMaterialError,
    MasterSecretSource,
    rewrap_master_secret,
)
from privacy.purge_key import load_purge_signer, write_purge_key
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
from retention.spill import sweep_stale_spills
from retention.store_errors import (
    PartitionIntegrityError,
    RotationIncompleteError,
    StoreError,
    StoreIOError,
    UnsafePathError,
)
from retention.store_guard import check_store_tree
from safefiles.atomic import (
    PRIVATE_DIR_MODE,
    UnsafeFileError,
    append_bytes,
    make_dirs,
    remove_file,
    stale_temp_files,
)

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
    "StoreIOError",
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
        make_dirs(root, PRIVATE_DIR_MODE)
        os.chmod(root, PRIVATE_DIR_MODE)
        for sub in (*STORE_FOLDERS, "privacy"):
            make_dirs(root / sub, PRIVATE_DIR_MODE)
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
        store.keyring.new_key(epoch_scope(1), key=secret.initial_epoch_key(master))
        store._save_meta()
        return store

    @classmethod
    def open(cls, root: Path, secret: MasterSecretSource) -> ForceStore:
        """Open an existing store; ``WrongPassphraseError`` if ``secret`` does not fit."""
        root = Path(root)
        check_store_tree(root)
        meta = cls.read_meta(root)
        master = secret.load(root / "keys")
        if master.public_key_hex() != meta.get("signing", {}).get("public_key"):
            raise KeyMaterialError(f"{root / META_NAME} does not belong to this master secret")
        return cls._opened(root, meta, master, None)

    @classmethod
    def open_for_purge(cls, root: Path, purge_key_file: Path) -> ForceStore:
        """Open with the purge job's key file only (``anprfed force purge-key``): the handle
        can list days, erase keys, remove files, check manifests and sign the purge log, but
        holds no key that decrypts anything."""
        root = Path(root)
        check_store_tree(root)
        meta = cls.read_meta(root)
        signer = load_purge_signer(root / "keys", Path(purge_key_file))
        if signer.public_key_hex() != meta.get("signing", {}).get("public_key"):
            raise KeyMaterialError(f"{root / META_NAME} does not belong to this purge key")
        return cls._opened(root, meta, None, signer)

    @classmethod
    def _opened(cls, root: Path, meta: dict[str, Any], master: Any, signer: Any) -> ForceStore:
        try:
            store = cls(root, meta, master, signer)
        except KeyringError as exc:
            raise StoreError(str(exc)) from None
        try:
            # wrapped keys an interrupted keyring rewrite left behind (maybe of a purged day)
            store.keyring.remove_temp_files()
        except UnsafeFileError as exc:
            raise UnsafePathError(exc.path, exc.reason) from None
        except OSError as exc:
            if exc.errno != errno.EROFS:  # a read-only store can still be read
                raise StoreIOError(Path(exc.filename or root), exc) from None
        return store

    def check_tree(self) -> int:
        """Refuse symlinks, special files, hard links and misplaced kinds anywhere in the store
        (:func:`retention.store_guard.check_store_tree`); tightens modes to 0600/0700."""
        return check_store_tree(self.root)

    # --- key protection --------------------------------------------------------------------

    def change_passphrase(self, new_passphrase: str, scrypt_log2_n: int | None = None) -> None:
        """Re-wrap the master secret under ``new_passphrase`` at the current scrypt cost (the
        explicit ``scrypt_log2_n`` is for tests only). No data is re-encrypted; the new
        parameters are recorded in ``keys/master.wrapped`` and store.json."""
        if self._meta.get("key_protection", {}).get("mode") != "passphrase":
            raise StoreError("this store's master secret is in a key file, not a passphrase")
        with self.keyring.locked():  # serialised with every other key-file rewrite
            info = rewrap_master_secret(
                self.root / "keys", self.master, new_passphrase, scrypt_log2_n
            )
            self._meta["key_protection"] = info
            self._save_meta()

    def create_purge_key(self, key_file: Path) -> None:
        """Write the purge job's key file (0600, never overwritten) and wrap the signing seed
        under it, so ``anprfed retention purge`` can run with it alone."""
        with self.keyring.locked():
            write_purge_key(self.root / "keys", self._signer, Path(key_file))

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
        """Every file holding data of ``day``: its partition and quarantine files.

        Lists only the store's own folders and files: a symlinked day folder or file is
        refused (:class:`UnsafePathError`), never followed."""
        out: list[Path] = []
        for d in self.day_dirs(day):
            for p in sorted(d.iterdir()):
                if p.is_symlink():
                    raise UnsafePathError(p, "is a symbolic link the store did not create")
                if p.is_file():
                    out.append(p)
        return out

    def day_dirs(self, day: date) -> list[Path]:
        """Directories of ``day`` (to remove once empty after a purge); refuses symlinks."""
        name = day_dir_name(day)
        out = []
        for d in [self.root / "partitions" / name, self.root / "quarantine" / name]:
            if d.is_symlink():
                raise UnsafePathError(d, "is a symbolic link the store did not create")
            if d.is_dir():
                out.append(d)
        return out

    # --- crash leftovers --------------------------------------------------------------

    def clean_interrupted_writes(self) -> int:
        """Remove temp files left by a crashed writer; returns how many. Hold the store lock."""
        # derived artifacts and keyring rewrites may be written without the store lock (a
        # training worker's cache): their locks keep an in-flight temp file from being taken
        with self.derived_lock(), self.keyring.locked():
            stale = stale_temp_files(self.root)
            for p in stale:
                remove_file(p)
        # encrypted spill folders of a killed example build (their key died with it)
        return len(stale) + sweep_stale_spills(self.root)

    # --- accounting ------------------------------------------------------------------------

    def bytes_on_disk(self) -> int:
        """Total bytes of every file under the store root."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def append_log(self, name: str, record: dict[str, Any]) -> Path:
        """Append one JSON line to ``logs/<name>.jsonl`` (counts only: callers' duty) + fsync."""
        check_name(name, "log")
        path = self.root / "logs" / f"{name}.jsonl"
        self._check_parents(path)
        make_dirs(path.parent, PRIVATE_DIR_MODE)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        try:
            append_bytes(path, line.encode("utf-8"))
        except UnsafeFileError as exc:
            raise UnsafePathError(exc.path, exc.reason) from None
        except OSError as exc:
            raise StoreIOError(path, exc) from None
        return path


def open_store_from_env(root: Path, purge_only: bool = False) -> ForceStore:
    """Open a store with ``ANPRFED_KEY_FILE`` or ``ANPRFED_PASSPHRASE`` (for CLIs).

    With ``purge_only``, ``ANPRFED_PURGE_KEY_FILE`` (when set) opens a purge-only handle."""
    purge_key = os.environ.get(PURGE_KEY_FILE_ENV)
    if purge_only and purge_key:
        return ForceStore.open_for_purge(root, Path(purge_key))
    return ForceStore.open(root, MasterSecretSource.from_env())
