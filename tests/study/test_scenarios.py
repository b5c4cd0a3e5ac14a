"""Built-in scenarios: printable, valid, at the size the issue asks for, refused when too big."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from research.study.capacity import estimate
from research.study.cli import app
from research.study.scenarios import load_scenario, scenario_names, scenario_text
from research.study.spec import SpecError
from research.synth.presets import load_preset


def test_realistic_scenarios_are_at_real_size() -> None:
    assert {"default", "north-west-realistic", "england-wales"} <= set(scenario_names())
    nw = load_scenario("north-west-realistic")
    assert nw.world.preset == "north-west" and nw.world.vehicles >= 1_000_000
    assert nw.world.days >= 730
    assert len(nw.epsilons()) > 1 and len(nw.retention_windows()) > 1
    assert nw.world.vehicles * nw.world.prevalence == pytest.approx(80)
    ew = load_scenario("england-wales")
    assert ew.world.vehicles >= 5_000_000
    assert len(load_preset(ew.world.preset)["forces"]) == 43


def test_example_prints_the_scenario_that_run_accepts(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["example", "--scenario", "north-west-realistic"])
    assert printed.exit_code == 0
    assert tomllib.loads(printed.output)["world"]["vehicles"] == 1_000_000
    assert printed.output == scenario_text("north-west-realistic")
    unknown = runner.invoke(app, ["example", "--scenario", "atlantis"])
    assert unknown.exit_code == 2 and "north-west-realistic" in unknown.output
    with pytest.raises(SpecError, match="unknown scenario"):
        load_scenario("atlantis")


def test_a_scenario_too_big_for_the_machine_is_refused_before_it_starts(tmp_path: Path) -> None:
    out = tmp_path / "ew"
    fit = estimate(load_scenario("england-wales"), out)
    assert fit.peak_memory_bytes > 24 * 2**30  # more than this whole machine holds
    if not fit.problems():
        pytest.skip("this machine could hold england-wales")
    result = CliRunner().invoke(app, ["run", "--scenario", "england-wales", "--out", str(out)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "refused" in text and "estimated peak memory" in text and "available" in text
    assert not out.exists()  # nothing was started


def test_the_estimate_grows_with_the_study_and_the_default_fits() -> None:
    small = estimate(load_scenario("default"), Path("/tmp"))
    big = estimate(load_scenario("north-west-realistic"), Path("/tmp"))
    assert small.reads < big.reads and small.peak_memory_bytes < big.peak_memory_bytes
    assert small.disk_bytes < big.disk_bytes
    assert small.peak_memory_bytes < 4 * 2**30


def test_the_public_world_is_capped_and_enriched_but_the_default_is_unchanged() -> None:
    """A million-vehicle study must not synthesise and train on a second million vehicles."""
    from research.study.public_init import (
        PUBLIC_MAX_VEHICLES,
        PUBLIC_MIN_PREVALENCE,
        PUBLIC_SEED_OFFSET,
        public_world_spec,
    )

    default = load_scenario("default").world
    public = public_world_spec(default)
    assert (public.vehicles, public.prevalence) == (default.vehicles, default.prevalence)
    assert public.seed == default.seed + PUBLIC_SEED_OFFSET
    realistic = load_scenario("north-west-realistic").world
    capped = public_world_spec(realistic)
    assert capped.vehicles == PUBLIC_MAX_VEHICLES < realistic.vehicles
    # At the realistic prevalence (8e-5) a capped world would hold one or two offenders.
    assert capped.prevalence == PUBLIC_MIN_PREVALENCE > realistic.prevalence
    assert capped.vehicles * capped.prevalence >= 100
    assert (capped.days, capped.preset) == (realistic.days, realistic.preset)


def test_the_estimate_counts_public_pretraining() -> None:
    """The public stage is part of the peak: without it a study looks smaller than it is."""
    spec = load_scenario("north-west-realistic")
    small = replace(spec, world=replace(spec.world, vehicles=100_000))
    without = replace(small, training=replace(small.training, public_pretraining="none"))
    assert (
        estimate(small, Path("/tmp")).peak_memory_bytes
        > estimate(without, Path("/tmp")).peak_memory_bytes
    )
    assert estimate(small, Path("/tmp")).disk_bytes > estimate(without, Path("/tmp")).disk_bytes
