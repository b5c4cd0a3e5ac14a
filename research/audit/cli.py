"""``anprfed privacy``: privacy audits of a study run, and the re-identification demonstration.

* ``audit RUN_DIR``: membership inference (loss threshold and LiRA with shadow models) against
  every trained model of the run, at every force, with whole vehicles as members; results go
  to ``RUN_DIR/privacy/`` and ``RUN_DIR/plots/`` (see ``research.audit.membership``).
* ``canary-audit RUN_DIR``: give a copy of a force's store Dirac gradient canaries (default)
  or canary vehicles, retrain its DP rounds (claimed and a noise-free reference) in a Flower
  simulation and bound epsilon with the one-run method, white-box and from the final model
  (see ``research.audit.canary_audit``); results to ``RUN_DIR/privacy/canary_audit*``.
* ``reid-demo``: reverse unkeyed MD5 pseudonyms of synthetic plates by enumerating the UK
  plate space, measure the hash rate, project the full space, and contrast the keyed hash
  (see ``research.audit.reid``).

Outputs are counts, rates and times only: never a plate, pseudonym or per-vehicle score.
Exit codes: 0 done; 2 bad input (missing folder, bad option); 1 the audit failed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

EXIT_INPUT = 2
EXIT_FAILED = 1

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Privacy audits: membership inference against a run's trained models "
        "(`audit RUN_DIR`) and the unkeyed-MD5 re-identification demonstration (`reid-demo`). "
        "Exit codes: 0 done; 2 bad input; 1 audit failed."
    ),
)
_console = Console()


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}g}"
    return str(value)


@app.command("audit")
def audit(
    run_dir: Path = typer.Argument(..., help="A study's results folder (anprfed study run)."),
    shadows: int = typer.Option(8, "--shadows", help="Shadow models per force (even, >= 2)."),
    design: list[str] | None = typer.Option(
        None, "--design", help="Only these designs (repeatable), e.g. --design federated."
    ),
    force: list[str] | None = typer.Option(None, "--force", help="Only these forces."),
    confidence: float = typer.Option(0.95, help="Confidence of the epsilon lower bound."),
    seed: int = typer.Option(0, help="Seed of the shadow split and the threshold halves."),
    as_json: bool = typer.Option(False, "--json", help="Print the result rows as JSON."),
) -> None:
    """Membership inference against the run's trained models; results in RUN_DIR/privacy/."""
    from research.audit.membership import AuditConfig, AuditError, audit_run, jsonable

    if not run_dir.is_dir():
        _console.print(f"[red]error:[/red] {run_dir}: no such results folder")
        raise typer.Exit(EXIT_INPUT)
    try:
        config = AuditConfig(shadows=shadows, confidence=confidence, seed=seed)
    except ValueError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    log = None if as_json else (lambda msg: _console.print(f"[dim]{msg}[/dim]"))
    try:
        result = audit_run(
            run_dir,
            config,
            designs=tuple(design) if design else None,
            forces=tuple(force) if force else None,
            log=log,
        )
    except AuditError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    if as_json:
        payload = {"rows": result.rows, "files": [str(p) for p in result.files]}
        typer.echo(json.dumps(jsonable(payload), allow_nan=False))
        return
    _console.print(
        "[bold]Membership inference[/bold] (members = training vehicles; eps LB = empirical "
        f"lower bound on epsilon at {confidence:.0%} confidence)"
    )
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for r in result.rows:
        key = (
            r["design"],
            _fmt(r["epsilon"]),
            int(r["retention_days"]),
            _fmt(r["claimed_epsilon"]),
        )
        groups.setdefault(key, []).append(r)
    for (design_name, eps, window, claimed), rows in groups.items():
        table = Table(
            title=f"{design_name}, eps {eps}, {window}-day retention (claimed {claimed})",
            title_justify="left",
            box=None,
            padding=(0, 1),
            pad_edge=False,
            caption="TPR at 0.1% and 1% false-positive rate; within = eps LB <= the claim",
            caption_justify="left",
        )
        for col in ("force", "attack", "AUC", "TPR .1%", "TPR 1%", "eps LB", "within"):
            table.add_column(col, no_wrap=True)
        for r in rows:
            table.add_row(
                r["force"],
                r["attack"],
                _fmt(r["auc"]),
                _fmt(r["tpr_at_fpr_0_1pct"]),
                _fmt(r["tpr_at_fpr_1pct"]),
                _fmt(r["eps_lower_bound"]),
                "yes" if r["bound_within_claim"] else "[red]NO[/red]",
            )
        _console.print(table)
    for s in result.skipped:
        _console.print(f"[yellow]skipped:[/yellow] {s}")
    _console.print("written: " + ", ".join(str(p) for p in result.files))
    if not all(r["bound_within_claim"] for r in result.rows):
        _console.print("[red]an empirical lower bound exceeds the claimed epsilon[/red]")
        raise typer.Exit(EXIT_FAILED)


