"""``anprfed dpia``: the DPIA evidence pack of a study run.

``report RUN_DIR [--out DIR]`` writes ``dpia.html``, ``dpia.md`` and ``evidence.json`` (with
embedded PNG figures) under the ICO's seven DPIA headings, filled with the run's measured
facts (``research.dpia``). It also checks every force store of the run as of the study date --
retention compliance and the signed purge log -- with the retention package
(:func:`check_run_stores`), which needs no key: the purge log verifies against the public key
in ``store.json`` and compliance is judged from the day partitions held.

Exit codes: 0 written; 2 not a results folder or unreadable file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console

from research.dpia.checks import StoreCheck

app = typer.Typer(
    no_args_is_help=True,
    help="DPIA evidence pack of a study run (ICO headings; HTML, Markdown, evidence.json).",
)
_console = Console()


@app.callback()
def _group() -> None:
    """DPIA evidence pack of a study run (ICO headings; HTML, Markdown, evidence.json)."""


class _PartitionDays:
    """A store's day partitions, read from its folder (no key needed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def days(self) -> list:
        from retention.partitions import PARTITION_NAME, days_under

        return days_under(self.root / "partitions", PARTITION_NAME)


def check_run_stores(run_dir: Path, as_of: datetime) -> list[StoreCheck]:
    """Retention status of every store under ``RUN_DIR/stores/retention-<w>d/<force>``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from retention.policy import RetentionPolicy, expired_days, is_compliant
    from retention.purge import pending_intents
    from retention.purge_log import LOG_DIR_NAME, LOG_FILE_NAME, PurgeLog, PurgeLogError, verify_log
    from retention.store import ForceStore, StoreError

    checks = []
    base = Path(run_dir) / "stores"
    for window_dir in sorted(base.glob("retention-*d")) if base.is_dir() else []:
        days = int(window_dir.name.removeprefix("retention-").removesuffix("d"))
        policy = RetentionPolicy(max_age_days=days)
        for store in sorted(p for p in window_dir.iterdir() if p.is_dir()):
            problems: list[str] = []
            try:
                meta = ForceStore.read_meta(store)
                key = Ed25519PublicKey.from_public_bytes(
                    bytes.fromhex(meta["signing"]["public_key"])
                )
                report = verify_log(store, key)
                log_ok, entries = report.ok, report.entries
                problems += report.problems
            except (StoreError, KeyError, ValueError) as exc:
                log_ok, entries = False, 0
                problems.append(f"purge log not verifiable: {exc}")
            held = _PartitionDays(store)
            try:
                pending = pending_intents(PurgeLog(store).entries())
            except PurgeLogError:
                pending = []
            if pending:
                problems.append(f"{len(pending)} interrupted purge(s)")
            compliant = is_compliant(held, as_of, policy) and not pending
            log_path = store / LOG_DIR_NAME / LOG_FILE_NAME
            sources = [str((store / "store.json").relative_to(run_dir))]
            if log_path.is_file():
                sources.append(str(log_path.relative_to(run_dir)))
            checks.append(
                StoreCheck(
                    force=store.name,
                    retention_days=days,
                    as_of=as_of.isoformat(),
                    compliant=compliant,
                    days_held=len(held.days()),
                    expired_days_held=len(expired_days(held.days(), as_of, policy)),
                    log_ok=log_ok,
                    log_entries=entries,
                    problems=tuple(problems),
                    sources=tuple(sources),
                )
            )
    return checks


@app.command("report")
def report(
    run_dir: Path = typer.Argument(..., help="A study's results folder (anprfed study run)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default RUN_DIR/dpia)."),
    check_stores: bool = typer.Option(
        True, help="Check the run's force stores (retention compliance, purge-log signatures)."
    ),
) -> None:
    """Write dpia.html, dpia.md and evidence.json for a run folder."""
    from research.dpia import RunFolderError, write_dpia

    try:
        pack = write_dpia(run_dir, out, checker=check_run_stores if check_stores else None)
    except RunFolderError as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    _console.print(
        f"DPIA written: {pack.html}, {pack.markdown}, {pack.evidence} ({len(pack.figures)} figures)"
    )
