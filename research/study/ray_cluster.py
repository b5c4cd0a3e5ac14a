"""One local Ray cluster for all of a study's Flower simulations, and nothing left behind.

Flower's Simulation Engine starts a Ray instance when it begins a run and shuts it down when
the run ends: about 5.5 s of every federated run on a 2-core machine (4.3 s to start, 1.2 s to
stop; ``docs/benchmarks/flower-overhead.md``). A study with several sweep points runs several
simulations, so the runner starts one head node for the whole study (``ray start --head
--block``) and points ``RAY_ADDRESS`` at it. Each simulation then connects in well under a
second, and Flower's shutdown only disconnects.

Every Ray process the study starts ends with the study, however it ends. ``ray start`` runs
under a small supervisor (``research/study/ray_supervisor.py``) in a session of its own: the
supervisor is a child subreaper, so every Ray process stays its descendant, and it is
SIGTERMed by the kernel if the study process dies (``PR_SET_PDEATHSIG``), even by SIGKILL.
On ``stop()`` (the study ended, failed, or was stopped by SIGINT/SIGTERM/SIGHUP, which the
runner turns into an exception) the supervisor stops ``ray start``, then SIGTERMs and finally
SIGKILLs every descendant still running. Any process still naming the cluster's private
folder afterwards is killed too. A ``RAY_ADDRESS`` already in the environment (a cluster of
the user's own) is used as it is: nothing is started or stopped.

The head node keeps its state in a private temporary folder (``--temp-dir``), not in Ray's
shared ``/tmp/ray``: ``ray start`` records its address in ``<temp-dir>/ray_current_cluster``, and
a plain ``ray.init()`` anywhere else on the machine joins whatever cluster that file names (and
fails once it is gone). Its ports are free ones, not the fixed 6379/10001, so several studies
can run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_LINE = "Ray runtime started"
START_TIMEOUT_S = 120.0
START_ATTEMPTS = 3
OVERLOADED_START = "timed out during startup"
# The supervisor gives `ray start` 20 s, then the rest 5 s after SIGTERM and 5 s after SIGKILL.
STOP_TIMEOUT_S = 40.0
SUPERVISOR = Path(__file__).with_name("ray_supervisor.py")
SIMULATION_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DEDUP_LOGS": "0",
    # Ray's C++ failure-signal handler ends the driver on SIGTERM before Python's handler can
    # stop the study's Ray nodes and workers (research/study/interrupt.py).
    "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
}


class RayClusterError(RuntimeError):
    """The study's Ray node did not start; the message holds the end of its log."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nothing listens on right now (loopback interface).

    All are bound at once before any is released, so the kernel cannot hand out one twice.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port nothing listens on right now (on the loopback interface)."""
    return free_ports(1)[0]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def processes_naming(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (this machine, Linux)."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if needle in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


class SupervisedRayNode:
    """One ``ray start --block`` (head or worker) under the supervisor, with its log file."""

    def __init__(self, ray_args: list[str], log_file: Path, tag: str) -> None:
        self.ray_args = ray_args
        self.log_file = Path(log_file)
        self.tag = tag  # a string in every Ray process's command line (the temp folder)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch the node in the background, in a session of its own."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(SUPERVISOR), str(os.getpid()), "start", *self.ray_args]
        with open(self.log_file, "w", encoding="utf-8") as log:
            # Its own session: a terminal's Ctrl-C reaches only the study, which stops Ray in
            # order (Flower disconnects first) instead of racing it.
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_until_ready(self) -> None:
        """Block until the node's log says it runs; raise ``RayClusterError`` otherwise."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RayClusterError(
                    f"the Ray node exited with status {self.process.returncode} while "
                    "starting:\n" + _tail(self.log_file)
                )
            if READY_LINE in self.log_file.read_text(encoding="utf-8", errors="replace"):
                return
            time.sleep(0.2)
        self.stop()
        raise RayClusterError(
            f"the Ray node did not start within {START_TIMEOUT_S:.0f} s:\n" + _tail(self.log_file)
        )

    def stop(self) -> None:
        """Stop the node and every process under it; kill any straggler naming its folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        for pid in processes_naming(self.tag):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class StudyRayCluster:
    """A local Ray head node for one study: launched early, waited for when first needed.

    ``start()`` launches the head node and returns at once, so it boots while the forces
    ingest; ``connect()`` waits until it is up and points ``RAY_ADDRESS`` at it; ``stop()``
    stops it and every process it started, and restores the environment. A ``RAY_ADDRESS``
    already set (a cluster of the user's own) is used as it is: nothing is started or stopped.

    ``resources`` are Ray custom resources the head node offers (for example
    ``{"force-cheshire": 1}``, see ``research.study.placement``); ``add_worker_node`` joins
    further local nodes to it (tests and benchmarks of multi-node placement).

    ``log_file`` receives the head node's console output (Ray's start-up messages: no study
    data). Ray's session files (its logs, the workers' output) stay in ``temp_dir`` afterwards,
    as they stay in ``/tmp/ray`` after a plain Ray run.
    """

    def __init__(
        self, num_cpus: int, log_file: Path, resources: dict[str, float] | None = None
    ) -> None:
        self.num_cpus = max(1, num_cpus)
        self.log_file = Path(log_file)
        self.resources = dict(resources or {})
        self.address: str | None = os.environ.get("RAY_ADDRESS") or None
        self.temp_dir: Path | None = None
        self._own = self.address is None
        self._head: SupervisedRayNode | None = None
        self._workers: list[SupervisedRayNode] = []
        self._ready = False

    @property
    def owned(self) -> bool:
        """Whether the study started this cluster (False: the user's ``RAY_ADDRESS``)."""
        return self._own

    def start(self) -> StudyRayCluster:
        """Launch the head node in the background (no-op for a user's own cluster)."""
        if not self._own or self._head is not None:
            return self
        for name, value in SIMULATION_ENV.items():
            os.environ.setdefault(name, value)
        port, client_port = free_ports(2)
        self.address = f"127.0.0.1:{port}"
        # Short on purpose: Ray puts Unix sockets under it; their paths are limited to 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="anprfed-ray-"))
        args = [
            "--head",
            "--block",
            f"--port={port}",
            f"--ray-client-server-port={client_port}",
            f"--temp-dir={self.temp_dir}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            *_agent_ports(),
        ]
        if self.resources:
            args.append(f"--resources={json.dumps(self.resources)}")
        self._head = SupervisedRayNode(args, self.log_file, str(self.temp_dir))
        self._head.start()
        return self

    def connect(self) -> str:
        """Wait until the head node is up, set ``RAY_ADDRESS`` to it, and return the address."""
        if not self._own:
            assert self.address is not None
            return self.address
        if self._head is None:
            self.start()
        assert self._head is not None and self.address is not None
        for attempt in range(1, START_ATTEMPTS + 1):
            if self._ready:
                break
            try:
                self._head.wait_until_ready()
                self._ready = True
            except RayClusterError as exc:
                # Ray gives its raylet a fixed 30 s to register; a heavily loaded machine can
                # miss it. Start afresh (new ports, new folder) rather than fail the study.
                if attempt == START_ATTEMPTS or OVERLOADED_START not in str(exc):
                    raise
                self._head.stop()
                self._head = None
                self.start()
                assert self._head is not None and self.address is not None
        os.environ["RAY_ADDRESS"] = self.address
        return self.address

    def add_worker_node(
        self, num_cpus: int, resources: dict[str, float], log_file: Path
    ) -> SupervisedRayNode:
        """Join one more local node (``ray start --address``) offering ``resources``."""
        address = self.connect()
        assert self.temp_dir is not None
        args = [
            "--block",
            f"--address={address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={max(1, num_cpus)}",
            "--num-gpus=0",
            "--disable-usage-stats",
            *_agent_ports(),
        ]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        node = SupervisedRayNode(args, log_file, str(self.temp_dir))
        node.start()
        self._workers.append(node)
        node.wait_until_ready()
        return node

    def stop(self) -> None:
        """Stop every node this study started (and all their processes); unset ``RAY_ADDRESS``."""
        if not self._own:
            return
        if os.environ.get("RAY_ADDRESS") == self.address:
            del os.environ["RAY_ADDRESS"]
        # This process's own Ray driver first: a driver left connected to a head that is then
        # stopped waits for it and later ends its process (a long-lived caller, such as a test
        # worker, crashed that way).
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            with contextlib.suppress(Exception):
                ray.shutdown()
        for node in [*self._workers, *([self._head] if self._head else [])]:
            node.stop()
        self._workers = []
        self._head = None
        self._ready = False

    def __enter__(self) -> StudyRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _agent_ports() -> list[str]:
    """Free ports for a node's agents: Ray's defaults are fixed (52365, ...) and collide when
    several nodes or studies run on one machine."""
    listen, grpc, runtime_env, metrics = free_ports(4)
    return [
        f"--dashboard-agent-listen-port={listen}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
    ]
