"""How many positives are needed: the sweep the N8 report could not run.

The N8 project failed because positives were too rare in any one force. This sweep varies the
number of labelled positives a design can train on, three ways the study controls:

* **prevalence**: a world per prevalence (same seed, size and days), so more vehicles offend;
* **retention window**: a shorter window loses convictions that arrive after the reads expire;
* **forces taking part**: 1, 2, ... forces, added largest first (by reads), so a federation
  or a pool over more forces trains on more positives.

Each combination of prevalence and number of forces is one ordinary study run (a sub-folder
``positives/p<prevalence>-f<forces>/``, with every retention window of the sweep and the main
epsilon only); runs at the same prevalence share one world. ``local-only`` is run once per
prevalence (at the largest number of forces): each force alone is its own point.

Every point is read against chance: PR-AUC on the point's held-out vehicles with a 95%
bootstrap interval, against the held-out prevalence. Per design the sweep reports the smallest
number of *training* positives (convicted by the study date, still held, on the training side
of the split, summed over the forces the design trains on) from which on every larger point

* beats chance: the whole interval lies above chance (the expected PR-AUC of a random ranking
  of the point's held-out vehicles, a little above their prevalence; see ``resampling``); and
* reaches 5 x chance: the PR-AUC is at least 5 x chance, with the interval above chance.

"From which on every larger point" makes the figure robust to one lucky small point; a design
that never gets there says "not reached" and how many positives the largest point had.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.console import Console

from research.study import world as world_io
from research.study.compare import eps_text, load_run
from research.study.designs import design_colour
from research.study.resampling import (
    FEW_POSITIVES,
    NO_SKILL,
    pr_auc_interval,
    random_ranking_pr_auc,
    skill_label,
)
from research.study.results import write_json, write_table
from research.study.spec import PositivesSpec, RetentionSpec, StudySpec

FOLDER = "positives"
POINTS = "positives_sweep"
NEEDED = "positives_needed"
PLOT = "positives_needed.png"
TARGET_LIFT = 5.0
DESIGN_MARKERS = {"local-only": "s", "federated": "o", "pooled": "^"}


@dataclass(frozen=True)
class SubStudy:
    """One run of the sweep: a prevalence, the forces taking part, the designs it trains."""

    prevalence: float
    forces: tuple[str, ...]
    designs: tuple[str, ...]

    @property
    def folder(self) -> str:
        """Its folder under ``positives/``."""
        return f"p{self.prevalence:g}-f{len(self.forces)}"


def plan(spec: StudySpec, forces_largest_first: Sequence[str]) -> list[SubStudy]:
    """The sweep's runs: every prevalence x number of forces (local-only at the largest)."""
    sweep = spec.positives
    prevalences = sweep.prevalence or (spec.world.prevalence,)
    total = len(forces_largest_first)
    counts = sorted({min(k, total) for k in (sweep.forces or (total,))})
    designs = sweep.designs or spec.designs
    runs = []
    for prevalence in sorted(set(prevalences)):
        for k in counts:
            chosen = tuple(forces_largest_first[:k])
            here = tuple(d for d in designs if d != "local-only" or k == counts[-1])
            if here:
                runs.append(SubStudy(prevalence, chosen, here))
    return runs


def windows(spec: StudySpec) -> tuple[int, ...]:
    """The sweep's retention windows, longest first."""
    return tuple(sorted(set(spec.positives.retention or spec.retention_windows()), reverse=True))


def sub_spec(spec: StudySpec, sub: SubStudy) -> StudySpec:
    """The study spec of one sweep run (main epsilon only, the sweep's windows)."""
    ws = windows(spec)
    return replace(
        spec,
        name=f"{spec.name}-positives-{sub.folder}",
        forces=sub.forces,
        designs=sub.designs,
        world=replace(spec.world, prevalence=sub.prevalence),
        dp=replace(spec.dp, epsilon_sweep=()),
        retention=RetentionSpec(max_age_days=ws[0], sweep=ws),
        positives=PositivesSpec(),
    )


