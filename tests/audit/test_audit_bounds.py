"""Clopper-Pearson intervals, ROC figures and the empirical epsilon lower bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, mannwhitneyu

from research.audit import (
    clopper_pearson,
    empirical_epsilon,
    epsilon_at_threshold,
    evaluate_attack,
    roc_curve,
)


def test_clopper_pearson_known_values() -> None:
    # Exact 95% intervals from the beta quantiles (textbook values).
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.30849710, abs=1e-7)
    lo, hi = clopper_pearson(10, 10)
    assert lo == pytest.approx(0.69150289, abs=1e-7) and hi == 1.0
    lo, hi = clopper_pearson(5, 10)
    assert (lo, hi) == (pytest.approx(0.18708603, abs=1e-7), pytest.approx(0.81291397, abs=1e-7))
    # One-sided ends: P(X >= k | p = lo) = alpha/2 and P(X <= k | p = hi) = alpha/2.
    lo, hi = clopper_pearson(7, 40, 0.9)
    assert binom.sf(6, 40, lo) == pytest.approx(0.05, abs=1e-9)
    assert binom.cdf(7, 40, hi) == pytest.approx(0.05, abs=1e-9)


def test_clopper_pearson_covers_at_least_its_confidence() -> None:
    rng = np.random.default_rng(1)
    for p, n in ((0.03, 60), (0.3, 50), (0.9, 25)):
        k = rng.binomial(n, p, size=4000)
        lo, hi = clopper_pearson(k, np.full_like(k, n))
        assert ((lo <= p) & (p <= hi)).mean() >= 0.95


def test_clopper_pearson_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="successes <= trials"):
        clopper_pearson(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson(1, 10, 1.5)


def test_roc_auc_is_the_mann_whitney_statistic_with_ties() -> None:
    rng = np.random.default_rng(2)
    member = rng.random(500) < 0.4
    scores = np.round(rng.normal(size=500) + 0.7 * member, 1)  # many ties
    u = mannwhitneyu(scores[member], scores[~member]).statistic
    assert roc_curve(scores, member).auc == pytest.approx(u / (member.sum() * (~member).sum()))


def test_tpr_at_fpr_on_a_hand_example() -> None:
    scores = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], float)
    member = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    curve = roc_curve(scores, member)
    assert curve.tpr_at_fpr(0.0) == 0.5  # the two highest scores are members
    assert curve.tpr_at_fpr(1 / 6) == 0.75
    assert curve.tpr_at_fpr(1.0) == 1.0
    assert curve.auc == pytest.approx((2 * 6 + 5 + 3) / 24)


def test_epsilon_bound_of_a_perfect_and_a_blind_attack() -> None:
    member = np.r_[np.ones(100), np.zeros(100)].astype(bool)
    perfect = epsilon_at_threshold(member.astype(float), member, 0.5, delta=0.0)
    # TPR_lo = 0.025^(1/100)-quantile end, FPR_hi = 1 - 0.025^(1/100): eps = log(TPR_lo / FPR_hi).
    t_lo = 0.0125 ** (1 / 100)
    assert perfect.lower == pytest.approx(math.log(t_lo / (1 - t_lo)), rel=1e-6)
    assert math.isinf(perfect.upper)
    blind = empirical_epsilon(np.zeros(200), member, delta=0.0)
    assert blind.lower == 0.0


def test_empirical_bound_never_exceeds_the_epsilon_of_an_exact_mechanism() -> None:
    # Randomised response is exactly eps-DP for one record: a member reports 1 with probability
    # e^eps / (1 + e^eps), a non-member with 1 / (1 + e^eps). The 95% lower bound must stay
    # below eps in (about) 95% of audits or more, and come close to it with many trials.
    eps = 1.5
    p_member = math.exp(eps) / (1 + math.exp(eps))
    rng = np.random.default_rng(3)
    exceed = 0
    for trial in range(200):
        member = rng.random(800) < 0.5
        report = np.where(member, rng.random(800) < p_member, rng.random(800) < 1 - p_member)
        bound = empirical_epsilon(report.astype(float), member, delta=0.0, seed=trial)
        exceed += bound.lower > eps
    assert exceed <= 10  # 5% of 200 would be 10; the bound is conservative
    member = rng.random(40000) < 0.5
    report = np.where(member, rng.random(40000) < p_member, rng.random(40000) < 1 - p_member)
    big = empirical_epsilon(report.astype(float), member, delta=0.0)
    assert 0.85 * eps < big.lower <= eps < big.upper


def test_delta_lowers_the_bound() -> None:
    member = np.r_[np.ones(300), np.zeros(300)].astype(bool)
    scores = member + np.random.default_rng(4).normal(0, 0.8, 600)
    strict = epsilon_at_threshold(scores, member, 0.5, delta=0.0)
    loose = epsilon_at_threshold(scores, member, 0.5, delta=0.2)
    assert loose.lower < strict.lower


def test_attack_result_row_holds_counts_and_rates_only() -> None:
    member = np.r_[np.ones(50), np.zeros(50)].astype(bool)
    scores = member + np.random.default_rng(5).normal(0, 1, 100)
    row = evaluate_attack("loss-threshold", scores, member, delta=1e-3).to_row()
    assert row["members"] == 50 and row["nonmembers"] == 50
    assert set(row) >= {
        "auc",
        "tpr_at_fpr_0_1pct",
        "tpr_at_fpr_1pct",
        "eps_lower_bound",
        "eps_ci_low",
        "eps_ci_high",
        "fpr_resolution",
    }
    assert row["fpr_resolution"] == pytest.approx(0.02)
    assert all(not isinstance(v, np.ndarray) for v in row.values())
