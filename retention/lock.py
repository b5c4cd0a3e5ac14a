"""An exclusive, advisory lock on a force store, so ingest and purge never run at once.

The lock is ``fcntl.flock`` on ``STORE/lock``. While held, the file names its holder
(``{"holder": ..., "pid": ..., "acquired_at": ...}``) so a refused caller can say who has it.
The kernel drops the lock when the holder's process dies, so a crash never leaves a stale lock;
the text left in the file after a crash is only informative and is overwritten by the next holder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE_NAME = "lock"
_POLL_SECONDS = 0.05


class StoreLockedError(RuntimeError):
    """The store lock is held by someone else (another process or another open in this one)."""

    def __init__(self, root: Path, holder: str | None, pid: int | None) -> None:
        self.root = root
        self.holder = holder
        self.pid = pid
        who = holder or "another process"
        pid_text = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"store is locked by {who}{pid_text}; try again later")


def lock_path(root: Path) -> Path:
    """The path of the lock file of the store at ``root``."""
    return Path(root) / LOCK_FILE_NAME


def read_lock_holder(root: Path) -> tuple[str | None, int | None]:
    """Return ``(holder, pid)`` as last written into the lock file, or ``(None, None)``.

    This is informative only: it does not tell whether the lock is currently held.
    """
    try:
        text = lock_path(root).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None, None
    if not text:
        return None, None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return None, None
    if not isinstance(info, dict):
        return None, None
    holder = info.get("holder")
    pid = info.get("pid")
    return (
        holder if isinstance(holder, str) else None,
        pid if isinstance(pid, int) else None,
    )


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


@contextmanager
def store_lock(root: Path, holder: str, timeout: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive lock of the store at ``root`` for the duration of the block.

    ``holder`` is a short role name (``"ingest"``, ``"purge"``) recorded in the lock file.
    Waits up to ``timeout`` seconds (0 = try once) and then raises :class:`StoreLockedError`,
    whose message names the current holder and its pid. Yields the lock file's path.
    The lock is per open file description: a second ``store_lock`` on the same store in the
    same process is refused too, just like one from another process.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"store directory does not exist: {root}")
    path = lock_path(root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + max(0.0, timeout)
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                # The holder writes its name right after taking the lock; give it a moment.
                who, pid = read_lock_holder(root)
                if who is None:
                    time.sleep(_POLL_SECONDS)
                    who, pid = read_lock_holder(root)
                raise StoreLockedError(root, who, pid)
            time.sleep(_POLL_SECONDS)
        info = {
            "acquired_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "holder": holder,
            "pid": os.getpid(),
        }
        data = (json.dumps(info, sort_keys=True) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
