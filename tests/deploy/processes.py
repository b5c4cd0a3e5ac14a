"""Start Flower processes for a test and stop every one of them, children included, by pid.

Each process is started in its own session (``start_new_session=True``, so its pid is its
process group id) with a marker variable in its environment that every child inherits:
Flower's SuperLink starts ``flower-superexec`` in a *new* session, which then starts the
ServerApp, and a SuperNode starts its own SuperExec and ClientApps, so the process group
alone does not reach them. :meth:`Processes.stop_all` therefore

1. terminates each started group (``os.killpg``) and every process carrying the marker,
2. waits, then kills (``SIGKILL``) whatever is left, by pid,
3. and :meth:`Processes.survivors` lists any marked process still alive (the tests assert
   there is none).

Only processes carrying this run's marker are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MARKER = "ANPRFED_DEPLOY_TEST_RUN"


def _marked_pids(marker_value: str) -> list[int]:
    """Pids of live processes whose environment carries ``MARKER=marker_value``."""
    needle = f"{MARKER}={marker_value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:160]


@dataclass
class Started:
    """One process the test started."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.popen.poll() is None


@dataclass
class Processes:
    """Every process a test starts; ``stop_all`` stops them and all their descendants."""

    base_env: Mapping[str, str]
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: dict[str, Started] = field(default_factory=dict)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a process: base, ``extra``, and this run's marker."""
        return {**self.base_env, **(extra or {}), MARKER: self.marker}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Started:
        """Start ``argv`` in its own session, output to ``log_path``; ``name`` must be new."""
        if name in self.started and self.started[name].alive():
            raise RuntimeError(f"{name} is already running (pid {self.started[name].pid})")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        popen = subprocess.Popen(
            list(argv),
            env=self.env(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started[name] = Started(name, popen, log_path, log)
        return self.started[name]

    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a short command to completion (marked, own session; killed on timeout).

        Output goes to temporary files, not pipes, and the process is reaped as soon as it
        exits: Flower children watch their parent's pid and stop only once it is gone, so an
        unreaped parent (or a child holding a pipe open) would keep them alive.
        """
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            popen = subprocess.Popen(
                list(argv),
                env=self.env(env),
                cwd=cwd,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                popen.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            if timed_out:
                self._signal(popen.pid, self.descendants(popen.pid), signal.SIGKILL)
            popen.wait()
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        if timed_out:
            raise AssertionError(
                f"{' '.join(argv[:3])} did not finish in {timeout:g} s\n"
                f"{stdout[-3000:]}{stderr[-3000:]}"
            )
        return subprocess.CompletedProcess(list(argv), popen.returncode, stdout, stderr)

    def finish(self, name: str, timeout: float) -> tuple[int, str]:
        """Wait for a started process to exit by itself; its return code and output.

        A process still running after ``timeout`` is stopped and the wait fails.
        """
        target = self.started[name]
        try:
            target.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(name)
            raise AssertionError(
                f"{name} did not exit within {timeout:g} s:\n"
                + target.log_path.read_text(errors="replace")[-3000:]
            ) from None
        target.log.close()
        return target.popen.returncode, target.log_path.read_text(errors="replace")

    def descendants(self, pid: int) -> list[int]:
        """Marked processes whose parent chain leads to ``pid`` (children, grandchildren...)."""
        parents: dict[int, int] = {}
        for child in _marked_pids(self.marker):
            try:
                stat = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[child] = int(stat[1])
        found, frontier = [], {pid}
        while frontier:
            nxt = {c for c, p in parents.items() if p in frontier and c not in found}
            found.extend(sorted(nxt))
            frontier = nxt
        return found

    def kill(self, name: str) -> list[int]:
        """Fault injection: ``SIGKILL`` a process, its group and its descendants at once."""
        target = self.started[name]
        victims = [target.pid, *self.descendants(target.pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(target.pid, signal.SIGKILL)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        target.popen.wait(timeout=30)
        return victims

    def stop(self, name: str, grace: float = 10.0) -> None:
        """Stop one started process and its descendants: SIGTERM, then SIGKILL after ``grace``."""
        target = self.started[name]
        victims = [target.pid, *self.descendants(target.pid)]
        self._signal(target.pid, victims, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in victims):
            time.sleep(0.2)
        self._signal(target.pid, victims, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            target.popen.wait(timeout=10)
        target.log.close()

    @staticmethod
    def _signal(group: int, pids: Sequence[int], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop every started process (latest first), then any marked process left, by pid."""
        for name in reversed(list(self.started)):
            self.stop(name, grace)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _marked_pids(self.marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _marked_pids(self.marker):
                time.sleep(0.2)

    def survivors(self) -> list[str]:
        """``pid command`` of every process of this run still alive (should be none)."""
        return [f"{pid} {_command(pid)}" for pid in _marked_pids(self.marker)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
