"""One local Ray cluster for all of a study's Flower simulations.

Flower's Simulation Engine starts a Ray instance when it begins a run and shuts it down when
the run ends: about 5.5 s of every federated run on a 2-core machine (4.3 s to start, 1.2 s to
stop; ``docs/benchmarks/flower-overhead.md``). A study with several sweep points runs several
simulations, so the runner starts one head node for the whole study (``ray start --head
--block``, a child process) and points ``RAY_ADDRESS`` at it. Each simulation then connects in
well under a second, and Flower's shutdown only disconnects.

The cluster is stopped when the study ends, fails or is interrupted: the context manager
terminates the ``ray start --block`` process, which stops every Ray process it started, and on
Linux the kernel sends it SIGTERM if the study process itself dies. A ``RAY_ADDRESS`` already in
the environment (a cluster of the user's own) is used as it is.

The head node keeps its state in a private temporary folder (``--temp-dir``), not in Ray's
shared ``/tmp/ray``: ``ray start`` records its address in ``<temp-dir>/ray_current_cluster``, and
a plain ``ray.init()`` anywhere else on the machine joins whatever cluster that file names (and
fails once it is gone). Its client-server port is a free one, not the fixed 10001, so several
studies can run side by side.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_LINE = "Ray runtime started"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
SIMULATION_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DEDUP_LOGS": "0",
}


class RayClusterError(RuntimeError):
    """The study's Ray head node did not start; the message holds the end of its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Runs `ray start` with its arguments after asking Linux to SIGTERM it when the study process
# dies (prctl PR_SET_PDEATHSIG, which survives exec). A launcher rather than Popen's
# preexec_fn, which is unsafe once threads run (the progress display has one).
_LAUNCHER = """
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass
os.execv(sys.executable, [sys.executable, "-m", "ray.scripts.scripts", *sys.argv[1:]])
"""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class StudyRayCluster:
    """A local Ray head node for one study: launched early, waited for when first needed.

    ``start()`` launches the head node and returns at once, so it boots while the forces
    ingest; ``connect()`` waits until it is up and points ``RAY_ADDRESS`` at it; ``stop()``
    stops it and restores the environment. A ``RAY_ADDRESS`` already set (a cluster of the
    user's own) is used as it is: nothing is started or stopped.

    ``log_file`` receives the head node's console output (Ray's start-up messages: no study
    data). Ray's session files (its logs, the workers' output) stay in ``temp_dir`` afterwards,
    as they stay in ``/tmp/ray`` after a plain Ray run.
    """

    def __init__(self, num_cpus: int, log_file: Path) -> None:
        self.num_cpus = max(1, num_cpus)
        self.log_file = Path(log_file)
        self.address: str | None = os.environ.get("RAY_ADDRESS") or None
        self.temp_dir: Path | None = None
        self._own = self.address is None
        self._head: subprocess.Popen[bytes] | None = None
        self._ready = False

    def start(self) -> StudyRayCluster:
        """Launch the head node in the background (no-op for a user's own cluster)."""
        if not self._own or self._head is not None:
            return self
        for name, value in SIMULATION_ENV.items():
            os.environ.setdefault(name, value)
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        # Short on purpose: Ray puts Unix sockets under it; their paths are limited to 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="anprfed-ray-"))
        command = [
            sys.executable,
            "-c",
            _LAUNCHER,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--ray-client-server-port={_free_port()}",
            f"--temp-dir={self.temp_dir}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "w", encoding="utf-8") as log:
            self._head = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def connect(self) -> str:
        """Wait until the head node is up, set ``RAY_ADDRESS`` to it, and return the address."""
        if not self._own:
            assert self.address is not None
            return self.address
        if self._head is None:
            self.start()
        assert self._head is not None and self.address is not None
        if not self._ready:
            _wait_until_ready(self._head, self.log_file)
            self._ready = True
        os.environ["RAY_ADDRESS"] = self.address
        return self.address

    def stop(self) -> None:
        """Stop the head node (and every Ray process it started); unset ``RAY_ADDRESS``."""
        if not self._own or self._head is None:
            return
        if os.environ.get("RAY_ADDRESS") == self.address:
            del os.environ["RAY_ADDRESS"]
        _stop(self._head)
        self._head = None
        self._ready = False

    def __enter__(self) -> StudyRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_until_ready(head: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RayClusterError(
                f"the Ray head node exited with status {head.returncode} while starting:\n"
                + _tail(log_file)
            )
        if READY_LINE in log_file.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.2)
    _stop(head)
    raise RayClusterError(
        f"the Ray head node did not start within {START_TIMEOUT_S:.0f} s:\n" + _tail(log_file)
    )


def _stop(head: subprocess.Popen[bytes]) -> None:
    """SIGTERM the blocking ``ray start``; it stops its own Ray processes. SIGKILL if stuck."""
    if head.poll() is not None:
        return
    head.terminate()
    try:
        head.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait(timeout=STOP_TIMEOUT_S)
