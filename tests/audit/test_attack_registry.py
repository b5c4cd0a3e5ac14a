"""Membership attacks by name: a toy attack is one function and one registration."""

from __future__ import annotations

import numpy as np
import pytest

from client_force.force_dataset import ForceDataset
from client_force.training import TrainingConfig
from federation.features import READ_FEATURES, SUMMARY_FEATURES, ExampleSet
from federation.model import ModelConfig, TrajectoryModel
from research.audit.membership import AuditConfig, TrainingRecipe, audit_model
from research.audit.registry import (
    AttackInputs,
    attack_names,
    get_attack,
    register_attack,
    unregister_attack,
)


def _examples(n: int, seed: int) -> ExampleSet:
    rng = np.random.default_rng(seed)
    return ExampleSet(
        sequences=rng.normal(size=(n, 4, len(READ_FEATURES))).astype(np.float32),
        mask=np.ones((n, 4), bool),
        summary=rng.normal(size=(n, len(SUMMARY_FEATURES))).astype(np.float32),
        vehicles=np.array([f"{seed}-{i:04d}" for i in range(n)]),
        n_reads=np.full(n, 4, np.int64),
    )


def test_builtin_attacks_are_registered() -> None:
    assert attack_names()[:3] == ("loss-threshold", "lira-online", "lira-offline")
    assert get_attack("lira-online").needs_shadows
    assert not get_attack("loss-threshold").needs_shadows
    with pytest.raises(KeyError, match="no attack named"):
        get_attack("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_attack("loss-threshold")(lambda inputs: inputs.phi)


def test_a_registered_toy_attack_runs_in_the_membership_audit() -> None:
    calls: list[int] = []

    @register_attack("toy-confidence", line_style="-.")
    def toy(inputs: AttackInputs) -> np.ndarray:
        calls.append(len(inputs.phi))
        assert inputs.shadow_phi is not None  # the built-in LiRA asked for shadows
        return inputs.phi  # the model's confidence in the true label

    try:
        rng = np.random.default_rng(0)
        data = ForceDataset(
            train=_examples(40, 1),
            train_labels=(rng.random(40) < 0.5).astype(np.float32),
            test=_examples(30, 2),
            test_labels=(rng.random(30) < 0.5).astype(np.float32),
            test_truth=None,
            key_epoch=0,
            source_days=(),
        )
        config = ModelConfig(hidden=4, n_conv_layers=0, kernel_size=1)
        audit = audit_model(
            TrajectoryModel(config),
            lambda: TrajectoryModel(config),
            data,
            TrainingRecipe(epochs=1, training=TrainingConfig(optimizer="adam", batch_size=16)),
            delta=1e-3,
            config=AuditConfig(shadows=2, seed=0),
        )
        names = [r.attack for r in audit.results]
        assert names == list(attack_names())
        assert "toy-confidence" in names
        assert calls == [70]
        toy_row = next(r for r in audit.results if r.attack == "toy-confidence").to_row()
        assert toy_row["members"] == 40 and toy_row["nonmembers"] == 30
    finally:
        unregister_attack("toy-confidence")
    assert "toy-confidence" not in attack_names()
