"""The built-in membership attacks, registered by name (see ``research.audit.registry``)."""

from __future__ import annotations

import numpy as np

from research.audit.attacks import lira_scores, loss_scores
from research.audit.registry import AttackInputs, register_attack


@register_attack("loss-threshold", line_style=":")
def loss_threshold(inputs: AttackInputs) -> np.ndarray:
    """Minus each vehicle's loss under the model (Yeom et al. 2018)."""
    return loss_scores(inputs.logits, inputs.labels)


def _lira(inputs: AttackInputs, online: bool) -> np.ndarray:
    if inputs.shadow_phi is None or inputs.shadow_in is None:
        raise ValueError("LiRA needs shadow models")
    return lira_scores(inputs.phi, inputs.shadow_phi, inputs.shadow_in, online=online)


@register_attack("lira-online", needs_shadows=True, line_style="-")
def lira_online(inputs: AttackInputs) -> np.ndarray:
    """LiRA, likelihood ratio of IN against OUT shadows (Carlini et al. 2022)."""
    return _lira(inputs, online=True)


@register_attack("lira-offline", needs_shadows=True, line_style="--")
def lira_offline(inputs: AttackInputs) -> np.ndarray:
    """LiRA, one-sided test against OUT shadows only."""
    return _lira(inputs, online=False)
