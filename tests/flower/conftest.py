"""Fixtures for the Flower tests: a tiny three-force world of real stores, and copies of it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from flower_world import (
    BACKEND_CONFIG,
    SIMULATION_SETTINGS,
    FedAvgRun,
    FlowerWorld,
    build_world,
    copy_world,
)
from flwr.simulation import run_simulation
from flwr.supercore.task_identity import TaskIdentity

from client_force.client_app import make_client_app
from server_national.server_app import make_server_app


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> FlowerWorld:
    """Three forces of ~150 vehicles each, ingested once per session."""
    return build_world(tmp_path_factory.mktemp("flower-world"), n_forces=3, n_vehicles=150)


@pytest.fixture
def world(world_template: FlowerWorld, tmp_path: Path) -> FlowerWorld:
    """A private copy of the template world (fresh stores and ledgers) for one test."""
    return copy_world(world_template, tmp_path / "world")


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Let tests construct Flower ``Message`` objects as the server runtime does."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 77, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture(scope="session")
def fedavg_run(world_template: FlowerWorld, tmp_path_factory: pytest.TempPathFactory) -> FedAvgRun:
    """Run the plain Message-API apps once per session (shared by the simulation and SecAgg+
    tests, which compare against it)."""
    world = copy_world(world_template, tmp_path_factory.mktemp("fedavg") / "world")
    settings = world.settings(**SIMULATION_SETTINGS)
    run_simulation(
        make_server_app(settings),
        make_client_app(settings),
        num_supernodes=len(world.forces),
        backend_config=BACKEND_CONFIG,
    )
    return FedAvgRun(world, settings, Path(settings.results_dir))
