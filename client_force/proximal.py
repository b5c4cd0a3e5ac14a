"""FedProx's proximal term for DP-SGD, added after privatisation.

FedProx adds ``mu/2 * ||w - w_global||^2`` to each force's local objective. Under DP-SGD the
term cannot simply go into the loss: Opacus builds the update from *per-sample* gradients
(captured by layer hooks), so a loss term that depends only on the parameters would be
silently dropped. Its gradient ``mu * (w - w_global)`` does not depend on any vehicle, so it
is added to the privatised gradient just before the optimiser step: post-processing, which
leaves the DP guarantee and the ledger's accounting unchanged.

``ProximalTrainingConfig`` is a ``client_force.training.TrainingConfig`` whose optimiser does
that; ``train_round`` uses it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from client_force.training import TrainingConfig


@dataclass(frozen=True)
class ProximalTrainingConfig(TrainingConfig):
    """``TrainingConfig`` whose optimiser adds ``mu * (w - w_global)`` to each gradient."""

    proximal_mu: float = 0.0
    global_params: Sequence[torch.Tensor] = field(default=(), compare=False, repr=False)

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The base optimiser, with the proximal gradient added at every step."""
        optimizer = super().make_optimizer(params)
        if self.proximal_mu == 0.0:
            return optimizer
        if len(self.global_params) != len(params):
            raise ValueError(
                f"proximal term: {len(self.global_params)} global arrays for "
                f"{len(params)} parameters"
            )
        anchors = [g.detach().clone() for g in self.global_params]
        mu = float(self.proximal_mu)
        base_step = optimizer.step

        def step(closure: Any = None) -> Any:
            with torch.no_grad():
                for p, anchor in zip(params, anchors, strict=True):
                    if p.grad is not None:
                        p.grad.add_(p.detach() - anchor, alpha=mu)
            return base_step(closure)

        optimizer.step = step  # type: ignore[method-assign]
        return optimizer


def proximal_training(base: TrainingConfig, model: nn.Module, proximal_mu: float) -> TrainingConfig:
    """``base`` unchanged if ``mu`` is 0, else a copy anchored at ``model``'s current weights."""
    if proximal_mu <= 0.0:
        return base
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    return ProximalTrainingConfig(
        **fields,
        proximal_mu=float(proximal_mu),
        global_params=tuple(
            p.detach().clone()
            for name, p in model.named_parameters()
            if not (base.frozen and name.startswith(base.frozen))
        ),
    )
