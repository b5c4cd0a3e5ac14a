"""``anprfed study``: run a multi-force study, or print the example spec."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from research.study.spec import SpecError, default_spec, default_spec_text, load_spec

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
    from research.study.interrupt import StudyInterrupted
    from research.study.runner import StudyError, run_study
    from research.study.summary import print_summary

    try:
        spec = load_spec(spec_path) if spec_path else default_spec()
    except SpecError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
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


@app.command("example")
def example() -> None:
    """Print the built-in default study spec (a documented TOML example to copy and edit)."""
    typer.echo(default_spec_text(), nl=False)
