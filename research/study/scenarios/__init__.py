"""Built-in study scenarios: TOML study specs shipped with the package.

``default`` is the laptop-sized study (``research/study/default_study.toml``);
``north-west-realistic`` (six forces, a million vehicles, two years) and ``england-wales``
(43 forces, five million vehicles) are the realistic-scale ones (docs/scenarios.md derives
their offender counts from the N8 report's figures).
"""

from __future__ import annotations

import tomllib
from importlib import resources

from research.study.spec import SpecError, StudySpec, default_spec_text, spec_from_dict

DEFAULT = "default"


def scenario_names() -> list[str]:
    """Names of the built-in scenarios, ``default`` first."""
    files = resources.files(__package__).iterdir()
    return [
        DEFAULT,
        *sorted(p.name.removesuffix(".toml") for p in files if p.name.endswith(".toml")),
    ]


def scenario_text(name: str) -> str:
    """The scenario's TOML text (what ``anprfed study example --scenario NAME`` prints)."""
    if name == DEFAULT:
        return default_spec_text()
    if name not in scenario_names():
        raise SpecError(f"unknown scenario {name!r}; built in: {', '.join(scenario_names())}")
    return resources.files(__package__).joinpath(f"{name}.toml").read_text("utf-8")


def load_scenario(name: str) -> StudySpec:
    """The built-in scenario ``name`` as a validated spec."""
    try:
        return spec_from_dict(tomllib.loads(scenario_text(name)))
    except SpecError as exc:
        raise SpecError(f"scenario {name}: {exc}") from None
