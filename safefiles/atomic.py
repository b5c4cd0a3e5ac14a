"""Crash-safe file writes: a reader sees the old file or the new one, never a half-written one.

Write to a temporary file in the same directory (created exclusively, with its final
permissions before any byte is written), fsync it, ``os.replace`` it over the target, then
fsync the directory so the rename itself is durable. Every package that writes a file it
must not tear (keys, keyrings, ledgers, checkpoints, run outputs, deployment key material)
uses this one helper; temporary files carry :data:`TMP_MARKER` so that a store can find and
remove the ones an interrupted write left behind.

Every write, fsync, rename and unlink is a step boundary of :mod:`safefiles.faults` (crash tests
kill the process at each one).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from safefiles.faults import step

TMP_MARKER = ".tmp-"
PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


class UnsafeFileError(OSError):
    """A path that must be a regular file (or a folder) is a symlink, special file or the
    wrong kind; nothing was read or written through it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(errno.ELOOP, f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames and unlinks inside it are durable."""
    step("fsync-dir", path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that :func:`stale_temp_files` recognises."""
    return path.with_name(f".{path.name}{TMP_MARKER}{secrets.token_hex(4)}")


def make_dirs(path: Path, mode: int | None = None) -> None:
    """``mkdir -p path``; folders this call creates get exactly ``mode`` (if given)."""
    path = Path(path)
    if path.is_dir():
        return
    if not path.parent.is_dir():
        make_dirs(path.parent, mode)
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    if mode is not None:
        os.chmod(path, mode)


def atomic_write_bytes(
    path: Path, data: bytes, mode: int = PRIVATE_MODE, dir_mode: int | None = None
) -> Path:
    """Atomically replace ``path`` with ``data`` (tmp in the same dir, fsync, rename, fsync dir).

    The file gets exactly ``mode`` (set before any byte is written, whatever the umask); folders
    created on the way get ``dir_mode`` (default: the umask's). Returns ``path``.
    """
    path = Path(path)
    make_dirs(path.parent, dir_mode)
    tmp = temp_path_for(path)
    step("create", tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            step("write", tmp)
            fh.write(data)
            fh.flush()
            step("fsync", tmp)
            os.fsync(fh.fileno())
        step("rename", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str, mode: int = PRIVATE_MODE) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: Path, payload: Any, mode: int = PRIVATE_MODE, indent: int = 1) -> Path:
    """:func:`atomic_write_bytes` of ``payload`` as JSON (no NaN or infinity)."""
    text = json.dumps(payload, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text, mode)


def append_bytes(path: Path, data: bytes, mode: int = PRIVATE_MODE) -> None:
    """Append ``data`` in one ``write`` to ``path`` (created with ``mode``, never through a
    symlink) and fsync it. A crash leaves the old content or the old content plus a prefix of
    ``data``; readers of append-only logs must tolerate a torn last line."""
    step("append", path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(Path(path), "not a regular file")
        os.write(fd, data)
        step("fsync", path)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, refusing a symlink, FIFO, device or folder (never blocks on a
    FIFO). ``FileNotFoundError`` if it is missing; :class:`UnsafeFileError` if it is not a
    regular file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(path, "is a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise UnsafeFileError(path, "is a folder, expected a file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, "is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_file(path: Path) -> bool:
    """Unlink ``path`` if present and fsync its directory; returns whether it existed.

    A symlink is unlinked itself (its target is never touched); a folder is refused."""
    path = Path(path)
    step("unlink", path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise UnsafeFileError(path, "is a folder, expected a file") from None
    fsync_dir(path.parent)
    return True


def remove_empty_dir(path: Path) -> bool:
    """Remove the folder ``path`` if it exists and is empty (never a symlink's target) and
    fsync its parent; returns whether it was removed."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFileError(path, "is not a folder")
    step("rmdir", path)
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    fsync_dir(path.parent)
    return True


def stale_temp_files(root: Path) -> list[Path]:
    """Temporary files left by an interrupted atomic write anywhere under ``root``.

    Symlinked folders are not followed; only regular files (never a symlink's target) count."""
    out: list[Path] = []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if name.startswith(".") and TMP_MARKER in name:
                p = Path(dirpath) / name
                if stat.S_ISREG(os.lstat(p).st_mode):
                    out.append(p)
    return sorted(out)
