"""One attack's verdict: AUC, TPR at 0.1% and 1% FPR, and the empirical epsilon bound.

The row is what an audit writes per (model, force, attack); it holds counts and rates only,
never a vehicle's pseudonym or score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from research.audit.bounds import EpsilonBound, empirical_epsilon
from research.audit.roc import RocCurve, roc_curve

LOW_FPRS: tuple[float, ...] = (0.001, 0.01)
"""The false-positive rates at which TPR is reported (0.1% and 1%)."""


def _fpr_key(fpr: float) -> str:
    return f"tpr_at_fpr_{fpr * 100:g}pct".replace(".", "_")


@dataclass(frozen=True)
class AttackResult:
    """How well one attack separated members from non-members."""

    attack: str
    roc: RocCurve
    epsilon: EpsilonBound
    tpr_at: dict[float, float]

    @property
    def auc(self) -> float:
        """ROC AUC (0.5 = chance)."""
        return self.roc.auc

    @property
    def fpr_resolution(self) -> float:
        """The smallest non-zero FPR these non-members can measure (1 / non-members)."""
        return 1.0 / self.roc.n_nonmembers

    def to_row(self) -> dict[str, Any]:
        """Flat figures for a CSV row (no per-vehicle values)."""
        row: dict[str, Any] = {
            "attack": self.attack,
            "members": self.roc.n_members,
            "nonmembers": self.roc.n_nonmembers,
            "auc": self.auc,
            "fpr_resolution": self.fpr_resolution,
        }
        row.update({_fpr_key(f): v for f, v in self.tpr_at.items()})
        e = self.epsilon
        row.update(
            {
                "eps_lower_bound": e.lower,
                "eps_estimate": e.estimate,
                "eps_ci_low": e.lower,
                "eps_ci_high": e.upper,
                "eps_confidence": e.confidence,
                "eps_delta": e.delta,
                "eps_threshold_tp": e.tp,
                "eps_threshold_fp": e.fp,
                "eps_eval_members": e.tp + e.fn,
                "eps_eval_nonmembers": e.fp + e.tn,
            }
        )
        return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in row.items()}


def evaluate_attack(
    attack: str,
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackResult:
    """ROC, low-FPR TPRs and the Clopper-Pearson epsilon lower bound of one attack's scores."""
    curve = roc_curve(scores, is_member)
    bound = empirical_epsilon(scores, is_member, delta, confidence=confidence, seed=seed)
    return AttackResult(
        attack=attack,
        roc=curve,
        epsilon=bound,
        tpr_at={f: curve.tpr_at_fpr(f) for f in LOW_FPRS},
    )
