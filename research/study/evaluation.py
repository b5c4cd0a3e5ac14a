"""Base-rate-aware evaluation of a design's scores, per force and across forces.

At a prevalence of 1 in 400, a detector that looks accurate can still bury every true alert
under false ones. Every row therefore carries, besides PR-AUC and precision at a fixed recall,
the alert burden at that recall: alerts per true positive and false alerts per million
vehicles, at the scenario's prevalence and re-weighted to a realistic one, and the number of
vehicles processed per true positive found (compare live facial recognition: 144,366 faces
scanned for 8 arrests). TPR and FPR do not depend on prevalence, so re-weighting is exact:
precision at prevalence pi is TPR pi / (TPR pi + FPR (1 - pi)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from federation.metrics import operating_point_at_recall, pr_auc, precision_at_prevalence

ALL_FORCES = "all forces"


@dataclass(frozen=True)
class ForceScores:
    """Scores of one force's held-out vehicles, with their truth labels (no identifiers)."""

    force: str
    scores: np.ndarray
    truth: np.ndarray


def _inverse(x: float) -> float:
    return 1.0 / x if x > 0 else math.inf


def score_row(
    scores: np.ndarray, truth: np.ndarray, recall: float, realistic_prevalence: float
) -> dict[str, float]:
    """The scalar figures for one set of scores (NaN where no positive makes them undefined)."""
    y = np.asarray(truth, dtype=np.float64)
    n, positives = len(y), int(y.sum())
    row: dict[str, float] = {
        "vehicles": n,
        "positives": positives,
        "scenario_prevalence": positives / n if n else math.nan,
        "pr_auc": pr_auc(y, scores) if positives else math.nan,
    }
    if positives == 0 or positives == n:
        for key in (
            "precision_at_recall",
            "tpr",
            "fpr",
            "alerts_per_tp_scenario",
            "false_alerts_per_million_scenario",
            "vehicles_per_tp_scenario",
            "precision_realistic",
            "alerts_per_tp_realistic",
            "false_alerts_per_million_realistic",
            "vehicles_per_tp_realistic",
        ):
            row[key] = math.nan
        return row
    point = operating_point_at_recall(y, scores, recall)
    tpr, fpr = point.tpr, point.fpr
    pi = row["scenario_prevalence"]
    realistic_precision = precision_at_prevalence(tpr, fpr, realistic_prevalence)
    row.update(
        precision_at_recall=point.precision,
        tpr=tpr,
        fpr=fpr,
        alerts_per_tp_scenario=_inverse(point.precision),
        false_alerts_per_million_scenario=fpr * (1 - pi) * 1e6,
        vehicles_per_tp_scenario=_inverse(tpr * pi),
        precision_realistic=realistic_precision,
        alerts_per_tp_realistic=_inverse(realistic_precision),
        false_alerts_per_million_realistic=fpr * (1 - realistic_prevalence) * 1e6,
        vehicles_per_tp_realistic=_inverse(tpr * realistic_prevalence),
    )
    return row


def evaluate_design(
    per_force: list[ForceScores], recall: float, realistic_prevalence: float
) -> list[dict[str, object]]:
    """One row per force and one for all forces' held-out vehicles together."""
    rows: list[dict[str, object]] = [
        {"force": f.force, **score_row(f.scores, f.truth, recall, realistic_prevalence)}
        for f in per_force
    ]
    if per_force:
        scores = np.concatenate([f.scores for f in per_force])
        truth = np.concatenate([f.truth for f in per_force])
        rows.append({"force": ALL_FORCES, **score_row(scores, truth, recall, realistic_prevalence)})
    return rows


def pr_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every distinct threshold, highest threshold first."""
    y = np.asarray(truth, dtype=np.float64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s, y = np.asarray(scores)[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    positives = max(y.sum(), 1.0)
    return tp / (tp + fp), tp / positives
