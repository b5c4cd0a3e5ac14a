"""Evaluation that respects base rates: PR-AUC, precision at a fixed recall, alert burden.

With one positive in hundreds of vehicles, ROC-AUC and accuracy flatter any model. These
metrics answer the operational question instead: if the force acts on the alerts needed to
catch half of the offenders, how many alerts is that per true positive, and how many innocent
vehicles are flagged per million?

TPR and FPR at a threshold do not depend on prevalence, so the figures are re-weighted to a
target prevalence pi (default 1 in 400, the rate the context documents cite for vans):
``precision(pi) = TPR pi / (TPR pi + FPR (1 - pi))``; false alerts per million vehicles
``= FPR (1 - pi) 1e6``; vehicles processed per true positive found ``= 1 / (TPR pi)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_TARGET_PREVALENCE = 1.0 / 400.0


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, cumulative TP, cumulative FP) at each distinct score."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = np.cumsum(1.0 - y_sorted)[last_of_tie]
    return s_sorted[last_of_tie], tp, fp


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over distinct thresholds of (R_k - R_{k-1}) * P_k.

    Tied scores form a single operating point (no interpolation), the same definition as
    scikit-learn's ``average_precision_score``. NaN if there is no positive.
    """
    y, s = _check(labels, scores)
    positives = y.sum()
    if positives == 0:
        return math.nan
    _, tp, fp = _curve(y, s)
    precision = tp / (tp + fp)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates at one score threshold (alert if score >= threshold)."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def tpr(self) -> float:
        """Recall."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan


def operating_point_at_recall(
    labels: np.ndarray, scores: np.ndarray, recall: float
) -> OperatingPoint:
    """The highest threshold whose recall is at least ``recall`` (the fewest alerts that do).

    Raises ValueError if there is no positive.
    """
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1]; got {recall}")
    y, s = _check(labels, scores)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives == 0:
        raise ValueError("no positive example: recall is undefined")
    thresholds, tp, fp = _curve(y, s)
    k = int(np.argmax(tp / positives >= recall - 1e-12))
    return OperatingPoint(
        threshold=float(thresholds[k]),
        tp=int(tp[k]),
        fp=int(fp[k]),
        fn=positives - int(tp[k]),
        tn=negatives - int(fp[k]),
    )


def precision_at_recall(labels: np.ndarray, scores: np.ndarray, recall: float = 0.5) -> float:
    """Precision at the highest threshold that reaches ``recall`` (NaN if no positive)."""
    if np.asarray(labels).sum() == 0:
        return math.nan
    return operating_point_at_recall(labels, scores, recall).precision


@dataclass(frozen=True)
class BaseRateFigures:
    """Alert burden at the threshold reaching ``recall``, at sample and target prevalence."""

    recall: float
    threshold: float
    tpr: float
    fpr: float
    sample_prevalence: float
    sample_precision: float
    sample_alerts_per_true_positive: float
    target_prevalence: float
    target_precision: float
    target_alerts_per_true_positive: float
    false_alerts_per_million: float
    vehicles_per_true_positive: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def precision_at_prevalence(tpr: float, fpr: float, prevalence: float) -> float:
    """TPR pi / (TPR pi + FPR (1 - pi)); NaN if nothing is flagged."""
    flagged = tpr * prevalence + fpr * (1.0 - prevalence)
    return tpr * prevalence / flagged if flagged > 0 else math.nan


def base_rate_figures(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    recall: float = 0.5,
    target_prevalence: float = DEFAULT_TARGET_PREVALENCE,
) -> BaseRateFigures:
    """Alerts per true positive, false alerts per million and vehicles per hit at ``recall``."""
    if not 0.0 < target_prevalence < 1.0:
        raise ValueError(f"target_prevalence must be in (0, 1); got {target_prevalence}")
    point = operating_point_at_recall(labels, scores, recall)
    y = np.asarray(labels, dtype=np.float64)
    sample_pi = float(y.mean())
    target_precision = precision_at_prevalence(point.tpr, point.fpr, target_prevalence)

    def inverse(x: float) -> float:
        return 1.0 / x if x > 0 else math.inf

    return BaseRateFigures(
        recall=recall,
        threshold=point.threshold,
        tpr=point.tpr,
        fpr=point.fpr,
        sample_prevalence=sample_pi,
        sample_precision=point.precision,
        sample_alerts_per_true_positive=inverse(point.precision),
        target_prevalence=target_prevalence,
        target_precision=target_precision,
        target_alerts_per_true_positive=inverse(target_precision),
        false_alerts_per_million=point.fpr * (1.0 - target_prevalence) * 1e6,
        vehicles_per_true_positive=inverse(point.tpr * target_prevalence),
    )


def evaluate_scores(
    labels: np.ndarray, scores: np.ndarray, *, target_prevalence: float = DEFAULT_TARGET_PREVALENCE
) -> dict[str, float]:
    """Scalar report: PR-AUC, precision at recall 0.5, prevalence and base-rate figures."""
    y = np.asarray(labels, dtype=np.float64)
    out: dict[str, float] = {
        "examples": float(len(y)),
        "positives": float(y.sum()),
        "prevalence": float(y.mean()) if len(y) else math.nan,
        "pr_auc": pr_auc(y, scores),
        "precision_at_recall_0_5": precision_at_recall(y, scores, 0.5),
    }
    if y.sum() > 0:
        fig = base_rate_figures(y, scores, recall=0.5, target_prevalence=target_prevalence)
        out["fpr_at_recall_0_5"] = fig.fpr
        out["alerts_per_true_positive_at_target_prevalence"] = fig.target_alerts_per_true_positive
        out["false_alerts_per_million_at_target_prevalence"] = fig.false_alerts_per_million
    return out


# ----------------------------------------------------------------------------- uncertainty
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95
_BOOTSTRAP_CHUNK_CELLS = 4_000_000  # resamples x vehicles per chunk (bounds memory)


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval of one figure (NaN bounds when it is undefined)."""

    low: float
    high: float
    resamples: int
    level: float

    def excludes(self, value: float) -> bool:
        """Whether the whole interval lies above ``value`` (e.g. chance)."""
        return math.isfinite(self.low) and self.low > value


