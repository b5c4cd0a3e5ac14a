"""Every figure against chance: bootstrap intervals that cover chance for a random scorer,
clear it for a model that learned, and "no skill" labels that follow from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from federation.features import align_labels, build_examples, split_examples
from federation.metrics import bootstrap_pr_figures, pr_auc, precision_at_recall
from federation.model import ModelConfig, TrajectoryModel, example_tensors, predict_scores
from research.study.evaluation import (
    ABOVE_CHANCE,
    MIN_POSITIVES,
    NO_SKILL,
    ForceScores,
    bootstrap_seed,
    evaluate_design,
    score_row,
)
from research.synth.toyworld import make_toy_world


def test_a_random_scorers_interval_covers_chance_most_of_the_time() -> None:
    """Over many held-out sets and random scorers, the 95% PR-AUC interval reaches down to
    the held-out prevalence; a bootstrap that was too narrow, or centred away from the
    figure, would fail this."""
    covered, trials = 0, 120
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        y = np.zeros(1000)
        y[rng.permutation(1000)[:40]] = 1.0  # 40 held-out positives, prevalence 0.04
        scores = rng.random(1000)
        ap, precision = bootstrap_pr_figures(y, scores, resamples=300, seed=seed)
        assert ap.low <= pr_auc(y, scores) <= ap.high
        assert precision.low <= precision_at_recall(y, scores) <= precision.high
        covered += ap.low <= y.mean()
    assert covered >= 0.9 * trials


def test_the_interval_is_reproducible_from_its_seed_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.05).astype(float)
    scores = y * 0.7 + rng.random(4000)
    a, _ = bootstrap_pr_figures(y, scores, resamples=200, seed=3)
    b, _ = bootstrap_pr_figures(y, scores, resamples=200, seed=3)
    assert a == b
    small, _ = bootstrap_pr_figures(y[:400], scores[:400], resamples=200, seed=3)
    assert (a.high - a.low) < (small.high - small.low)


@pytest.mark.slow  # 60 epochs of training: ~20 s idle, over a minute on a loaded machine
def test_a_trained_non_private_model_clears_chance_on_a_learnable_world() -> None:
    torch.manual_seed(0)
    w = make_toy_world(n_vehicles=500, n_cameras=30, days=21, prevalence=0.1, seed=5)
    ex = build_examples(w.reads, w.cameras, w.window_start, w.window_end, max_reads=48)
    y = align_labels(ex.vehicles, w.labels)
    train, test = split_examples(y, test_fraction=0.4, seed=0)
    model = TrajectoryModel(ModelConfig(hidden=16))
    seqs, mask, summary = example_tensors(ex.subset(train))
    target = torch.from_numpy(y[train])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(
            model(seqs, mask, summary), target
        ).backward()
        optimizer.step()
    scores = predict_scores(model, ex.subset(test))
    row = score_row(scores, y[test], recall=0.5, realistic_prevalence=1 / 400, seed=1)
    assert row["skill"] == ABOVE_CHANCE
    assert row["pr_auc_low"] > row["chance"]
    assert row["lift_low"] > 1.0 and row["lift"] == pytest.approx(row["pr_auc"] / row["chance"])
    assert row["precision_at_recall_low"] > row["chance"]
    # the same held-out vehicles, ranked at random, show no skill
    shuffled = np.random.default_rng(0).permutation(scores)
    assert score_row(shuffled, y[test], 0.5, 1 / 400, seed=1)["skill"] == NO_SKILL


def test_rows_flag_few_positives_and_pair_designs_on_the_same_resamples() -> None:
    rng = np.random.default_rng(1)
    y = np.zeros(300)
    y[:5] = 1.0
    a = ForceScores("cumbria", rng.random(300), y)
    rows = evaluate_design([a], 0.5, 0.01, seed=7)
    assert rows[0]["positives"] == 5 < MIN_POSITIVES and rows[0]["few_positives"]
    assert rows[0]["chance"] == pytest.approx(5 / 300)
    again = evaluate_design([a], 0.5, 0.01, seed=7)
    assert again[0]["pr_auc_low"] == rows[0]["pr_auc_low"]
    assert bootstrap_seed(7, "cumbria") != bootstrap_seed(8, "cumbria")
    assert bootstrap_seed(7, "cumbria") != bootstrap_seed(7, "all forces")


def test_no_positive_leaves_the_interval_undefined() -> None:
    row = score_row(np.array([0.2, 0.1]), np.array([0.0, 0.0]), 0.5, 0.01)
    assert math.isnan(row["pr_auc_low"]) and row["skill"] == "undefined"


def test_the_console_summary_reads_every_figure_against_chance() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from research.study.spec import StudySpec
    from research.study.summary import deployable_verdict, print_summary

    rng = np.random.default_rng(2)
    y = np.zeros(400)
    y[:12] = 1.0
    metrics = [
        {"design": design, "epsilon": eps, "retention_days": 365, **row}
        for design, eps in (("local-only", 4.0), ("federated", 4.0), ("pooled", math.inf))
        for row in evaluate_design([ForceScores("a", rng.random(400), y)], 0.5, 1 / 400, seed=1)
    ]
    retention = [
        {
            "retention_days": 365,
            "force": "all forces",
            "offenders_seen": 40,
            "convictions_in_log": 35,
            "convicted_by_study_date": 32,
            "conviction_arrived_while_held": 9,
            "lost_to_deletion_before_conviction": 23,
            "usable_positives_at_study_date": 5,
        }
    ]
    result = SimpleNamespace(
        spec=StudySpec(), metrics=metrics, retention=retention, out=Path("."), timings={}
    )
    console = Console(record=True, width=250)
    print_summary(result, console)
    text = console.export_text()
    assert "no skill" in text and "chance" in text and "read /TP" not in text
    assert "12 ⚠" in text and "5 ⚠" in text  # fewer than 20 positives, flagged
    assert "does not show that the processing achieves its purpose" in text
    for row in metrics:
        row["skill"] = ABOVE_CHANCE if row["design"] == "federated" else row["skill"]
    assert deployable_verdict(metrics) == ""


def test_a_random_scorer_is_rarely_called_skilled_even_with_few_positives() -> None:
    """With 8 positives a random ranking's PR-AUC sits well above the prevalence on average;
    the verdict must still call random scorers "no skill" about 95% of the time."""
    skilled = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        y = np.zeros(800)
        y[rng.permutation(800)[:8]] = 1.0
        row = score_row(rng.random(800), y, 0.5, 1 / 400, resamples=300, seed=seed)
        assert row["random_pr_auc_mean"] > row["chance"]
        skilled += row["skill"] == ABOVE_CHANCE
    assert skilled <= 10


def test_the_vectorised_bootstrap_scores_a_resample_exactly_as_pr_auc_does() -> None:
    """A row of draw counts must score like the resampled vehicles written out one by one
    (ties included), else the interval is an interval of some other figure."""
    from federation.metrics import _sorted_positive_view

    rng = np.random.default_rng(4)
    for _ in range(150):
        n = int(rng.integers(6, 60))
        y = (rng.random(n) < 0.3).astype(float)
        y[:2] = (1.0, 0.0)
        s = np.round(rng.random(n), 1)  # many ties
        w = rng.integers(0, 3, n).astype(float)
        w[0] = max(w[0], 1.0)
        yy, ss = np.repeat(y, w.astype(int)), np.repeat(s, w.astype(int))
        order, places, ends, upto = _sorted_positive_view(y, s)
        weights = w[None, order]
        flagged = np.cumsum(weights, axis=1)[:, ends]
        drawn = weights[:, places]
        tp = np.cumsum(drawn, axis=1)[:, upto]
        precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
        ap = float(np.sum(drawn * precision) / yy.sum())
        assert ap == pytest.approx(pr_auc(yy, ss), abs=1e-12)
        first = int(np.argmax(tp[0] / yy.sum() >= 0.5 - 1e-12))
        assert precision[0, first] == pytest.approx(precision_at_recall(yy, ss), abs=1e-12)
