"""``anprfed synth``: generate a synthetic multi-force ANPR world.

Example::

    anprfed synth --preset north-west --vehicles 6000 --days 540 --start 2025-01-01 \\
        --prevalence 0.01 --seed 7 --out runs/world
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from research.synth.config import DEFAULT_WORLD, OUTPUT_FORMATS, ConfigError, WorldConfig
from research.synth.presets import PresetError, list_presets
from research.synth.summary import positives_table, summary_table
from research.synth.world import OutputExistsError, check_output, generate_world

DEFAULT_OUT = Path("runs/world")

app = typer.Typer(
    help="Generate a synthetic multi-force ANPR world (raw per-force exports + ground truth).",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)


def _parse_start(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date in YYYY-MM-DD form: {value!r}") from None


@app.callback()
def synth(
    preset: str = typer.Option(
        DEFAULT_WORLD.preset, help=f"World preset: {', '.join(list_presets())}."
    ),
    vehicles: int = typer.Option(DEFAULT_WORLD.vehicles, help="Fleet size (vehicles)."),
    days: int = typer.Option(DEFAULT_WORLD.days, help="Length of the world in days."),
    start: str = typer.Option(DEFAULT_WORLD.start.isoformat(), help="First day (YYYY-MM-DD, UTC)."),
    prevalence: float = typer.Option(
        DEFAULT_WORLD.prevalence, help="Share of vehicles that are offending (0..0.5)."
    ),
    seed: int = typer.Option(DEFAULT_WORLD.seed, help="Master seed (same seed, same bytes)."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Output folder for the world."),
    fmt: str = typer.Option(
        DEFAULT_WORLD.format, "--format", help=f"Export format: {' or '.join(OUTPUT_FORMATS)}."
    ),
    summary: bool = typer.Option(
        False, "--summary", help="Also break positives down by force and behaviour."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a world already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a world; a summary table (per force: cameras, vehicles seen, reads,
    positives; and totals) is printed at the end."""
    console = Console()
    try:
        cfg = WorldConfig(
            preset=preset,
            vehicles=vehicles,
            days=days,
            start=_parse_start(start),
            prevalence=prevalence,
            seed=seed,
            format=fmt,  # type: ignore[arg-type]
        ).validate()
        check_output(out, overwrite)
    except (ConfigError, PresetError) as exc:
        raise typer.BadParameter(str(exc)) from None
    except OutputExistsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from None
    progress = Progress(
        TextColumn("[bold]simulating days"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    with progress:
        task = progress.add_task("days", total=cfg.days)
        try:
            result = generate_world(
                cfg,
                out,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                overwrite=overwrite,
            )
        except OutputExistsError as exc:
            raise typer.BadParameter(str(exc), param_hint="--out") from None
    console.print(summary_table(result))
    if summary:
        console.print(positives_table(result))
    console.print(
        f"{result.reads:,} reads in {result.elapsed_s:.1f} s "
        f"({result.reads_per_second:,.0f} reads/s) -> {out}"
    )
