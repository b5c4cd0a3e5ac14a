"""Synthetic multi-force ANPR world generator (``anprfed synth``); see docs/synthetic-world.md.

Public API::

    from federation.synth import DEFAULT_WORLD, WorldConfig, generate_world
    summary = generate_world(WorldConfig(vehicles=2000, days=120), Path("runs/w"))
"""

from federation.synth.config import DEFAULT_WORLD, ConfigError, WorldConfig
from federation.synth.summary import ForceSummary, WorldSummary
from federation.synth.world import OutputExistsError, WorldModel, build_model, generate_world

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
