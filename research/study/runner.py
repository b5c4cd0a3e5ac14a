"""``run_study``: a multi-force study end to end.

1. synthesise the world (or reuse one with the same settings);
2. for each retention window: create one encrypted store per force, ingest its export, load
   its conviction log, and purge as of the study date;
3. train and evaluate every design at every sweep point: ``local-only`` and ``federated``
   (under DP, at each epsilon) and ``pooled`` (the non-private national-pool counterfactual);
4. write the results folder and return a summary.

The runner plays every role of the simulation, so it lives in ``research`` (which may import
every package and which no deployable package imports).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client_force.simulated_force import SimulatedForce
from federation.flower_settings import FlowerSettings
from research.study import world as world_io
from research.study.evaluation import ForceScores, evaluate_design, pr_curve
from research.study.federated import run_federated
from research.study.plots import plot_pr_curves, plot_retention_outcome, plot_utility_vs_epsilon
from research.study.ray_cluster import StudyRayCluster
from research.study.results import package_versions, write_json, write_table
from research.study.retention_outcome import OffenderReads, retention_outcome
from research.study.spec import StudySpec


class StudyError(RuntimeError):
    """A study that could not complete; the message says which step and why."""


@dataclass
class StudyResult:
    """What a run produced: the tables it wrote and where."""

    spec: StudySpec
    out: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    ingest: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    simulation_dirs: list[Path] = field(default_factory=list)  # Ray's session files


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 3)


def eps_label(epsilon: float) -> str:
    """A printable epsilon ("inf" for non-private)."""
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def study_settings(
    spec: StudySpec, retention_days: int, epsilon: float, out: Path, n_forces: int
) -> FlowerSettings:
    """The Flower run settings that every force and the server apply at one sweep point."""
    start, end = world_io.window_for(spec.as_of, retention_days)
    t = spec.training
    return FlowerSettings(
        num_server_rounds=t.rounds,
        strategy=t.strategy,
        proximal_mu=t.proximal_mu,
        min_available_nodes=n_forces,
        min_replies=max(1, n_forces // 2),
        round_timeout=t.round_timeout_s,
        first_round_timeout=max(t.round_timeout_s, 1800.0),
        results_dir=str(out),
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        as_of=spec.as_of.isoformat(),
        max_reads=t.max_reads,
        test_fraction=spec.evaluation.test_fraction,
        seed=spec.seed,
        local_epochs=t.local_epochs,
        learning_rate=t.learning_rate,
        batch_size=t.batch_size,
        dp_target_epsilon=epsilon if math.isfinite(epsilon) else spec.dp.epsilon,
        dp_delta=spec.dp.delta or 0.0,
        dp_max_grad_norm=spec.dp.max_grad_norm,
    )


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=console is None,
    )


def _prepare_forces(
    spec: StudySpec,
    world_dir: Path,
    out: Path,
    windows: list[int],
    truth: Any,
    result: StudyResult,
    progress: Progress,
) -> dict[int, list[Any]]:
    """One store per force and retention window: ingest, label, purge.

    Every window starts from the same history (the whole export, ingested as of the study
    date), so each force's export is ingested and its conviction log loaded once, into the
    first window's store; the other windows get copies of that store. Each copy then gets its
    window's evaluation truth and is purged to its own window.
    """
    as_of = datetime.combine(spec.as_of, datetime.min.time(), tzinfo=UTC)
    # A store accumulated under the longest window (or the whole world), then purged to each.
    ingest_max_age = max(spec.world.days + 1, *windows)
    nodes: dict[int, list[Any]] = {w: [] for w in windows}

    def place(window: int, force: str) -> tuple[Path, Path]:
        return (
            out / "stores" / f"retention-{window}d" / force,
            out / "keys" / f"retention-{window}d" / f"{force}.key",
        )

    forces = world_io.force_names(world_dir)
    task = progress.add_task("ingest + purge (forces)", total=len(forces))
    for force in forces:
        export = world_io.reads_file(world_dir, force)
        first = SimulatedForce(force, *place(windows[0], force))
        report = first.setup(export, as_of, ingest_max_age)
        seen = first.seen_vrms(export, truth["vrm"])
        labels = first.load_convictions(world_io.convictions_for(truth, seen, spec.as_of))
        copies = {windows[0]: first}
        copies.update({w: first.copy_to(*place(w, force)) for w in windows[1:]})
        for window, node in copies.items():
            start, end = world_io.window_for(spec.as_of, window)
            positives = world_io.offending_in_window(truth, start, end)
            node.load_truth(positives[positives.isin(seen)])
            purge = node.purge(as_of, window)
            result.ingest.append(
                {
                    "retention_days": window,
                    "force": force,
                    **report,
                    "convictions_loaded": labels,
                    **purge,
                }
            )
            nodes[window].append(node)
        progress.advance(task)
    result.ingest.sort(key=lambda row: (windows.index(row["retention_days"]), row["force"]))
    return nodes


def _retention_rows(
    spec: StudySpec, world_dir: Path, truth: Any, forces: list[str], window: int
) -> list[dict[str, Any]]:
    reads = [OffenderReads(f, world_io.offender_reads(world_dir, f, truth["vrm"])) for f in forces]
    return retention_outcome(truth, reads, window, spec.as_of)


def _evaluate(
    nodes: list[Any],
    weights: list[np.ndarray] | dict[str, list[np.ndarray]],
    settings: FlowerSettings,
) -> list[ForceScores]:
    """Every force scores its held-out vehicles with the design's model(s)."""
    per_force = []
    for node in nodes:
        w = weights[node.name] if isinstance(weights, dict) else weights
        scores, truth = node.evaluate(w, settings)
        per_force.append(ForceScores(node.name, scores, truth))
    return per_force


