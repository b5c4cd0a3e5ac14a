"""Study designs come from a registry, and run folders from one RunLayout.

A toy design (an untrained model, shared by every force) is registered in this test module
only and run through a tiny study: the runner, the spec, the plots, the audit's model finder
and the DPIA's run-folder reader all see it without any other edit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from federation.model import TrajectoryModel, get_weights
from research.audit.membership import find_models
from research.dpia.run_folder import load_run_folder
from research.study.designs import (
    Design,
    DesignContext,
    UnknownDesignError,
    design_names,
    get_design,
    register_design,
    unregister_design,
)
from research.study.layout import RunLayout, SweepTag
from research.study.runner import run_study
from research.study.spec import SpecError, spec_from_dict

TOY = "toy-untrained"
TINY_WORLD = {"vehicles": 300, "days": 75, "start": "2025-03-01", "prevalence": 0.06, "seed": 5}


def _untrained(ctx: DesignContext) -> list[np.ndarray]:
    torch.manual_seed(ctx.settings.seed)
    return get_weights(TrajectoryModel(ctx.settings.model_config()))


@pytest.fixture
def toy_design() -> Iterator[Design]:
    design = register_design(Design(TOY, _untrained, colour="#e7298a", private=False))
    try:
        yield design
    finally:
        unregister_design(TOY)


def test_builtin_designs_are_registered() -> None:
    assert {"local-only", "federated", "pooled"} <= set(design_names())
    assert get_design("pooled").private is False and get_design("federated").needs_ray
    with pytest.raises(UnknownDesignError, match="central"):
        get_design("central")


def test_a_design_name_is_registered_once(toy_design: Design) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_design(Design(TOY, _untrained))


def test_the_spec_refuses_an_unregistered_design_naming_it() -> None:
    with pytest.raises(SpecError, match=TOY):
        spec_from_dict({"designs": [TOY]})


@pytest.mark.parametrize(
    ("tag", "text"),
    [
        (SweepTag("federated", 4.0, 365), "federated-eps4-ret365d"),
        (SweepTag("local-only", 0.5, 30), "local-only-eps0.5-ret30d"),
        (SweepTag("pooled", math.inf, 730), "pooled-epsinf-ret730d"),
        (SweepTag("toy-2", 1e-3, 7), "toy-2-eps0.001-ret7d"),
    ],
)
def test_sweep_tags_round_trip(tag: SweepTag, text: str) -> None:
    assert str(tag) == text
    assert SweepTag.parse(text) == tag
    assert SweepTag.parse(text + "x") is None


def test_a_registered_design_runs_through_a_tiny_study(toy_design: Design, tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            "name": "toy",
            "seed": 5,
            "designs": [TOY],
            "world": TINY_WORLD,
            "training": {"rounds": 1, "batch_size": 32, "max_reads": 32},
            "retention": {"max_age_days": 60},
        }
    )
    result = run_study(spec, tmp_path)
    layout = RunLayout(result.out)
    metrics = pd.read_csv(layout.csv(layout.METRICS))
    assert set(metrics["design"]) == {TOY}
    assert "all forces" in set(metrics["force"]) and len(metrics) > 2
    assert np.isinf(metrics["epsilon"].astype(float)).all()  # non-private: run once
    tag = SweepTag(TOY, math.inf, 60)
    assert layout.checkpoint(tag).is_file()  # the runner kept the shared model for audits
    assert [m.design for m in find_models(result.out)] == [TOY]
    assert find_models(result.out)[0].checkpoint("any-force") == layout.checkpoint(tag)
    run = load_run_folder(result.out)
    assert [(s.design, s.retention_days, s.checkpoint) for s in run.servers] == [
        (TOY, 60, layout.rel(layout.checkpoint(tag)))
    ]
    assert layout.plot("utility_vs_epsilon.png").is_file()
    # ingest.csv and retention.csv agree on each force's convictions
    ingest = pd.read_csv(layout.csv(layout.INGEST)).set_index("force")
    retention = pd.read_csv(layout.csv(layout.RETENTION)).set_index("force")
    for force, row in ingest.iterrows():
        assert row["convictions_loaded"] == retention.loc[force, "convictions_in_log"]
