"""Empirical lower bounds on epsilon from a membership attack, with Clopper-Pearson intervals.

If training is (epsilon, delta)-DP for one vehicle, every membership test on that vehicle
satisfies (Kairouz et al. 2015; Jagielski et al. 2020; Nasr et al. 2021)::

    TPR <= e^eps FPR + delta        TNR <= e^eps FNR + delta
    FPR <= e^eps TPR + delta        FNR <= e^eps TNR + delta

(the last two because DP is symmetric between a dataset with and without the vehicle). An
attack's measured rates therefore imply ``eps >= log((TPR - delta) / FPR)`` and the like. The
rates are estimates, so each is replaced by the end of its Clopper-Pearson interval that makes
the bound conservative. With ``confidence`` c, each of TPR and FPR gets a two-sided exact
interval at level 1 - (1 - c)/2, so both hold at once with probability >= c (union bound), and
then every one of the four inequalities is valid; :attr:`EpsilonBound.lower` is a c-level lower
confidence bound on the epsilon this attack demonstrates, and ``[lower, upper]`` a c-level
interval for the epsilon implied by the attack's true rates at that threshold.

Picking the best of many thresholds on the same data would inflate the bound. So
:func:`empirical_epsilon` chooses the threshold on a random half of the audited examples and
evaluates it on the other half only.

Caveat, stated in the audit output: the examples are the vehicles of one training run, so their
outcomes are not independent trials as Clopper-Pearson assumes; this is the usual practice of
one-run audits, not a proof (Steinke, Nasr and Jagielski, "Privacy Auditing with One (1)
Training Run", NeurIPS 2023, give a bound that is rigorous in that setting).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta

from research.audit.roc import roc_curve


def clopper_pearson(
    successes: np.ndarray | int, trials: np.ndarray | int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided binomial interval ``(low, high)`` for ``successes`` out of ``trials``.

    Vectorised over arrays. ``low`` is 0 when there are no successes and ``high`` is 1 when
    every trial succeeded (the exact interval's ends at the boundary).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n) or np.any(k != np.round(k)):
        raise ValueError("need whole numbers 0 <= successes <= trials and trials >= 1")
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return low, high


def _log_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """log(num / den) where both are positive; +inf where den <= 0 < num; -inf where num <= 0."""
    num, den = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    )
    out = np.full(num.shape, -np.inf)
    finite = (num > 0) & (den > 0)
    out[finite] = np.log(num[finite] / den[finite])
    out[(num > 0) & (den <= 0)] = np.inf
    return out


def epsilon_from_rates(
    tpr_low: np.ndarray,
    fpr_low: np.ndarray,
    tpr_high: np.ndarray,
    fpr_high: np.ndarray,
    delta: float,
) -> np.ndarray:
    """The largest epsilon the four DP inequalities force, clipped at 0 (vectorised).

    The inequalities of an attack that flags members (TPR above FPR) are evaluated at
    ``(tpr_low, fpr_high)``, those of the reversed attack at ``(fpr_low, tpr_high)``. Pass the
    measured rates as both ends for a plug-in estimate, the interval ends for a lower
    confidence bound, or the interval ends swapped for the upper end of the interval.
    """
    t_lo, f_lo = np.asarray(tpr_low, np.float64), np.asarray(fpr_low, np.float64)
    t_hi, f_hi = np.asarray(tpr_high, np.float64), np.asarray(fpr_high, np.float64)
    candidates = np.stack(
        np.broadcast_arrays(
            _log_ratio(t_lo - delta, f_hi),  # TPR <= e^eps FPR + delta
            _log_ratio((1 - f_hi) - delta, 1 - t_lo),  # TNR <= e^eps FNR + delta
            _log_ratio(f_lo - delta, t_hi),  # FPR <= e^eps TPR + delta
            _log_ratio((1 - t_hi) - delta, 1 - f_lo),  # FNR <= e^eps TNR + delta
        )
    )
    return np.maximum(candidates.max(axis=0), 0.0)


@dataclass(frozen=True)
class EpsilonBound:
    """The epsilon an attack demonstrates at one threshold, with its confidence interval."""

    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    delta: float
    confidence: float
    estimate: float  # plug-in value from the (Jeffreys-smoothed) measured rates
    lower: float  # c-level lower confidence bound (the "empirical epsilon lower bound")
    upper: float  # upper end of the c-level interval (may be inf)
    method: str = "clopper-pearson, threshold chosen on a disjoint half"

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready (infinities as the string "inf")."""
        return {
            k: ("inf" if isinstance(v, float) and math.isinf(v) else v)
            for k, v in asdict(self).items()
        }