@app.command("canary-audit")
def canary_audit(
    run_dir: Path = typer.Argument(..., help="A study's results folder (anprfed study run)."),
    canaries: int = typer.Option(
        0,
        "--canaries",
        help="Canaries per audit (>= 20); 0 = auto: gradient canaries, as many as the model "
        "holds up to 4,000 (more canaries, a higher ceiling); input canaries, 1,000.",
    ),
    design: list[str] | None = typer.Option(
        None, "--design", help="Only these designs (repeatable); default every DP design."
    ),
    epsilon: list[float] | None = typer.Option(
        None, "--epsilon", help="Only these sweep epsilons (repeatable)."
    ),
    force: list[str] | None = typer.Option(
        None, "--force", help="Forces to audit (repeatable); default the first of each window."
    ),
    confidence: float = typer.Option(0.95, help="Confidence of the one-run lower bound."),
    seed: int = typer.Option(0, help="Seed of the canaries and their inclusion coins."),
    engine: str = typer.Option(
        "flower", help="flower (a real Flower simulation) or in-process (same client rounds)."
    ),
    kind: str = typer.Option(
        "gradient",
        help="gradient (Dirac gradient canaries in the DP step) or input (canary vehicles).",
    ),
    optimizer: str = typer.Option(
        "sgd",
        help="Gradient canaries: sgd (the recipe's batch, epochs and clipping with plain SGD; "
        "the optimiser is post-processing) or study (the recipe's Adam; little power).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the rows and verdicts as JSON."),
) -> None:
    """Canaries in a force's DP training (a scratch copy), retrained, epsilon bounded.

    For each DP sweep point: the claimed run and a noise-free reference, judged white-box (the
    server's round-by-round view) and from the final model with the one-run bound of Steinke,
    Nasr and Jagielski (2023). Prints whether the claim was tested with power. Results in
    RUN_DIR/privacy/canary_audit*.
    """
    from research.audit.canary_audit import CanaryAuditConfig
    from research.audit.canary_report import canary_audit_run, summary_of
    from research.audit.canary_run import ENGINES
    from research.audit.membership import AuditError, jsonable

    if not run_dir.is_dir():
        _console.print(f"[red]error:[/red] {run_dir}: no such results folder")
        raise typer.Exit(EXIT_INPUT)
    if engine not in ENGINES:
        _console.print(f"[red]error:[/red] --engine must be one of {', '.join(ENGINES)}")
        raise typer.Exit(EXIT_INPUT)
    try:
        config = CanaryAuditConfig(
            canaries=canaries,
            confidence=confidence,
            seed=seed,
            engine=engine,
            kind=kind,
            optimizer=optimizer,
        )
    except ValueError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    log = None if as_json else (lambda msg: _console.print(f"[dim]{msg}[/dim]"))
    try:
        result = canary_audit_run(
            run_dir,
            config,
            designs=tuple(design) if design else None,
            epsilons=tuple(epsilon) if epsilon else None,
            forces=tuple(force) if force else None,
            log=log,
        )
    except AuditError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    if as_json:
        payload = {
            "rows": result.rows,
            "audits": [summary_of(r) for r in result.results],
            "files": [str(p) for p in result.files],
        }
        typer.echo(json.dumps(jsonable(payload), allow_nan=False))
    else:
        _print_canary_tables(result, confidence)
    if any(r.flagged for r in result.results):
        raise typer.Exit(EXIT_FAILED)


