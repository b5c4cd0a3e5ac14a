"""A small study results folder built from the real code paths, without the Flower engine.

It has the layout and file formats of ``anprfed study run`` (``research/study/runner.py``):
``manifest.json``, ``metrics``/``privacy_ledger``/``retention``/``ingest`` as CSV and JSON,
``plots/*.png``, ``world/world.json`` counts, ``server/<design>-eps<e>-ret<w>d/`` with the
national server's ``status.json`` and checkpoints, ``stores/retention-<w>d/<force>/`` and
``keys/retention-<w>d/<force>.key``. Every piece comes from real code:

* three forces' stores through the real ingest (``tests/fixtures/flower_world.build_force``),
  purged with the real purge engine (signed purge log);
* the federated design: two rounds of each force's real DP round
  (``client_force.flower_round.local_train``: DP-SGD, ledger) averaged by example count, as
  FedAvg does, with the server's real ``RunOutputs`` writing status and checkpoints (the
  Flower engine itself is skipped: it costs a minute of Ray start-up per test session);
* the pooled design: the real non-private training on all forces' training vehicles;
* metrics from ``research.study.evaluation``, retention rows from
  ``research.study.retention_outcome``, plots from ``research.study.plots``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from flower_world import LABEL_AS_OF, WINDOW_DAYS, WINDOW_START, FlowerWorld, build_force

from client_force.flower_round import local_train
from client_force.force_dataset import load_force_dataset
from client_force.node_settings import NodeStore
from client_force.simulated_force import SimulatedForce
from client_force.training import TrainingConfig, train_nonprivate
from federation.contract import EgressContract
from federation.features import concat_examples
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, get_weights, predict_scores, set_weights
from privacy.keys import MasterSecretSource
from research.study.evaluation import ForceScores, evaluate_design, pr_curve
from research.study.plots import plot_pr_curves, plot_retention_outcome, plot_utility_vs_epsilon
from research.study.results import package_versions, write_json, write_table
from research.study.retention_outcome import OffenderReads, retention_outcome
from research.study.spec import DPSpec, RetentionSpec, StudySpec, TrainingSpec, WorldSpec
from retention.policy import RetentionPolicy
from retention.purge import run_purge
from retention.store import ForceStore
from server_national.checkpoint import save_checkpoint
from server_national.ledger_view import LedgerView
from server_national.run_outputs import RunOutputs

RETENTION_DAYS = 50  # the purge removes the window's first week
EPSILON = 8.0
ROUNDS = 2
AS_OF = datetime.combine(LABEL_AS_OF, datetime.max.time(), tzinfo=UTC)


def _spec(n_forces: int, n_vehicles: int) -> StudySpec:
    return StudySpec(
        name="dpia-fixture",
        seed=3,
        world=WorldSpec(
            vehicles=n_forces * n_vehicles,
            days=WINDOW_DAYS,
            start=WINDOW_START,
            prevalence=0.15,
            seed=0,
        ),
        designs=("federated", "pooled"),
        training=TrainingSpec(rounds=ROUNDS, batch_size=32, learning_rate=0.05, max_reads=16),
        dp=DPSpec(epsilon=EPSILON),
        retention=RetentionSpec(max_age_days=RETENTION_DAYS),
        study_date=LABEL_AS_OF,
    )


def _offender_reads(store: ForceStore, positive_vrms: np.ndarray) -> pd.DataFrame:
    """Raw VRM and time of every read of a planted offender (the simulation's truth view)."""
    pseudonyms = store.pseudonymiser().pseudonymise(pa.array(positive_vrms)).to_pylist()
    raw_of = dict(zip(pseudonyms, positive_vrms, strict=True))
    reads = store.read_reads().select(["vehicle", "read_at"]).to_pandas()
    reads = reads[reads["vehicle"].isin(raw_of)]
    return pd.DataFrame({"vrm": reads["vehicle"].map(raw_of), "read_at": reads["read_at"]})


def build_run_folder(root: Path, n_forces: int = 3, n_vehicles: int = 150) -> Path:
    """Write a results folder under ``root/run`` and return it."""
    run = root / "run"
    build = root / "build"
    spec = _spec(n_forces, n_vehicles)
    window = f"retention-{RETENTION_DAYS}d"
    forces, stores, fixtures = [], [], []
    ingest_rows, offender_frames, truth_rows, world_forces = [], [], [], []
    for i in range(n_forces):
        f = build_force(build / f"force{i}", f"force{i}", n_vehicles, seed=10 + i)
        store_dir = run / "stores" / window / f.name
        key_file = run / "keys" / window / f"{f.name}.key"
        store_dir.parent.mkdir(parents=True, exist_ok=True)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f.store), store_dir)
        shutil.move(str(f.key_file), key_file)
        store = ForceStore.open(store_dir, MasterSecretSource.from_key_file(key_file))
        stored = store.read_reads().num_rows
        offender_frames.append(OffenderReads(f.name, _offender_reads(store, f.positive_vrms)))
        truth_rows += [
            {
                "vrm": v,
                "offence_start": WINDOW_START,
                "offence_end": WINDOW_START + timedelta(days=WINDOW_DAYS),
                "conviction_date": WINDOW_START + timedelta(days=WINDOW_DAYS + 10),
            }
            for v in f.positive_vrms
        ]
        purge = run_purge(store, AS_OF, RetentionPolicy(RETENTION_DAYS))
        ingest_rows.append(
            {
                "retention_days": RETENTION_DAYS,
                "force": f.name,
                "input_rows": stored,
                "stored": stored,
                "duplicates": 0,
                "rejected": 0,
                "convictions_loaded": len(f.positive_vrms),
                "purge_status": purge.status,
                "days_purged": len(purge.plan.days),
                "days_held_after_purge": len(store.days()),
            }
        )
        world_forces.append(
            {
                "slug": f.name,
                "name": f"Force {i}",
                "cameras_fixed": store.read_cameras().num_rows - i * 4,
                "cameras_mobile": i * 2,
                "vehicles_seen": f.n_vehicles,
                "reads": stored,
            }
        )
        forces.append(f.name)
        stores.append((store_dir, key_file))
        fixtures.append(f)
    shutil.rmtree(build)

    base = FlowerWorld(root=run, forces=fixtures).settings(
        num_server_rounds=ROUNDS,
        min_available_nodes=n_forces,
        min_replies=n_forces,
        dp_target_epsilon=EPSILON,
        training_seed=5,
        batch_size=32,
    )
    metrics_rows, ledger_rows, curves = [], [], {}
    # ---- federated: FedAvg over the forces' real DP rounds, server outputs by RunOutputs
    tag = f"federated-eps{EPSILON:g}-ret{RETENTION_DAYS}d"
    settings = base.replace(results_dir=str(run / "server" / tag), study_id=f"fixture/{tag}")
    contract = EgressContract.from_model_config(settings.model_config())
    ledger_view = LedgerView(settings.dp_target_epsilon, settings.dp_delta)
    outputs = RunOutputs(
        Path(settings.results_dir),
        Path(settings.results_dir) / "checkpoints",
        contract,
        ledger_view,
        1,
        settings.to_run_config(),
    )
    torch.manual_seed(settings.seed)
    global_weights = get_weights(TrajectoryModel(settings.model_config()))
    for rnd in range(1, ROUNDS + 1):
        replies = []
        for node_id, (store_dir, key_file) in enumerate(stores):
            out = local_train(
                NodeStore(store_dir, key_file),
                settings,
                global_weights,
                server_round=rnd,
                run_id="fixture",
            )
            replies.append(out)
            ledger_view.record(
                rnd,
                node_id,
                out.metrics["epsilon"],
                out.metrics["delta"],
                out.metrics["num-examples"],
            )
        total = sum(r.metrics["num-examples"] for r in replies)
        global_weights = [
            sum(r.arrays[k] * (r.metrics["num-examples"] / total) for r in replies).astype(
                np.float32
            )
            for k in range(len(global_weights))
        ]
        outputs.checkpoint(rnd, contract.to_array_record(global_weights))
    outputs.finish(contract.to_array_record(global_weights))
    for f, (store_dir, key_file) in zip(forces, stores, strict=True):
        ledger_rows += [
            {
                "retention_days": RETENTION_DAYS,
                "design": "federated",
                "target_epsilon": EPSILON,
                **r,
            }
            for r in SimulatedForce(f, store_dir, key_file).ledger_rows(settings)
        ]
    # ---- pooled: non-private, all forces' training vehicles
    datasets = [
        load_force_dataset(ForceStore.open(s, MasterSecretSource.from_key_file(k)), settings)
        for s, k in stores
    ]
    pooled = TrajectoryModel(settings.model_config())
    train_nonprivate(
        pooled,
        concat_examples([d.train for d in datasets]),
        np.concatenate([d.train_labels for d in datasets]),
        ROUNDS * settings.local_epochs,
        TrainingConfig(learning_rate=settings.learning_rate, seed=settings.seed),
    )
    pooled_tag = f"pooled-epsinf-ret{RETENTION_DAYS}d"
    save_checkpoint(
        run / "server" / pooled_tag / "checkpoints",
        "final.npz",
        dict(zip(contract.array_names, get_weights(pooled), strict=True)),
    )
    # ---- evaluation
    for design, weights, eps in (
        ("federated", global_weights, EPSILON),
        ("pooled", get_weights(pooled), float("inf")),
    ):
        model = TrajectoryModel(settings.model_config())
        set_weights(model, weights)
        per_force = [
            ForceScores(f, predict_scores(model, d.test), d.eval_labels)
            for f, d in zip(forces, datasets, strict=True)
        ]
        for row in evaluate_design(per_force, 0.5, 1 / 400):
            metrics_rows.append(
                {"design": design, "epsilon": eps, "retention_days": RETENTION_DAYS, **row}
            )
        curves[f"{design} (eps={eps:g})"] = pr_curve(
            np.concatenate([p.scores for p in per_force]),
            np.concatenate([p.truth for p in per_force]),
        )
    retention_rows = retention_outcome(
        pd.DataFrame(truth_rows), offender_frames, RETENTION_DAYS, LABEL_AS_OF
    )
    files = []
    files += write_table(metrics_rows, run / "metrics")
    files += write_table(ledger_rows, run / "privacy_ledger")
    files += write_table(retention_rows, run / "retention")
    files += write_table(ingest_rows, run / "ingest")
    (run / "plots").mkdir(exist_ok=True)
    files.append(
        plot_utility_vs_epsilon(metrics_rows, run / "plots" / "utility_vs_epsilon.png", "pr_auc")
    )
    overall = [m for m in metrics_rows if m["force"] == "all forces"]
    files.append(
        plot_pr_curves(
            curves,
            float(overall[0]["scenario_prevalence"]),
            run / "plots" / "pr_curves.png",
            "fixture",
        )
    )
    files.append(plot_retention_outcome(retention_rows, run / "plots" / "retention_outcome.png"))
    write_json(run / "world" / "world.json", {"counts": {"forces": world_forces}})
    write_json(
        run / "manifest.json",
        {
            "study": spec.name,
            "spec": spec.to_dict(),
            "as_of": LABEL_AS_OF.isoformat(),
            "seed": spec.seed,
            "versions": package_versions(),
            "timings_s": {},
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": sorted(str(p.relative_to(run)) for p in files),
            "notes": [
                "pooled is a non-private counterfactual (a national database); it is not deployable"
            ],
        },
    )
    return run


def fixture_settings(run: Path) -> FlowerSettings:
    """The federated sweep point's settings (as the server recorded them)."""
    import json

    status = json.loads(
        (
            run / "server" / f"federated-eps{EPSILON:g}-ret{RETENTION_DAYS}d" / "status.json"
        ).read_text()
    )
    return replace(FlowerSettings.from_run_config(status["settings"], allow_unknown=True))
