"""``anprfed study``: run a multi-force study, or print the example spec."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from research.study.spec import SpecError, default_spec, load_spec

app = typer.Typer(
    no_args_is_help=True,
    help="Multi-force studies: local-only vs federated vs pooled, under DP and retention.",
    rich_markup_mode="rich",
)
console = Console()


@app.command("run")
def run(
    spec_path: Path | None = typer.Argument(
        None, help="Study spec (TOML). Omit to run the built-in default scenario."
    ),
    out: Path = typer.Option(Path("runs/default"), "--out", "-o", help="Results folder."),
    scenario: str | None = typer.Option(
        None,
        "--scenario",
        help="Run a built-in scenario instead of a spec file: default, north-west-realistic, "
        "england-wales (`anprfed study example --scenario NAME` prints it).",
    ),
    skip_capacity_check: bool = typer.Option(
        False,
        "--skip-capacity-check",
        help="Start even if the estimated peak memory or disk exceeds what this machine has.",
    ),
    reuse_world: bool = typer.Option(
        True, help="Reuse a synthetic world already generated with the same settings in OUT."
    ),
    force_rerun: bool = typer.Option(
        False,
        "--force-rerun",
        help="Ingest every force and train every design again, even those an earlier run in "
        "OUT finished (by default they are reused).",
    ),
) -> None:
    """Run a study end to end: synthesise, ingest, purge, train every design, write results.

    Exit codes: 0 = done; 2 = bad spec or input; 1 = the study failed; 128 + N = stopped
    by signal N (130 Ctrl-C, 143 SIGTERM), with its Ray nodes and workers stopped.
    """
    from research.study.capacity import estimate
    from research.study.interrupt import StudyInterrupted
    from research.study.runner import StudyError, run_study
    from research.study.scenarios import load_scenario
    from research.study.summary import print_summary

    if spec_path and scenario:
        console.print("[red]error:[/red] give a spec file or --scenario, not both")
        raise typer.Exit(2)
    try:
        if scenario:
            spec = load_scenario(scenario)
        else:
            spec = load_spec(spec_path) if spec_path else default_spec()
    except SpecError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    fit = estimate(spec, out)
    if fit.problems() and not skip_capacity_check:
        console.print(
            f"[red]refused:[/red] study {spec.name!r} will not fit this machine: "
            + "; ".join(fit.problems())
            + f".\n{fit.summary()}.\nRun it on a Ray cluster (docs/cluster.md), make it "
            "smaller, or pass --skip-capacity-check."
        )
        raise typer.Exit(2)
    try:
        result = run_study(spec, out, console=console, reuse_world=reuse_world, rerun=force_rerun)
    except StudyError as exc:
        console.print(f"[red]study failed:[/red] {exc}")
        raise typer.Exit(1) from None
    except StudyInterrupted as exc:
        console.print(f"[yellow]study {exc}[/yellow]; its Ray nodes and workers are stopped")
        # Every clean-up has run. Flower's ServerApp thread may still wait for replies that
        # will never come (up to the round timeout) and would hold the interpreter open.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.exit_code)
    print_summary(result, console)
    if spec.positives.enabled:
        _positives(spec, out)


def _positives(spec: Any, out: Path) -> None:
    """Run the positives sweep, record it in the manifest and print its answer."""
    from research.study.positives import needed_table, record_in_manifest, run_positives_sweep
    from research.study.runner import StudyError

    try:
        sweep = run_positives_sweep(spec, out, console=console)
    except StudyError as exc:
        console.print(f"[red]positives sweep failed:[/red] {exc}")
        raise typer.Exit(1) from None
    record_in_manifest(out, sweep)
    console.print(needed_table(sweep))


@app.command("positives")
def positives(
    spec_path: Path = typer.Argument(..., help="Study spec (TOML) with a [positives] section."),
    out: Path = typer.Option(Path("runs/positives"), "--out", "-o", help="Results folder."),
) -> None:
    """Only the "how many positives are needed" sweep of a spec (no main study).

    Writes positives_sweep.csv/json (every point), positives_needed.csv/json (per design, the
    smallest number of training positives that beats chance and that reaches 5 x chance) and
    plots/positives_needed.png; each sweep run's own results under OUT/positives/.
    Exit codes: 0 = done; 2 = bad spec; 1 = a sweep run failed.
    """
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not spec.positives.enabled:
        console.print(
            f"[red]error:[/red] {spec_path.name}: no sweep asked for: add a [positives] section "
            "with `prevalence`, `forces` or `retention` lists"
        )
        raise typer.Exit(2)
    _positives(spec, out)


@app.command("compare")
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Results folders of `anprfed study run`."),
    out: Path = typer.Option(
        Path("runs/compare"), "--out", "-o", help="Folder for compare.csv/json and the others."
    ),
    baseline: int = typer.Option(
        0, help="Index (0-based, in the order given) of the run the others are set against."
    ),
    replicates: int = typer.Option(1000, min=100, help="Bootstrap replicates per interval."),
) -> None:
    """Compare runs: PR-AUC with intervals, lift over chance, paired differences, privacy spent.

    Writes compare.csv/json (one row per run, design, ε and retention window),
    compare_designs.csv/json (paired differences between designs inside each run) and
    compare_budgets.csv/json (each force's total ε over all DP trainings of each run).
    Exit codes: 0 = done; 2 = a folder is not a study results folder.
    """
    from research.study.compare import (
        CompareError,
        compare_runs,
        comparison_tables,
        write_comparison,
    )

    try:
        comparison = compare_runs(run_dirs, baseline=baseline, replicates=replicates)
    except (CompareError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for table in comparison_tables(comparison):
        console.print(table)
    files = write_comparison(comparison, out)
    console.print(f"Wrote {', '.join(p.name for p in files)} to {out}")


@app.command("example")
def example(
    scenario: str = typer.Option(
        "default",
        "--scenario",
        help="Which built-in scenario: default, north-west-realistic, england-wales.",
    ),
) -> None:
    """Print a built-in study spec (a documented TOML example to copy and edit)."""
    from research.study.scenarios import scenario_text

    try:
        typer.echo(scenario_text(scenario), nl=False)
    except SpecError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
