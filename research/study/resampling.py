"""Bootstrap intervals over held-out vehicles: PR-AUC against chance, and paired differences.

Chance for PR-AUC is the held-out prevalence: a random ranking's expected average precision.
The interval is a percentile bootstrap over held-out vehicles, resampled with replacement
*within each force and class* (stratified), so every replicate keeps each force's positives
and negatives, and with them the chance level the figure is read against (as the study's
metrics do, ``federation.metrics.bootstrap_pr_figures``). A figure whose interval includes
chance shows no skill.

The prevalence is chance only for many positives. With P positives among N held-out
vehicles a random ranking's *expected* average precision is

    E[AP] = (P - 1) / (N - 1) + (N - P) H_N / (N (N - 1)),   H_N = 1 + 1/2 + ... + 1/N

(:func:`random_ranking_pr_auc`), which is about twice the prevalence at 5 positives in 300 and
still 9% above it at 75 in 1,500. Read against the prevalence, a random ranking's percentile
interval lies wholly above "chance" in roughly one run in five (measured: 9 of 40 seeds at 75
positives); against E[AP], in about one in forty. The verdicts here therefore test the
interval against E[AP] (``chance_pr_auc``), while lift stays PR-AUC / prevalence.

A *paired* difference compares two models scored on the same held-out vehicles (the same
split, the same order): each replicate resamples vehicles once and scores both models on that
one resample, so the variation both models share (which vehicles happened to be held out)
cancels. This is what makes a difference between designs of one run, or between two runs of
the same split, readable when each interval alone overlaps the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.metrics import pr_auc

DEFAULT_REPLICATES = 1000
DEFAULT_LEVEL = 0.95
NO_SKILL = "no skill"
SKILL = "beats chance"
FEW_POSITIVES = 20
"""Below about this many held-out positives a PR-AUC rests on too few cases to read."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval (NaN when undefined)."""

    estimate: float
    low: float
    high: float

    def excludes(self, value: float) -> bool:
        """Whether the whole interval lies strictly above or below ``value``."""
        return bool(self.low > value or self.high < value)


def _strata_indices(strata: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(strata == s) for s in np.unique(strata)]


def resample_indices(
    strata: np.ndarray, replicates: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``replicates`` index vectors, each resampling every stratum with replacement."""
    groups = _strata_indices(np.asarray(strata))
    return [
        np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        for _ in range(replicates)
    ]


class _SortedScores:
    """One model's scores sorted once, so each bootstrap replicate costs O(n), not a sort.

    A replicate is a vector of counts (how often each held-out vehicle was drawn); average
    precision over the replicate equals ``federation.metrics.pr_auc`` of the resampled data,
    with drawn copies of a vehicle tied at its score, as they would be there.
    """

    def __init__(self, scores: np.ndarray, truth: np.ndarray) -> None:
        self.order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        sorted_scores = np.asarray(scores, dtype=np.float64)[self.order]
        self.y = np.asarray(truth, dtype=np.float64)[self.order]
        self.last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]

    def average_precision(self, counts: np.ndarray) -> float:
        w = counts[self.order].astype(np.float64)
        positives = float(np.dot(w, self.y))
        if positives == 0:
            return math.nan
        tp = np.cumsum(w * self.y)[self.last_of_tie]
        drawn = np.cumsum(w)[self.last_of_tie]
        keep = drawn > 0
        tp, drawn = tp[keep], drawn[keep]
        recall = tp / positives
        return float(np.sum(np.diff(np.r_[0.0, recall]) * (tp / drawn)))


def _counts(strata: np.ndarray, replicates: int, rng: np.random.Generator) -> list[np.ndarray]:
    n = len(strata)
    return [np.bincount(idx, minlength=n) for idx in resample_indices(strata, replicates, rng)]


def _percentiles(values: Sequence[float], level: float) -> tuple[float, float]:
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(finite) == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _default_strata(n: int, strata: np.ndarray | None, truth: np.ndarray) -> np.ndarray:
    """Force (or one group) x class: each replicate keeps every force's positives and negatives."""
    groups = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, np.int64)
    return groups * 2 + (np.asarray(truth) > 0).astype(np.int64)


