"""Fault injection for crash tests: kill the process at the k-th file-system step.

Every step a crash-safe writer takes (each write, fsync, rename and unlink made through
:mod:`safefiles`, and the store's own step boundaries marked with :func:`step`) is numbered
1, 2, 3, ... in the order the process makes them. Two environment variables, read once at
import, drive it (tests only; see tests/faults/):

``ANPRFED_FAULT_KILL_AT=k``
    the process sends itself SIGKILL just before step ``k`` (so steps 1..k-1 happened);
``ANPRFED_FAULT_TRACE=FILE``
    each step appends one line ``<n> <name> <path>`` to FILE (to enumerate the steps).

Unset (the normal case), :func:`step` is one global test and a return: no cost worth measuring.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "ANPRFED_FAULT_KILL_AT"
TRACE_ENV = "ANPRFED_FAULT_TRACE"

_KILL_AT = int(os.environ.get(KILL_AT_ENV) or 0)
_TRACE = os.environ.get(TRACE_ENV) or None
_ACTIVE = bool(_KILL_AT or _TRACE)
_count = 0


def step(name: str, path: object = "") -> None:
    """Mark one step boundary (``name`` such as ``"write"``, ``"rename"``, ``"unlink"``)."""
    if not _ACTIVE:
        return
    _tick(name, path)


def _tick(name: str, path: object) -> None:
    global _count
    _count += 1
    if _TRACE:
        fd = os.open(_TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{_count} {name} {path}\n".encode())
        finally:
            os.close(fd)
    if _count == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def configure(kill_at: int = 0, trace: str | None = None) -> None:
    """Tests only: re-arm injection in this process (e.g. a forked child), resetting the count."""
    global _KILL_AT, _TRACE, _ACTIVE, _count
    _KILL_AT, _TRACE, _count = int(kill_at), trace, 0
    _ACTIVE = bool(_KILL_AT or _TRACE)


def steps_taken() -> int:
    """How many steps this process has marked (0 when injection is off)."""
    return _count
