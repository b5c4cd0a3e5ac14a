"""The "how many positives are needed" sweep on a tiny world, end to end (real study runs).

A study with a ``[positives]`` section runs the main study, then one study per prevalence and
number of forces, and writes per design the smallest number of training positives from which
PR-AUC beats chance (whole 95% interval above the held-out prevalence), a plot, and a block
in the DPIA pack.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from research.study.positives import plan, sub_spec
from research.study.spec import spec_from_dict

TINY_SWEEP = """
name = "tiny-sweep"
seed = 5
designs = ["pooled"]
[world]
vehicles = 600
days = 900            # convictions lag months to years: a short world has no labels
start = 2023-01-01
prevalence = 0.1
seed = 5
[training]
rounds = 2
batch_size = 32
max_reads = 32
[dp]
epsilon = 4.0
[retention]
max_age_days = 730
[positives]
prevalence = [0.1, 0.3]
forces = [2, 6]
designs = ["local-only", "pooled"]
"""


def test_the_plan_adds_forces_largest_first_and_runs_local_only_once() -> None:
    spec = spec_from_dict(
        {
            "designs": ["local-only", "federated", "pooled"],
            "positives": {"prevalence": [0.01, 0.05], "forces": [1, 3, 9]},
        }
    )
    order = ["gm", "lancs", "cheshire", "mersey", "wales", "cumbria"]
    runs = plan(spec, order)
    assert [(r.prevalence, len(r.forces)) for r in runs] == [
        (0.01, 1),
        (0.01, 3),
        (0.01, 6),
        (0.05, 1),
        (0.05, 3),
        (0.05, 6),
    ]
    assert runs[1].forces == ("gm", "lancs", "cheshire")
    assert [r.designs for r in runs[:3]] == [
        ("federated", "pooled"),
        ("federated", "pooled"),
        ("local-only", "federated", "pooled"),
    ]
    one = sub_spec(spec, runs[0])
    assert one.world.prevalence == 0.01 and one.forces == ("gm",)
    assert one.epsilons() == (spec.dp.epsilon,) and not one.positives.enabled


@pytest.mark.slow
def test_a_tiny_sweep_answers_per_design_and_reaches_the_dpia(tmp_path: Path) -> None:
    from research.dpia.content import build_content
    from research.dpia.run_folder import load_run_folder
    from research.study.cli import app

    spec_path = tmp_path / "sweep.toml"
    spec_path.write_text(TINY_SWEEP, encoding="utf-8")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(spec_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "How many positives are needed" in result.output

    points = pd.read_csv(out / "positives_sweep.csv")
    needed = pd.read_csv(out / "positives_needed.csv")
    assert (out / "plots" / "positives_needed.png").stat().st_size > 1000
    assert set(needed["design"]) == {"local-only", "pooled"}

    pooled = points[points["design"] == "pooled"]
    assert sorted(set(zip(pooled["prevalence"], pooled["forces"], strict=True))) == [
        (0.1, 2),
        (0.1, 6),
        (0.3, 2),
        (0.3, 6),
    ]
    by = {(r.prevalence, r.forces): r.train_positives for r in pooled.itertuples()}
    # more forces, and a higher prevalence, give at least as many training positives
    assert by[(0.1, 6)] >= by[(0.1, 2)] and by[(0.3, 6)] >= by[(0.3, 2)]
    assert by[(0.3, 6)] > by[(0.1, 6)] > 0
    local = points[points["design"] == "local-only"]
    assert len(local) == 2 * 6 and set(local["forces"]) == {1}  # each force alone, once

    for p in points.itertuples():
        assert p.chance == pytest.approx(p.held_out_positives / p.held_out_vehicles)
        if not math.isnan(p.pr_auc_low):
            assert p.pr_auc_low <= p.pr_auc <= p.pr_auc_high
            assert p.beats_chance == (p.pr_auc_low > p.chance_pr_auc >= p.chance)
    for row in needed.itertuples():
        mine = points[points["design"] == row.design]
        if math.isnan(row.min_positives_beats_chance):
            assert not mine.loc[mine["train_positives"].idxmax(), "beats_chance"]
        else:
            assert row.min_positives_beats_chance in set(mine["train_positives"])
            above = mine[mine["train_positives"] >= row.min_positives_beats_chance]
            assert above["beats_chance"].all()

    # sweep runs at one prevalence share one world; the base prevalence reuses the main one
    assert (out / "positives" / "p0.1-f2" / "world").resolve() == (out / "world").resolve()
    assert (out / "positives" / "p0.3-f2" / "world").resolve() == (
        out / "positives" / "p0.3-f6" / "world"
    ).resolve()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "positives_needed.csv" in manifest["positives_sweep"]["files"]

    content = build_content(load_run_folder(out), checks=[])
    necessity = next(s for s in content.sections if s.id == "necessity")
    assert any(getattr(b, "text", "") == "How many positives are needed" for b in necessity.blocks)
    assert "fig-positives-needed" in [f.id for f in content.figures]
