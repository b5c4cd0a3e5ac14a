"""The one-run epsilon lower bound of Steinke, Nasr and Jagielski (NeurIPS 2023).

"Privacy Auditing with One (1) Training Run": put ``m`` canaries in the training data, each
included independently with probability 1/2 (``S_i`` in {-1, +1}); after the one training run,
the auditor looks at what was released and guesses, for ``r`` of the canaries, whether each was
included (+1) or not (-1), abstaining on the other ``m - r``. Let ``v`` be the number of
correct guesses. Their main theorem: if training is epsilon-DP, ``v`` is stochastically
dominated by ``Binomial(r, q)`` with ``q = e^eps / (1 + e^eps)`` -- the accuracy of
randomised response at epsilon -- however the guesses were made from the output. For
(epsilon, delta)-DP a delta term is added (their Theorem on approximate DP)::

    P[v' >= v] <= P[B >= v] + 2 m delta * max_{i = 1..v} P[v - i <= B < v] / i,   B ~ Bin(r, q)

So the audit's p-value for the hypothesis "training is (eps, delta)-DP" is the right-hand
side, and the one-run lower bound at confidence ``1 - beta`` is the largest epsilon whose
p-value is still at most ``beta``: any smaller epsilon is rejected at level ``beta``.

Unlike the Clopper-Pearson bound of ``research.audit.bounds`` this needs no independence
between canaries (their outcomes come from one run): the theorem is proved for exactly this
setting. Its price is a ceiling: with ``r`` guesses all correct the bound is about
``log(r / log(1/beta))``, e.g. 5.8 for 1,000 correct guesses at 95 % confidence. An audit can
only test a claim below that ceiling (:func:`max_lower_bound`).

Abstention: the auditor guesses "in" on the ``k_plus`` canaries with the highest scores and
"out" on the ``k_minus`` lowest, and abstains on the rest. The counts must be fixed before
looking at the result; trying several and keeping the best is a multiple comparison, so
:func:`one_run_audit` tries a fixed grid and divides ``beta`` by the grid's size (Bonferroni),
which keeps the reported bound valid at the stated confidence. Reporting the best of several
score sets of the same run (the canary audit's white-box and final-model views) is one more
multiple comparison: ``views`` divides ``beta`` once more.

This module is written from the paper's statement of the theorem; it shares no code with the
authors' or anyone else's implementation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

DEFAULT_GUESS_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Share of the canaries guessed on (half "in", half "out"); the rest abstain."""

_EPS_CEILING = 60.0  # e^60 / (1 + e^60) rounds to 1 in float64: no finite bound beyond this


def _check_counts(m: int, r: int, v: int) -> None:
    if not (isinstance(m, int | np.integer) and isinstance(r, int | np.integer)):
        raise TypeError("m and r must be whole numbers")
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least ``v`` of ``r`` guesses correct] if training were (epsilon, delta)-DP.

    ``m`` is the number of canaries (the delta term scales with it). Clipped to 1.
    """
    _check_counts(m, r, v)
    if epsilon < 0 or not 0.0 <= delta <= 1.0:
        raise ValueError(f"need epsilon >= 0 and 0 <= delta <= 1; got {epsilon}, {delta}")
    if v == 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(v - 1, r, q))  # P[B >= v]
    if delta == 0.0:
        return min(tail, 1.0)
    # partial[i - 1] = P[v - i <= B < v] for i = 1..v: the pmf summed downwards from v - 1.
    partial = np.cumsum(binom.pmf(np.arange(v - 1, -1, -1), r, q))
    worst = float(np.max(partial / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * worst, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, beta: float) -> float:
    """The largest epsilon whose p-value for ``v`` correct of ``r`` is at most ``beta``.

    0 when even epsilon = 0 cannot be rejected (the guesses are no better than a coin). Found
    by bisection to 1e-6; the p-value increases with epsilon.
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1); got {beta}")
    if p_value(m, r, v, 0.0, delta) > beta:
        return 0.0
    low, high = 0.0, 1.0
    while high < _EPS_CEILING and p_value(m, r, v, high, delta) <= beta:
        low, high = high, high * 2.0
    if high >= _EPS_CEILING and p_value(m, r, v, _EPS_CEILING, delta) <= beta:
        return _EPS_CEILING
    while high - low > 1e-6:
        mid = (low + high) / 2.0
        if p_value(m, r, v, mid, delta) <= beta:
            low = mid
        else:
            high = mid
    return low


