"""Give the study process's freed heap back to the operating system between stages.

glibc keeps memory a process has freed inside its heap (holes below live blocks, and every
allocation under its dynamic mmap threshold, which grows to 32 MiB after large frees) for
reuse, so a stage that built and dropped gigabytes of examples leaves the study process that
much larger for the rest of the run. ``malloc_trim(0)`` returns those free pages. Measured on
a 100,000-vehicle north-west study: during the federated design the study process held
2.90 GiB of anonymous memory, 1.95 GiB after a trim (docs/benchmarks/scale.md).

Without glibc (macOS, musl) this does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
