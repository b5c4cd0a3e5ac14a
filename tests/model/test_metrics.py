"""PR-AUC, precision at recall and base-rate figures against definitions and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.metrics import (
    base_rate_figures,
    evaluate_scores,
    operating_point_at_recall,
    pr_auc,
    precision_at_prevalence,
    precision_at_recall,
)


def _brute_force_ap(y: np.ndarray, s: np.ndarray) -> float:
    """AP by definition: for each distinct threshold t (descending), precision and recall of
    'score >= t', summed as (R_t - R_prev) * P_t."""
    positives = y.sum()
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        flagged = s >= t
        tp = float((y * flagged).sum())
        precision = tp / flagged.sum()
        recall = tp / positives
        total += (recall - prev_recall) * precision
        prev_recall = recall
    return total


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=1, max_size=40).filter(
        lambda rows: any(y for y, _ in rows)
    )
)
def test_pr_auc_matches_the_brute_force_definition_including_ties(rows):
    y = np.array([r[0] for r in rows], dtype=float)
    s = np.array([r[1] for r in rows], dtype=float)  # few distinct values -> many ties
    assert pr_auc(y, s) == pytest.approx(_brute_force_ap(y, s), abs=1e-12)


def test_pr_auc_hand_cases():
    assert pr_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    # ranking 1,0,1,0: AP = 0.5 * 1 + 0.5 * 2/3
    assert pr_auc([1, 0, 1, 0], [4, 3, 2, 1]) == pytest.approx(0.5 + 1 / 3)
    # all tied: one operating point with precision = prevalence
    assert pr_auc([1, 0, 0, 0], [1, 1, 1, 1]) == pytest.approx(0.25)
    assert math.isnan(pr_auc([0, 0], [0.1, 0.2]))


def test_precision_at_recall_takes_the_fewest_alerts_that_reach_it():
    y = [1, 0, 0, 1, 0, 1, 0, 1]
    s = [8, 7, 6, 5, 4, 3, 2, 1]
    # recall 0.5 needs the top 4 (two of four positives): precision 2/4
    assert precision_at_recall(y, s, 0.5) == pytest.approx(0.5)
    point = operating_point_at_recall(y, s, 0.5)
    assert (point.tp, point.fp, point.fn, point.tn, point.threshold) == (2, 2, 2, 2, 5.0)
    assert precision_at_recall(y, s, 0.25) == 1.0
    assert precision_at_recall(y, s, 1.0) == pytest.approx(0.5)


def test_base_rate_figures_hand_case():
    # 10 positives scored 100..91; 3 negatives at 99.5, 98.5, 97.5; 87 negatives at 0.
    y = np.r_[np.ones(10), np.zeros(90)]
    s = np.r_[np.arange(100.0, 90.0, -1.0), [99.5, 98.5, 97.5], np.zeros(87)]
    f = base_rate_figures(y, s, recall=0.5, target_prevalence=1 / 400)
    # recall 0.5 -> threshold 96: flags 5 positives and 3 negatives
    assert f.threshold == 96.0
    assert f.tpr == 0.5 and f.fpr == pytest.approx(3 / 90)
    assert f.sample_prevalence == 0.1
    assert f.sample_precision == pytest.approx(5 / 8)
    assert f.sample_alerts_per_true_positive == pytest.approx(8 / 5)
    pi = 1 / 400
    expected = 0.5 * pi / (0.5 * pi + (3 / 90) * (1 - pi))
    assert f.target_precision == pytest.approx(expected)
    assert f.target_alerts_per_true_positive == pytest.approx(1 / expected)  # about 27.6
    assert 27 < f.target_alerts_per_true_positive < 28
    assert f.false_alerts_per_million == pytest.approx(3 / 90 * (1 - pi) * 1e6)
    assert f.vehicles_per_true_positive == pytest.approx(800)


def test_precision_at_prevalence_reweights_exactly():
    # TPR 0.8, FPR 0.01 at prevalence 1/400: 0.002 / (0.002 + 0.009975)
    assert precision_at_prevalence(0.8, 0.01, 1 / 400) == pytest.approx(0.002 / (0.002 + 0.009975))
    # at the sample's own prevalence it equals the sample precision
    y = np.r_[np.ones(20), np.zeros(80)]
    s = np.random.default_rng(0).random(100) + y * 0.3
    p = operating_point_at_recall(y, s, 0.5)
    assert precision_at_prevalence(p.tpr, p.fpr, 0.2) == pytest.approx(p.precision)


def test_evaluate_scores_reports_prevalence_and_rejects_bad_input():
    out = evaluate_scores([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3])
    assert (
        out["prevalence"] == 0.25 and out["pr_auc"] == 1.0 and out["precision_at_recall_0_5"] == 1.0
    )
    with pytest.raises(ValueError, match="0/1"):
        pr_auc([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        pr_auc([1, 0], [0.1])
