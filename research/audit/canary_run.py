"""Plant canaries in a copy of a force's store and train through the force's own round code.

What runs is the study's training path, not a re-implementation of it:

1. **A scratch copy** of the force's store and key file (``SimulatedForce.copy_to``); the
   force's real store, ledger and keys are never touched.
2. **Planting**: the force builds its examples for the sweep point as usual
   (``load_force_dataset``, which writes the store's encrypted feature cache); the audit adds
   the included canaries to that cache and their convictions (label 1 canaries) to the
   conviction log, both through the store's own API, and then checks that the force's loader
   hands back exactly the real training vehicles plus the included canaries.
3. **Training**: every round goes through ``client_force.flower_round.local_train`` (Opacus
   DP-SGD via ``client_force.training.train_round``, the force's ledger, its noise
   calibration), either inside a real Flower simulation with the national ServerApp and FedAvg
   (``engine="flower"``, what ``anprfed privacy canary-audit`` runs) or driven round by round
   in this process (``engine="in-process"``: the same client round, and FedAvg over one force
   is the identity; benchmarks and tests use it to avoid a Ray start per run).
4. **What the server saw**: the global arrays after every round (the Flower server's round
   checkpoints, or the in-process loop's), from which :mod:`research.audit.canary_scores`
   scores every canary.

The force trains alone in the audit's federation, so the server's view of each round is
exactly that force's update (with several forces FedAvg would average it with theirs).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from client_force.flower_round import local_train
from client_force.force_dataset import (
    CACHE_PREFIX,
    clear_memory_cache,
    examples_from_table,
    examples_to_table,
    load_force_dataset,
    split_by_pseudonym,
)
from client_force.privacy_policy import SIMULATION_POLICY
from client_force.private_training import install_policy
from client_force.simulated_force import SimulatedForce
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, get_weights, load_initial_weights
from research.audit.canaries import CanarySet, make_canaries, with_canaries
from retention.store import LABELS_SCHEMA, ForceStore

ENGINES = ("flower", "in-process")
CHECKPOINTS = "checkpoints"


class CanaryRunError(RuntimeError):
    """Planting or training failed; the message names the step."""


@dataclass(frozen=True)
class TrainedRun:
    """What one canary training run released, and what its ledger claims."""

    rounds: list[list[np.ndarray]]  # initial global arrays, then after each round
    ledger_epsilon: float  # the force's cumulative epsilon for this run, from its ledger
    delta: float
    noise_multiplier: float
    seconds: float
    # What a known noise sequence moved in each round (flat arrays), when the auditor can
    # regenerate it (test/benchmark variants only, ``research.audit.broken_dp``); else None.
    noise_effects: list[np.ndarray] | None = None


def initial_weights(settings: FlowerSettings) -> list[np.ndarray]:
    """The global model the server starts from: the public ``init-weights`` file when the
    settings name one, else seeded like the national ServerApp's."""
    if settings.init_weights:
        return load_initial_weights(
            settings.model_config(),
            settings.init_weights,
            seed=settings.seed,
            encoder_only=settings.init_encoder_only,
        )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(settings.seed)
        return get_weights(TrajectoryModel(settings.model_config()))
    finally:
        torch.random.set_rng_state(state)


AUDIT_MIN_NOISE = 1e-4
"""The scratch copy's policy floor: low enough for the audit's noise-free reference run."""


def scratch_force(force: SimulatedForce, folder: Path) -> SimulatedForce:
    """An independent copy of the force's store and key file under ``folder``.

    The copy gets the simulation policy with a lower noise floor, so that the audit's
    noise-free reference (noise multiplier 0.001, recorded as such in the copy's ledger) can
    run on it, and with ``allow-audit-probes`` so that it adds the audit's gradient canaries
    (``client_force.gradient_canaries``); the force's own store keeps its own policy.
    """
    copy = force.copy_to(folder / "store" / force.name, folder / "keys" / f"{force.name}.key")
    install_policy(
        copy.store,
        replace(SIMULATION_POLICY, min_noise_multiplier=AUDIT_MIN_NOISE, allow_audit_probes=True),
    )
    return copy


def _training_side(settings: FlowerSettings) -> Callable[[np.ndarray], np.ndarray]:
    def keep(pseudonyms: np.ndarray) -> np.ndarray:
        train, _ = split_by_pseudonym(pseudonyms, settings.test_fraction, settings.seed)
        mask = np.zeros(len(pseudonyms), bool)
        mask[train] = True
        return mask

    return keep


def draw_canaries(m: int, settings: FlowerSettings, seed: int, **kwargs: Any) -> CanarySet:
    """``m`` canaries for this sweep point, all on the training side of the force's split."""
    return make_canaries(
        m,
        max_reads=settings.max_reads,
        seed=seed,
        on_training_side=_training_side(settings),
        **kwargs,
    )