def epsilon_bounds_at_counts(
    tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray, delta: float, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, lower, upper) epsilon at confusion counts (vectorised over thresholds)."""
    tp, fn, fp, tn = (np.asarray(a, dtype=np.int64) for a in (tp, fn, fp, tn))
    per_rate = 1.0 - (1.0 - confidence) / 2.0
    t_lo, t_hi = clopper_pearson(tp, tp + fn, per_rate)
    f_lo, f_hi = clopper_pearson(fp, fp + tn, per_rate)
    # Plug-in estimate from Jeffreys-smoothed rates ((k + 1/2) / (n + 1)), finite even when a
    # count is 0 (the raw plug-in would then be infinite whatever the sample size).
    tpr, fpr = (tp + 0.5) / (tp + fn + 1.0), (fp + 0.5) / (fp + tn + 1.0)
    estimate = epsilon_from_rates(tpr, fpr, tpr, fpr, delta)
    lower = epsilon_from_rates(t_lo, f_lo, t_hi, f_hi, delta)
    upper = epsilon_from_rates(t_hi, f_hi, t_lo, f_lo, delta)
    return estimate, lower, upper


def epsilon_at_threshold(
    scores: np.ndarray,
    is_member: np.ndarray,
    threshold: float,
    delta: float,
    confidence: float = 0.95,
) -> EpsilonBound:
    """The bound for the fixed rule "member iff score >= ``threshold``"."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_member).astype(bool)
    flagged = s >= threshold
    tp, fn = int((flagged & y).sum()), int((~flagged & y).sum())
    fp, tn = int((flagged & ~y).sum()), int((~flagged & ~y).sum())
    if tp + fn == 0 or fp + tn == 0:
        raise ValueError("need at least one member and one non-member to bound epsilon")
    est, low, high = epsilon_bounds_at_counts(tp, fn, fp, tn, delta, confidence)
    return EpsilonBound(
        threshold=float(threshold),
        tp=tp,
        fn=fn,
        fp=fp,
        tn=tn,
        delta=float(delta),
        confidence=float(confidence),
        estimate=float(est),
        lower=float(low),
        upper=float(high),
    )


def choose_threshold(
    scores: np.ndarray, is_member: np.ndarray, delta: float, confidence: float
) -> float:
    """The threshold whose Clopper-Pearson lower bound on epsilon is largest on these examples.

    Ties go to the larger plug-in estimate, then to the higher threshold.
    """
    curve = roc_curve(scores, is_member)
    tp, fp = curve.tp, curve.fp
    fn, tn = curve.n_members - tp, curve.n_nonmembers - fp
    est, low, _ = epsilon_bounds_at_counts(tp, fn, fp, tn, delta, confidence)
    best = np.lexsort((-np.arange(len(low)), est, low))[-1]
    threshold = curve.thresholds[best]
    return float(threshold) if np.isfinite(threshold) else float(np.max(scores)) + 1.0


def split_halves(is_member: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index sets, each with half of the members and half of the non-members."""
    y = np.asarray(is_member).astype(bool)
    rng = np.random.default_rng(seed)
    first, second = [], []
    for group in (np.flatnonzero(y), np.flatnonzero(~y)):
        shuffled = rng.permutation(group)
        cut = len(shuffled) // 2
        first.append(shuffled[:cut])
        second.append(shuffled[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def empirical_epsilon(
    scores: np.ndarray,
    is_member: np.ndarray,
    delta: float,
    confidence: float = 0.95,
    seed: int = 0,
) -> EpsilonBound:
    """Epsilon demonstrated by an attack's ``scores``: threshold from one half, bound on the other.

    Needs at least two members and two non-members (one of each per half).
    """
    y = np.asarray(is_member).astype(bool)
    if y.sum() < 2 or (~y).sum() < 2:
        raise ValueError("need at least two members and two non-members to bound epsilon")
    s = np.asarray(scores, dtype=np.float64)
    select, evaluate = split_halves(y, seed)
    threshold = choose_threshold(s[select], y[select], delta, confidence)
    return epsilon_at_threshold(s[evaluate], y[evaluate], threshold, delta, confidence)
