"""``run_study``: a multi-force study end to end.

1. synthesise the world (or reuse one with the same settings);
2. for each retention window: create one encrypted store per force, ingest its export, load
   its conviction log, and purge as of the study date;
3. train and evaluate every design at every sweep point: each design is looked up in the
   registry (``research.study.designs``): the built-ins are ``local-only`` and ``federated``
   (under DP, at each epsilon) and ``pooled`` (the non-private national-pool counterfactual);
4. write the results folder (paths from ``research.study.layout.RunLayout``) and return a
   summary.

The runner plays every role of the simulation, so it lives in ``research`` (which may import
every package and which no deployable package imports).
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from client_force import dp_recipe
from client_force.force_dataset import ForceDataError
from client_force.simulated_force import SimulatedForce
from federation.flower_settings import FlowerSettings
from federation.metrics import BOOTSTRAP_RESAMPLES
from research.study import resume, store_reuse
from research.study import world as world_io
from research.study.designs import DesignContext, get_design
from research.study.designs.local_only import LocalWorkerError, LocalWorkers
from research.study.evaluation import (
    ALL_FORCES,
    MIN_POSITIVES,
    NO_SKILL,
    ForceScores,
    evaluate_design,
    pr_curve,
    with_repeat_spread,
)
from research.study.federated import force_resource, place_forces
from research.study.held_out import FOLDER as HELD_OUT_FOLDER
from research.study.held_out import force_split, save_held_out
from research.study.interrupt import stop_on_signals
from research.study.layout import RunLayout, SweepTag, eps_label
from research.study.plots import plot_pr_curves, plot_retention_outcome, plot_utility_vs_epsilon
from research.study.process_memory import release_freed_memory
from research.study.progress import example_progress, study_progress
from research.study.ray_cluster import StudyRayCluster
from research.study.results import package_versions, write_json, write_table
from research.study.retention_outcome import OffenderReads, retention_outcome
from research.study.spec import StudySpec
from safefiles import remove_file


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
    repeats: list[dict[str, Any]] = field(default_factory=list)  # every repeat's rows
    timings: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    simulation_dirs: list[Path] = field(default_factory=list)  # Ray's session files
    public_init: dict[str, Any] | None = None  # the public pre-trained start, if any
    run_id: str = ""


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 3)


def repeat_seed(study_seed: int, repeat: int) -> int:
    """The training seed (DP noise, Poisson sampling) of one repeat, from the study seed.

    SIMULATION ONLY: a fixed seed makes DP noise predictable; a deployment leaves
    ``training-seed`` at -1 (OS entropy).
    """
    digest = hashlib.sha256(f"anprfed-study-repeat|{int(study_seed)}|{int(repeat)}".encode())
    return int.from_bytes(digest.digest()[:4], "little") >> 1


def study_settings(
    spec: StudySpec,
    retention_days: int,
    epsilon: float,
    out: Path,
    n_forces: int,
    repeat: int = 0,
) -> FlowerSettings:
    """The Flower run settings that every force and the server apply at one sweep point.

    ``seed`` (split, model initialisation) is the study seed in every repeat; the training
    seed follows from the study seed and ``repeat`` (``repeat_seed``).
    """
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
        training_seed=repeat_seed(spec.seed, repeat),
        local_epochs=t.local_epochs,
        learning_rate=t.learning_rate,
        batch_size=t.batch_size,
        dp_target_epsilon=epsilon if math.isfinite(epsilon) else spec.dp.epsilon,
        # eps = inf: a NON-PRIVATE reference round (the simulated forces' policy allows it;
        # nothing is charged to the ledger and the reply says epsilon = inf, delta = 1).
        dp_enabled=math.isfinite(epsilon),
        dp_delta=spec.dp.delta or 0.0,
        dp_max_grad_norm=spec.dp.max_grad_norm,
        dp_recipe=t.recipe,
        model_hidden=t.model_hidden,
        model_conv_layers=t.model_conv_layers,
    )


_THREADS = min(2, os.cpu_count() or 1)
"""Forces ingested (and their examples built) at the same time."""


def _prepare_forces(
    spec: StudySpec,
    world_dir: Path,
    out: Path,
    windows: list[int],
    truth: Any,
    result: StudyResult,
    progress: Progress,
    rerun: bool = False,
) -> dict[int, list[Any]]:
    """One store per force and retention window: ingest, label, purge (or reuse a finished one).

    Every window starts from the same history (the whole export, ingested as of the study
    date), so each force's export is ingested and its conviction log loaded once, into the
    first window's store; the other windows get copies of that store. Each copy then gets its
    window's evaluation truth and is purged to its own window. A store finished by an earlier
    run with the same world, study date and window is reused as it is
    (``research.study.store_reuse``) unless ``rerun``.
    """
    as_of = datetime.combine(spec.as_of, datetime.min.time(), tzinfo=UTC)
    nodes: dict[int, list[Any]] = {w: [] for w in windows}
    keys = {w: store_reuse.store_key(spec, w) for w in windows}
    layout = RunLayout(out)

    def place(window: int, force: str) -> tuple[Path, Path]:
        return layout.store(window, force), layout.key_file(window, force)

    forces = world_io.study_forces(world_dir, spec.forces)
    task = progress.add_task("ingest + purge (forces)", total=len(forces))

    def prepare(force: str) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        for window in windows:
            row = None if rerun else store_reuse.ready_store(*place(window, force), keys[window])
            if row is not None:
                rows[window] = row
        missing = [w for w in windows if w not in rows]
        progress.update(
            task,
            description=f"ingest + purge {force}" if missing else f"reuse stores {force}",
        )
        if missing:
            rows.update(_build_stores(spec, world_dir, force, missing, place, keys, truth, as_of))
        progress.advance(task)
        return rows

    # Forces are independent (own store, own key): two at a time, one per core; the heavy
    # parts (Parquet, AES-GCM, HMAC, numpy) release the GIL. Results in force order.
    with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="ingest") as pool:
        prepared = list(pool.map(prepare, forces))
    for force, rows in zip(forces, prepared, strict=True):
        for window in windows:
            result.ingest.append(rows[window])
            nodes[window].append(SimulatedForce(force, *place(window, force)))
    progress.update(task, description="ingest + purge (forces)")
    result.ingest.sort(key=lambda row: (windows.index(row["retention_days"]), row["force"]))
    return nodes


def _build_stores(
    spec: StudySpec,
    world_dir: Path,
    force: str,
    windows: list[int],
    place: Any,
    keys: dict[int, str],
    truth: Any,
    as_of: datetime,
) -> dict[int, dict[str, Any]]:
    """Ingest one force's export once and derive its store for each of ``windows``."""
    for window in windows:
        store_reuse.forget_store(place(window, force)[0])
    export = world_io.reads_file(world_dir, force)
    # SIMULATION ONLY: keys derived from the study seed and the force name, so a rerun gets
    # the same pseudonyms and so the same held-out split (privacy.keys).
    first = SimulatedForce(force, *place(windows[0], force), key_seed=spec.seed)
    ingest_max_age = max(store_reuse.ingest_max_age_days(spec, w) for w in windows)
    report = first.setup(export, as_of, ingest_max_age)
    seen = first.seen_vrms(export, truth["vrm"])
    labels = first.load_convictions(world_io.convictions_for(truth, seen, spec.as_of))
    copies = {windows[0]: first}
    copies.update({w: first.copy_to(*place(w, force)) for w in windows[1:]})
    rows = {}
    for window, node in copies.items():
        start, end = world_io.window_for(spec.as_of, window)
        positives = world_io.offending_in_window(truth, start, end)
        node.load_truth(positives[positives.isin(seen)])
        purge = node.purge(as_of, window)
        rows[window] = {
            "retention_days": window,
            "force": force,
            **report,
            "convictions_loaded": labels,
            **purge,
        }
        store_reuse.mark_store_ready(node.store_dir, keys[window], rows[window])
    return rows


