"""Encrypted spill files: a window's reads split into buckets by pseudonym, one day at a time.

Building a force's examples needs every read of a vehicle together, but the store is partitioned
by day. :class:`PseudonymSpill` lets a builder make one pass over the window's day partitions
(one decrypted day in memory at a time), append each read to one of ``K`` bucket files by the
leading bits of its pseudonym, then take the buckets back one by one in ascending pseudonym
order. Bucket ``k`` holds the pseudonyms whose first 32 bits ``h`` have ``floor(h * K / 2**32)
== k``, so the buckets are disjoint, ascending ranges of pseudonyms.

The spill files are force-internal temporary data:

* they live in a private folder ``STORE/spill/<random id>/`` (0700; files 0600, created
  exclusively, never through a symlink); their names are ``bucket-<k>.enc``, no pseudonym,
  token or date;
* every record is a sealed blob (:mod:`privacy.aead`, AES-256-GCM) under a fresh data key made
  for this build and held only in this process's memory (never in the keyring or on disk), its
  associated data binding the build, the bucket and the record number; a crash leaves only
  ciphertext whose key died with the process (a crypto-erase), and the record count kept in
  memory detects a dropped last record;
* the folder is removed when the spill closes, on success or error; a folder left by a killed
  process is removed by the next spill (or by ``ForceStore.clean_interrupted_writes``): each
  live spill holds an ``flock`` on its folder's ``lock`` file, so a folder whose lock can be
  taken belongs to no running build.

A record is ``4-byte big-endian length || sealed blob``; its plaintext is the four numeric
columns of a :class:`retention.read_block.ReadBlock` (32 bytes a read).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import struct
from pathlib import Path
from types import TracebackType

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.aead import SealedBlobError, open_sealed, seal
from retention.read_block import ReadBlock
from retention.store_errors import PartitionIntegrityError, UnsafePathError
from safefiles.atomic import PRIVATE_DIR_MODE, PRIVATE_MODE, make_dirs, remove_empty_dir

SPILL_FOLDER = "spill"
LOCK_NAME = "lock"
BUCKET_BYTES_PER_READ = 32
#: Upper bound on buckets (open files during the pass).
MAX_BUCKETS = 4096
_LEN = struct.Struct(">I")
_KEY_ID = "spill"


def bucket_of(vehicle_hi: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket of each pseudonym (its first 8 bytes as big-endian ``uint64``): ascending ranges."""
    top = np.asarray(vehicle_hi, dtype=np.uint64) >> np.uint64(32)
    return ((top * np.uint64(n_buckets)) >> np.uint64(32)).astype(np.int64)


