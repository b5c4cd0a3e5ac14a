"""Synthetic multi-force ANPR world generator (``anprfed synth``); see docs/synthetic-world.md.

Public API::

    from research.synth import DEFAULT_WORLD, WorldConfig, generate_world
    summary = generate_world(WorldConfig(vehicles=2000, days=120), Path("runs/w"))
"""

from research.synth.config import DEFAULT_WORLD, ConfigError, WorldConfig
from research.synth.summary import ForceSummary, WorldSummary
from research.synth.world import OutputExistsError, WorldModel, build_model, generate_world

__all__ = [
    "DEFAULT_WORLD",
    "ConfigError",
    "ForceSummary",
    "OutputExistsError",
    "WorldConfig",
    "WorldModel",
    "WorldSummary",
    "build_model",
    "generate_world",
]
