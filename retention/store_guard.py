"""What a store folder may contain, checked before a command touches it.

A local user who can write inside a store could plant a symlink (so a purge deletes or a writer
overwrites a file outside the store), a FIFO (so a reader blocks forever), a hard link (so a
copy of a key-holding file outlives its crypto-erase) or a folder where a file belongs.
:func:`check_store_tree` walks the store without following links and refuses all of these with
:class:`retention.store_errors.UnsafePathError`, naming the path; it also tightens any file to
0600 and any folder to 0700 (the store's own modes), so a widened permission is repaired.
Nothing is deleted or changed otherwise: once the operator removes the named path, every
command runs again.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from retention.store_errors import UnsafePathError
from safefiles.atomic import PRIVATE_DIR_MODE, PRIVATE_MODE

#: Paths (relative to the root) that must be folders when present.
FOLDERS = frozenset(
    {"keys", "partitions", "quarantine", "cameras", "labels", "derived", "logs", "privacy", "spill"}
)
#: Paths that must be regular files when present.
FILES = frozenset(
    {
        "store.json",
        "lock",
        "keys/keyring.json",
        "keys/keyring.lock",
        "keys/master.wrapped",
        "keys/signing.wrapped",
        "derived.lock",
    }
)
#: Folders whose children are per-day folders ``day=YYYY-MM-DD``.
DAY_PARENTS = frozenset({"partitions", "quarantine"})
#: Folders that hold only files (a day's folder and an artifact's folder too).
FILE_PARENTS = frozenset({"keys", "cameras", "labels", "logs"})


def _holds_only_files(parent: str) -> bool:
    parts = parent.split("/")
    if parent in FILE_PARENTS:
        return True
    return len(parts) == 2 and parts[0] in (*DAY_PARENTS, "derived")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a regular file"


def _check_entry(root: Path, path: Path, st: os.stat_result, owner: int) -> None:
    rel = path.relative_to(root).as_posix()
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise UnsafePathError(path, "is a symbolic link the store did not create")
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise UnsafePathError(path, f"is {_kind(mode)}, not a file or folder of the store")
    if st.st_uid != owner:
        raise UnsafePathError(path, f"is owned by uid {st.st_uid}, not the store's owner")
    parent = path.parent.relative_to(root).as_posix()
    want_dir = rel in FOLDERS or parent in DAY_PARENTS or parent == "derived"
    if parent == "derived" and path.name.startswith("."):
        want_dir = False
    if want_dir and not stat.S_ISDIR(mode):
        raise UnsafePathError(path, "is a file where the store keeps a folder")
    if (rel in FILES or _holds_only_files(parent)) and not stat.S_ISREG(mode):
        raise UnsafePathError(path, "is a folder where the store keeps a file")
    if stat.S_ISREG(mode) and st.st_nlink > 1:
        raise UnsafePathError(
            path, f"has {st.st_nlink} hard links (a copy could outlive its erasure)"
        )
    private = PRIVATE_DIR_MODE if stat.S_ISDIR(mode) else PRIVATE_MODE
    if stat.S_IMODE(mode) & ~private:
        with contextlib.suppress(OSError):  # a read-only mount: reported by the first write
            os.chmod(path, stat.S_IMODE(mode) & private)


def check_store_tree(root: Path) -> int:
    """Refuse a store holding anything it did not create (see the module docstring).

    Returns the number of entries checked. The root itself may be a symlink the operator made
    (it is resolved once); nothing below it may be.
    """
    root = Path(root)
    try:
        top = os.stat(root)
    except FileNotFoundError:
        raise UnsafePathError(root, "does not exist") from None
    if not stat.S_ISDIR(top.st_mode):
        raise UnsafePathError(root, "is not a folder")
    owner = top.st_uid
    if stat.S_IMODE(top.st_mode) & ~PRIVATE_DIR_MODE:
        with contextlib.suppress(OSError):
            os.chmod(root, stat.S_IMODE(top.st_mode) & PRIVATE_DIR_MODE)
    checked = 0
    for dirpath, dirs, files in os.walk(root, followlinks=False, onerror=_raise):
        here = Path(dirpath)
        for name in [*dirs, *files]:
            path = here / name
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # removed meanwhile (e.g. a temp file)
                continue
            _check_entry(root, path, st, owner)
            checked += 1
    return checked


def _raise(exc: OSError) -> None:
    raise UnsafePathError(Path(exc.filename or "?"), f"cannot be listed ({exc.strerror})")
