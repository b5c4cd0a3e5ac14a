"""Turn SIGTERM and SIGHUP into an exception, so a stopped study unwinds like Ctrl-C.

Python's default SIGTERM action ends the process at once: no ``finally`` block runs, so the
study's Ray cluster and worker pool were never told to stop. Inside :func:`stop_on_signals`
SIGTERM, SIGHUP and SIGINT raise :class:`StudyInterrupted` (a ``KeyboardInterrupt``) in the
main thread, every context manager on the way out runs, and the CLI exits with 128 + the
signal number. Signals that arrive while the study is already stopping are ignored, so a
second Ctrl-C or ``timeout``'s follow-up cannot cut the clean-up short (SIGKILL still can; the
Ray supervisor and the workers' parent-death signal cover that).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StudyInterrupted(KeyboardInterrupt):
    """The study was stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal."""
        return 128 + self.signum


_stopping = False


def _handler(signum: int, frame: object) -> None:
    global _stopping
    if _stopping:
        return
    _stopping = True
    raise StudyInterrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise :class:`StudyInterrupted` once."""
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the caller's own handling applies
        return
    _stopping = False
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def keep_handlers_through_ray() -> Iterator[None]:
    """Around a Flower simulation: ``ray.init`` replaces the SIGTERM handler; put ours back.

    Ray's replacement calls ``sys.exit(SIGTERM)``; while ours was active that ``SystemExit``
    means the study was stopped, so it is raised as :class:`StudyInterrupted`. (Ray's C++
    failure-signal handler, which would end the process at once, is switched off by
    ``RAY_DISABLE_FAILURE_SIGNAL_HANDLER=1`` in the simulation environment.)
    """
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        yield
    except SystemExit as exc:
        displaced = signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        if exc.code == signal.SIGTERM and displaced and before[signal.SIGTERM] is _handler:
            _stopping = True
            raise StudyInterrupted(signal.SIGTERM) from None
        raise
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def worker_dies_with_parent(parent_pid: int) -> None:
    """Initializer for worker processes: SIGTERM when the parent dies; ignore terminal Ctrl-C.

    The parent (the study) decides when its workers stop; a worker left running after the
    parent was killed would keep training for nobody.
    """
    import ctypes
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os._exit(1)
