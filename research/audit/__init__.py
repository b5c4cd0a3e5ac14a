"""Privacy audits: membership inference (loss threshold, LiRA), empirical epsilon bounds, and
the re-identification demonstration against unkeyed MD5 pseudonyms.

Pure numpy/scipy on arrays and callables: the force-side glue that loads a run's model and a
force's data is ``research.audit.membership``. Attacks are looked up by name
(``research.audit.registry``). The canary audit of the DP training path itself is
``research.audit.canary_audit`` (canaries, planting, scores and the one-run bound of Steinke,
Nasr and Jagielski in ``canaries``, ``canary_run``, ``canary_scores`` and ``one_run``).
"""

# The built-in membership attacks register themselves (research.audit.registry).
from research.audit import builtin_attacks as _builtin_attacks  # noqa: F401
from research.audit.attacks import (
    lira_scores,
    logit_confidence,
    loss_scores,
    run_shadows,
    shadow_assignment,
)
from research.audit.bounds import (
    EpsilonBound,
    clopper_pearson,
    empirical_epsilon,
    epsilon_at_threshold,
    epsilon_from_rates,
)
from research.audit.report import LOW_FPRS, AttackResult, evaluate_attack
from research.audit.roc import RocCurve, roc_auc, roc_curve, tpr_at_fpr

__all__ = [
    "LOW_FPRS",
    "AttackResult",
    "EpsilonBound",
    "RocCurve",
    "clopper_pearson",
    "empirical_epsilon",
    "epsilon_at_threshold",
    "epsilon_from_rates",
    "evaluate_attack",
    "lira_scores",
    "logit_confidence",
    "loss_scores",
    "roc_auc",
    "roc_curve",
    "run_shadows",
    "shadow_assignment",
    "tpr_at_fpr",
]
