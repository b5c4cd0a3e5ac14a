"""The summary table ``anprfed study run`` prints at the end."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from research.study.evaluation import ALL_FORCES


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def summary_table(result: Any) -> Table:
    """All-forces figures per design, epsilon and retention window."""
    table = Table(
        title=f"Study {result.spec.name}: held-out vehicles, all forces",
        caption="ε ∞ = non-private. Alert figures are re-weighted to the realistic prevalence "
        "(1 in 400): alerts and vehicles read per true positive found, false alerts per "
        "million vehicles.",
    )
    for name, justify in (
        ("design", "left"),
        ("ε", "right"),
        ("retention", "right"),
        ("PR-AUC", "right"),
        ("P@R0.5", "right"),
        ("alerts /TP", "right"),
        ("false /M", "right"),
        ("read /TP", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=name in ("design", "ε", "retention"))
    for m in result.metrics:
        if m["force"] != ALL_FORCES:
            continue
        eps = "∞" if math.isinf(float(m["epsilon"])) else _fmt(float(m["epsilon"]), 1)
        table.add_row(
            m["design"],
            eps,
            f"{m['retention_days']}d",
            _fmt(m["pr_auc"]),
            _fmt(m.get("precision_at_recall", math.nan)),
            _fmt(m.get("alerts_per_tp_realistic", math.nan), 1),
            _fmt(m.get("false_alerts_per_million_realistic", math.nan), 0),
            _fmt(m.get("vehicles_per_tp_realistic", math.nan), 0),
        )
    return table


def retention_table(result: Any) -> Table:
    """Convicted offenders kept and lost to deletion, all forces, per window."""
    table = Table(title="Positives against rolling deletion (all forces)")
    for name in (
        "retention",
        "offenders seen",
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
            str(r["convicted_by_study_date"]),
            str(r["conviction_arrived_while_held"]),
            str(r["lost_to_deletion_before_conviction"]),
            str(r["usable_positives_at_study_date"]),
        )
    return table


def print_summary(result: Any, console: Console) -> None:
    """Print the summary tables and where the results are."""
    console.print(summary_table(result))
    console.print(retention_table(result))
    console.print(
        f"Results: {result.out} (metrics, privacy_ledger, retention, plots/, "
        f"manifest.json) in {result.timings.get('total', 0):.0f} s"
    )
    console.print(
        "[dim]pooled = non-private national pool: a counterfactual, not deployable.[/dim]"
    )
