"""Errors raised by a force store (:mod:`retention.store`); messages name files, never values."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "PartitionIntegrityError",
    "RotationIncompleteError",
    "StoreError",
    "StoreIOError",
    "UnsafePathError",
]


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


class UnsafePathError(StoreError):
    """A store path is a symlink, special file or otherwise not what the store created.

    The store refuses to follow or delete it (a local user may have planted it to make the
    store touch a file outside itself). Remove the named path and run the command again.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"refusing unsafe store path {path}: {reason}; remove it and run the command again"
        )


class StoreIOError(StoreError, OSError):
    """The operating system refused a store file operation (permission, read-only mount, full
    disk ...). Nothing half-written is left in place; fix the cause and run again."""

    def __init__(self, path: Path, exc: OSError) -> None:
        message = (
            f"cannot write or read {path}: {exc.strerror or exc}; nothing was half-written, "
            "fix the cause and run the command again"
        )
        super().__init__(message)
        self.path = Path(path)
        self.errno = exc.errno
        self.strerror = message
