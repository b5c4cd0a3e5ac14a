"""The federated design: one run of Flower's Simulation Engine over the study's forces.

Each force is one virtual SuperNode. A node finds its own store through its node config: the
simulation gives nodes only a partition id, so the runner writes one small TOML file per node
(``<results>/nodes/node-<id>.toml``, holding that force's store and key-file paths and nothing
of any other force) and points the ``node-config-dir`` setting at the folder. The ServerApp and
ClientApp are built with the sweep point's settings; the server writes
its round metrics, rejections, ledger view and checkpoints into the sweep point's server folder,
from which the final global weights are read back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from client_force.flower_round import PARTICIPATION_LOG
from federation.flower_settings import FlowerSettings
from research.study.interrupt import keep_handlers_through_ray
from research.study.layout import CHECKPOINTS, FINAL_CHECKPOINT, STATUS
from research.study.ray_cluster import SIMULATION_ENV
from server_national.node_names import name_forces

log = logging.getLogger(__name__)


class FederatedRunError(RuntimeError):
    """The Flower run did not produce a final global model; the message says why."""


def _watch_rounds(folder: Path, total: int, progress: Progress, stop: threading.Event) -> None:
    """Advance a progress bar as the server checkpoints each round."""
    task = progress.add_task("  federated rounds", total=total)
    while not stop.wait(0.5):
        done = len(list(folder.glob("round-*.npz"))) if folder.exists() else 0
        progress.update(task, completed=min(done, total))
    done = len(list(folder.glob("round-*.npz"))) if folder.exists() else 0
    progress.update(task, completed=min(done, total))
    progress.remove_task(task)


def _final_weights(results_dir: Path) -> list[np.ndarray]:
    final = results_dir / CHECKPOINTS / FINAL_CHECKPOINT
    if not final.exists():
        status = results_dir / STATUS
        reason = "no status written"
        if status.exists():
            data = json.loads(status.read_text(encoding="utf-8"))
            reason = data.get("error") or data.get("status") or reason
        raise FederatedRunError(f"the federated run produced no final model ({reason})")
    with np.load(final) as arrays:
        return [arrays[name] for name in arrays.files]


def node_forces(nodes: list[Any], results_dir: Path) -> dict[int, str]:
    """Flower node id -> force name for the run in ``results_dir``.

    Each force's ClientApp appends every round it trains to its own participation log
    (``STORE/logs/flower-rounds.jsonl``: Flower run id, node id, round, counts); the runner,
    which plays every force, matches the server's run id against those logs.
    """
    status = results_dir / "status.json"
    if not status.exists():
        return {}
    run_id = str(json.loads(status.read_text(encoding="utf-8")).get("run_id"))
    names: dict[int, str] = {}
    for node in nodes:
        log_file = Path(node.store_dir) / "logs" / PARTICIPATION_LOG
        if not log_file.exists():
            continue
        for line in log_file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if str(record.get("run_id")) == run_id and "node_id" in record:
                names[int(record["node_id"])] = node.name
    return names


def run_federated(
    nodes: list[Any],
    settings: FlowerSettings,
    study_id: str,
    progress: Progress | None = None,
    *,
    secure_aggregation: bool = False,
) -> list[np.ndarray]:
    """Run the federated design over ``nodes`` and return the final global weights."""
    from flwr.simulation import run_simulation  # heavy import, only when used

    results_dir = Path(settings.results_dir)
    node_dir = results_dir / "nodes"
    node_dir.mkdir(parents=True, exist_ok=True)
    for partition_id, node in enumerate(nodes):
        node.write_node_config(node_dir, partition_id)
    settings = settings.replace(node_config_dir=str(node_dir), study_id=study_id)
    if secure_aggregation:
        from client_force.secagg_client import make_secagg_client_app
        from server_national.secagg_app import make_secagg_server_app

        server_app = make_secagg_server_app(settings)
        client_app = make_secagg_client_app(settings)
    else:
        from client_force.client_app import make_client_app
        from server_national.server_app import make_server_app

        server_app = make_server_app(settings)
        client_app = make_client_app(settings)
    if not log.isEnabledFor(logging.INFO):
        # Flower logs every round at INFO through its own handler; the study shows a progress
        # bar instead. `anprfed -v study run` keeps Flower's log.
        # Its only warning here is run_simulation's deprecation notice, printed every run.
        logging.getLogger("flwr").setLevel(logging.ERROR)
    for name, value in SIMULATION_ENV.items():
        os.environ.setdefault(name, value)
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        # Joining an existing Ray cluster (RAY_ADDRESS: the study's own head node, or the
        # user's) takes its resources as they are; only the workers' console echo is set.
        "init_args": {"log_to_driver": log.isEnabledFor(logging.INFO)}
        if os.environ.get("RAY_ADDRESS")
        else {
            "num_cpus": max(1, min(len(nodes), os.cpu_count() or 1)),
            "include_dashboard": False,
            "log_to_driver": False,
        },
    }
    stop = threading.Event()
    watcher = None
    if progress is not None:
        watcher = threading.Thread(
            target=_watch_rounds,
            args=(results_dir / CHECKPOINTS, settings.num_server_rounds, progress, stop),
            daemon=True,
        )
        watcher.start()
    try:
        with keep_handlers_through_ray(), _placement(nodes, backend_config):
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=len(nodes),
                backend_config=backend_config,
            )
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(timeout=5)
        # The server's records name Flower node ids; name the forces instead.
        name_forces(results_dir, node_forces(nodes, results_dir))
    return _final_weights(results_dir)


PLACE_FORCES_ENV = "ANPRFED_PLACE_FORCES"


def force_resource(force: str) -> str:
    """The Ray custom resource a node offers when it holds ``force``'s store."""
    return f"force-{force}"


def place_forces() -> bool:
    """Whether each force's ClientApp must run on the Ray node offering ``force-<name>``."""
    return os.environ.get(PLACE_FORCES_ENV, "") == "1"


def _placement(nodes: list[Any], backend_config: dict[str, Any]) -> Any:
    """With ``ANPRFED_PLACE_FORCES=1``: pin each force's ClientApp by its Ray resource."""
    if not place_forces():
        return contextlib.nullcontext()
    from research.study.placement import PLACEMENT_KEY, placed_simulation

    backend_config[PLACEMENT_KEY] = {str(i): force_resource(n.name) for i, n in enumerate(nodes)}
    return placed_simulation()
