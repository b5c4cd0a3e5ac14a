"""PNG plots for a study's results folder (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from research.study.designs import design_colour


def _epsilon_position(eps: float, finite: list[float]) -> float:
    """Put non-private (inf) one step to the right of the largest finite epsilon on a log axis."""
    if math.isfinite(eps):
        return eps
    return (max(finite) * 2.0) if finite else 1.0


RETENTION_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _float(row: dict[str, Any], key: str) -> float:
    try:
        return float(row.get(key, math.nan))
    except (TypeError, ValueError):
        return math.nan


def plot_utility_vs_epsilon(rows: Sequence[dict[str, Any]], path: Path, metric: str) -> Path:
    """Utility (``metric``, all forces) against epsilon: a line per design and retention window.

    Each point carries its 95% bootstrap interval (``<metric>_low``/``_high``) as an error bar
    and each retention window its own marker and chance line (the held-out prevalence). The
    y axis starts at 0 and reaches at least 5 x chance, so differences the intervals cannot
    tell apart are not drawn as structure. A design whose interval reaches chance is marked
    "no skill" in the legend.
    """
    overall = [r for r in rows if r["force"] == "all forces"]
    finite = sorted({float(r["epsilon"]) for r in overall if math.isfinite(float(r["epsilon"]))})
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    keys = sorted({(r["design"], int(r["retention_days"])) for r in overall})
    windows = sorted({k[1] for k in keys}, reverse=True)
    marker = {w: RETENTION_MARKERS[i % len(RETENTION_MARKERS)] for i, w in enumerate(windows)}
    top = 0.0
    # Points of different designs at one epsilon are set slightly apart, so bars don't overlap.
    dodge = {key: 1.07 ** (i - (len(keys) - 1) / 2) for i, key in enumerate(keys)}
    for design, window in keys:
        sel = sorted(
            (r for r in overall if r["design"] == design and int(r["retention_days"]) == window),
            key=lambda r: _epsilon_position(float(r["epsilon"]), finite),
        )
        xs = [_epsilon_position(float(r["epsilon"]), finite) * dodge[(design, window)] for r in sel]
        ys = np.array([_float(r, metric) for r in sel])
        low = np.array([_float(r, f"{metric}_low") for r in sel])
        high = np.array([_float(r, f"{metric}_high") for r in sel])
        has_ci = np.isfinite(low) & np.isfinite(high)
        yerr = np.vstack([np.where(has_ci, ys - low, 0.0), np.where(has_ci, high - ys, 0.0)])
        no_skill = any(str(r.get("skill")) == "no skill" for r in sel)
        label = f"{design}, {window}-day retention" + (" (no skill)" if no_skill else "")
        ax.errorbar(
            xs,
            ys,
            yerr=yerr,
            linestyle="-" if window == windows[0] else "--",
            marker=marker[window],
            markerfacecolor="white" if no_skill else design_colour(design),
            color=design_colour(design),
            capsize=3,
            label=label,
        )
        top = max(top, float(np.nanmax(np.r_[ys, high[has_ci]])) if len(ys) else 0.0)
    chance_top = 0.0
    if metric in ("pr_auc", "precision_at_recall"):
        # A classifier that ranks at random has PR-AUC (and precision) equal to the prevalence.
        for window in windows:
            prevalence = next(
                (
                    _float(r, "chance") if "chance" in r else _float(r, "scenario_prevalence")
                    for r in overall
                    if int(r["retention_days"]) == window
                ),
                math.nan,
            )
            if math.isfinite(prevalence):
                chance_top = max(chance_top, prevalence)
                ax.axhline(
                    prevalence,
                    color="grey",
                    linestyle=":" if window == windows[0] else "-.",
                    linewidth=1,
                    label=f"chance (held-out prevalence {prevalence:.3f}), {window}-day",
                )
    upper = max(top * 1.1, 5 * chance_top, 0.05)
    ax.set_ylim(0.0, min(1.02, upper) if upper < 1.02 else 1.02)
    ax.set_xscale("log")
    ticks = [*finite, _epsilon_position(math.inf, finite)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in finite] + ["non-private"])
    ax.minorticks_off()
    ax.set_xlabel("epsilon per force (whole study)")
    ax.set_ylabel(f"{metric} (bars: 95% bootstrap interval)")
    ax.set_title(f"Utility against privacy: {metric} on held-out vehicles, all forces")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pr_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], prevalence: float, path: Path, title: str
) -> Path:
    """Precision-recall curves, one per label, with the no-skill line at the test prevalence."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, (precision, recall) in curves.items():
        design = label.split(" ")[0]
        ax.plot(recall, precision, color=design_colour(design), label=label)
    ax.axhline(
        prevalence,
        color="grey",
        linestyle=":",
        label=f"chance: random ranking (prevalence {prevalence:.3%})",
    )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_retention_outcome(
    rows: Sequence[dict[str, Any]], path: Path, min_positives: int = 20
) -> Path:
    """Convicted offenders per force and window, split by what deletion left of them.

    Each bar is one force's convicted offenders, split into the positives a model can still
    learn from on the study date (conviction known and offence-period reads still held), those
    whose reads were held at conviction but have aged out since, and those whose reads were
    deleted before the conviction arrived. The usable count is written at the bar, flagged
    when it is below ``min_positives``.
    """
    windows = sorted({int(r["retention_days"]) for r in rows})
    forces = list(dict.fromkeys(r["force"] for r in rows))
    fig, axes = plt.subplots(
        1, len(windows), figsize=(max(7.0, 5.5 * len(windows)), 5.0), squeeze=False
    )
    for ax, window in zip(axes[0], windows, strict=True):
        sel = {r["force"]: r for r in rows if int(r["retention_days"]) == window}

        def col(key: str, sel: dict[str, dict[str, Any]] = sel) -> np.ndarray:
            return np.array([int(sel[f][key]) if f in sel else 0 for f in forces])

        usable = col("usable_positives_at_study_date")
        aged = col("conviction_arrived_while_held") - usable
        lost = col("lost_to_deletion_before_conviction")
        y = np.arange(len(forces))
        ax.barh(y, usable, color="#1b9e77", label="usable on study date (training positives)")
        ax.barh(y, aged, left=usable, color="#a6d854", label="held at conviction, aged out since")
        ax.barh(y, lost, left=usable + aged, color="#d95f02", label="deleted before conviction")
        for i, n in enumerate(usable):
            flag = f" (fewer than {min_positives})" if n < min_positives else ""
            ax.text(usable[i] + aged[i] + lost[i], i, f" {n} usable{flag}", va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(forces, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("convicted offenders by the study date")
        ax.set_title(f"{window}-day retention")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(0, max(1.0, float((usable + aged + lost).max()) * 1.45))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3)
    fig.suptitle("Usable positives after retention\n(conviction lag against rolling deletion)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
