"""``public-start``: the model every design starts from, scored without any force data.

With public pre-training (the spec's ``training.public_pretraining``) this is the public
read encoder with the seeded head; without it, the seeded initialisation. Nothing is trained
and no force's data is read to make it, so it costs no epsilon; it is scored on the same
held-out vehicles as the other designs. A design that does not beat it has learned nothing
measurable from the forces' data: whatever skill it shows came from the public start.
"""

from __future__ import annotations

import numpy as np

from research.study.designs.registry import Design, DesignContext, register_design


def train(ctx: DesignContext) -> list[np.ndarray]:
    """The starting weights, as the national server would send them in round 1."""
    from research.audit.canary_run import initial_weights

    return initial_weights(ctx.settings)


DESIGN = register_design(
    Design(
        "public-start",
        train,
        colour="#999999",
        private=False,
        deployable=False,
        uses_force_data=False,
        description="the starting model (public pre-training, no force data): a reference",
    )
)