def run_study(
    spec: StudySpec, out: Path, console: Console | None = None, reuse_world: bool = True
) -> StudyResult:
    """Run every step of the study and write the results folder ``out``."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result = StudyResult(spec=spec, out=out)
    timings = result.timings
    started = datetime.now(UTC)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    main_eps = spec.dp.epsilon
    main_window = spec.retention.max_age_days
    points = spec.sweep_points()
    windows = list(dict.fromkeys(w for w, _ in points))
    n_design_runs = sum(len(windows) if d == "pooled" else len(points) for d in spec.designs)
    ray_cluster = StudyRayCluster(os.cpu_count() or 1, out / "server" / "ray-head.log")
    with _progress(console) as progress, _LocalWorkers() as local_workers, ExitStack() as stack:
        world_dir = out / "world"
        with _timed(timings, "synthesise"):
            if not reuse_world and (world_dir / world_io.WORLD_SETTINGS_FILE).exists():
                (world_dir / world_io.WORLD_SETTINGS_FILE).unlink()
            world_io.ensure_world(spec.world, world_dir, progress=progress)
        truth = world_io.load_truth(world_dir)
        forces = world_io.force_names(world_dir)
        if "federated" in spec.designs:
            # One Ray head node for every federated run; it boots while the forces ingest.
            stack.enter_context(ray_cluster)
        with _timed(timings, "ingest+purge"):
            stores = _prepare_forces(spec, world_dir, out, windows, truth, result, progress)
        designs_task = progress.add_task("designs", total=n_design_runs)
        for window in windows:
            nodes = stores[window]
            with _timed(timings, "retention outcome"):
                result.retention.extend(_retention_rows(spec, world_dir, truth, forces, window))
            for design in spec.designs:
                epsilons = [e for w, e in points if w == window]
                for epsilon in [math.inf] if design == "pooled" else epsilons:
                    label = f"{design} eps={eps_label(epsilon)} retention={window}d"
                    progress.update(designs_task, description=label)
                    settings = study_settings(
                        spec,
                        window,
                        epsilon,
                        out / "server" / f"{design}-eps{eps_label(epsilon)}-ret{window}d",
                        len(nodes),
                    )
                    study_id = f"{spec.name}/{design}/eps{eps_label(epsilon)}/ret{window}d"
                    settings = settings.replace(study_id=study_id, ledger_scope=_slug(study_id))
                    with _timed(timings, design):
                        weights = _train_design(
                            design,
                            nodes,
                            settings,
                            study_id,
                            progress,
                            spec,
                            local_workers,
                            ray_cluster,
                        )
                        per_force = _evaluate(nodes, weights, settings)
                    if design == "pooled":
                        _save_model(weights, settings, Path(settings.results_dir))
                    elif design == "local-only":
                        for force_name, force_weights in weights.items():
                            _save_model(
                                force_weights,
                                settings,
                                Path(settings.results_dir),
                                force_name,
                            )
                    for row in evaluate_design(
                        per_force, spec.evaluation.recall, spec.evaluation.realistic_prevalence
                    ):
                        result.metrics.append(
                            {"design": design, "epsilon": epsilon, "retention_days": window, **row}
                        )
                    if window == main_window and (epsilon == main_eps or design == "pooled"):
                        scores = np.concatenate([f.scores for f in per_force])
                        truth_all = np.concatenate([f.truth for f in per_force])
                        curves[f"{design} (eps={eps_label(epsilon)})"] = pr_curve(scores, truth_all)
                    if design != "pooled":
                        for node in nodes:
                            result.ledger.extend(
                                {
                                    "retention_days": window,
                                    "design": design,
                                    "target_epsilon": epsilon,
                                    **r,
                                }
                                for r in node.ledger_rows(settings)
                            )
                    progress.advance(designs_task)
    timings["total"] = round((datetime.now(UTC) - started).total_seconds(), 3)
    if ray_cluster.temp_dir is not None:
        result.simulation_dirs.append(ray_cluster.temp_dir)
    _write_results(result, curves)
    return result


def _train_design(
    design: str,
    nodes: list[Any],
    settings: FlowerSettings,
    study_id: str,
    progress: Progress,
    spec: StudySpec,
    local_workers: _LocalWorkers,
    ray_cluster: StudyRayCluster,
) -> Any:
    """Train one design; returns one weight list (shared model) or one per force."""
    if design == "local-only":
        return local_workers.train_all(nodes, settings, study_id)
    if design == "federated":
        ray_cluster.connect()
        return run_federated(
            nodes, settings, study_id, progress, secure_aggregation=spec.training.secure_aggregation
        )
    if design == "pooled":
        force_cls = type(nodes[0])
        return force_cls.train_pooled(nodes, settings)
    raise StudyError(f"unknown design {design!r}")


def _train_local(node: Any, settings: FlowerSettings, study_id: str) -> list[np.ndarray]:
    """One force's local-only training, in a worker process (one torch thread each)."""
    import torch

    torch.set_num_threads(1)
    return node.train_local(settings, study_id)


