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


def plot_utility_vs_epsilon(rows: Sequence[dict[str, Any]], path: Path, metric: str) -> Path:
    """Utility (``metric``, all forces) against epsilon: a line per design and retention window."""
    overall = [r for r in rows if r["force"] == "all forces"]
    finite = sorted({float(r["epsilon"]) for r in overall if math.isfinite(float(r["epsilon"]))})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = sorted({(r["design"], int(r["retention_days"])) for r in overall})
    for design, window in keys:
        pts = sorted(
            (_epsilon_position(float(r["epsilon"]), finite), float(r[metric]))
            for r in overall
            if r["design"] == design and int(r["retention_days"]) == window
        )
        xs, ys = zip(*pts, strict=True)
        style = "-" if window == min(k[1] for k in keys) else "--"
        ax.plot(
            xs,
            ys,
            style,
            marker="o",
            color=design_colour(design),
            label=f"{design}, {window}-day retention",
        )
    if metric == "pr_auc":
        # A classifier that ranks at random has PR-AUC equal to the held-out prevalence.
        for window in sorted({k[1] for k in keys}):
            prevalence = next(
                (
                    float(r["scenario_prevalence"])
                    for r in overall
                    if int(r["retention_days"]) == window and "scenario_prevalence" in r
                ),
                None,
            )
            if prevalence is not None:
                ax.axhline(
                    prevalence,
                    color="grey",
                    linestyle=":" if window == min(k[1] for k in keys) else "-.",
                    linewidth=1,
                    label=f"chance (prevalence), {window}-day retention",
                )
    ax.set_xscale("log")
    ticks = [*finite, _epsilon_position(math.inf, finite)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in finite] + ["non-private"])
    ax.set_xlabel("epsilon per force (whole study)")
    ax.set_ylabel(metric)
    ax.set_title(f"Utility against privacy: {metric} on held-out vehicles, all forces")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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
    ax.axhline(prevalence, color="grey", linestyle=":", label=f"no skill ({prevalence:.3%})")
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


def plot_retention_outcome(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Convicted positives whose reads survived until conviction, against those lost, per force."""
    windows = sorted({int(r["retention_days"]) for r in rows})
    forces = list(dict.fromkeys(r["force"] for r in rows))
    fig, axes = plt.subplots(1, len(windows), figsize=(5 * len(windows), 4.5), squeeze=False)
    for ax, window in zip(axes[0], windows, strict=True):
        sel = {r["force"]: r for r in rows if int(r["retention_days"]) == window}
        kept = [sel[f]["conviction_arrived_while_held"] if f in sel else 0 for f in forces]
        lost = [sel[f]["lost_to_deletion_before_conviction"] if f in sel else 0 for f in forces]
        y = np.arange(len(forces))
        ax.barh(y, kept, color="#1b9e77", label="reads still held at conviction")
        ax.barh(y, lost, left=kept, color="#d95f02", label="reads deleted before conviction")
        ax.set_yticks(y)
        ax.set_yticklabels(forces, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("convicted offenders")
        ax.set_title(f"{window}-day retention")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Positives surviving retention (conviction lag against rolling deletion)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