def plant(store: ForceStore, settings: FlowerSettings, canaries: CanarySet) -> int:
    """Add the included canaries to the force's examples and labels (a scratch store only).

    Returns the number of training vehicles the force's loader now yields. Raises
    :class:`CanaryRunError` if the loader does not hand back exactly the real training
    vehicles plus the included canaries.
    """
    settings = settings.replace(feature_cache=True)
    clear_memory_cache()
    before = load_force_dataset(store, settings, use_store_cache=True)
    caches = [a for a in store.derived_artifacts() if a.name.startswith(CACHE_PREFIX)]
    if len(caches) != 1:
        raise CanaryRunError(
            f"expected one feature cache in the scratch store, found {len(caches)}"
        )
    cache = caches[0]
    examples = examples_from_table(store.read_derived(cache.name))
    if np.isin(canaries.examples.vehicles, examples.vehicles).any():
        raise CanaryRunError("a canary pseudonym collides with a real vehicle")
    zeros = np.zeros(len(examples), np.float32)
    joined, _ = with_canaries(examples, zeros, canaries)
    store.write_derived(cache.name, examples_to_table(joined), list(cache.source_days))
    positives = canaries.planted.vehicles[canaries.planted_labels == 1.0]
    if len(positives):
        convicted = datetime.combine(settings.as_of_date - timedelta(days=1), time(), UTC).date()
        table = pa.table(
            {
                "vehicle": pa.array(positives.tolist(), pa.string()),
                "offence_start": pa.array([None] * len(positives), pa.timestamp("us", tz="UTC")),
                "offence_end": pa.array([None] * len(positives), pa.timestamp("us", tz="UTC")),
                "conviction_date": pa.array([convicted] * len(positives), pa.date32()),
            },
            schema=LABELS_SCHEMA,
        )
        store.write_labels(table)
    clear_memory_cache()
    after = load_force_dataset(store, settings, use_store_cache=True)
    expected = np.sort(np.concatenate([before.train.vehicles, canaries.planted.vehicles]))
    if not np.array_equal(np.sort(after.train.vehicles), expected):
        raise CanaryRunError("the force's loader did not return the planted canaries for training")
    got = dict(zip(after.train.vehicles.tolist(), after.train_labels.tolist(), strict=True))
    want = canaries.planted_labels.tolist()
    if [got[v] for v in canaries.planted.vehicles.tolist()] != want:
        raise CanaryRunError("the planted canaries' labels did not reach the force's loader")
    return len(after.train)


def _ledger_claim(force: SimulatedForce, settings: FlowerSettings) -> tuple[float, float, float]:
    rows = force.ledger_rows(settings)
    if not rows:
        raise CanaryRunError("the canary run left no ledger entry")
    last = max(rows, key=lambda r: r["round"])
    return float(last["epsilon"]), float(last["delta"]), float(last["noise_multiplier"])


def train_in_process(force: SimulatedForce, settings: FlowerSettings, run_id: str) -> TrainedRun:
    """Every round through ``local_train`` in this process; FedAvg over one force is identity."""
    started = datetime.now(UTC)
    weights = initial_weights(settings)
    rounds = [weights]
    for server_round in range(1, settings.num_server_rounds + 1):
        outcome = local_train(
            force.node_store, settings, weights, server_round=server_round, run_id=run_id
        )
        weights = outcome.arrays
        rounds.append(weights)
    eps, delta, sigma = _ledger_claim(force, settings)
    seconds = (datetime.now(UTC) - started).total_seconds()
    return TrainedRun(rounds, eps, delta, sigma, seconds)


def train_flower(force: SimulatedForce, settings: FlowerSettings, run_id: str) -> TrainedRun:
    """A real Flower simulation (national ServerApp, FedAvg, the force's ClientApp)."""
    from research.study.federated import run_federated

    started = datetime.now(UTC)
    results = Path(settings.results_dir)
    if results.exists():
        shutil.rmtree(results)
    one_force = settings.replace(min_available_nodes=1, min_replies=1)
    run_federated([force], one_force, settings.study_id or run_id)
    rounds: list[list[np.ndarray]] = []
    for server_round in range(0, settings.num_server_rounds + 1):
        if server_round == 0 and not (results / CHECKPOINTS / "round-0000.npz").is_file():
            rounds.append(initial_weights(settings))  # a server that keeps no round 0
            continue
        path = results / CHECKPOINTS / f"round-{server_round:04d}.npz"
        if not path.is_file():
            raise CanaryRunError(f"{path}: the server wrote no checkpoint for round {server_round}")
        with np.load(path, allow_pickle=False) as arrays:
            rounds.append([np.asarray(arrays[name]) for name in arrays.files])
    eps, delta, sigma = _ledger_claim(force, settings)
    seconds = (datetime.now(UTC) - started).total_seconds()
    return TrainedRun(rounds, eps, delta, sigma, seconds)


def train(
    force: SimulatedForce, settings: FlowerSettings, *, engine: str, run_id: str
) -> TrainedRun:
    """Train one canary run with ``engine`` (see :data:`ENGINES`)."""
    if engine == "flower":
        return train_flower(force, settings, run_id)
    if engine == "in-process":
        return train_in_process(force, settings, run_id)
    raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")


def scratch_dir(parent: Path | None = None) -> Path:
    """A private temporary folder for the scratch store (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix="canary-audit-", dir=parent))
