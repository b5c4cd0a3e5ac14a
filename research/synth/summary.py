"""What a generated world holds, as counts only (no VRM, camera id or coordinate)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from research.synth.behaviours import OFFENCE_BEHAVIOURS


@dataclass
class ForceSummary:
    """Counts for one force's export."""

    slug: str
    name: str
    cameras_fixed: int
    cameras_mobile: int
    vehicles_seen: int
    reads: int
    positives: dict[str, int]  # offending vehicles seen in this force, by behaviour
    first_read_at: str | None
    last_read_at: str | None


@dataclass
class WorldSummary:
    """Counts for the whole world (``world.json`` holds ``to_json()``)."""

    preset: str
    seed: int
    vehicles: int
    days: int
    start: str
    end_exclusive: str
    prevalence: float
    offenders: int
    offenders_by_behaviour: dict[str, int]
    vehicles_seen: int
    reads: int
    forces: list[ForceSummary] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall clock; not written to world.json (determinism)

    def to_json(self) -> dict[str, Any]:
        """Counts, deterministic (no timings)."""
        out = asdict(self)
        out.pop("elapsed_s")
        return out

    @property
    def reads_per_second(self) -> float:
        """Generation throughput of the run."""
        return self.reads / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def summary_table(summary: WorldSummary) -> Table:
    """A rich table: per force cameras (fixed/mobile), vehicles seen, reads, positives seen;
    and totals (the positives total counts every planted offender, seen or not)."""
    title = (
        f"{summary.preset}: {summary.vehicles:,} vehicles x {summary.days} days from "
        f"{summary.start}, prevalence {summary.prevalence:g}, seed {summary.seed}"
    )
    table = Table(title=title, show_footer=True)
    fixed = sum(f.cameras_fixed for f in summary.forces)
    mobile = sum(f.cameras_mobile for f in summary.forces)
    table.add_column("force", footer="total")
    table.add_column("cameras fixed", justify="right", footer=f"{fixed:,}")
    table.add_column("mobile", justify="right", footer=f"{mobile:,}")
    table.add_column("vehicles seen", justify="right", footer=f"{summary.vehicles_seen:,}")
    table.add_column("reads", justify="right", footer=f"{summary.reads:,}")
    table.add_column("positives", justify="right", footer=f"{summary.offenders:,}")
    for f in summary.forces:
        table.add_row(
            f.slug,
            f"{f.cameras_fixed:,}",
            f"{f.cameras_mobile:,}",
            f"{f.vehicles_seen:,}",
            f"{f.reads:,}",
            f"{sum(f.positives.values()):,}",
        )
    return table


def positives_table(summary: WorldSummary) -> Table:
    """Offending vehicles seen per force, by planted behaviour (footer: planted in total)."""
    table = Table(title="positives seen per force, by behaviour", show_footer=True)
    table.add_column("force", footer="planted")
    for b in OFFENCE_BEHAVIOURS:
        table.add_column(
            b.replace("_", " "),
            justify="right",
            footer=f"{summary.offenders_by_behaviour.get(b, 0):,}",
        )
    for f in summary.forces:
        table.add_row(f.slug, *(f"{f.positives.get(b, 0):,}" for b in OFFENCE_BEHAVIOURS))
    return table
