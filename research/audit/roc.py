"""ROC curves of membership scores: AUC and TPR at a fixed (low) false-positive rate.

Convention throughout ``research.audit``: a *higher* score means "more likely a member", and
``is_member`` is 1 for members (vehicles the model was trained on), 0 for non-members. Tied
scores form a single operating point, so no result depends on the order of tied examples.

Low-FPR figures follow Carlini et al., "Membership Inference Attacks From First Principles"
(IEEE S&P 2022): an attack that identifies a few members with near certainty matters more than
its average-case AUC. With ``n`` non-members the smallest non-zero FPR is ``1/n``; below that
resolution only FPR = 0 can be certified, so :func:`tpr_at_fpr` reports the TPR at FPR = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(is_member).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and membership differ in length: {s.size} vs {y.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("membership labels must be 0/1 (or bool)")
    if np.isnan(s).any():
        raise ValueError("membership scores contain NaN")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("an ROC needs at least one member and one non-member")
    return s, y


@dataclass(frozen=True)
class RocCurve:
    """Operating points from the highest threshold down (``fpr``/``tpr`` start at 0).

    ``thresholds[i]`` flags as members the examples with score >= thresholds[i]; the first
    point (threshold +inf) flags none. ``tp``/``fp`` are the counts behind each rate.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_members: int
    n_nonmembers: int

    @property
    def auc(self) -> float:
        """Area under the curve (trapezoidal; ties count one half, as Mann-Whitney U)."""
        return float(np.trapezoid(self.tpr, self.fpr))

    def tpr_at_fpr(self, max_fpr: float) -> float:
        """The highest TPR among operating points with FPR <= ``max_fpr``."""
        if not 0.0 <= max_fpr <= 1.0:
            raise ValueError(f"max_fpr must be in [0, 1]; got {max_fpr}")
        ok = self.fpr <= max_fpr + 1e-15
        return float(self.tpr[ok].max())

    def downsample(self, points: int = 200) -> dict[str, list[float]]:
        """At most ``points`` points for plots and JSON (always keeps both ends)."""
        n = len(self.fpr)
        if n <= points:
            idx = np.arange(n)
        else:
            idx = np.unique(np.r_[np.linspace(0, n - 1, points).round().astype(int), n - 1])
        return {"fpr": self.fpr[idx].tolist(), "tpr": self.tpr[idx].tolist()}


def roc_curve(scores: np.ndarray, is_member: np.ndarray) -> RocCurve:
    """The ROC curve of membership ``scores`` against the truth ``is_member``."""
    s, y = _check(scores, is_member)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.r_[0, np.cumsum(y_sorted)[last_of_tie]].astype(np.int64)
    fp = np.r_[0, np.cumsum(~y_sorted)[last_of_tie]].astype(np.int64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return RocCurve(
        fpr=fp / n_neg,
        tpr=tp / n_pos,
        thresholds=np.r_[np.inf, s_sorted[last_of_tie]],
        tp=tp,
        fp=fp,
        n_members=n_pos,
        n_nonmembers=n_neg,
    )


def roc_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """AUC of ``scores`` for membership (0.5 = chance)."""
    return roc_curve(scores, is_member).auc


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, max_fpr: float) -> float:
    """TPR at the best threshold whose FPR does not exceed ``max_fpr``."""
    return roc_curve(scores, is_member).tpr_at_fpr(max_fpr)
