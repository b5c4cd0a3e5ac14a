"""Flower's Simulation Engine on a two-node Ray cluster, each force placed where its store is.

Two Ray nodes run on this machine (a head and a worker joined to it), each offering the
custom resources of the forces whose stores it holds. The same federated run is made on a
plain single-node cluster with Flower's stock backend and on the two nodes with forces
placed by resource: every force's ClientApp must run on the node that offers its resource,
the forces must be spread over both nodes, and the final global model must be the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from flwr.simulation import run_simulation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from flower_world import build_world, copy_world

from client_force.client_app import make_client_app
from research.study.placement import (
    PLACEMENT_KEY,
    force_resource,
    placed_simulation,
    placement_report,
)
from research.study.ray_cluster import StudyRayCluster
from server_national.checkpoint import load_checkpoint
from server_national.server_app import make_server_app


def _simulate(world, placement: dict[str, str] | None) -> list[np.ndarray]:
    settings = world.settings(num_server_rounds=2, training_seed=7)
    backend = {"client_resources": {"num_cpus": 1}, "init_args": {"log_to_driver": False}}
    if placement is None:
        run_simulation(
            make_server_app(settings),
            make_client_app(settings),
            num_supernodes=len(world.forces),
            backend_config=backend,
        )
    else:
        with placed_simulation():
            run_simulation(
                make_server_app(settings),
                make_client_app(settings),
                num_supernodes=len(world.forces),
                backend_config={**backend, PLACEMENT_KEY: placement},
            )
    final = load_checkpoint(Path(settings.results_dir) / "checkpoints" / "final.npz")
    return list(final.values())


@pytest.mark.slow
def test_forces_spread_over_two_nodes_match_a_single_node_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    template = build_world(tmp_path / "template", n_forces=3, n_vehicles=120, seed=2)
    names = [f.name for f in template.forces]
    placement = {str(i): force_resource(name) for i, name in enumerate(names)}

    with StudyRayCluster(2, tmp_path / "single.log") as single:
        single.connect()
        baseline = _simulate(copy_world(template, tmp_path / "single"), None)

    head_forces, worker_forces = names[0::2], names[1::2]
    head = StudyRayCluster(
        1, tmp_path / "head.log", resources={force_resource(n): 1 for n in head_forces}
    )
    with head:
        head.connect()
        head.add_worker_node(
            1, {force_resource(n): 1 for n in worker_forces}, tmp_path / "worker.log"
        )
        ray.init(log_to_driver=False)
        try:
            nodes = {
                n["NodeID"]: {k for k in n["Resources"] if k.startswith("force-")}
                for n in ray.nodes()
                if n["Alive"]
            }
        finally:
            ray.shutdown()
        assert len(nodes) == 2
        placed = _simulate(copy_world(template, tmp_path / "placed"), placement)
        report = placement_report()

    assert {str(p) for p in report} == set(placement)
    for partition, node_id in report.items():
        assert placement[str(partition)] in nodes[node_id], "a force ran where its store is not"
    assert len(set(report.values())) == 2  # spread across both nodes
    assert len(placed) == len(baseline)
    for a, b in zip(placed, baseline, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
