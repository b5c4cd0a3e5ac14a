"""Non-private references of the DP designs: the same design at eps = inf, with no ledger spend.

A study with ``dp.nonprivate_references = true`` runs each DP design once more without DP at
the main retention window, through the same force round code (``dp-enabled = false``, which
only a simulation's force policy allows), so a study can separate what federation costs from
what DP costs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from research.study.layout import RunLayout, SweepTag
from research.study.runner import run_study
from research.study.spec import SpecError, spec_from_dict

TINY_WORLD = {"vehicles": 300, "days": 75, "start": "2025-03-01", "prevalence": 0.06, "seed": 5}


def test_the_spec_refuses_a_non_boolean_switch() -> None:
    with pytest.raises(SpecError, match="nonprivate_references"):
        spec_from_dict({"dp": {"nonprivate_references": "yes"}})


def test_local_only_runs_with_and_without_dp_and_only_dp_spends(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            "name": "refs",
            "seed": 5,
            "designs": ["local-only"],
            "world": TINY_WORLD,
            "training": {"rounds": 1, "batch_size": 32, "max_reads": 32},
            "dp": {"epsilon": 8.0, "nonprivate_references": True},
            "retention": {"max_age_days": 60},
        }
    )
    result = run_study(spec, tmp_path)
    layout = RunLayout(result.out)
    metrics = pd.read_csv(layout.csv(layout.METRICS))
    overall = metrics[metrics["force"] == "all forces"]
    assert sorted(overall["epsilon"].astype(float)) == [8.0, math.inf]
    ledger = pd.read_csv(layout.csv(layout.LEDGER))
    assert len(ledger) > 0
    assert np.isfinite(ledger["target_epsilon"].astype(float)).all()  # no row for eps = inf
    forces = sorted(set(metrics["force"]) - {"all forces"})
    dp_model = np.load(layout.checkpoint(SweepTag("local-only", 8.0, 60), forces[0]))
    plain = np.load(layout.checkpoint(SweepTag("local-only", math.inf, 60), forces[0]))
    assert any(not np.allclose(dp_model[k], plain[k]) for k in dp_model.files)
