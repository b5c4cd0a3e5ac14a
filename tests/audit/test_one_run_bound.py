"""The one-run epsilon lower bound (Steinke, Nasr and Jagielski 2023) against what theory says."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from research.audit.one_run import (
    epsilon_lower_bound,
    guesses,
    max_lower_bound,
    one_run_audit,
    p_value,
)


def _closed_form_all_correct(r: int, beta: float) -> float:
    """r of r correct under pure DP: P[Bin(r, q) = r] = q^r = beta, eps = logit(q)."""
    q = beta ** (1.0 / r)
    return math.log(q / (1.0 - q))


@pytest.mark.parametrize("r", [10, 100, 1000, 5000])
def test_all_correct_guesses_reach_the_closed_form_bound(r: int) -> None:
    bound = epsilon_lower_bound(r, r, r, delta=0.0, beta=0.05)
    assert bound == pytest.approx(_closed_form_all_correct(r, 0.05), abs=1e-4)
    # The ceiling grows like log(r / log(1/beta)): ~5.8 for a thousand correct guesses.
    assert bound == pytest.approx(math.log(r / math.log(20)), abs=0.05 + 1.0 / r**0.5)


def test_the_bound_is_the_largest_epsilon_the_p_value_rejects() -> None:
    m, r, v, delta, beta = 1000, 400, 330, 1e-5, 0.05
    eps = epsilon_lower_bound(m, r, v, delta, beta)
    assert 0.0 < eps < 5.0
    assert p_value(m, r, v, eps, delta) <= beta
    assert p_value(m, r, v, eps + 1e-3, delta) > beta
    # Pure DP with no delta term is a plain binomial tail.
    q = 1.0 / (1.0 + math.exp(-1.0))
    assert p_value(m, r, v, 1.0, 0.0) == pytest.approx(binom.sf(v - 1, r, q))


def test_delta_only_weakens_the_bound() -> None:
    for delta in (1e-6, 1e-5, 1e-4):
        assert epsilon_lower_bound(2000, 500, 480, delta, 0.05) <= epsilon_lower_bound(
            2000, 500, 480, 0.0, 0.05
        )
    assert p_value(2000, 500, 480, 2.0, 1e-4) > p_value(2000, 500, 480, 2.0, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_random_guesses_give_no_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    included = rng.random(1000) < 0.5
    result = one_run_audit(rng.normal(size=1000), included, delta=1e-5, confidence=0.95)
    assert result.epsilon_lower < 0.3


def test_perfect_scores_reach_the_ceiling_and_abstention_picks_the_extremes() -> None:
    rng = np.random.default_rng(1)
    included = rng.permutation(1000) < 500  # exactly half in, so guessing all can be right
    scores = included + 0.01 * rng.normal(size=1000)
    result = one_run_audit(scores, included, delta=1e-5, confidence=0.95)
    assert result.correct == result.guesses == 1000
    assert result.epsilon_lower == pytest.approx(result.max_possible)
    # Bonferroni over the grid: the ceiling is below the single-test value.
    assert result.max_possible < max_lower_bound(1000, 1e-5, 0.05)


def test_guesses_take_the_top_and_bottom_scores() -> None:
    g = guesses(np.array([0.1, 5.0, -3.0, 2.0, 0.0]), k_plus=2, k_minus=1)
    assert g.tolist() == [0, 1, -1, 1, 0]
    with pytest.raises(ValueError):
        guesses(np.zeros(3), 2, 2)
    with pytest.raises(ValueError):
        epsilon_lower_bound(10, 11, 5, 0.0, 0.05)
