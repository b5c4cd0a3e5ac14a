"""Base-rate figures on hand-computable score sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research.study.evaluation import ForceScores, evaluate_design, pr_curve, score_row


def test_perfect_ranking_has_no_false_alerts() -> None:
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], float)
    scores = np.linspace(1, 0, 10)
    row = score_row(scores, truth, recall=0.5, realistic_prevalence=1 / 400)
    assert row["pr_auc"] == pytest.approx(1.0)
    assert row["precision_at_recall"] == 1.0
    assert row["fpr"] == 0.0
    assert row["false_alerts_per_million_realistic"] == 0.0
    assert row["alerts_per_tp_realistic"] == pytest.approx(1.0)
    # "vehicles read per TP" is 1 / (prevalence x recall) for any design: not reported
    assert "vehicles_per_tp_realistic" not in row


def test_reweighting_to_a_realistic_prevalence() -> None:
    # 2 positives, 8 negatives; at recall 0.5 the threshold passes 1 TP and 1 FP (FPR 1/8).
    truth = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], float)
    scores = np.array([0.8, 0.9, 0.1, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.05])
    row = score_row(scores, truth, recall=0.5, realistic_prevalence=0.01)
    assert row["tpr"] == 0.5 and row["fpr"] == pytest.approx(1 / 8)
    precision = 0.5 * 0.01 / (0.5 * 0.01 + 0.125 * 0.99)
    assert row["precision_realistic"] == pytest.approx(precision)
    assert row["alerts_per_tp_realistic"] == pytest.approx(1 / precision)
    assert row["false_alerts_per_million_realistic"] == pytest.approx(0.125 * 0.99 * 1e6)
    assert row["alerts_per_tp_scenario"] == pytest.approx(2.0)


def test_no_positive_gives_nan_not_a_number_made_up() -> None:
    row = score_row(np.array([0.2, 0.1]), np.array([0.0, 0.0]), 0.5, 0.01)
    assert math.isnan(row["pr_auc"]) and math.isnan(row["fpr"])


def test_design_rows_per_force_and_all_forces() -> None:
    a = ForceScores("urban", np.array([0.9, 0.1, 0.2]), np.array([1.0, 0.0, 0.0]))
    b = ForceScores("rural", np.array([0.3, 0.8]), np.array([1.0, 0.0]))
    rows = evaluate_design([a, b], 0.5, 0.01)
    assert [r["force"] for r in rows] == ["urban", "rural", "all forces"]
    assert rows[-1]["vehicles"] == 5 and rows[-1]["positives"] == 2
    assert rows[0]["pr_auc"] == pytest.approx(1.0)
    assert rows[1]["pr_auc"] < 1.0


def test_pr_curve_ends_at_full_recall() -> None:
    precision, recall = pr_curve(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0], float))
    assert recall[-1] == 1.0 and precision[0] == 1.0
    assert np.all(np.diff(recall) >= 0)
