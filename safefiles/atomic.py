"""Crash-safe file writes: a reader sees the old file or the new one, never a half-written one.

Write to a temporary file in the same directory (created exclusively, with its final
permissions before any byte is written), fsync it, ``os.replace`` it over the target, then
fsync the directory so the rename itself is durable. Every package that writes a file it
must not tear (keys, keyrings, ledgers, checkpoints, run outputs, deployment key material)
uses this one helper; temporary files carry :data:`TMP_MARKER` so that a store can find and
remove the ones an interrupted write left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

TMP_MARKER = ".tmp-"
PRIVATE_MODE = 0o600


def fsync_dir(path: Path) -> None:
    """fsync a directory so renames and unlinks inside it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that :func:`stale_temp_files` recognises."""
    return path.with_name(f".{path.name}{TMP_MARKER}{secrets.token_hex(4)}")


def atomic_write_bytes(path: Path, data: bytes, mode: int = PRIVATE_MODE) -> Path:
    """Atomically replace ``path`` with ``data`` (tmp in the same dir, fsync, rename, fsync dir).

    The file gets exactly ``mode`` (set before any byte is written, whatever the umask).
    Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
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
    return path


def atomic_write_text(path: Path, text: str, mode: int = PRIVATE_MODE) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: Path, payload: Any, mode: int = PRIVATE_MODE, indent: int = 1) -> Path:
    """:func:`atomic_write_bytes` of ``payload`` as JSON (no NaN or infinity)."""
    text = json.dumps(payload, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text, mode)


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
