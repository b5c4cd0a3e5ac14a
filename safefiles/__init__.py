"""The ground floor: crash-safe file writes that every package may use (see ``safefiles.atomic``).

It imports nothing of ours, so ``privacy``, ``retention``, ``server_national``, ``federation``
and ``deployment`` can all share one implementation. ``safefiles.faults`` numbers every file
step so crash tests can kill a process at each one.
"""

from safefiles.atomic import (
    PRIVATE_DIR_MODE,
    PRIVATE_MODE,
    TMP_MARKER,
    UnsafeFileError,
    append_bytes,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_dir,
    make_dirs,
    read_regular_file,
    remove_empty_dir,
    remove_file,
    stale_temp_files,
)
from safefiles.faults import step

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_MODE",
    "TMP_MARKER",
    "UnsafeFileError",
    "append_bytes",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "make_dirs",
    "read_regular_file",
    "remove_empty_dir",
    "remove_file",
    "stale_temp_files",
    "step",
]
