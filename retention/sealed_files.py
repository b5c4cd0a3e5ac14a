"""The base of a force store: its metadata, keyring and sealed (encrypted) files.

:class:`SealedFileStore` holds what every part of :class:`retention.store.ForceStore` shares:
the root, the public ``store.json``, the master key and the keyring, and the two primitives that
read and write a sealed file (``*.enc``, :mod:`privacy.aead`) under a keyring data key with
associated data binding the force, the file kind and the scope.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from privacy.aead import SealedBlobError, open_sealed, read_header, seal
from privacy.keys import MasterKey, PurgeSigner
from privacy.pseudonym import VrmPseudonymiser
from retention.keyring import Keyring, KeyringError, MissingKeyError, epoch_scope
from retention.store_errors import (
    PartitionIntegrityError,
    RotationIncompleteError,
    StoreError,
    StoreIOError,
    UnsafePathError,
)
from safefiles.atomic import (
    PRIVATE_DIR_MODE,
    UnsafeFileError,
    atomic_write_bytes,
    read_regular_file,
)

FORMAT_NAME = "anprfed-force-store"
FORMAT_VERSION = 1
META_NAME = "store.json"
NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARQUET_COMPRESSION = "zstd"


def table_to_parquet(table: pa.Table) -> bytes:
    """A table as zstd-compressed Parquet bytes (the plaintext of most sealed files)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION)
    return sink.getvalue()


def check_name(name: str, what: str) -> str:
    """``name`` if it is a safe file-name component, else :class:`StoreError` naming ``what``."""
    if not NAME_OK.match(name):
        raise StoreError(f"{what} names are letters, digits, '_', '.', '-'")
    return name


def read_store_file(path: Path) -> bytes:
    """A store file's bytes, refusing a symlink or special file (:class:`UnsafePathError`)."""
    try:
        return read_regular_file(path)
    except UnsafeFileError as exc:
        raise UnsafePathError(exc.path, exc.reason) from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreIOError(path, exc) from None


class SealedFileStore:
    """Root, metadata, master key and keyring of a store, and its sealed-file primitives.

    ``master`` is ``None`` for a purge-only handle (:meth:`retention.store.ForceStore.
    open_for_purge`): it holds only the purge job's :class:`PurgeSigner` and can list, erase
    and sign, but not decrypt.
    """

    def __init__(
        self,
        root: Path,
        meta: dict[str, Any],
        master: MasterKey | None,
        signer: PurgeSigner | None = None,
    ) -> None:
        self.root = Path(root)
        self._meta = meta
        self._master = master
        if signer is None:
            if master is None:
                raise StoreError("a store handle needs the master key or the purge signer")
            signer = master.purge_signer()
        self._signer = signer
        wrapping = master.wrapping_key() if master is not None else b""
        self.keyring = Keyring(self.root / "keys" / Keyring.FILE_NAME, wrapping)

    def _write_file(self, path: Path, data: bytes) -> None:
        """Atomically write a store file (0600, new folders 0700), never through a symlinked
        folder inside the store."""
        self._check_parents(path)
        try:
            atomic_write_bytes(path, data, dir_mode=PRIVATE_DIR_MODE)
        except UnsafeFileError as exc:
            raise UnsafePathError(exc.path, exc.reason) from None
        except OSError as exc:
            raise StoreIOError(path, exc) from None

    def _check_parents(self, path: Path) -> None:
        rel = Path(path).relative_to(self.root)
        here = self.root
        for part in rel.parts[:-1]:
            here = here / part
            if here.is_symlink():
                raise UnsafePathError(here, "is a symbolic link the store did not create")
            if here.exists() and not here.is_dir():
                raise UnsafePathError(here, "is a file where the store keeps a folder")

    # --- metadata --------------------------------------------------------------------------

    @staticmethod
    def read_meta(root: Path) -> dict[str, Any]:
        """The public ``store.json`` (no key material needed)."""
        path = Path(root) / META_NAME
        try:
            meta = json.loads(read_store_file(path))
        except FileNotFoundError:
            raise StoreError(f"{root} is not an anprfed force store (no {META_NAME})") from None
        except (OSError, ValueError):
            raise StoreError(f"{path} is unreadable or not JSON") from None
        if not isinstance(meta, dict):
            raise StoreError(f"{path} is not a JSON object")
        if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path} is not a version-{FORMAT_VERSION} anprfed force store")
        return meta

    def refresh(self) -> None:
        """Re-read store.json and the keyring (after another handle or process changed them)."""
        self._meta = self.read_meta(self.root)
        self.keyring.reload()

    def _save_meta(self) -> None:
        self._write_file(self.root / META_NAME, json.dumps(self._meta, indent=1).encode("utf-8"))

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
        if self._master is None:
            raise StoreError(f"{self.root} was opened with the purge key only: it cannot decrypt")
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
        return VrmPseudonymiser(self.master.pseudonym_base_key(), epoch_key)

    def _check_not_rotating(self) -> None:
        if self._meta.get("rotation"):
            raise RotationIncompleteError(
                f"a key rotation of {self.root} was interrupted; "
                "run `anprfed force rotate-key` again to finish it"
            )

    # --- sealed files ----------------------------------------------------------------------

    def _context(self, kind: str, scope: str) -> bytes:
        return f"anprfed/v1|force={self.force}|kind={kind}|scope={scope}".encode()

    def _write_sealed(
        self, path: Path, kind: str, scope: str, key_scope: str, data: bytes, epoch: int = 0
    ) -> str:
        key_id, key = self.keyring.key_for_scope(key_scope, create=True)
        self._write_file(path, seal(key, key_id, self._context(kind, scope), data, epoch))
        return key_id

    def _read_sealed(self, path: Path, kind: str, scope: str, key_scope: str) -> tuple[int, bytes]:
        """Authenticate and decrypt a store file; returns ``(epoch, plaintext)``."""
        try:
            blob = read_store_file(path)
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
