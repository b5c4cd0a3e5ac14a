"""Writing key material safely: owner-only permissions, atomic replace, no silent overwrite."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from safefiles import atomic_write_bytes

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


class DeployFileError(Exception):
    """A deployment file cannot be written or read (names the file, never its content)."""


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise :class:`DeployFileError` naming the first existing path unless ``overwrite``."""
    if overwrite:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise DeployFileError(
            f"{existing[0]} already exists ({len(existing)} file(s) in all); "
            "pass --overwrite to replace key material deliberately"
        )


def write_file(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` (set before any byte)."""
    return atomic_write_bytes(Path(path), data, mode)


def read_file(path: Path, what: str) -> bytes:
    """Bytes of ``path``; a missing or unreadable file raises :class:`DeployFileError`."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DeployFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise DeployFileError(f"{what} {path} cannot be read ({exc.strerror})") from None
