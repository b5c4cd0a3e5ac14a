"""``federated``: Flower FedAvg/FedProx across the forces, under DP (the server checkpoints)."""

from __future__ import annotations

import numpy as np

from research.study.designs.registry import Design, DesignContext, register_design


def train(ctx: DesignContext) -> list[np.ndarray]:
    """One Flower Simulation Engine run on the study's Ray head node."""
    from research.study.federated import run_federated

    ctx.ray_cluster.connect()
    return run_federated(
        ctx.nodes,
        ctx.settings,
        ctx.study_id,
        ctx.progress,
        secure_aggregation=ctx.spec.training.secure_aggregation,
    )


DESIGN = register_design(
    Design(
        "federated",
        train,
        colour="#1b9e77",
        private=True,
        keeps_own_checkpoint=True,
        needs_ray=True,
        description="Flower FedAvg or FedProx across forces, under DP",
    )
)