def max_lower_bound(m: int, delta: float, beta: float) -> float:
    """The highest bound ``m`` canaries can give: every canary guessed, every guess right."""
    return epsilon_lower_bound(m, m, m, delta, beta)


def guesses(scores: np.ndarray, k_plus: int, k_minus: int) -> np.ndarray:
    """``int8 [m]``: +1 on the ``k_plus`` highest scores, -1 on the ``k_minus`` lowest, else 0.

    Ties are broken by position (stable sort), so the result does not depend on chance.
    """
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError("canary scores contain NaN")
    m = len(s)
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > m:
        raise ValueError(f"need k_plus + k_minus <= {m} canaries; got {k_plus} + {k_minus}")
    order = np.argsort(s, kind="stable")
    out = np.zeros(m, dtype=np.int8)
    if k_minus:
        out[order[:k_minus]] = -1
    if k_plus:
        out[order[m - k_plus :]] = 1
    return out


@dataclass(frozen=True)
class OneRunBound:
    """The one-run audit of one set of canary scores."""

    canaries: int  # m
    guesses: int  # r = k_plus + k_minus at the reported abstention level
    correct: int  # v
    k_plus: int
    k_minus: int
    epsilon_lower: float  # valid at ``confidence`` after the Bonferroni correction below
    confidence: float
    delta: float
    grid_size: int  # tests sharing ``1 - confidence``: abstention levels x views
    max_possible: float  # the ceiling these canaries allow at this confidence

    @property
    def accuracy(self) -> float:
        """Share of the guesses that were right (0.5 = a coin)."""
        return self.correct / self.guesses if self.guesses else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the accuracy."""
        return {**asdict(self), "accuracy": self.accuracy}


def one_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    fractions: tuple[float, ...] = DEFAULT_GUESS_FRACTIONS,
    views: int = 1,
) -> OneRunBound:
    """Guess inclusion from ``scores`` (higher = "in") and bound epsilon at ``confidence``.

    Tries each share in ``fractions`` of the canaries (half the most confident "in", half the
    least "out"), each at ``beta = (1 - confidence) / (len(fractions) x views)``, and reports
    the best: the union bound makes the maximum valid at ``confidence``. ``views`` is the
    number of score sets of the same run whose best bound the caller reports (e.g. 2 for
    white-box and final-model); with it the best over those is valid at ``confidence`` too.
    """
    s = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(included).astype(bool)
    if s.shape != truth.shape or s.ndim != 1:
        raise ValueError(f"scores and inclusion differ in shape: {s.shape} vs {truth.shape}")
    m = len(s)
    if m < 2:
        raise ValueError("need at least two canaries")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise ValueError("guess fractions must be in (0, 1]")
    if views < 1:
        raise ValueError(f"views must be >= 1; got {views}")
    tests = len(fractions) * int(views)
    beta = (1.0 - confidence) / tests
    sign = np.where(truth, 1, -1)
    best: OneRunBound | None = None
    for fraction in fractions:
        r = max(2, round(fraction * m))
        k_plus, k_minus = r - r // 2, r // 2
        g = guesses(s, k_plus, k_minus)
        v = int(np.sum(g * sign == 1))
        eps = epsilon_lower_bound(m, k_plus + k_minus, v, delta, beta)
        candidate = OneRunBound(
            canaries=m,
            guesses=k_plus + k_minus,
            correct=v,
            k_plus=k_plus,
            k_minus=k_minus,
            epsilon_lower=eps,
            confidence=confidence,
            delta=delta,
            grid_size=tests,
            max_possible=max_lower_bound(m, delta, beta),
        )
        if best is None or (candidate.epsilon_lower, candidate.accuracy) > (
            best.epsilon_lower,
            best.accuracy,
        ):
            best = candidate
    assert best is not None
    return best
