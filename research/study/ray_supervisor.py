"""Run one ``ray start --block`` and make sure every process it starts ends with it (Linux).

Run as a script (standard library only, so it needs nothing on ``sys.path``)::

    python ray_supervisor.py <study pid> <ray start arguments...>

Why a supervisor: ``ray start --block`` stops its processes only when it is asked nicely, and
its children block SIGINT; when the study process died from SIGTERM (``timeout``), the head
and ``gcs_server`` stayed up, reparented to pid 1. This process

* asks Linux to SIGTERM it when the study process dies (``PR_SET_PDEATHSIG``), and exits at
  once if the study died before it could ask;
* makes itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``), so every process Ray starts,
  however deep and however it detaches (``setpgrp``, double fork), stays its descendant
  instead of being reparented to pid 1;
* on SIGTERM, SIGINT or SIGHUP, or when ``ray start`` exits, SIGTERMs ``ray start`` (which
  shuts Ray down in order), then SIGTERMs every descendant left, then SIGKILLs what still
  runs after a grace period, and reaps them all.

Nothing here reads study data; it only sees process ids.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RAY_STOP_GRACE_S = 20.0
TERM_GRACE_S = 5.0


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first)."""
    children = _children_map()
    found: list[int] = []
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def _reap() -> None:
    """Collect exit statuses of every finished child (orphans adopted as subreaper too)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal_all(sig: int) -> int:
    sent = 0
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, sig)
            sent += 1
        except ProcessLookupError:
            pass
    return sent


def _wait_for_no_descendants(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        if not descendants(os.getpid()):
            return True
        time.sleep(0.1)
    return False


def shutdown(ray_start: subprocess.Popen[bytes]) -> None:
    """Stop ``ray start`` and then everything still running below this process."""
    if ray_start.poll() is None:
        ray_start.send_signal(signal.SIGTERM)
        try:
            ray_start.wait(timeout=RAY_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            ray_start.kill()
    if _signal_all(signal.SIGTERM) and _wait_for_no_descendants(TERM_GRACE_S):
        return
    _signal_all(signal.SIGKILL)
    _wait_for_no_descendants(TERM_GRACE_S)


def main(argv: list[str]) -> int:
    """Supervise ``ray start <argv[1:]>`` on behalf of the study process ``argv[0]``."""
    study_pid = int(argv[0])
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if os.getppid() != study_pid:  # the study died before PR_SET_PDEATHSIG was in place
        return 1
    ray_start = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", *argv[1:]])
    while not stopping and ray_start.poll() is None:
        time.sleep(0.2)
        _reap_others(ray_start.pid)
    shutdown(ray_start)
    return 0 if stopping else (ray_start.returncode or 1)


def _reap_others(keep: int) -> None:
    """Reap adopted orphans that exited, leaving ``ray start``'s status to ``Popen``."""
    for pid in _children_map().get(os.getpid(), []):
        if pid == keep:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