def _print_canary_tables(result: Any, confidence: float) -> None:
    for audit in result.results:
        table = Table(
            title=(
                f"{audit.design}, eps {_fmt(audit.epsilon)}, {audit.retention_days}-day "
                f"retention, {audit.force} (ledger claims eps {_fmt(audit.claimed_epsilon)})"
            ),
            title_justify="left",
            box=None,
            padding=(0, 1),
            pad_edge=False,
            caption=f"eps LB = one-run lower bound at {confidence:.0%} confidence; "
            "max = the most these canaries can show",
            caption_justify="left",
        )
        for col in (
            "canaries",
            "run",
            "view",
            "ledger eps",
            "guesses",
            "correct",
            "eps LB",
            "max",
            "flag",
        ):
            table.add_column(col, no_wrap=True)
        for r in audit.rows():
            table.add_row(
                r["canary_kind"],
                r["variant"],
                r["view"],
                _fmt(r["ledger_epsilon"]),
                str(r["guesses"]),
                str(r["correct"]),
                _fmt(r["eps_lower_bound"]),
                _fmt(r["eps_max_testable"]),
                "[red]above claim[/red]" if r["flagged"] else "-",
            )
        _console.print(table)
        _console.print(audit.verdict)
    for s in result.skipped:
        _console.print(f"[yellow]skipped:[/yellow] {s}")
    _console.print("written: " + ", ".join(str(p) for p in result.files))


@app.command("reid-demo")
def reid_demo(
    sample: int = typer.Option(20, "--sample", help="Synthetic plates to pseudonymise."),
    prefix: str = typer.Option(
        "", "--prefix", help="Only plates starting with this (a reduced subspace, e.g. MA2)."
    ),
    formats: list[str] | None = typer.Option(
        None, "--format", help="Plate formats to enumerate (default: all, current first)."
    ),
    max_seconds: float = typer.Option(
        120.0, "--max-seconds", help="Stop enumerating after this long (then project)."
    ),
    workers: int | None = typer.Option(None, help="Processes (default: one per CPU)."),
    seed: int | None = typer.Option(None, help="Seed for drawing the synthetic plates."),
    out: Path | None = typer.Option(
        None, "--out", help="Write reid.json into this folder (e.g. RUN_DIR/privacy)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Recover unkeyed-MD5 pseudonyms by enumerating UK plates; contrast the keyed hash."""
    from privacy.plates import FORMATS
    from research.audit.reid import run_demo

    fmts = tuple(formats) if formats else FORMATS
    try:
        report = run_demo(
            sample,
            prefix=prefix,
            formats=fmts,
            max_seconds=max_seconds,
            workers=workers,
            seed=seed,
        )
    except ValueError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    data = report.to_dict()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "reid.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(data))
        return
    md5, keyed = data["md5"], data["keyed"]
    space = f"plates starting {report.prefix!r}" if report.prefix else "the whole UK plate space"
    _console.print(f"[bold]Unkeyed MD5[/bold] ({md5['method']})")
    _console.print(
        f"  enumerated {md5['candidates_hashed']:,} of {report.subspace_size:,} marks ({space}) "
        f"in {md5['seconds']:.1f} s with {report.workers} process(es): "
        f"{md5['hashes_per_second'] / 1e6:.2f} M hashes/s"
        + ("" if md5["subspace_complete"] else " (stopped at --max-seconds)")
    )
    _console.print(
        f"  recovered {md5['recovered']} of {report.sample} pseudonymised plates "
        f"({md5['recovered_share']:.0%}), each confirmed with hashlib"
    )
    _console.print(
        f"  full space ({report.full_space_size:,} marks) at "
        f"{md5['projection_rate_per_second'] / 1e6:.2f} M/s ({md5['projection_basis']}): "
        f"{md5['projected_full_space_seconds'] / 60:.1f} minutes"
    )
    _console.print("[bold]Keyed pseudonyms[/bold] (" + keyed["method"] + ")")
    _console.print(
        f"  recovered by the same enumeration: {keyed['recovered_by_md5_enumeration']}; "
        f"under a guessed key: {keyed['guessed_key_trial']['recovered']} of "
        f"{keyed['guessed_key_trial']['candidates']:,} candidates"
    )
    _console.print(
        f"  key space 2^{keyed['key_bits']} (plus a 2^{keyed['epoch_key_bits']} epoch key); "
        f"at {keyed['hmac_per_second'] / 1e6:.2f} M HMAC/s the expected search takes "
        f"~10^{keyed['log10_expected_years_to_find_key']:.0f} years: infeasible"
    )
    if out is not None:
        _console.print(f"written: {out / 'reid.json'}")
