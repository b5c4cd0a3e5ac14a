"""The study spec: defaults, TOML round trip, one-factor-at-a-time sweeps, clear errors."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from research.study.spec import SpecError, default_spec, default_spec_text, load_spec


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_spec_is_the_documented_example() -> None:
    spec = default_spec()
    assert set(spec.designs) == {"public-start", "local-only", "federated", "pooled"}
    assert tomllib.loads(default_spec_text())["name"] == spec.name
    assert spec.as_of > spec.world.end
    assert all(math.isfinite(e) for e in spec.epsilons())


def test_sweep_points_are_one_factor_at_a_time(tmp_path: Path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            """
[dp]
epsilon = 4.0
epsilon_sweep = [1.0, 4.0, 8.0]
[retention]
max_age_days = 730
sweep = [365, 730]
""",
        )
    )
    assert spec.sweep_points() == [(730, 1.0), (730, 4.0), (730, 8.0), (365, 4.0)]


def test_sweeps_always_include_the_main_point(tmp_path: Path) -> None:
    """A sweep that leaves out the main epsilon or window still runs it: the main point is the
    one the PR curves and the summary are drawn for."""
    spec = load_spec(
        write(
            tmp_path,
            """
[dp]
epsilon = 4.0
epsilon_sweep = [8.0, 1.0]
[retention]
max_age_days = 730
sweep = [365]
""",
        )
    )
    assert spec.epsilons() == (1.0, 4.0, 8.0)
    assert spec.retention_windows() == (730, 365)
    assert spec.sweep_points() == [(730, 1.0), (730, 4.0), (730, 8.0), (365, 4.0)]
    # The default runs epsilon 4 at both windows (one factor at a time: the 5-minute budget).
    assert default_spec().sweep_points() == [(730, 4.0), (365, 4.0)]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[world]\nvehicles = 'many'\n", "world.vehicles"),
        ("[world]\nstart = 'yesterday'\n", "world.start"),
        ("[training]\nstrategy = 'fedsgd'\n", "training.strategy"),
        ("[dp]\nepsilon_sweep = [1.0, 'inf']\n", "dp.epsilon"),
        ("[retention]\nmax_age = 3\n", "max_age"),
        ("designs = ['central']\n", "designs"),
        ("colour = 'red'\n", "colour"),
    ],
)
def test_bad_specs_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, text))
    assert field in str(err.value)
    assert "study.toml" in str(err.value)


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such study spec"):
        load_spec(tmp_path / "absent.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "[world\n"))


@pytest.mark.parametrize(
    ("text", "section", "suggestion"),
    [
        ("[retention]\nmax_age = 3\n", "[retention]", "max_age_days"),
        ("[training]\nlearning_rat = 0.01\n", "[training]", "learning_rate"),
        ("[world]\nprevalance = 0.01\n", "[world]", "prevalence"),
        ("sed = 3\n", "the top level", "seed"),
        ("[training]\nepsilon = 4.0\n", "[training]", "[dp]"),
    ],
)
def test_an_unknown_field_names_its_section_and_the_nearest_name(
    tmp_path: Path, text: str, section: str, suggestion: str
) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, text))
    message = str(err.value)
    assert f"unknown field(s) in {section}" in message
    assert suggestion in message.split("known fields there")[0]


def test_an_unknown_field_far_from_any_name_gets_no_made_up_suggestion(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, "[world]\nzzzz = 1\n"))
    assert "did you mean" not in str(err.value)
    assert "`zzzz`" in str(err.value)


def test_an_unknown_design_repeats_the_bad_value(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, "designs = ['pooled', 'federatd']\n"))
    message = str(err.value)
    assert "'federatd'" in message
    assert "did you mean `federated`" in message


def test_proximal_mu_without_fedprox_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, "[training]\nstrategy = 'fedavg'\nproximal_mu = 0.1\n"))
    assert "training.proximal_mu" in str(err.value)
    assert "training.strategy" in str(err.value)
    spec = load_spec(write(tmp_path, "[training]\nstrategy = 'fedprox'\nproximal_mu = 0.1\n"))
    assert spec.training.proximal_mu == 0.1
    # mu = 0 with FedAvg is the default and stays valid
    assert load_spec(write(tmp_path, "[training]\nstrategy = 'fedavg'\n")).training.proximal_mu == 0
