"""Vehicle-level DP training rounds against the force's persistent ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import client_force.training as training_module
from client_force.training import (
    METRIC_ALLOWLIST,
    TrainingConfig,
    evaluate_local,
    train_round,
)
from federation.features import align_labels, build_examples, split_examples
from federation.model import ModelConfig, TrajectoryModel, get_weights
from privacy.dp.config import DPConfig, DPConfigError
from privacy.dp.crosscheck import crosscheck_ledger
from privacy.dp.ledger import PrivacyBudgetExceeded, PrivacyLedger
from research.synth.toyworld import make_toy_world

SCRIPT = Path(__file__).with_name("_round_in_subprocess.py")


@pytest.fixture(scope="module")
def world():
    return make_toy_world(n_vehicles=300, n_cameras=20, days=14, seed=11)


@pytest.fixture(scope="module")
def examples(world):
    ex = build_examples(
        world.reads, world.cameras, world.window_start, world.window_end, max_reads=24
    )
    return ex, align_labels(ex.vehicles, world.labels)


def _dp(n: int, target: float = 4.0, rounds: int = 2, **kw) -> DPConfig:
    return DPConfig.plan(
        n_vehicles=n, target_epsilon=target, expected_batch_size=60, total_rounds=rounds, **kw
    )


def _run_subprocess(ledger: Path, study: str, rounds: int, target: float, budget: float):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(ledger), study, str(rounds), str(target), str(budget)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_rounds_compose_across_rounds_and_separate_processes(tmp_path, examples):
    ex, y = examples
    path = tmp_path / "store" / "privacy" / "ledger.json"
    # Run 1 in a separate process: a two-round study.
    first = _run_subprocess(path, "study-a", rounds=2, target=3.0, budget=20.0)
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert set(rows[0]) - {"round"} == set(METRIC_ALLOWLIST)
    assert 0 < rows[0]["epsilon"] < rows[1]["epsilon"] <= 3.0  # the plan spends at most its target
    # Run 2 in this process on the same ledger: its rounds add to run 1's spend.
    ledger = PrivacyLedger.open(path)
    assert ledger.epsilon_spent(rows[1]["delta"]) == pytest.approx(rows[1]["epsilon"])
    dp = _dp(len(ex), target=3.0)
    model = TrajectoryModel(ModelConfig(hidden=8))
    before = get_weights(model)
    result = train_round(
        model,
        ex,
        y,
        dp,
        ledger,
        round_id=1,
        study_id="study-a",
        run_id="second",
        training=TrainingConfig(seed=5),
    )
    assert result.epsilon_spent > rows[1]["epsilon"]
    assert result.steps == dp.steps_per_round and result.examples == len(ex)
    assert any(not np.array_equal(a, b) for a, b in zip(before, get_weights(model), strict=True))
    entries = PrivacyLedger.open(path).entries
    assert [e.status for e in entries] == ["completed"] * 3
    assert [e.run_id for e in entries] == ["pid-study-a", "pid-study-a", "second"]
    report = crosscheck_ledger(PrivacyLedger.open(path))
    assert len(report.rows) == 3 and report.max_relative_difference < 0.01


def test_refuses_to_train_past_the_budget(tmp_path, examples):
    ex, y = examples
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=2.0)
    dp = _dp(len(ex), target=2.0, rounds=2)
    model = TrajectoryModel(ModelConfig(hidden=8))
    for r in (1, 2):
        train_round(
            model, ex, y, dp, ledger, round_id=r, study_id="s", training=TrainingConfig(seed=r)
        )
    spent = ledger.epsilon_spent(dp.target_delta)
    assert spent <= 2.0
    weights = get_weights(model)
    with pytest.raises(PrivacyBudgetExceeded) as err:  # a repeat run of the same study
        train_round(model, ex, y, dp, ledger, round_id=1, study_id="s", run_id="rerun")
    assert f"spent epsilon={spent:.4f}" in str(err.value)
    assert err.value.spent == pytest.approx(spent)
    assert len(ledger.entries) == 2  # the refused round is not recorded
    for a, b in zip(weights, get_weights(model), strict=True):
        np.testing.assert_array_equal(a, b)  # and did not train


def test_delta_above_one_over_ten_n_is_refused(tmp_path, examples):
    ex, y = examples
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=10.0)
    dp = DPConfig(target_epsilon=2.0, target_delta=1.0 / len(ex), sample_rate=0.2)
    with pytest.raises(DPConfigError, match="at most 1/"):
        train_round(TrajectoryModel(ModelConfig(hidden=8)), ex, y, dp, ledger, study_id="s")
    assert ledger.entries == ()


def test_deleting_data_never_gives_budget_back(tmp_path, world, examples):
    ex, y = examples
    path = tmp_path / "store" / "privacy" / "ledger.json"
    ledger = PrivacyLedger.open(path, epsilon_budget=10.0)
    model = TrajectoryModel(ModelConfig(hidden=8))
    dp = _dp(len(ex), target=2.0)
    first = train_round(
        model, ex, y, dp, ledger, round_id=1, study_id="s", training=TrainingConfig(seed=1)
    )
    # Purge: drop the first week of reads and every vehicle's examples built from them.
    cutoff = world.window_start + (world.window_end - world.window_start) / 2
    kept = world.reads[world.reads["read_at"] >= cutoff]
    smaller = build_examples(kept, world.cameras, cutoff, world.window_end, max_reads=24)
    assert len(kept) < len(world.reads) / 1.5
    reopened = PrivacyLedger.open(path)
    assert reopened.epsilon_spent(dp.target_delta) == pytest.approx(first.epsilon_spent)
    # Training on what is left composes with the old spend rather than starting from zero.
    y_small = align_labels(smaller.vehicles, world.labels)
    dp_small = DPConfig(
        target_epsilon=2.0, target_delta=dp.target_delta, sample_rate=dp.sample_rate, total_rounds=2
    )
    second = train_round(
        model,
        smaller,
        y_small,
        dp_small,
        reopened,
        round_id=2,
        study_id="s",
        training=TrainingConfig(seed=2),
    )
    assert second.epsilon_spent > first.epsilon_spent


def test_a_crashed_round_still_counts(tmp_path, examples, monkeypatch):
    ex, y = examples
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=10.0)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(training_module, "run_dp_sgd", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        train_round(
            TrajectoryModel(ModelConfig(hidden=8)), ex, y, _dp(len(ex)), ledger, study_id="s"
        )
    reopened = PrivacyLedger.open(tmp_path / "ledger.json")
    assert [e.status for e in reopened.entries] == ["reserved"]
    assert reopened.epsilon_spent(_dp(len(ex)).target_delta) > 0


def test_dp_training_learns_the_planted_pattern(tmp_path):
    torch.manual_seed(0)
    world = make_toy_world(n_vehicles=900, n_cameras=30, days=21, prevalence=0.1, seed=21)
    ex = build_examples(
        world.reads, world.cameras, world.window_start, world.window_end, max_reads=32
    )
    y = align_labels(ex.vehicles, world.labels)
    train, test = split_examples(y, test_fraction=0.3, seed=0)
    dp = DPConfig.plan(
        n_vehicles=len(train),
        target_epsilon=8.0,
        expected_batch_size=128,
        total_rounds=1,
        local_epochs=10,
    )
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=8.0)
    model = TrajectoryModel(ModelConfig(hidden=16))
    result = train_round(
        model, ex.subset(train), y[train], dp, ledger, study_id="s", training=TrainingConfig(seed=0)
    )
    assert result.epsilon_spent <= 8.0
    metrics = evaluate_local(model, ex.subset(test), y[test])
    assert metrics["prevalence"] == pytest.approx(0.1, abs=0.01)
    assert metrics["pr_auc"] > 0.5 > 4 * metrics["prevalence"]
    assert metrics["precision_at_recall_0_5"] > 0.5