def _link_world(run_dir: Path, world_dir: Path) -> None:
    """Point ``run_dir/world`` at the shared world of its prevalence (generated once)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    link = run_dir / "world"
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == world_dir.resolve():
            return
        from research.study.runner import StudyError

        raise StudyError(
            f"positives sweep: {run_dir.name}/world is not the shared world of its prevalence; "
            "remove it (or use a fresh --out folder)"
        )
    os.symlink(os.path.relpath(world_dir, run_dir), link, target_is_directory=True)


@dataclass
class SweepResult:
    """What the sweep wrote: every point, the per-design answer, the files."""

    points: list[dict[str, Any]] = field(default_factory=list)
    needed: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def run_positives_sweep(
    spec: StudySpec, out: Path, console: Console | None = None, *, replicates: int = 1000
) -> SweepResult:
    """Run every sweep run under ``out/positives/`` and write the table and the plot to ``out``."""
    from research.study.runner import run_study  # the runner imports this module's siblings

    out = Path(out).resolve()
    base = out / FOLDER
    worlds = base / "worlds"
    main_world = out / "world"
    subs: list[SubStudy] = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for prevalence in sorted(set(spec.positives.prevalence or (spec.world.prevalence,))):
        world_spec = replace(spec.world, prevalence=prevalence)
        world_dir = worlds / f"p{prevalence:g}"
        if prevalence == spec.world.prevalence and (main_world / "forces").is_dir():
            world_dir = main_world  # the main study's world, already generated
        if console is not None:
            console.print(f"[bold]positives sweep[/bold]: world at prevalence {prevalence:g}")
        clock = time.perf_counter()
        world_io.ensure_world(world_spec, world_dir)
        timings[f"world p{prevalence:g}"] = round(time.perf_counter() - clock, 1)
        order = world_io.forces_by_size(world_dir)
        if spec.forces:
            order = [f for f in order if f in spec.forces]
        for sub in plan(
            replace(spec, positives=replace(spec.positives, prevalence=(prevalence,))), order
        ):
            run_dir = base / sub.folder
            _link_world(run_dir, world_dir)
            if console is not None:
                console.print(
                    f"[bold]positives sweep[/bold]: {sub.folder} "
                    f"({', '.join(sub.designs)}; {len(sub.forces)} force(s))"
                )
            clock = time.perf_counter()
            run_study(sub_spec(spec, sub), run_dir, console=console)
            timings[sub.folder] = round(time.perf_counter() - clock, 1)
            subs.append(sub)
    result = SweepResult(runs=[s.folder for s in subs])
    for sub in subs:
        result.points.extend(sweep_points(base / sub.folder, sub, replicates=replicates))
    result.needed = positives_needed(result.points)
    result.files.extend(write_table(result.points, out / POINTS))
    result.files.extend(write_table(result.needed, out / NEEDED))
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    result.files.append(plot_positives(result.points, result.needed, plots / PLOT))
    result.files.append(
        write_json(
            base / "sweep.json",
            {
                "runs": [
                    {
                        "folder": s.folder,
                        "prevalence": s.prevalence,
                        "forces": list(s.forces),
                        "designs": list(s.designs),
                    }
                    for s in subs
                ],
                "retention_days": list(windows(spec)),
                "epsilon": spec.dp.epsilon,
                "target_lift": TARGET_LIFT,
                "bootstrap_replicates": replicates,
                "timings_s": {**timings, "total": round(time.perf_counter() - started, 1)},
            },
        )
    )
    return result


def _point(
    sub: SubStudy,
    design: str,
    epsilon: float,
    window: int,
    label: str,
    n_forces: int,
    scores: Any,
    truth: Any,
    strata: Any,
    train_positives: int,
    replicates: int,
) -> dict[str, Any]:
    auc, lift = pr_auc_interval(scores, truth, strata, replicates=replicates)
    positives = int(truth.sum())
    chance = positives / len(truth) if len(truth) else math.nan
    chance_pr_auc = random_ranking_pr_auc(positives, len(truth))
    beats = skill_label(auc, chance_pr_auc) != NO_SKILL
    return {
        "design": design,
        "epsilon": epsilon,
        "prevalence": sub.prevalence,
        "forces": n_forces,
        "trained_on": label,
        "retention_days": window,
        "train_positives": int(train_positives),
        "held_out_vehicles": len(truth),
        "held_out_positives": positives,
        "chance": chance,
        "chance_pr_auc": chance_pr_auc,
        "pr_auc": auc.estimate,
        "pr_auc_low": auc.low,
        "pr_auc_high": auc.high,
        "lift": lift.estimate,
        "lift_low": lift.low,
        "lift_high": lift.high,
        "beats_chance": beats,
        "reaches_5x_chance": bool(beats and auc.estimate >= TARGET_LIFT * chance),
        "few_positives": positives < FEW_POSITIVES,
        "run": f"{FOLDER}/{sub.folder}",
    }


def sweep_points(run_dir: Path, sub: SubStudy, *, replicates: int = 1000) -> list[dict[str, Any]]:
    """Every design point of one sweep run: one per window, and per force for local-only."""
    run = load_run(run_dir)
    points = []
    overall = run.metrics[run.metrics["force"] == "all forces"]
    for row in overall.to_dict("records"):
        design, epsilon = str(row["design"]), float(row["epsilon"])
        window = int(row["retention_days"])
        held = run.held_out(design, epsilon, window)
        if held is None:
            continue
        if design == "local-only":
            for i, force in enumerate(held.forces):
                scores, truth = held.force(force)
                points.append(
                    _point(
                        sub,
                        design,
                        epsilon,
                        window,
                        force,
                        1,
                        scores,
                        truth,
                        None,
                        held.train_positives[i],
                        replicates,
                    )
                )
        else:
            points.append(
                _point(
                    sub,
                    design,
                    epsilon,
                    window,
                    f"{len(held.forces)} forces",
                    len(held.forces),
                    held.scores,
                    held.truth,
                    held.strata,
                    sum(held.train_positives),
                    replicates,
                )
            )
    return points


def _threshold(points: list[dict[str, Any]], key: str) -> int | None:
    """The smallest training positives from which on every larger point has ``key``."""
    ordered = sorted(points, key=lambda p: p["train_positives"])
    found = None
    for p in reversed(ordered):
        if not p[key]:
            break
        found = p["train_positives"]
    return found


def positives_needed(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per design: the smallest training positives that beat chance, and that reach 5 x."""
    rows = []
    for design in dict.fromkeys(p["design"] for p in points):
        mine = [p for p in points if p["design"] == design]
        largest = max(p["train_positives"] for p in mine)
        beats = _threshold(mine, "beats_chance")
        five = _threshold(mine, "reaches_5x_chance")
        rows.append(
            {
                "design": design,
                "epsilon": mine[0]["epsilon"],
                "points": len(mine),
                "train_positives_min": min(p["train_positives"] for p in mine),
                "train_positives_max": largest,
                "points_beating_chance": sum(p["beats_chance"] for p in mine),
                "min_positives_beats_chance": beats if beats is not None else math.nan,
                "min_positives_5x_chance": five if five is not None else math.nan,
                "answer": _answer(beats, five, largest),
            }
        )
    return rows


