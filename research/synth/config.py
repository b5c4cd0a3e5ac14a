"""World configuration: the knobs of a synthetic multi-force ANPR world, and their defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any, Literal

from research.synth.presets import list_presets

OutputFormat = Literal["parquet", "csv"]
OUTPUT_FORMATS: tuple[str, ...] = ("parquet", "csv")

#: Hard limits that keep a run meaningful (and memory bounded by the per-chunk design).
MAX_VEHICLES = 20_000_000
MAX_DAYS = 3_660
MAX_PREVALENCE = 0.5
EARLIEST_START = date(2002, 1, 1)  # current-format plates exist from Sep 2001
LATEST_END = date(2051, 2, 28)  # the current plate scheme runs out


class ConfigError(ValueError):
    """A world configuration value is out of range; the message names the field."""


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a synthetic world (same config -> byte-identical output).

    ``vehicles`` is the fleet size (every vehicle lives in the preset's area), ``days`` the
    length of the world from ``start`` (UTC midnight), ``prevalence`` the share of vehicles
    that take part in planted offence logistics at some point, ``seed`` the master seed.
    """

    preset: str = "north-west"
    vehicles: int = 6_000
    days: int = 540
    start: date = date(2025, 1, 1)
    prevalence: float = 0.01
    seed: int = 7
    format: OutputFormat = "parquet"

    @property
    def end(self) -> date:
        """First day after the world (exclusive end)."""
        return self.start + timedelta(days=self.days)

    @property
    def n_offenders(self) -> int:
        """Number of offending vehicles: ``round(prevalence * vehicles)`` (exact, not sampled)."""
        return round(self.prevalence * self.vehicles)

    def validate(self) -> WorldConfig:
        """Raise :class:`ConfigError` naming the first bad field; return self when valid."""
        presets = list_presets()
        if self.preset not in presets:
            raise ConfigError(f"preset: unknown preset {self.preset!r}; choose from {presets}")
        if not isinstance(self.vehicles, int) or not 1 <= self.vehicles <= MAX_VEHICLES:
            raise ConfigError(
                f"vehicles: must be an integer in 1..{MAX_VEHICLES}, got {self.vehicles!r}"
            )
        if not isinstance(self.days, int) or not 1 <= self.days <= MAX_DAYS:
            raise ConfigError(f"days: must be an integer in 1..{MAX_DAYS}, got {self.days!r}")
        if not isinstance(self.start, date):
            raise ConfigError(f"start: must be a date, got {self.start!r}")
        if self.start < EARLIEST_START or self.end > LATEST_END:
            raise ConfigError(
                f"start: the world must lie between {EARLIEST_START} and {LATEST_END} "
                f"(got {self.start} + {self.days} days)"
            )
        if not 0.0 <= float(self.prevalence) <= MAX_PREVALENCE:
            raise ConfigError(
                f"prevalence: must be between 0 and {MAX_PREVALENCE}, got {self.prevalence!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: must be a non-negative integer, got {self.seed!r}")
        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(f"format: must be one of {OUTPUT_FORMATS}, got {self.format!r}")
        return self

    def to_json(self) -> dict[str, Any]:
        """JSON-ready parameters (for ``world.json``)."""
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["end_exclusive"] = self.end.isoformat()
        return out


#: The default world used when ``anprfed synth`` flags are omitted: six North West forces,
#: ~6,000 vehicles over 540 days (so a 365-day retention window really deletes data and
#: conviction lag matters), 1% offending vehicles, seed 7. About 3 million reads.
DEFAULT_WORLD = WorldConfig()
