"""Fixtures for the adversarial suite: one real force store under a *deployment* policy.

The hostile party is the national server: it chooses the Flower run config and the arrays it
sends. Each test drives the real ClientApp (``client_force.client_app.make_client_app``) with
a hostile run config in its ``Context`` and checks that the force refuses, or answers only
with DP-protected output, and that a refusal spends nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from deployed_force import DEPLOYED_POLICY, DeployedForce, deployed_settings
from flower_world import LABEL_AS_OF, WINDOW_DAYS, WINDOW_START, build_force
from flwr.supercore.task_identity import TaskIdentity

from client_force.private_training import install_policy


@pytest.fixture(scope="session")
def force_template(tmp_path_factory: pytest.TempPathFactory) -> DeployedForce:
    """One force of ~150 vehicles (~20 % offending), ingested once per session."""
    root = tmp_path_factory.mktemp("adversarial")
    fixture = build_force(root / "force", "force0", 150, seed=41)
    settings = deployed_settings(WINDOW_START, WINDOW_DAYS, LABEL_AS_OF)
    return DeployedForce(fixture.store, fixture.key_file, settings)


@pytest.fixture
def force(force_template: DeployedForce, tmp_path: Path) -> DeployedForce:
    """A private copy of the force with a fresh ledger and the deployment policy installed."""
    store = tmp_path / "store"
    key_file = tmp_path / "force.key"
    shutil.copytree(force_template.store, store)
    shutil.copy2(force_template.key_file, key_file)
    copy = DeployedForce(store, key_file, force_template.settings)
    install_policy(copy.open_store(), DEPLOYED_POLICY)
    return copy


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Let tests construct Flower ``Message`` objects as the server runtime does."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 77, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