def pr_auc_interval(
    scores: np.ndarray,
    truth: np.ndarray,
    strata: np.ndarray | None = None,
    *,
    replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> tuple[Interval, Interval]:
    """(PR-AUC, lift over chance) with percentile bootstrap intervals over held-out vehicles.

    Lift is PR-AUC divided by the held-out prevalence, replicate by replicate. A replicate
    without a positive has no PR-AUC and is left out (with fewer than a handful of positives
    the interval is then wide, as it should be). NaN everywhere when there is no positive.
    """
    y = np.asarray(truth, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.sum() == 0:
        nan = Interval(math.nan, math.nan, math.nan)
        return nan, nan
    point = pr_auc(y, s)
    chance = float(y.mean())
    rng = np.random.default_rng(seed)
    model = _SortedScores(s, y)
    aucs, lifts = [], []
    for counts in _counts(_default_strata(len(y), strata, y), replicates, rng):
        auc = model.average_precision(counts)
        if math.isnan(auc):
            continue
        aucs.append(auc)
        lifts.append(auc / (float(np.dot(counts, y)) / len(y)))
    return (
        Interval(point, *_percentiles(aucs, level)),
        Interval(point / chance, *_percentiles(lifts, level)),
    )


def paired_difference(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    truth: np.ndarray,
    strata: np.ndarray | None = None,
    *,
    replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Interval:
    """PR-AUC of ``a`` minus PR-AUC of ``b`` on the same held-out vehicles, paired bootstrap."""
    y = np.asarray(truth, dtype=np.float64)
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if not len(a) == len(b) == len(y):
        raise ValueError(
            f"a paired difference needs the same held-out vehicles: {len(a)}, {len(b)} "
            f"and {len(y)} scores/labels"
        )
    if y.sum() == 0:
        return Interval(math.nan, math.nan, math.nan)
    point = pr_auc(y, a) - pr_auc(y, b)
    rng = np.random.default_rng(seed)
    model_a, model_b = _SortedScores(a, y), _SortedScores(b, y)
    diffs = []
    for counts in _counts(_default_strata(len(y), strata, y), replicates, rng):
        if np.dot(counts, y) == 0:
            continue
        diffs.append(model_a.average_precision(counts) - model_b.average_precision(counts))
    return Interval(point, *_percentiles(diffs, level))


def unpaired_difference(
    a: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    b: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    *,
    replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Interval:
    """PR-AUC difference of two models on *different* held-out sets: independent resamples.

    Each of ``a`` and ``b`` is ``(scores, truth, strata)``. Wider than a paired interval,
    because nothing the two evaluations share cancels.
    """
    (sa, ya, ta), (sb, yb, tb) = a, b
    ya, yb = np.asarray(ya, np.float64), np.asarray(yb, np.float64)
    sa, sb = np.asarray(sa, np.float64), np.asarray(sb, np.float64)
    if ya.sum() == 0 or yb.sum() == 0:
        return Interval(math.nan, math.nan, math.nan)
    point = pr_auc(ya, sa) - pr_auc(yb, sb)
    rng = np.random.default_rng(seed)
    model_a, model_b = _SortedScores(sa, ya), _SortedScores(sb, yb)
    ca = _counts(_default_strata(len(ya), ta, ya), replicates, rng)
    cb = _counts(_default_strata(len(yb), tb, yb), replicates, rng)
    diffs = [
        model_a.average_precision(i) - model_b.average_precision(j)
        for i, j in zip(ca, cb, strict=True)
        if np.dot(i, ya) > 0 and np.dot(j, yb) > 0
    ]
    return Interval(point, *_percentiles(diffs, level))


def random_ranking_pr_auc(positives: int, vehicles: int) -> float:
    """Expected PR-AUC (average precision) of a random ranking of ``vehicles`` with
    ``positives`` among them: the chance level PR-AUC is read against (NaN if undefined)."""
    p, n = int(positives), int(vehicles)
    if p <= 0 or n <= 0:
        return math.nan
    if n == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    return (p - 1) / (n - 1) + (n - p) * harmonic / (n * (n - 1))


def skill_label(interval: Interval, chance: float) -> str:
    """``"no skill"`` unless the whole PR-AUC interval lies above chance."""
    if not (math.isfinite(interval.low) and math.isfinite(chance)):
        return NO_SKILL
    return SKILL if interval.low > chance else NO_SKILL
