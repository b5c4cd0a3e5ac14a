"""A whole national deployment on 127.0.0.1, driven by ``deployment``'s own plan.

:class:`LoopbackDeployment` generates the TLS material (``write_tls_material``) and one
SuperNode key pair per force (``write_node_keys``), builds a :class:`DeploymentPlan` with free
ports picked at run time, and runs *exactly* the plan's argv lists (``superlink_argv``,
``register_argv``, ``supernode_argv``, ``run_argv``) with the plan's environments, plus
``PATH`` (this venv's ``bin`` first: Flower starts ``flower-superexec`` from ``PATH``) and the
process marker of :class:`processes.Processes`.

Layout under ``root``::

    national/tls/          ca.pem ca.key server.pem server.key
    national/state/        superlink.db(-wal,-shm) superlink.log flwr-home/ stdout.log results/
    national/cli-home/     config.toml (the operator's Flower connection)
    keys/<force>/          supernode.key supernode.pub
    <force>/flwr-home/     the SuperNode's FLWR_HOME; <force>/supernode.log
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from processes import Processes, Started

from deployment.certs import TlsFiles, write_tls_material
from deployment.node_keys import NodeKeyPair, write_node_keys
from deployment.plan import DeploymentPlan, ForceNode

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HOSTS = ("127.0.0.1", "localhost")
ACTIVATED = re.compile(r"\[Fleet\.ActivateNode\] Activated node_id=(\d+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    """What every Flower process of the test gets besides the plan's own environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLWR_", "PYTEST_")) and k not in ("ANPRFED_KEY_FILE",)
    }
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class LoopbackDeployment:
    """One SuperLink and one SuperNode per force on loopback, with TLS and node auth."""

    root: Path
    plan: DeploymentPlan
    tls: TlsFiles
    keys: dict[str, NodeKeyPair]
    processes: Processes
    node_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        stores: Mapping[str, tuple[Path, Path]],
        processes: Processes,
        extra_keys: tuple[str, ...] = (),
    ) -> LoopbackDeployment:
        """Certificates, keys and plan for forces ``{name: (store, key_file)}``.

        ``extra_keys`` makes key pairs that are *not* in the plan (never registered).
        """
        tls = write_tls_material(root / "national" / "tls", list(HOSTS))
        pairs = write_node_keys(root / "keys", [*stores, *extra_keys])
        keys = {p.force: p for p in pairs}
        port = free_port()
        nodes = []
        for name, (store, key_file) in stores.items():
            nodes.append(
                ForceNode(
                    name=name,
                    store=str(store),
                    key_file=str(key_file),
                    private_key=str(keys[name].private_key),
                    public_key=str(keys[name].public_key),
                    runtime_port=free_port(),
                    flwr_home=str(root / name / "flwr-home"),
                )
            )
        plan = DeploymentPlan(
            superlink_host="127.0.0.1",
            port=port,
            forces=tuple(nodes),
            tls_dir=str(tls.directory),
            state_dir=str(root / "national" / "state"),
            app=str(REPO),
        )
        return cls(root=root, plan=plan, tls=tls, keys=keys, processes=processes)

    # ------------------------------------------------------------------ folders
    @property
    def state_dir(self) -> Path:
        """The SuperLink's state folder (database, log, FLWR_HOME, stdout, results)."""
        return Path(self.plan.state_dir)

    @property
    def cli_home(self) -> Path:
        """The national operator's FLWR_HOME (its ``config.toml`` names the connection)."""
        return self.root / "national" / "cli-home"

    def superlink_log(self) -> str:
        """The SuperLink's ``--log-file`` so far."""
        path = Path(self.plan.log_file)
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ the SuperLink
    def start_superlink(self, timeout: float = 60.0) -> Started:
        """Start ``flower-superlink`` as planned and wait for its HTTPS health endpoint."""
        Path(self.plan.superlink_home).mkdir(parents=True, exist_ok=True)
        started = self.processes.start(
            "superlink",
            self.plan.superlink_argv(),
            self.state_dir / "stdout.log",
            env=self.plan.superlink_env(),
        )
        deadline = time.monotonic() + timeout
        url = f"https://{self.plan.address}/health"
        trust = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        while time.monotonic() < deadline:
            if not started.alive():
                raise RuntimeError(
                    f"flower-superlink exited with {started.popen.returncode}:\n"
                    + started.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                if httpx.get(url, verify=trust, timeout=1.0).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"flower-superlink not healthy at {url} after {timeout:g} s")
        self.cli_home.mkdir(parents=True, exist_ok=True)
        (self.cli_home / "config.toml").write_text(self.plan.flwr_config_toml())
        return started

    def cli(self, argv: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run a ``flwr`` command as the national operator (its FLWR_HOME), from the repo."""
        return self.processes.run(
            argv, timeout=timeout, env={"FLWR_HOME": str(self.cli_home)}, cwd=REPO
        )

    def register(self, force: str) -> int:
        """``flwr supernode register`` (as planned) of ``force``'s public key; its node id."""
        done = self.cli([*self.plan.register_argv(self.plan.force(force)), "--format", "json"])
        if done.returncode != 0:
            raise RuntimeError(f"register {force} failed:\n{done.stdout}\n{done.stderr}")
        payload = json.loads(done.stdout[done.stdout.index("{") :])
        self.node_ids[force] = int(payload["node-id"])
        return self.node_ids[force]

    def register_all(self) -> dict[str, int]:
        """Register every planned force (the CLI calls run side by side); their node ids."""
        with ThreadPoolExecutor(max_workers=len(self.plan.forces)) as pool:
            list(pool.map(self.register, [f.name for f in self.plan.forces]))
        return dict(self.node_ids)

    # ------------------------------------------------------------------ SuperNodes
    def start_supernode(self, force: str) -> Started:
        """Start ``force``'s ``flower-supernode`` exactly as planned."""
        node = self.plan.force(force)
        Path(node.flwr_home).mkdir(parents=True, exist_ok=True)
        return self.processes.start(
            f"supernode-{force}",
            self.plan.supernode_argv(node),
            self.root / force / "supernode.log",
            env=self.plan.supernode_env(node),
        )

    def activations(self) -> list[int]:
        """Node ids the SuperLink has activated, in log order (a restart adds one more)."""
        return [int(m) for m in ACTIVATED.findall(self.superlink_log())]

    def wait_activated(self, counts: Mapping[int, int], timeout: float = 60.0) -> None:
        """Wait until each node id has been activated at least ``counts[id]`` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.activations()
            if all(seen.count(n) >= c for n, c in counts.items()):
                return
            waiting = {f"supernode-{f}" for f, n in self.node_ids.items() if n in counts}
            for name, started in self.processes.started.items():
                if name in waiting and not started.alive():
                    raise RuntimeError(
                        f"{name} exited with {started.popen.returncode}:\n"
                        + started.log_path.read_text(errors="replace")[-3000:]
                    )
            time.sleep(0.3)
        raise RuntimeError(f"SuperNodes not activated after {timeout:g} s: {counts}")

    # ------------------------------------------------------------------ runs
    def start_run(self, name: str, run_config: Mapping[str, bool | int | float | str]) -> Started:
        """Start ``flwr run`` (as planned, streaming) with ``run_config`` on top of the plan's;
        its output goes to ``<root>/<name>.log``."""
        plan = dataclasses.replace(self.plan, run_config=dict(run_config))
        return self.processes.start(
            name,
            plan.run_argv(),
            self.root / f"{name}.log",
            env={"FLWR_HOME": str(self.cli_home)},
            cwd=REPO,
        )
