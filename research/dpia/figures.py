"""The DPIA's own figures, drawn with matplotlib (Agg) from run-folder facts, as PNG bytes.

* ``data_flow``: what stays inside each force and what reaches the national server;
* ``epsilon_by_force``: the (epsilon, delta) each force's ledger records, against the target;
* ``disparity``: recall and false alerts per million by force, forces ordered by camera count.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

FORCE_COLOUR = "#e8f1fb"
SERVER_COLOUR = "#fdf1e3"
BOUNDARY_COLOUR = "#b2182b"


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _box(
    ax: plt.Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    colour: str,
    lines: Sequence[str],
    title: str,
    size: float = 7.5,
) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.004,rounding_size=0.01",
            fc=colour,
            ec="#444444",
            lw=0.9,
        )
    )
    ax.text(x + 0.01, y + h - 0.012, title, fontsize=size + 1, fontweight="bold", va="top")
    if lines:
        ax.text(
            x + 0.01,
            y + h - 0.012 - 0.032 * (size + 1) / 8.5,
            "\n".join(lines),
            fontsize=size,
            va="top",
            linespacing=1.3,
        )


def data_flow(
    forces: Sequence[str],
    epsilons: dict[str, str],
    arrays: int,
    parameters: int,
    metrics: Sequence[str],
    secure_aggregation: bool,
    retention_days: int,
) -> bytes:
    """Forces on the left (inside the trust boundary), the national server on the right."""
    fig = plt.figure(figsize=(10.5, 6.4))
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.93))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    shown = list(forces)[:8]
    n = max(1, len(shown))
    top, bottom, gap = 0.99, 0.31, 0.012
    height = (top - bottom) / n
    size = 7.5 if n <= 4 else 6.5
    boundary_x, server_x = 0.585, 0.68
    for i, force in enumerate(shown):
        y = top - (i + 1) * height + gap / 2
        h = height - gap
        eps = epsilons.get(force)
        _box(
            ax,
            0.01,
            y,
            0.50,
            h,
            FORCE_COLOUR,
            [
                f"keyed pseudonyms, encrypted day partitions, purged after {retention_days} days",
                "location-free features, local DP-SGD"
                + (f" (epsilon {eps})" if eps is not None else ""),
            ]
            if h > 0.09
            else [],
            f"Force: {force}" + (f"   epsilon {eps}" if eps is not None and h <= 0.09 else ""),
            size=size,
        )
        target_y = 0.52 + 0.4 * (1 - (i + 0.5) / n)
        ax.add_patch(
            FancyArrowPatch(
                (0.515, y + h / 2),
                (server_x - 0.005, target_y),
                arrowstyle="-|>",
                mutation_scale=10,
                lw=0.9,
                color="#2166ac",
            )
        )
    if len(forces) > len(shown):
        ax.text(0.02, bottom - 0.015, f"... and {len(forces) - len(shown)} more forces", fontsize=7)
    _box(
        ax,
        0.01,
        0.01,
        0.50,
        0.27,
        "#f4f4f4",
        [
            "raw VRMs and the raw export (not kept after ingest)",
            "camera register: ids, coordinates, road classes",
            "master key, pseudonym and camera-token keys",
            "pseudonymised reads, conviction-log labels, feature caches",
            "privacy ledger, purge log, the audit's shadow models",
        ],
        "Never leaves a force",
        size=7.5,
    )
    agg = ["SecAgg+: sees only the masked sum"] if secure_aggregation else ["FedAvg of the updates"]
    _box(
        ax,
        server_x,
        0.50,
        0.31,
        0.44,
        SERVER_COLOUR,
        [
            *agg,
            "egress guard: rejects anything",
            "outside the contract, records it",
            "without its contents",
            "checkpoints of the global model",
            "per-force (epsilon, delta) view",
        ],
        "National server",
    )
    _box(
        ax,
        server_x,
        0.01,
        0.31,
        0.40,
        "#fffbe6",
        [
            f"{arrays} model arrays",
            f"({parameters:,} float32 parameters)",
            "scalars only:",
            *[f"  {m}" for m in metrics],
        ],
        "Crosses the boundary",
        size=7.5,
    )
    ax.add_patch(
        FancyArrowPatch(
            (server_x - 0.005, 0.47),
            (0.515, 0.40),
            arrowstyle="-|>",
            mutation_scale=10,
            lw=1.0,
            color="#7f3b08",
        )
    )
    ax.text(0.525, 0.445, "global model", fontsize=7, color="#7f3b08", rotation=8)
    ax.plot([boundary_x, boundary_x], [0.01, 0.99], color=BOUNDARY_COLOUR, ls="--", lw=1.4)
    ax.text(
        boundary_x + 0.006,
        0.02,
        "trust boundary",
        color=BOUNDARY_COLOUR,
        fontsize=8,
        rotation=90,
        va="bottom",
    )
    fig.suptitle(
        "Data flow: what stays in each force and what reaches the national server",
        fontsize=11,
        y=0.985,
    )
    return _png(fig)


def epsilon_by_force(rows: Sequence[tuple[str, float, float]], target: float, title: str) -> bytes:
    """Bars of each force's recorded epsilon (label: delta), with the target as a line."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    names = [r[0] for r in rows]
    values = [r[1] for r in rows]
    bars = ax.bar(names, values, color="#1b9e77")
    for bar, (_, eps, delta) in zip(bars, rows, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{eps:.2f}\nδ={delta:.1e}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.axhline(target, color=BOUNDARY_COLOUR, ls="--", lw=1, label=f"target epsilon {target:g}")
    ax.set_ylabel("epsilon spent (RDP accountant)")
    ax.set_ylim(0, max([target, *values]) * 1.35)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    fig.tight_layout()
    return _png(fig)


def disparity(rows: Sequence[tuple[str, int, float, float]], title: str) -> bytes:
    """Recall and false alerts per million by force (forces ordered by camera count)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    names = [f"{r[0]}\n({r[1]} cameras)" for r in rows]
    left.bar(names, [r[2] for r in rows], color="#1b9e77")
    left.set_ylabel("recall (TPR) at the operating point")
    left.set_ylim(0, 1.05)
    right.bar(names, [r[3] for r in rows], color="#d95f02")
    right.set_ylabel("false alerts per million vehicles")
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)
