"""Crash-safe file writes: a reader sees the old file or the new one, never a half-written one.

Write to a temporary file in the same directory, fsync it, ``os.replace`` it over the target,
then fsync the directory so the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TMP_MARKER = ".tmp-"


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames and unlinks inside it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data`` (tmp in the same dir, fsync, rename, fsync dir)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARKER}{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def remove_file(path: Path) -> bool:
    """Unlink ``path`` if present and fsync its directory; returns whether it existed."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def stale_temp_files(root: Path) -> list[Path]:
    """Temporary files left by an interrupted atomic write anywhere under ``root``."""
    return sorted(p for p in Path(root).rglob(f".*{TMP_MARKER}*") if p.is_file())
