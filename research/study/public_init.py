"""A read encoder pre-trained on a separately seeded PUBLIC synthetic world.

DP-SGD on a few hundred vehicles per force cannot learn a sequence model from scratch: the
noise swamps the few positives. A common remedy is to start from a model pre-trained on public
data. Here the public data is a second synthetic world: the study world's settings with the
seed moved by ``PUBLIC_SEED_OFFSET`` (so it shares no vehicle with the study world; the run
checks and records the overlap), built per force as a force would see it, labelled with that
world's own truth (public, so no DP is needed), and trained with the recipe's non-private rule
(``client_force.dp_recipe.nonprivate_training``).

By default only the read encoder (per-read embedding, convolutions, attention pooling) is taken
from it (``init-encoder-only``); the head that turns the encoded trajectory into a score starts
from the seeded initialisation and is learned from the forces' own labels.

**The assumption** (say it wherever results are read): a public proxy for the forces' data
exists and resembles it. In this simulation the proxy is drawn from the same generator as the
study world, so it resembles the study world as well as any proxy could: the benefit measured
here is an upper bound on what a real public proxy (e.g. a published synthetic world, or a
force's own data old enough to be released) would give.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from rich.progress import Progress

from client_force.dp_recipe import nonprivate_training
from client_force.training import TrainingConfig, train_nonprivate
from federation.features import build_examples, concat_examples
from federation.model import ModelConfig, TrajectoryModel, weights_npz_bytes
from research.study import world as world_io
from research.study.spec import WorldSpec
from safefiles import atomic_write_bytes, atomic_write_text

PUBLIC_SEED_OFFSET = 1_000_003
"""The public world's seed is the study world's plus this (a different world, same settings)."""

PRETRAIN_EPOCHS = 4
"""Non-private epochs over the public world (the recipe's optimiser, batch and learning rate)."""

PUBLIC_MAX_VEHICLES = 20_000
"""The public world has the study world's settings but at most this many vehicles.

Pre-training a read encoder needs a public sample of trajectories, not a copy of the study's
size: without a cap a million-vehicle study would synthesise, hold in memory and train on a
second million-vehicle world before its first design (measured: 4.6 GB in the study process
at 100,000 vehicles, growing with vehicles). Studies at or under the cap (the default:
4,000) are unchanged."""

PUBLIC_MIN_PREVALENCE = 0.01
"""The public world's offender prevalence is at least this (it is public synthetic data, so
it may be enriched): at a realistic prevalence (8e-5) a capped public world would hold one or
two offenders and teach the encoder nothing about them. Studies at or above it (the default:
0.05) are unchanged."""


@dataclass(frozen=True)
class PublicInit:
    """Where the pre-trained arrays are and what they were trained on (for the manifest)."""

    path: Path
    summary: dict[str, Any]


def public_world_spec(world: WorldSpec) -> WorldSpec:
    """The study world's settings under a different seed, capped in size, floored in prevalence."""
    return replace(
        world,
        seed=world.seed + PUBLIC_SEED_OFFSET,
        vehicles=min(world.vehicles, PUBLIC_MAX_VEHICLES),
        prevalence=max(world.prevalence, PUBLIC_MIN_PREVALENCE),
    )


def _force_examples(world_dir: Path, force: str, start: datetime, end: datetime, max_reads: int):
    export = world_io.export_dir(world_dir, force)
    reads = pq.read_table(export / "reads.parquet").to_pandas()
    cameras = pq.read_table(export / "cameras.parquet").to_pandas()
    return build_examples(
        reads.rename(columns={"vrm": "vehicle", "camera_id": "camera"}),
        cameras.rename(columns={"camera_id": "camera"}),
        start,
        end,
        max_reads=max_reads,
    )


def pretrain_public_model(
    world: WorldSpec,
    study_world_dir: Path,
    out: Path,
    *,
    window: tuple[Any, Any],
    max_reads: int,
    model_config: ModelConfig,
    seed: int,
    progress: Progress | None = None,
) -> PublicInit:
    """Generate the public world into ``out/public-world`` and pre-train the model on it.

    Reused when ``out`` already holds a model pre-trained with the same inputs (the public
    world's settings, window, read cap, model, seed and epochs).
    """
    public = public_world_spec(world)
    world_dir = out / "public-world"
    path = out / "public-init.npz"
    marker = out / "public-init.json"
    key = {
        "world": {k: str(v) for k, v in asdict(public).items()},
        "window": [str(window[0]), str(window[1])],
        "max_reads": max_reads,
        "model": model_config.to_dict(),
        "seed": seed,
        "epochs": PRETRAIN_EPOCHS,
    }
    if path.exists() and marker.exists():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return PublicInit(path, saved["summary"])
    world_io.ensure_world(public, world_dir, progress=progress)
    start = datetime.combine(window[0], datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(window[1], datetime.min.time(), tzinfo=UTC)
    forces = world_io.force_names(world_dir)
    task = progress.add_task("public pre-training (forces)", total=len(forces)) if progress else 0
    parts = []
    for force in forces:
        parts.append(_force_examples(world_dir, force, start, end, max_reads))
        if progress:
            progress.advance(task)
    examples = concat_examples(parts)
    truth = world_io.load_truth(world_dir)
    positives = set(world_io.offending_in_window(truth, window[0], window[1]))
    labels = np.isin(examples.vehicles, list(positives)).astype(np.float32)
    overlap = sum(shared_vehicles(study_world_dir, world_dir, f) for f in forces)
    plan = nonprivate_training(seed)
    plan.pop("epochs")
    epochs = PRETRAIN_EPOCHS
    import torch

    torch.manual_seed(seed)
    model = TrajectoryModel(model_config)
    epoch_task = progress.add_task("public pre-training (epochs)", total=epochs) if progress else 0
    loss = train_nonprivate(
        model,
        examples,
        labels,
        epochs,
        TrainingConfig(**plan),
        on_epoch=(lambda done: progress.update(epoch_task, completed=done)) if progress else None,
    )
    atomic_write_bytes(path, weights_npz_bytes(model))
    summary = {
        "public_world_seed": public.seed,
        "public_world_vehicles": public.vehicles,
        "examples": len(examples),
        "positives": int(labels.sum()),
        "vehicles_shared_with_study_world": overlap,
        "window": [str(window[0]), str(window[1])],
        "epochs": epochs,
        "final_train_loss": float(loss),
        "assumption": (
            "a public proxy resembling the forces' data exists; here it comes from the same "
            "generator as the study world, so its benefit is an upper bound"
        ),
    }
    atomic_write_text(marker, json.dumps({"key": key, "summary": summary}, indent=1))
    return PublicInit(path, summary)


def shared_vehicles(study_world_dir: Path, public_world_dir: Path, force: str) -> int:
    """How many VRMs one force's export shares between the study and public worlds."""
    a = pd.read_parquet(world_io.reads_file(study_world_dir, force), columns=["vrm"])["vrm"]
    b = pd.read_parquet(world_io.reads_file(public_world_dir, force), columns=["vrm"])["vrm"]
    return len(set(a.unique()) & set(b.unique()))
