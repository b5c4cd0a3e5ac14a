"""``train-layers = head``: a fixed (public) read encoder, only the head trained."""

from __future__ import annotations

import pytest
import torch

from client_force.flower_round import round_plan
from client_force.proximal import proximal_training
from client_force.training import TrainingConfig, train_nonprivate, train_round
from federation.features import align_labels, build_examples
from federation.flower_settings import FlowerSettings, FlowerSettingsError, frozen_prefixes
from federation.model import ENCODER_PREFIXES, ModelConfig, TrajectoryModel
from privacy.dp.config import DPConfig
from privacy.dp.ledger import PrivacyLedger
from research.synth.toyworld import make_toy_world

CONFIG = ModelConfig(hidden=8, n_conv_layers=1)


@pytest.fixture(scope="module")
def examples():
    world = make_toy_world(n_vehicles=200, n_cameras=16, days=10, seed=5)
    ex = build_examples(
        world.reads, world.cameras, world.window_start, world.window_end, max_reads=16
    )
    return ex, align_labels(ex.vehicles, world.labels)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _moved(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def _is_encoder(name: str) -> bool:
    return name.startswith(ENCODER_PREFIXES)


def test_dp_round_with_head_only_keeps_the_encoder_and_trains_the_head(tmp_path, examples):
    ex, y = examples
    torch.manual_seed(0)
    model = TrajectoryModel(CONFIG)
    before = _snapshot(model)
    dp = DPConfig.plan(n_vehicles=len(ex), target_epsilon=4.0, expected_batch_size=40)
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=8.0)
    training = TrainingConfig(optimizer="adam", learning_rate=0.01, seed=1, frozen=ENCODER_PREFIXES)
    train_round(model, ex, y, dp, ledger, 2, 1, study_id="s", training=training)
    moved = _moved(before, _snapshot(model))
    assert moved, "the head did not train"
    assert all(not _is_encoder(k) for k in moved), f"a frozen weight moved: {sorted(moved)}"
    assert {k for k in before if not _is_encoder(k)} <= moved | {"_scaling"}
    # every parameter is trainable again on the caller's model (only the copy was frozen)
    assert all(p.requires_grad for p in model.parameters())


def test_all_layers_train_by_default(tmp_path, examples):
    ex, y = examples
    torch.manual_seed(0)
    model = TrajectoryModel(CONFIG)
    before = _snapshot(model)
    dp = DPConfig.plan(n_vehicles=len(ex), target_epsilon=4.0, expected_batch_size=40)
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=8.0)
    training = TrainingConfig(optimizer="adam", learning_rate=0.01, seed=1)
    train_round(model, ex, y, dp, ledger, 2, 1, study_id="s", training=training)
    assert any(_is_encoder(k) for k in _moved(before, _snapshot(model)))


def test_nonprivate_and_fedprox_respect_the_frozen_encoder(examples):
    ex, y = examples
    torch.manual_seed(0)
    model = TrajectoryModel(CONFIG)
    before = _snapshot(model)
    base = TrainingConfig(optimizer="adam", learning_rate=0.01, seed=1, frozen=ENCODER_PREFIXES)
    train_nonprivate(model, ex, y, 1, proximal_training(base, model, proximal_mu=0.1))
    moved = _moved(before, _snapshot(model))
    assert moved and all(not _is_encoder(k) for k in moved)


def test_settings_map_train_layers_to_frozen_prefixes_and_refuse_unknown_values():
    assert frozen_prefixes(FlowerSettings()) == ()
    head = FlowerSettings(train_layers="head")
    assert frozen_prefixes(head) == ENCODER_PREFIXES
    assert FlowerSettings.from_run_config({"train-layers": "head"}).train_layers == "head"
    with pytest.raises(FlowerSettingsError, match="train-layers"):
        FlowerSettings(train_layers="encoder")
    training, _, recipe = round_plan(
        FlowerSettings(dp_recipe="anprfed-dp/2", train_layers="head"), 500, seed=0
    )
    assert training.frozen == ENCODER_PREFIXES
    assert recipe is not None and recipe["trainable"] == "head"


def test_freezing_everything_is_refused(examples):
    ex, y = examples
    model = TrajectoryModel(CONFIG)
    every = tuple(name for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match="nothing to train"):
        train_nonprivate(model, ex, y, 1, TrainingConfig(frozen=every))
    assert all(p.requires_grad for p in model.parameters())