def _sorted_positive_view(
    y: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score order (highest first), the positives' places in it, and for each positive the
    last place of its tie group and how many positives come up to that place."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    group_end = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s) - 1]
    end_of = np.repeat(group_end, np.diff(np.r_[-1, group_end]))  # each place -> group end
    pos_places = np.flatnonzero(y_sorted == 1.0)
    ends = end_of[pos_places]
    positives_upto = np.searchsorted(pos_places, ends, side="right") - 1
    return order, pos_places, ends, positives_upto


def _resample_weights(y: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) draw counts of a bootstrap stratified by class.

    Positives are resampled among positives and negatives among negatives, so every resample
    keeps the held-out prevalence, and with it the chance level the figure is read against.
    """
    n = len(y)
    offsets = (np.arange(resamples) * n)[:, None]
    counts = np.zeros(resamples * n)
    for members in (np.flatnonzero(y == 1.0), np.flatnonzero(y == 0.0)):
        if len(members) == 0:
            continue
        draws = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        counts += np.bincount((draws + offsets).ravel(), minlength=resamples * n)
    return counts.reshape(resamples, n)


def bootstrap_pr_figures(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    recall: float = 0.5,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> tuple[BootstrapInterval, BootstrapInterval]:
    """Bootstrap intervals of PR-AUC and of precision at ``recall`` over held-out vehicles.

    Vectorised: every resample is a row of draw counts, and PR-AUC and the operating point are
    computed for all rows at once from one sort of the scores. The resampling is stratified by
    class (see ``_resample_weights``); ``seed`` makes it reproducible. Both bounds are NaN when
    there is no positive or no negative.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    y, s = _check(labels, scores)
    positives = float(y.sum())
    nan = BootstrapInterval(math.nan, math.nan, 0, level)
    if positives == 0 or positives == len(y) or resamples < 1:
        return nan, nan
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // max(len(y), 1))
    order, pos_places, ends, upto = _sorted_positive_view(y, s)
    aps, precisions = [], []
    for start in range(0, resamples, chunk):
        weights = _resample_weights(y, min(chunk, resamples - start), rng)[:, order]
        # Only places holding a positive change recall: evaluate there (at the end of their
        # tie group, where the operating point is), so just one dense cumulative sum remains.
        flagged = np.cumsum(weights, axis=1)[:, ends]
        drawn = weights[:, pos_places]
        tp = np.cumsum(drawn, axis=1)[:, upto]
        precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
        aps.append(np.sum(drawn * precision, axis=1) / positives)
        first = np.argmax(tp / positives >= recall - 1e-12, axis=1)
        precisions.append(precision[np.arange(len(tp)), first])
    tail = (1.0 - level) / 2.0 * 100.0

    def interval(values: list[np.ndarray]) -> BootstrapInterval:
        v = np.concatenate(values)
        low, high = np.percentile(v, [tail, 100.0 - tail])
        return BootstrapInterval(float(low), float(high), len(v), level)

    return interval(aps), interval(precisions)


def random_ranking_pr_auc(
    positives: int, vehicles: int, *, draws: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """PR-AUC of ``draws`` random rankings of ``vehicles`` with ``positives`` positives.

    The null distribution a ranking is tested against. Its mean is above the prevalence when
    positives are few (the first positive found early pulls it up): with 156 positives in
    5,475 vehicles it is 0.0300 against a prevalence of 0.0285, and its 97.5th percentile
    0.036. Vectorised: each row draws the positives' ranks without replacement.
    """
    if not 0 < positives < vehicles:
        return np.full(0, math.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // vehicles)
    out = []
    k = np.arange(1, positives + 1, dtype=np.float64)
    for start in range(0, draws, chunk):
        rows = min(chunk, draws - start)
        keys = rng.random((rows, vehicles))
        ranks = np.sort(np.argpartition(keys, positives - 1, axis=1)[:, :positives], axis=1)
        out.append(np.mean(k / (ranks + 1.0), axis=1))
    return np.concatenate(out)
