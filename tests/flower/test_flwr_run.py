"""``flwr run .``: the repository as a Flower App on a local simulation SuperLink.

The test starts its own ``flower-superlink --simulation`` (so it knows the pid and can stop it),
points a private Flower configuration (``FLWR_HOME``) at it, runs the app for one round on a
two-force world and checks the server's outputs. Runtime dependency installation is disabled:
the app runs in this virtual environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from flower_world import FlowerWorld

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"flower-superlink not healthy on port {port} after {seconds:g} s")


@pytest.mark.slow
def test_flwr_run_on_a_local_simulation_superlink(world: FlowerWorld, tmp_path: Path) -> None:
    port = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "anprfed-local"\n\n'
        f'[superlink.anprfed-local]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = dict(
        os.environ,
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    log = (tmp_path / "superlink.log").open("w")
    superlink = subprocess.Popen(
        [
            str(VENV_BIN / "flower-superlink"),
            "--insecure",
            "--simulation",
            "--isolation",
            "subprocess",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            str(tmp_path / "superlink.db"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SuperExec and the simulation too
    )
    try:
        _wait_healthy(port, superlink)
        settings = world.settings(
            num_server_rounds=1, min_available_nodes=2, min_replies=2, first_round_timeout=240.0
        )
        keys = (
            "num-server-rounds", "min-available-nodes", "min-replies", "first-round-timeout",
            "results-dir", "node-config-dir", "window-start", "window-end", "as-of",
            "max-reads", "test-fraction", "batch-size", "dp-noise-multiplier",
            "model-hidden", "model-conv-layers", "model-kernel-size",
        )  # fmt: skip
        overrides = " ".join(f"{k}={json.dumps(settings.to_run_config()[k])}" for k in keys)
        done = subprocess.run(
            [
                str(VENV_BIN / "flwr"),
                "run",
                ".",
                "anprfed-local",
                "--run-config",
                overrides,
                "--federation-config",
                "num-supernodes=2",
                "--stream",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "Successfully started run" in done.stdout
        results = Path(settings.results_dir)
        status = json.loads((results / "status.json").read_text())
        assert (status["status"], status["rounds_completed"]) == ("completed", 1)
        train = json.loads((results / "metrics.json").read_text())["rounds"][1]["train"]
        assert (train["sampled"], train["accepted"]) == (2, 2)
        assert (results / "checkpoints" / "final.npz").is_file()
    finally:
        os.killpg(superlink.pid, signal.SIGTERM)
        try:
            superlink.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(superlink.pid, signal.SIGKILL)
            superlink.wait(timeout=30)
        log.close()