class _LocalWorkers:
    """Worker processes for the local-only design, started on first use and kept for the study.

    Every force trains alone, as many at once as there are cores: forces share nothing, so this
    is the honest parallelism of N independent forces, and each worker opens its own force's
    store. Keeping the workers across sweep points saves their start-up (a fresh interpreter
    importing torch) and lets them reuse the examples they already built for a window.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _LocalWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def train_all(
        self, nodes: list[Any], settings: FlowerSettings, study_id: str
    ) -> dict[str, list[np.ndarray]]:
        """Train every force's local-only model; weights by force name."""
        if self._pool is None:
            workers = max(1, min(len(nodes), os.cpu_count() or 1))
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        futures = {
            node.name: self._pool.submit(_train_local, node.detached(), settings, study_id)
            for node in nodes
        }
        try:
            return {name: future.result() for name, future in futures.items()}
        except BrokenProcessPool:
            self._pool = None
            raise StudyError(
                "a local-only worker process died (killed, out of memory, or started from a "
                "script without an `if __name__ == '__main__':` guard, which the spawn start "
                "method needs)"
            ) from None


def _save_model(
    weights: list[np.ndarray], settings: FlowerSettings, folder: Path, force: str | None = None
) -> Path:
    """Keep a model the server did not checkpoint, for audits, arrays by contract name.

    The pooled counterfactual goes to ``<folder>/checkpoints/final.npz``, as the server keeps
    the federated one; each force's local-only model to ``<folder>/checkpoints/<force>/
    final.npz``. (Local-only models never reach a server: in a simulation the researcher keeps
    them so that ``anprfed privacy audit`` can attack every design.)
    """
    from federation.model import weight_spec

    names = [name for name, _, _ in weight_spec(settings.model_config())]
    path = folder / "checkpoints" / (f"{force}/final.npz" if force else "final.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **dict(zip(names, weights, strict=True)))
    return path


def _write_results(result: StudyResult, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    out, spec = result.out, result.spec
    files = result.files
    files.extend(write_table(result.metrics, out / "metrics"))
    files.extend(write_table(result.ledger, out / "privacy_ledger"))
    files.extend(write_table(result.retention, out / "retention"))
    files.extend(write_table(result.ingest, out / "ingest"))
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    if any(m["force"] == "all forces" for m in result.metrics):
        files.append(
            plot_utility_vs_epsilon(result.metrics, plots / "utility_vs_epsilon.png", "pr_auc")
        )
    if curves:
        overall = [m for m in result.metrics if m["force"] == "all forces"]
        prevalence = float(overall[0]["scenario_prevalence"]) if overall else 0.0
        files.append(
            plot_pr_curves(
                curves,
                prevalence,
                plots / "pr_curves.png",
                f"Held-out vehicles, all forces, {spec.retention.max_age_days}-day retention",
            )
        )
    if result.retention:
        files.append(plot_retention_outcome(result.retention, plots / "retention_outcome.png"))
    manifest = {
        "study": spec.name,
        "spec": spec.to_dict(),
        "as_of": spec.as_of.isoformat(),
        "seed": spec.seed,
        "versions": package_versions(),
        "timings_s": result.timings,
        "simulation_dirs": [str(p) for p in result.simulation_dirs],
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": sorted(str(p.relative_to(out)) for p in files),
        "notes": [
            "pooled is a non-private counterfactual (a national database); it is not deployable",
            "epsilon is per force for one sweep point; sweep points are separate hypothetical "
            "studies, each with its own ledger namespace",
        ],
    }
    files.append(write_json(out / "manifest.json", manifest))


def _slug(text: str) -> str:
    """A file-name-safe form of a study id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
