"""A deployed force for the adversarial suite: its policy, store and agreed settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client_force.privacy_policy import PrivacyPolicy
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


def deployed_settings(window_start, window_days: int, label_as_of) -> FlowerSettings:
    """The study settings the force agreed to (small model, fixed sigma)."""
    from datetime import timedelta

    return FlowerSettings(
        num_server_rounds=2,
        min_available_nodes=1,
        min_replies=1,
        window_start=window_start.isoformat(),
        window_end=(window_start + timedelta(days=window_days)).isoformat(),
        as_of=label_as_of.isoformat(),
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