def _answer(beats: int | None, five: int | None, largest: int) -> str:
    if beats is None:
        return f"no skill at any tried size (largest: {largest} training positives)"
    text = f"beats chance from {beats} training positives"
    if five is None:
        return text + f"; 5 x chance not reached (largest: {largest})"
    return text + f"; 5 x chance from {five}"


def plot_positives(points: list[dict[str, Any]], needed: list[dict[str, Any]], path: Path) -> Path:
    """Lift over chance (PR-AUC / held-out prevalence, 95% interval) against training positives."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for design in dict.fromkeys(p["design"] for p in points):
        mine = sorted(
            (p for p in points if p["design"] == design), key=lambda p: p["train_positives"]
        )
        xs = [max(p["train_positives"], 0.8) for p in mine]  # 0 positives drawn at the axis
        ys = [p["lift"] for p in mine]
        low = [
            max(p["lift"] - p["lift_low"], 0) if math.isfinite(p["lift_low"]) else 0 for p in mine
        ]
        high = [
            max(p["lift_high"] - p["lift"], 0) if math.isfinite(p["lift_high"]) else 0 for p in mine
        ]
        eps = eps_text(float(mine[0]["epsilon"]))
        ax.errorbar(
            xs,
            ys,
            yerr=[low, high],
            fmt=DESIGN_MARKERS.get(design, "o"),
            color=design_colour(design),
            alpha=0.85,
            capsize=3,
            label=f"{design} (ε={'∞' if eps == 'inf' else eps})",
        )
    ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="chance (lift 1)")
    ax.axhline(TARGET_LIFT, color="grey", linestyle="--", linewidth=1, label="5 x chance")
    for row in needed:
        if isinstance(row["min_positives_beats_chance"], int):
            ax.axvline(
                row["min_positives_beats_chance"],
                color=design_colour(row["design"]),
                linewidth=0.8,
                alpha=0.5,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("labelled positives the design trained on (log scale)")
    ax.set_ylabel("PR-AUC / chance (95% interval, log scale)")
    ax.set_title("How many positives are needed: lift over chance against training positives")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def record_in_manifest(out: Path, result: SweepResult) -> None:
    """Add the sweep's runs and files to ``out/manifest.json`` (when the main study wrote one)."""
    import json

    from safefiles import atomic_write_text

    manifest_path = Path(out) / "manifest.json"
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    root = Path(out).resolve()
    manifest["positives_sweep"] = {
        "runs": [f"{FOLDER}/{r}" for r in result.runs],
        "files": sorted(str(p.resolve().relative_to(root)) for p in result.files),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n", mode=0o644)


def sweep_cost(spec: StudySpec, n_forces: int) -> dict[str, int]:
    """How many study runs and design trainings the sweep will do (before it starts)."""
    runs = plan(spec, [f"f{i}" for i in range(n_forces)])
    ws = len(windows(spec))
    trainings = sum(len(r.designs) * ws for r in runs)
    return {"runs": len(runs), "design_trainings": trainings}


def needed_table(result: SweepResult) -> Any:
    """The per-design answer as a rich table (printed by ``anprfed study run``)."""
    from rich.table import Table

    table = Table(
        title="How many positives are needed (training positives, all forces a design uses)",
        caption="Beats chance: every point from that size up has its 95% PR-AUC interval above "
        "a random ranking's expected PR-AUC. 5 x: PR-AUC at least 5 x the held-out prevalence "
        "as well. Points: "
        f"{POINTS}.csv; plot: plots/{PLOT}.",
    )
    for name in ("design", "ε", "points", "positives tried", "beats chance", "5 x chance"):
        table.add_column(name, justify="left" if name == "design" else "right")
    for row in result.needed:
        eps = eps_text(float(row["epsilon"]))

        def cell(value: Any) -> str:
            return "not reached" if not math.isfinite(float(value)) else str(int(value))

        table.add_row(
            row["design"],
            "∞" if eps == "inf" else eps,
            str(row["points"]),
            f"{row['train_positives_min']}–{row['train_positives_max']}",
            cell(row["min_positives_beats_chance"]),
            cell(row["min_positives_5x_chance"]),
        )
    return table
