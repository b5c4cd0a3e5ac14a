"""``public-start``: the starting model as a reference, made without any force's data."""

from __future__ import annotations

import numpy as np

from federation.flower_settings import FlowerSettings
from research.audit.canary_run import initial_weights
from research.study.designs import DesignContext, get_design, uses_force_data
from research.study.spec import default_spec


class _Untouchable:
    """A force whose data must not be read: any attribute access fails the test."""

    name = "untouchable"

    def __getattr__(self, item: str):  # pragma: no cover - fails the test if reached
        raise AssertionError(f"public-start read force data ({item})")


def test_public_start_is_the_servers_starting_model_and_reads_no_force_data() -> None:
    design = get_design("public-start")
    assert not design.private and not design.deployable and not design.uses_force_data
    assert not uses_force_data("public-start") and uses_force_data("federated")
    settings = FlowerSettings(seed=3, model_hidden=8, model_conv_layers=1)
    ctx = DesignContext(
        nodes=[_Untouchable()], settings=settings, study_id="s", spec=default_spec()
    )
    weights = design.train(ctx)
    expected = initial_weights(settings)
    assert len(weights) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(weights, expected, strict=True))
    # another seed, another start: it is the seeded model, not a constant
    other = design.train(
        DesignContext(nodes=[], settings=settings.replace(seed=4), study_id="s", spec=ctx.spec)
    )
    assert not all(np.array_equal(a, b) for a, b in zip(weights, other, strict=True))


def test_the_default_study_scores_its_start() -> None:
    assert default_spec().designs[0] == "public-start"
