"""The process registry the deployment test relies on: it reaches children that left the
process group (as Flower's SuperExec does) and orphans whose parent already died."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from loopback import base_env
from processes import Processes

SLEEPER = "import time; time.sleep(600)"


def _wait_for(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_all_reaches_children_in_other_sessions_and_orphans(tmp_path: Path) -> None:
    procs = Processes(base_env())
    # A parent that starts a child in a new session (like flower-superlink's SuperExec) and
    # stays; and a parent that starts one and exits at once (the child is orphaned).
    spawn = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}], start_new_session=True); "
        "time.sleep(float(sys.argv[1]))"
    )
    try:
        stays = procs.start("stays", [sys.executable, "-c", spawn, "600"], tmp_path / "a.log")
        leaves = procs.start("leaves", [sys.executable, "-c", spawn, "0"], tmp_path / "b.log")
        _wait_for(lambda: procs.descendants(stays.pid))
        [child] = procs.descendants(stays.pid)
        assert os.getpgid(child) != stays.pid  # out of reach of killpg(parent)
        _wait_for(lambda: not leaves.alive())
        _wait_for(lambda: len(procs.survivors()) == 3)  # stays, its child, the orphan
        orphans = [int(s.split()[0]) for s in procs.survivors()]
    finally:
        procs.stop_all(grace=5)
    assert procs.survivors() == []
    assert not any(_alive(pid) for pid in orphans)


def test_run_reaps_a_parent_so_children_watching_it_can_exit(tmp_path: Path) -> None:
    procs = Processes(base_env())
    done = procs.run([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], timeout=30)
    assert (done.returncode, done.stdout.strip()) == (3, "hello")
    with pytest.raises(AssertionError, match="did not finish in 1 s"):
        procs.run([sys.executable, "-c", SLEEPER], timeout=1)
    assert procs.survivors() == []
