"""Base-rate-aware evaluation of a design's scores, per force and across forces.

At a prevalence of 1 in 400, a detector that looks accurate can still bury every true alert
under false ones. Every row therefore carries, besides PR-AUC and precision at a fixed recall,
the alert burden at that recall: alerts per true positive and false alerts per million
vehicles, at the scenario's prevalence and re-weighted to a realistic one. TPR and FPR do not
depend on prevalence, so re-weighting is exact: precision at prevalence pi is
TPR pi / (TPR pi + FPR (1 - pi)).

Every figure is read against chance: a random ranking has PR-AUC and precision (at any
recall) equal to the held-out prevalence (``chance``). PR-AUC and precision carry a 95%
bootstrap interval over held-out vehicles (``federation.metrics.bootstrap_pr_figures``,
stratified by class, seeded from the study seed and the force, so every design of a study is
resampled the same way); ``lift`` is PR-AUC / chance with its interval; ``skill`` says
"no skill" when the PR-AUC interval reaches down to chance or when random rankings of the same
vehicles reach the observed PR-AUC in 5% of draws or more (``p_random``; with few positives a
random ranking's PR-AUC, ``random_pr_auc_mean``, sits above the prevalence); ``few_positives``
flags a figure resting on fewer than ``MIN_POSITIVES`` held-out positives.

There is no "vehicles processed per true positive" column: at a fixed recall r it is
1 / (prevalence x r) for every design (800 vehicles at 1 in 400 and r = 0.5), so it says
nothing about a design.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from federation.metrics import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_pr_figures,
    operating_point_at_recall,
    pr_auc,
    precision_at_prevalence,
    random_ranking_pr_auc,
)

ALL_FORCES = "all forces"
MIN_POSITIVES = 20  # below this many held-out positives a figure is flagged as fragile
NO_SKILL = "no skill"
ABOVE_CHANCE = "above chance"
UNDEFINED = "undefined"


@dataclass(frozen=True)
class ForceScores:
    """Scores of one force's held-out vehicles, with their truth labels (no identifiers)."""

    force: str
    scores: np.ndarray
    truth: np.ndarray


def _inverse(x: float) -> float:
    return 1.0 / x if x > 0 else math.inf


def bootstrap_seed(study_seed: int, force: str) -> int:
    """The bootstrap's seed for one force's (or all forces') held-out vehicles.

    It depends on the study seed and the force only, so every design and sweep point of a run
    resamples the same vehicles (paired comparisons) and a rerun gives the same interval.
    """
    return (int(study_seed) * 1_000_003 + zlib.crc32(force.encode("utf-8"))) % 2**32


SKILL_ALPHA = 0.05


def skill_label(pr_auc_low: float, chance: float, p_random: float = 0.0) -> str:
    """The verdict: "above chance" only if the PR-AUC interval clears chance *and* random
    rankings of the same vehicles reach the observed PR-AUC with probability below
    ``SKILL_ALPHA``; else "no skill" ("undefined" without an interval).

    The second test matters with few positives: a random ranking's PR-AUC is then above the
    prevalence on average, so an interval can clear the prevalence without beating random.
    """
    if not (math.isfinite(pr_auc_low) and math.isfinite(chance)):
        return UNDEFINED
    return ABOVE_CHANCE if pr_auc_low > chance and p_random < SKILL_ALPHA else NO_SKILL


