"""The summary table ``anprfed study run`` prints at the end."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from research.study.designs import uses_force_data
from research.study.evaluation import (
    ABOVE_CHANCE,
    ALL_FORCES,
    MIN_POSITIVES,
    NO_SKILL,
    UNDEFINED,
)


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _interval(row: dict[str, Any], figure: str, digits: int = 3) -> str:
    """The figure, and its interval on a second line (keeps the table narrow)."""
    low, high = row.get(f"{figure}_low", math.nan), row.get(f"{figure}_high", math.nan)
    if not (isinstance(low, float) and math.isfinite(low)):
        return _fmt(row.get(figure, math.nan), digits)
    return f"{_fmt(row[figure], digits)}\n[{low:.{digits}f}–{high:.{digits}f}]"


def _repeat_spread(row: dict[str, Any]) -> str:
    sd = row.get("pr_auc_repeat_sd", math.nan)
    if int(row.get("repeats", 1) or 1) < 2 or not math.isfinite(float(sd)):
        return ""
    return f"\n±{float(sd):.3f} sd ({int(row['repeats'])} runs)"


def _verdict(row: dict[str, Any]) -> str:
    skill = str(row.get("skill", UNDEFINED))
    style = {NO_SKILL: "[bold red]no skill[/bold red]", ABOVE_CHANCE: "above chance"}
    return style.get(skill, skill)


def _positives(row: dict[str, Any]) -> str:
    n = int(row.get("positives", 0))
    return f"{n} ⚠" if n < MIN_POSITIVES else str(n)


def summary_table(result: Any) -> Table:
    """All-forces figures per design, epsilon and retention window, each against chance."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Study {result.spec.name}: held-out vehicles, all forces",
        caption="ε ∞ = non-private. [95% bootstrap interval over held-out vehicles]. chance = "
        "held-out prevalence (PR-AUC and precision of a random ranking); lift = PR-AUC / "
        'chance. "no skill": the PR-AUC interval reaches chance, or random rankings of the '
        "same vehicles reach the PR-AUC in 5% of draws or more. ⚠ = fewer than "
        f"{MIN_POSITIVES} held-out positives: the figure is fragile. Alert figures are "
        "re-weighted to the realistic prevalence: alerts per true positive found, false "
        "alerts per million vehicles.",
    )
    for name, justify in (
        ("design", "left"),
        ("ε", "right"),
        ("ret.", "right"),
        ("PR-AUC\n[95% CI]", "right"),
        ("chance", "right"),
        ("lift\n[95% CI]", "right"),
        ("P@R\n[95% CI]", "right"),
        ("alerts\n/TP", "right"),
        ("false\n/M", "right"),
        ("test\n+", "right"),
        ("verdict", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)
    for m in result.metrics:
        if m["force"] != ALL_FORCES:
            continue
        eps = "∞" if math.isinf(float(m["epsilon"])) else _fmt(float(m["epsilon"]), 1)
        if not uses_force_data(str(m["design"])):
            eps = "none"
        table.add_row(
            m["design"],
            eps,
            f"{m['retention_days']}d",
            _interval(m, "pr_auc") + _repeat_spread(m),
            _fmt(m.get("chance", math.nan)),
            _interval(m, "lift", 1),
            _interval(m, "precision_at_recall"),
            _fmt(m.get("alerts_per_tp_realistic", math.nan), 1),
            _fmt(m.get("false_alerts_per_million_realistic", math.nan), 0),
            _positives(m),
            _verdict(m),
        )
    return table


def deployable_verdict(metrics: list[dict[str, Any]]) -> str:
    """A plain sentence when no deployable design clears chance at any sweep point."""
    from research.study.designs import get_design
    from research.study.designs.registry import UnknownDesignError

    def deployable(name: str) -> bool:
        try:
            return get_design(name).deployable
        except UnknownDesignError:
            return False

    rows = [m for m in metrics if m["force"] == ALL_FORCES and deployable(str(m["design"]))]
    if not rows or any(m.get("skill") == ABOVE_CHANCE for m in rows):
        return ""
    names = ", ".join(dict.fromkeys(str(m["design"]) for m in rows))
    return (
        f"No deployable design ({names}) beats chance in this run: it does not show that "
        "the processing achieves its purpose."
    )


def retention_table(result: Any) -> Table:
    """Convicted offenders kept and lost to deletion, all forces, per window."""
    table = Table(
        title="Positives against rolling deletion (all forces)",
        caption="in log = convictions known on the study date of offenders a force has read "
        "(ingest.csv convictions_loaded); convicted = those read while offending; usable = "
        f"those whose offence-period reads are still held (⚠ below {MIN_POSITIVES}).",
    )
    for name in (
        "retention",
        "offenders seen",
        "in log",
        "convicted by study date",
        "reads held at conviction",
        "lost to deletion",
        "usable at study date",
    ):
        table.add_column(name, justify="right", no_wrap=name == "retention")
    for r in result.retention:
        if r["force"] != ALL_FORCES:
            continue
        table.add_row(
            f"{r['retention_days']}d",
            str(r["offenders_seen"]),
            str(r.get("convictions_in_log", "–")),
            str(r["convicted_by_study_date"]),
            str(r["conviction_arrived_while_held"]),
            str(r["lost_to_deletion_before_conviction"]),
            _positives({"positives": r["usable_positives_at_study_date"]}),
        )
    return table


def print_summary(result: Any, console: Console) -> None:
    """Print the summary tables and where the results are."""
    # Wide enough for every column when the output is a log file (rich's default is 80).
    width = console.width
    if not console.is_terminal:
        console.width = max(width, 124)
    try:
        console.print(summary_table(result))
    finally:
        console.width = width
    verdict = deployable_verdict(result.metrics)
    if verdict:
        console.print(f"[bold]{verdict}[/bold]")
    console.print(retention_table(result))
    console.print(
        f"Results: {result.out} (metrics, privacy_ledger, retention, plots/, "
        f"manifest.json) in {result.timings.get('total', 0):.0f} s"
    )
    console.print(
        "[dim]pooled = non-private national pool: a counterfactual, not deployable.[/dim]"
    )