def sweep_stale_spills(store_root: Path) -> int:
    """Remove spill folders no live build holds (left by a killed process); returns how many."""
    base = Path(store_root) / SPILL_FOLDER
    try:
        st = os.lstat(base)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(base, "is not a folder the store created")
    removed = 0
    for entry in sorted(base.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()  # a link or stray file: unlink it, never its target
            removed += 1
            continue
        lock = entry / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = None  # killed before it took its lock: nobody holds it
        except OSError:
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a running build's folder
            _remove_folder(entry)
            removed += 1
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _remove_folder(folder: Path) -> None:
    """Unlink every entry of a spill folder (never following a link), then the folder."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            _remove_folder(entry)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    remove_empty_dir(folder)


class PseudonymSpill:
    """Reads spilled to ``n_buckets`` encrypted bucket files (see the module docstring).

    Use as a context manager: ``add`` every day's :class:`ReadBlock`, then ``take(k)`` each
    bucket in order (``take`` deletes the bucket's file). Closing removes the folder.
    """

    def __init__(self, store_root: Path, n_buckets: int) -> None:
        if not 1 <= n_buckets <= MAX_BUCKETS:
            raise ValueError(f"n_buckets must be in 1..{MAX_BUCKETS}; got {n_buckets}")
        self.n_buckets = int(n_buckets)
        self._root = Path(store_root)
        self._build = secrets.token_hex(8)
        self.folder = self._root / SPILL_FOLDER / self._build
        self._key: bytes | None = None
        self._lock_fd: int | None = None
        self._fds: dict[int, int] = {}
        self._records = np.zeros(self.n_buckets, np.int64)
        self.reads = np.zeros(self.n_buckets, np.int64)

    # --- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> PseudonymSpill:
        sweep_stale_spills(self._root)
        base = self._root / SPILL_FOLDER
        if base.is_symlink():
            raise UnsafePathError(base, "is a symbolic link the store did not create")
        make_dirs(base, PRIVATE_DIR_MODE)
        os.mkdir(self.folder, PRIVATE_DIR_MODE)
        os.chmod(self.folder, PRIVATE_DIR_MODE)
        try:
            self._lock_fd = self._create(self.folder / LOCK_NAME)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._key = AESGCM.generate_key(bit_length=256)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Forget the key, close and delete every spill file and the folder (idempotent)."""
        self._key = None
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        try:
            if self.folder.is_dir() and not self.folder.is_symlink():
                _remove_folder(self.folder)
        finally:
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)
                self._lock_fd = None
            with contextlib.suppress(OSError):
                remove_empty_dir(self._root / SPILL_FOLDER)

    @staticmethod
    def _create(path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)
        return fd

    def _path(self, bucket: int) -> Path:
        return self.folder / f"bucket-{bucket:04d}.enc"

    def _context(self, bucket: int, record: int) -> bytes:
        return f"anprfed/v1/spill|build={self._build}|bucket={bucket}|record={record}".encode()

    def _live_key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("the spill is closed (use it inside a with block)")
        return self._key

    # --- writing ------------------------------------------------------------------------
    def add(self, block: ReadBlock) -> None:
        """Append ``block``'s reads to their buckets (one sealed record per bucket touched)."""
        key = self._live_key()
        if len(block) == 0:
            return
        buckets = bucket_of(block.vehicle_hi, self.n_buckets)
        order = np.argsort(buckets, kind="stable")
        counts = np.bincount(buckets, minlength=self.n_buckets)
        starts = np.concatenate(([0], np.cumsum(counts)))
        columns = np.empty((4, len(block)), dtype=np.uint64)
        columns[0] = block.vehicle_hi[order]
        columns[1] = block.vehicle_lo[order]
        columns[2] = block.camera[order]
        columns[3] = block.read_at[order].view(np.uint64)
        for k in np.flatnonzero(counts):
            plain = np.ascontiguousarray(columns[:, starts[k] : starts[k + 1]]).tobytes()
            blob = seal(key, _KEY_ID, self._context(int(k), int(self._records[k])), plain)
            fd = self._fds.get(int(k))
            if fd is None:
                fd = self._fds[int(k)] = self._create(self._path(int(k)))
            data = _LEN.pack(len(blob)) + blob
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._records[k] += 1
            self.reads[k] += counts[k]

    @property
    def total_reads(self) -> int:
        """Reads spilled so far."""
        return int(self.reads.sum())

    # --- reading ------------------------------------------------------------------------
    def take(self, bucket: int) -> ReadBlock:
        """Bucket ``bucket``'s reads (in the order they were added); deletes its file."""
        key = self._live_key()
        fd = self._fds.pop(bucket, None)
        if fd is None:
            return ReadBlock.empty()
        path = self._path(bucket)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            parts = []
            with os.fdopen(fd, "rb", closefd=False) as fh:
                for record in range(int(self._records[bucket])):
                    head = fh.read(_LEN.size)
                    if len(head) != _LEN.size:
                        raise PartitionIntegrityError(path, "spill file is truncated")
                    blob = fh.read(_LEN.unpack(head)[0])
                    try:
                        _, plain = open_sealed(key, blob, self._context(bucket, record))
                    except SealedBlobError as exc:
                        raise PartitionIntegrityError(path, str(exc)) from None
                    parts.append(np.frombuffer(plain, dtype=np.uint64).reshape(4, -1))
                    del plain
                if fh.read(1):
                    raise PartitionIntegrityError(path, "spill file has trailing data")
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        merged = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        del parts
        return ReadBlock(merged[0], merged[1], merged[2], merged[3].view(np.int64))