def _build_examples(nodes: list[Any], settings: FlowerSettings, progress: Progress) -> None:
    """Build (or load from the store's encrypted cache) each force's examples for the window,
    with progress: the designs then load them from the cache instead of building in silence."""
    window = f"{settings.window_start}..{settings.window_end}"

    def build(node: Any) -> None:
        # a force without usable examples: its designs report it as before
        with suppress(ForceDataError):
            node.dataset(settings, progress=example_progress(progress, f"{node.name} {window}"))

    with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="examples") as pool:
        list(pool.map(build, nodes))


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


def _keep_held_out(
    nodes: list[Any], per_force: list[ForceScores], settings: FlowerSettings, path: Path
) -> dict[str, dict[str, int]]:
    """Save the held-out scores with each force's split; training counts by force name."""
    splits = [force_split(node.name, node.dataset(settings)) for node in nodes]
    save_held_out(path, per_force, splits)
    counts = {
        s.force: {"train_vehicles": s.train_vehicles, "train_positives": s.train_positives}
        for s in splits
    }
    counts[ALL_FORCES] = {
        key: sum(c[key] for c in counts.values()) for key in ("train_vehicles", "train_positives")
    }
    return counts


def new_run_id(name: str, started: datetime) -> str:
    """A run's id: the study name, the UTC start time and a random suffix."""
    return f"{_slug(name)}-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_study(
    spec: StudySpec,
    out: Path,
    console: Console | None = None,
    reuse_world: bool = True,
    rerun: bool = False,
) -> StudyResult:
    """Run every step of the study and write the results folder ``out``.

    Finished work in ``out`` is reused: the world (same settings), the force stores (same
    world, study date and window) and every design run with the same settings. ``rerun``
    ingests and trains everything again. The folder is complete once ``manifest.json`` is
    written (last, with ``"complete": true``); an earlier manifest is removed first.
    SIGINT, SIGTERM and SIGHUP stop the study (``StudyInterrupted``) after its Ray nodes and
    workers are stopped.
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    remove_file(RunLayout(out).manifest)
    rerun = rerun or not reuse_world
    result = StudyResult(spec=spec, out=out)
    timings = result.timings
    started = datetime.now(UTC)
    result.run_id = new_run_id(spec.name, started)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    main_eps = spec.dp.epsilon
    main_window = spec.retention.max_age_days
    points = spec.sweep_points()
    windows = list(dict.fromkeys(w for w, _ in points))
    designs = [get_design(name) for name in spec.designs]
    n_references = 1 if spec.dp.nonprivate_references else 0
    n_design_runs = sum(len(points) + n_references if d.private else len(windows) for d in designs)
    layout = RunLayout(out)
    ray_cluster = StudyRayCluster(os.cpu_count() or 1, layout.server_dir / "ray-head.log")
    with (
        stop_on_signals(),
        study_progress(console) as progress,
        LocalWorkers() as local_workers,
        ExitStack() as stack,
    ):
        world_dir = layout.world_dir
        with _timed(timings, "synthesise"):
            if not reuse_world and (world_dir / world_io.WORLD_SETTINGS_FILE).exists():
                (world_dir / world_io.WORLD_SETTINGS_FILE).unlink()
            world_io.ensure_world(spec.world, world_dir, progress=progress)
        truth = world_io.load_truth(world_dir)
        try:
            forces = world_io.study_forces(world_dir, spec.forces)
        except ValueError as exc:
            raise StudyError(f"spec field `forces`: {exc}") from None
        if any(d.needs_ray for d in designs):
            # One Ray head node for every federated run; it boots while the forces ingest.
            if place_forces():  # this one node holds every force's store
                ray_cluster.resources = {force_resource(f): 1 for f in forces}
            stack.enter_context(ray_cluster)
        with _timed(timings, "ingest+purge"):
            stores = _prepare_forces(
                spec, world_dir, out, windows, truth, result, progress, rerun=rerun
            )
        release_freed_memory()  # each stage's freed gigabytes go back, not kept for later
        public_settings: dict[str, Any] = {}
        if spec.training.public_pretraining != "none":
            with _timed(timings, "public pre-training"):
                public = _public_init(spec, world_dir, out, progress)
            release_freed_memory()
            result.public_init = public.summary
            public_settings = {
                "init_weights": str(public.path),
                "init_encoder_only": spec.training.public_pretraining.startswith("encoder"),
                "train_layers": (
                    "head" if spec.training.public_pretraining == "encoder-frozen" else "all"
                ),
            }
        designs_task = progress.add_task("designs", total=n_design_runs)
        for window in windows:
            nodes = stores[window]
            with _timed(timings, "retention outcome"):
                result.retention.extend(_retention_rows(spec, world_dir, truth, forces, window))
            with _timed(timings, "examples"):
                _build_examples(
                    nodes, study_settings(spec, window, spec.dp.epsilon, out, 1), progress
                )
            release_freed_memory()
            for design in designs:
                epsilons = [e for w, e in points if w == window]
                if spec.dp.nonprivate_references and window == main_window:
                    epsilons.append(math.inf)  # the design without DP (simulation only)
                for epsilon in epsilons if design.private else [math.inf]:
                    tag = SweepTag(design.name, epsilon, window)
                    label = f"{design.name} eps={eps_label(epsilon)} retention={window}d"
                    progress.update(designs_task, description=label)
                    runs: list[list[dict[str, Any]]] = []
                    for repeat in range(spec.repeats):
                        folder = layout.repeat_dir(tag, repeat)
                        settings = study_settings(
                            spec, window, epsilon, folder, len(nodes), repeat=repeat
                        )
                        study_id = f"{spec.name}/{tag.study_id}"
                        if repeat:
                            study_id += f"/repeat{repeat}"
                        settings = settings.replace(
                            study_id=study_id, ledger_scope=_slug(study_id), **public_settings
                        )
                        context = DesignContext(
                            nodes=nodes,
                            settings=settings,
                            study_id=study_id,
                            spec=spec,
                            progress=progress,
                            local_workers=local_workers,
                            ray_cluster=ray_cluster,
                        )
                        with _timed(timings, design.name):
                            per_force, ledger_rows, weights = _resumable_design_run(
                                design,
                                context,
                                layout,
                                [store_reuse.store_key(spec, window)],
                                rerun,
                            )
                        release_freed_memory()
                        with _timed(timings, "bootstrap"):
                            rows = evaluate_design(
                                per_force,
                                spec.evaluation.recall,
                                spec.evaluation.realistic_prevalence,
                                seed=spec.seed,
                            )
                        runs.append(rows)
                        if repeat == 0:  # the study's own run: its held-out split and counts
                            counts = _keep_held_out(
                                nodes, per_force, settings, out / HELD_OUT_FOLDER / f"{tag}.npz"
                            )
                        result.repeats.extend(
                            {
                                "design": design.name,
                                "epsilon": epsilon,
                                "retention_days": window,
                                "repeat": repeat,
                                "training_seed": settings.training_seed,
                                **row,
                            }
                            for row in rows
                        )
                        if repeat:
                            continue
                        # Repeat 0 is the study's own run: its models, curves and ledger.
                        if weights is not None and not design.keeps_own_checkpoint:
                            _save_models(weights, settings, layout, tag)
                        if window == main_window and (epsilon == main_eps or not design.private):
                            scores = np.concatenate([f.scores for f in per_force])
                            truth_all = np.concatenate([f.truth for f in per_force])
                            name = f"{design.name} (eps={eps_label(epsilon)})"
                            if rows[-1].get("skill") == NO_SKILL:
                                name += ", no skill"
                            curves[name] = pr_curve(scores, truth_all)
                        result.ledger.extend(
                            {
                                "run_id": result.run_id,
                                "retention_days": window,
                                "design": design.name,
                                "target_epsilon": epsilon,
                                **r,
                            }
                            for r in ledger_rows
                        )
                    for row in with_repeat_spread(runs):
                        result.metrics.append(
                            {
                                "design": design.name,
                                "epsilon": epsilon,
                                "retention_days": window,
                                **row,
                                **counts.get(str(row["force"]), {}),
                            }
                        )
                    progress.advance(designs_task)
    timings["total"] = round((datetime.now(UTC) - started).total_seconds(), 3)
    if ray_cluster.temp_dir is not None:
        result.simulation_dirs.append(ray_cluster.temp_dir)
    _write_results(result, curves)
    return result


def _public_init(spec: StudySpec, world_dir: Path, out: Path, progress: Progress) -> Any:
    """Pre-train on a separately seeded public world (``research.study.public_init``)."""
    from research.study.public_init import pretrain_public_model

    settings = study_settings(spec, spec.retention.max_age_days, spec.dp.epsilon, out, 1)
    return pretrain_public_model(
        spec.world,
        world_dir,
        out / "public",
        window=world_io.window_for(spec.as_of, spec.retention.max_age_days),
        max_reads=spec.training.max_reads,
        model_config=settings.model_config(),
        seed=spec.seed,
        progress=progress,
    )


def _resumable_design_run(
    design: Any, context: DesignContext, layout: RunLayout, store_keys: list[str], rerun: bool
) -> tuple[list[ForceScores], list[dict[str, Any]], Any]:
    """One design at one sweep point: (per-force scores, ledger rows, weights or None).

    A run finished by an earlier invocation with the same key is loaded from its record
    (weights ``None``: its models are already saved) unless ``rerun``; otherwise its sweep
    folder, record and scoped ledgers are cleared, it trains and evaluates, and its record is
    written last (``research.study.resume``).
    """
    nodes, settings = context.nodes, context.settings
    name = _slug(context.study_id)
    key = resume.run_key(design.name, settings, store_keys)
    if not rerun and (done := resume.load_record(layout.root, name, key)) is not None:
        return done[0], done[1], None
    resume.forget_record(layout.root, name)
    if Path(settings.results_dir).is_dir():
        shutil.rmtree(settings.results_dir)
    spends_budget = design.private and settings.dp_enabled
    if spends_budget:
        for node in nodes:
            store_reuse.reset_scoped_ledger(node.ledger_path(settings))
    try:
        weights = design.train(context)
    except LocalWorkerError as exc:
        raise StudyError(str(exc)) from None
    per_force = _evaluate(nodes, weights, settings)
    ledger = [r for n in nodes for r in n.ledger_rows(settings)] if spends_budget else []
    resume.save_record(layout.root, name, key, per_force, ledger)
    return per_force, ledger, weights


def _save_models(
    weights: list[np.ndarray] | dict[str, list[np.ndarray]],
    settings: FlowerSettings,
    layout: RunLayout,
    tag: SweepTag,
) -> None:
    """Keep a model the server did not checkpoint, for audits, arrays by contract name.

    A shared model (the pooled counterfactual) goes where the server keeps the federated one,
    ``RunLayout.checkpoint(tag)``; one model per force (local-only) to
    ``RunLayout.checkpoint(tag, force)``. (Local-only models never reach a server: in a
    simulation the researcher keeps them so that ``anprfed privacy audit`` can attack every
    design.)
    """
    from federation.model import weight_spec

    names = [name for name, _, _ in weight_spec(settings.model_config())]
    models = weights if isinstance(weights, dict) else {None: weights}
    for force, force_weights in models.items():
        path = layout.checkpoint(tag, force)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **dict(zip(names, force_weights, strict=True)))


def _write_results(result: StudyResult, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    out, spec = result.out, result.spec
    layout = RunLayout(out)
    files = result.files
    files.extend(write_table(result.metrics, layout.table(layout.METRICS)))
    files.extend(write_table(result.ledger, layout.table(layout.LEDGER)))
    files.extend(write_table(result.retention, layout.table(layout.RETENTION)))
    files.extend(write_table(result.ingest, layout.table(layout.INGEST)))
    if spec.repeats > 1:
        files.extend(write_table(result.repeats, layout.table(layout.REPEATS)))
    plots = layout.plots_dir
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
        "run_id": result.run_id,
        "study": spec.name,
        "spec": spec.to_dict(),
        "as_of": spec.as_of.isoformat(),
        "seed": spec.seed,
        "repeats": spec.repeats,
        "training_seeds": [repeat_seed(spec.seed, r) for r in range(spec.repeats)],
        "simulation_keys": (
            "SIMULATION ONLY: every force's master secret and first pseudonym key are derived "
            "from the study seed and the force name (privacy.keys.SimulationSecretSource), so "
            "a rerun reproduces pseudonyms, split and figures; anyone with the seed can "
            "recompute them. Deployments (anprfed force init) use OS randomness."
        ),
        "uncertainty": {
            "interval": "95% percentile bootstrap over held-out vehicles, stratified by class",
            "resamples": BOOTSTRAP_RESAMPLES,
            "seed": "study seed and force name (the same resamples for every design)",
            "chance": "held-out prevalence (PR-AUC and precision of a random ranking)",
            "no_skill": "PR-AUC interval reaches down to chance, or random rankings of the "
            "same held-out vehicles reach the PR-AUC in 5% of draws or more (p_random)",
            "few_positives_below": MIN_POSITIVES,
        },
        "versions": package_versions(),
        "dp_recipe": dp_recipe.describe(spec.training.recipe) if spec.training.recipe else None,
        "public_pretraining": result.public_init,
        "timings_s": result.timings,
        # Where Ray kept its session files, without this machine's absolute path.
        "simulation_dirs": [_portable(p, out) for p in result.simulation_dirs],
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": True,
        "files": sorted(layout.rel(p) for p in files),
        "notes": [
            "pooled is a non-private counterfactual (a national database); it is not deployable",
            "epsilon is per force for one sweep point; sweep points are separate hypothetical "
            "studies, each with its own ledger namespace",
            "repeats rerun each design on the same world, keys and split with another "
            "training seed, to show training variability; each repeat is a hypothetical rerun "
            "that would spend its own budget, and privacy_ledger lists repeat 0 only",
        ],
        # Every run says which simulation-only settings it used (issue 14): a deployed force's
        # privacy policy refuses all of them.
        "simulation_only": {
            "force_policy": "simulated forces allow simulation-only settings "
            "(client_force.privacy_policy.SIMULATION_POLICY); a deployed force refuses them",
            "ledger-scope": "one ledger per design and sweep point, budget = its epsilon",
            "per_run": "server/<design>/status.json, simulation_only_settings",
        },
    }
    files.append(write_json(layout.manifest, manifest))


def _portable(path: Path, out: Path) -> str:
    """``path`` relative to the results folder, or its name under the system temp folder."""
    path = Path(path)
    if path.is_relative_to(out):
        return str(path.relative_to(out))
    return f"<system temp dir>/{path.name}"


def _slug(text: str) -> str:
    """A file-name-safe form of a study id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
