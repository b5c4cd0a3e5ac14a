"""The ground floor: crash-safe file writes that every package may use (see ``safefiles.atomic``).

It imports nothing of ours, so ``privacy``, ``retention``, ``server_national``, ``federation``
and ``deployment`` can all share one implementation.
"""

from safefiles.atomic import (
    PRIVATE_MODE,
    TMP_MARKER,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_dir,
    remove_file,
    stale_temp_files,
)

__all__ = [
    "PRIVATE_MODE",
    "TMP_MARKER",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "remove_file",
    "stale_temp_files",
]