def score_row(
    scores: np.ndarray,
    truth: np.ndarray,
    recall: float,
    realistic_prevalence: float,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, object]:
    """The scalar figures for one set of scores (NaN where no positive makes them undefined)."""
    y = np.asarray(truth, dtype=np.float64)
    n, positives = len(y), int(y.sum())
    chance = positives / n if n else math.nan
    row: dict[str, object] = {
        "vehicles": n,
        "positives": positives,
        "scenario_prevalence": chance,
        "chance": chance,
        "pr_auc": pr_auc(y, scores) if positives else math.nan,
    }
    if positives == 0 or positives == n:
        for key in (
            "pr_auc_low",
            "pr_auc_high",
            "random_pr_auc_mean",
            "p_random",
            "lift",
            "lift_low",
            "lift_high",
            "precision_at_recall",
            "precision_at_recall_low",
            "precision_at_recall_high",
            "tpr",
            "fpr",
            "alerts_per_tp_scenario",
            "false_alerts_per_million_scenario",
            "precision_realistic",
            "alerts_per_tp_realistic",
            "false_alerts_per_million_realistic",
        ):
            row[key] = math.nan
        row["skill"] = UNDEFINED
        row["few_positives"] = positives < MIN_POSITIVES
        return row
    ap_ci, precision_ci = bootstrap_pr_figures(
        y, scores, recall=recall, resamples=resamples, seed=seed
    )
    pr = float(row["pr_auc"])  # type: ignore[arg-type]
    null = random_ranking_pr_auc(positives, n, draws=resamples, seed=seed)
    p_random = float((1 + np.sum(null >= pr)) / (1 + len(null)))
    row.update(
        pr_auc_low=ap_ci.low,
        pr_auc_high=ap_ci.high,
        random_pr_auc_mean=float(null.mean()),
        p_random=p_random,
        lift=pr / chance,
        lift_low=ap_ci.low / chance,
        lift_high=ap_ci.high / chance,
        skill=skill_label(ap_ci.low, chance, p_random),
        few_positives=positives < MIN_POSITIVES,
    )
    point = operating_point_at_recall(y, scores, recall)
    tpr, fpr = point.tpr, point.fpr
    pi = row["scenario_prevalence"]
    realistic_precision = precision_at_prevalence(tpr, fpr, realistic_prevalence)
    row.update(
        precision_at_recall=point.precision,
        precision_at_recall_low=precision_ci.low,
        precision_at_recall_high=precision_ci.high,
        tpr=tpr,
        fpr=fpr,
        alerts_per_tp_scenario=_inverse(point.precision),
        false_alerts_per_million_scenario=fpr * (1 - pi) * 1e6,
        precision_realistic=realistic_precision,
        alerts_per_tp_realistic=_inverse(realistic_precision),
        false_alerts_per_million_realistic=fpr * (1 - realistic_prevalence) * 1e6,
    )
    return row


def evaluate_design(
    per_force: list[ForceScores],
    recall: float,
    realistic_prevalence: float,
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[dict[str, object]]:
    """One row per force and one for all forces' held-out vehicles together.

    ``seed`` is the study seed; each force's bootstrap is seeded from it and the force's name.
    """

    def row(force: str, scores: np.ndarray, truth: np.ndarray) -> dict[str, object]:
        figures = score_row(
            scores,
            truth,
            recall,
            realistic_prevalence,
            resamples=resamples,
            seed=bootstrap_seed(seed, force),
        )
        return {"force": force, **figures}

    rows = [row(f.force, f.scores, f.truth) for f in per_force]
    if per_force:
        scores = np.concatenate([f.scores for f in per_force])
        truth = np.concatenate([f.truth for f in per_force])
        rows.append(row(ALL_FORCES, scores, truth))
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


SPREAD_FIGURES = ("pr_auc", "precision_at_recall", "lift")


def with_repeat_spread(runs: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    """Repeat 0's rows, each with the spread of its figures across every repeat.

    ``runs[r]`` are the rows of repeat ``r`` (same forces, same order, same held-out split).
    Each row gains ``repeats`` and, per figure in ``SPREAD_FIGURES``, ``<figure>_repeat_mean``,
    ``_sd`` (sample standard deviation; NaN for one repeat), ``_min`` and ``_max``.
    """
    if not runs:
        return []
    out = []
    for i, first in enumerate(runs[0]):
        row = dict(first)
        row["repeats"] = len(runs)
        for figure in SPREAD_FIGURES:
            values = np.array([float(run[i][figure]) for run in runs])  # type: ignore[arg-type]
            finite = values[np.isfinite(values)]
            row[f"{figure}_repeat_mean"] = float(finite.mean()) if len(finite) else math.nan
            row[f"{figure}_repeat_sd"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
            row[f"{figure}_repeat_min"] = float(finite.min()) if len(finite) else math.nan
            row[f"{figure}_repeat_max"] = float(finite.max()) if len(finite) else math.nan
        out.append(row)
    return out
