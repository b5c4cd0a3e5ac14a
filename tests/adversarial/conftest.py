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
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from flower_world import LABEL_AS_OF, WINDOW_DAYS, WINDOW_START, build_force
from flwr.supercore.task_identity import TaskIdentity

from client_force.privacy_policy import PrivacyPolicy
from client_force.private_training import install_policy
from federation.flower_settings import FlowerSettings
from privacy.keys import MasterSecretSource
from retention.store import ForceStore

DEPLOYED_POLICY = PrivacyPolicy(
    epsilon_budget=8.0,
    max_sample_rate=0.5,  # the toy force has ~100 training vehicles
    max_evaluate_rounds=40,
    min_test_fraction=0.1,
    max_test_fraction=0.3,
    allow_simulation_settings=False,
)
"""A deployed force's policy (simulation-only settings refused), sized for the toy force."""


@dataclass
class DeployedForce:
    """A force store with its key file and deployment policy, and the settings it agreed to."""

    store: Path
    key_file: Path
    settings: FlowerSettings

    @property
    def node_config(self) -> dict[str, str]:
        """What the force's operator passes to its SuperNode (``--node-config``)."""
        return {"store": str(self.store), "key-file": str(self.key_file)}

    def open_store(self) -> ForceStore:
        """The store, opened with the force's key."""
        return ForceStore.open(self.store, MasterSecretSource.from_key_file(self.key_file))


def _settings() -> FlowerSettings:
    from datetime import timedelta

    return FlowerSettings(
        num_server_rounds=2,
        min_available_nodes=1,
        min_replies=1,
        window_start=WINDOW_START.isoformat(),
        window_end=(WINDOW_START + timedelta(days=WINDOW_DAYS)).isoformat(),
        as_of=LABEL_AS_OF.isoformat(),
        max_reads=16,
        test_fraction=0.3,
        seed=3,
        learning_rate=0.05,
        batch_size=32,
        dp_target_epsilon=4.0,
        dp_noise_multiplier=1.0,
        model_hidden=8,
        model_conv_layers=1,
        model_kernel_size=3,
    )


@pytest.fixture(scope="session")
def force_template(tmp_path_factory: pytest.TempPathFactory) -> DeployedForce:
    """One force of ~150 vehicles (~20 % offending), ingested once per session."""
    root = tmp_path_factory.mktemp("adversarial")
    fixture = build_force(root / "force", "force0", 150, seed=41)
    return DeployedForce(fixture.store, fixture.key_file, _settings())


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
