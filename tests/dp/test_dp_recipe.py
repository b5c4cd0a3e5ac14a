"""The DP training recipe: a pure rule of public inputs, recorded in the ledger, and it learns."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from client_force import dp_recipe
from client_force.flower_round import round_plan
from client_force.training import evaluate_local, train_round
from federation.features import align_labels, build_examples, split_examples
from federation.flower_settings import FlowerSettings
from federation.model import ModelConfig, TrajectoryModel
from privacy.dp.ledger import LedgerError, PrivacyLedger
from research.synth.toyworld import make_toy_world


def test_recipe_takes_only_public_inputs_and_is_deterministic():
    # Nothing but the vehicle count and the number of rounds enters the rule: no data.
    assert list(inspect.signature(dp_recipe.dp_recipe).parameters) == ["n_vehicles", "rounds"]
    assert dp_recipe.dp_recipe(42_000, 3) == dp_recipe.dp_recipe(42_000, 3)
    assert dp_recipe.dp_recipe(42_000, 3).to_dict() != dp_recipe.dp_recipe(42_001, 3).to_dict()


@pytest.mark.parametrize("n", [1, 50, 640, 7_000, 42_000, 1_000_000, 5_000_000])
@pytest.mark.parametrize("rounds", [1, 3, 7])
def test_recipe_values_follow_the_rule(n, rounds):
    r = dp_recipe.dp_recipe(n, rounds)
    steps = round(1 / r.sample_rate)
    assert r.sample_rate * n >= 1.0  # at least one expected vehicle per step
    assert steps <= dp_recipe.STEPS_PER_EPOCH
    if n >= dp_recipe.MIN_BATCH * dp_recipe.STEPS_PER_EPOCH:
        # Large forces: a fixed sample rate, so the expected batch grows with N.
        assert steps == dp_recipe.STEPS_PER_EPOCH
        assert r.expected_batch_size == round(n / dp_recipe.STEPS_PER_EPOCH)
    assert r.total_epochs == r.local_epochs * rounds >= dp_recipe.EPOCHS
    assert r.total_epochs < dp_recipe.EPOCHS + rounds
    assert r.recipe_id == dp_recipe.RECIPE_ID
    json.dumps(r.to_dict())  # recordable as is


def test_unknown_recipe_is_refused_by_name():
    with pytest.raises(dp_recipe.RecipeError, match="anprfed-dp/99"):
        dp_recipe.resolve("anprfed-dp/99", 1000, 1)
    with pytest.raises(dp_recipe.RecipeError):
        dp_recipe.dp_recipe(0, 1)


def test_round_plan_applies_the_recipe_not_the_run_config_values():
    settings = FlowerSettings(
        dp_recipe=dp_recipe.RECIPE_ID,
        num_server_rounds=2,
        batch_size=7,
        learning_rate=0.9,
        optimizer="sgd",
        local_epochs=9,
        dp_max_grad_norm=50.0,
        dp_target_epsilon=4.0,
    )
    training, dp, recipe = round_plan(settings, 20_000, seed=1)
    assert dp.sample_rate == pytest.approx(1 / dp_recipe.STEPS_PER_EPOCH)
    assert dp.local_epochs == recipe["local_epochs"] == math.ceil(dp_recipe.EPOCHS / 2)
    assert dp.max_grad_norm == dp_recipe.MAX_GRAD_NORM
    assert (training.optimizer, training.learning_rate) == ("adam", dp_recipe.LEARNING_RATE)
    assert dp.target_epsilon == 4.0
    assert recipe["model_hidden"] == settings.model_hidden  # the model actually trained
    # Without a recipe the explicit values stand.
    training, dp, recipe = round_plan(settings.replace(dp_recipe=""), 20_000, seed=1)
    assert recipe is None and training.learning_rate == 0.9 and dp.max_grad_norm == 50.0


@pytest.fixture(scope="module")
def toy():
    world = make_toy_world(n_vehicles=900, n_cameras=30, days=21, prevalence=0.1, seed=21)
    ex = build_examples(
        world.reads, world.cameras, world.window_start, world.window_end, max_reads=32
    )
    y = align_labels(ex.vehicles, world.labels)
    train, test = split_examples(y, test_fraction=0.3, seed=0)
    return ex, y, train, test


def test_recipe_is_recorded_in_the_ledger_and_covered_by_its_hash(tmp_path, toy):
    ex, y, train, test = toy
    settings = FlowerSettings(dp_recipe=dp_recipe.RECIPE_ID, dp_target_epsilon=8.0)
    training, dp, recipe = round_plan(settings, len(train), seed=0)
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger.open(path, epsilon_budget=8.0)
    torch.manual_seed(0)
    model = TrajectoryModel(ModelConfig(hidden=16, n_conv_layers=1))
    train_round(
        model,
        ex.subset(train),
        y[train],
        dp,
        ledger,
        dp.local_epochs,
        study_id="s",
        training=training,
        recipe=recipe,
    )
    entry = PrivacyLedger.open(path).entries[0]
    assert entry.recipe == recipe
    assert entry.recipe["name"] == dp_recipe.RECIPE_NAME and entry.sample_rate == dp.sample_rate
    # A DP-trained model under the recipe beats chance on the learnable toy world.
    metrics = evaluate_local(model, ex.subset(test), y[test])
    assert metrics["pr_auc"] > 3 * metrics["prevalence"]
    # Rewriting the recorded recipe (say, to hide a larger learning rate) breaks the chain.
    data = json.loads(path.read_text())
    data["entries"][0]["recipe"]["learning_rate"] = 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="hash chain"):
        PrivacyLedger.open(path)


def test_older_recipe_versions_stay_resolvable_and_differ():
    old = dp_recipe.resolve("anprfed-dp/1", 20_000, 3)
    new = dp_recipe.resolve(dp_recipe.RECIPE_ID, 20_000, 3)
    assert (old.version, new.version) == (1, dp_recipe.RECIPE_VERSION)
    assert old.total_epochs < new.total_epochs
    assert dp_recipe.describe("anprfed-dp/1")["recipe"] == "anprfed-dp/1"
    assert dp_recipe.RECIPES[-1] == dp_recipe.RECIPE_ID
