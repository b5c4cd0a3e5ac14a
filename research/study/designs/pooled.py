"""``pooled``: every force's training vehicles in one NON-PRIVATE model (not deployable)."""

from __future__ import annotations

import numpy as np

from research.study.designs.registry import Design, DesignContext, register_design


def train(ctx: DesignContext) -> list[np.ndarray]:
    """The national-pool counterfactual, trained in the runner's process."""
    force_cls = type(ctx.nodes[0])
    return force_cls.train_pooled(ctx.nodes, ctx.settings)


DESIGN = register_design(
    Design(
        "pooled",
        train,
        colour="#7570b3",
        private=False,
        deployable=False,
        description="a NON-PRIVATE national pool: the counterfactual, not deployable",
    )
)
