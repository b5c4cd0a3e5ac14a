"""``pooled``: every force's training vehicles in one NON-PRIVATE model (not deployable)."""

from __future__ import annotations

import numpy as np

from research.study.designs.registry import Design, DesignContext, register_design


def train(ctx: DesignContext) -> list[np.ndarray]:
    """The national-pool counterfactual, trained in the runner's process."""
    force_cls = type(ctx.nodes[0])
    if ctx.progress is None:
        return force_cls.train_pooled(ctx.nodes, ctx.settings)
    task = ctx.progress.add_task("  pooled epochs", total=None)

    def on_epoch(done: int, total: int) -> None:
        ctx.progress.update(task, completed=done, total=total)

    try:
        return force_cls.train_pooled(ctx.nodes, ctx.settings, on_epoch=on_epoch)
    finally:
        ctx.progress.remove_task(task)


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
