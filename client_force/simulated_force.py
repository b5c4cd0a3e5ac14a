"""One force in a simulated study: the operations a force's staff would run, as one object.

The study runner (``research.study``) loads this class by reference and drives one instance
per force: create the store, ingest the export, load the conviction log, purge as of the study
date, train alone (local-only), evaluate a model on the force's held-out vehicles, and hand out
training examples for the non-private pooled counterfactual. What comes back to the runner is
counts, scores and truth flags of held-out vehicles, ledger rows and model weights: never a
VRM, a pseudonym, a camera id or a coordinate.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from client_force.flower_round import local_train
from client_force.force_dataset import ForceDataset, load_force_dataset, write_eval_labels
from client_force.ingest import ingest_export
from client_force.labels import ingest_labels_frame
from client_force.node_settings import NodeStore, write_node_config
from client_force.privacy_policy import SIMULATION_POLICY
from client_force.private_training import ForcePrivacyEngine, install_policy, ledger_path_for
from client_force.streamed_examples import ProgressCallback
from federation.flower_settings import FlowerSettings, frozen_prefixes
from federation.model import (
    TrajectoryModel,
    get_weights,
    load_initial_weights,
    predict_scores,
    set_weights,
)
from privacy.keys import MasterSecretSource, SimulationSecretSource
from retention.policy import RetentionPolicy
from retention.purge import run_purge
from retention.store import ForceStore

log = logging.getLogger(__name__)


class SimulatedForce:
    """A force's store and the work done on it during a simulated study."""

    def __init__(
        self, name: str, store_dir: Path, key_file: Path, key_seed: int | None = None
    ) -> None:
        self.name = name
        self.store_dir = Path(store_dir)
        self.key_file = Path(key_file)
        # SIMULATION ONLY: with a seed, the store's keys follow from (seed, force name), so a
        # rerun of the same study gets the same pseudonyms, split and figures.
        self.key_seed = key_seed
        self._store: ForceStore | None = None

    # ------------------------------------------------------------------ the store
    def detached(self) -> SimulatedForce:
        """A copy without the open store, to hand to a worker process (it reopens the store)."""
        return SimulatedForce(self.name, self.store_dir, self.key_file, self.key_seed)

    def _new_secret_source(self) -> MasterSecretSource:
        if self.key_seed is None:
            return MasterSecretSource.from_key_file(self.key_file)
        return SimulationSecretSource(self.key_file, seed=self.key_seed, force=self.name)

    @property
    def node_store(self) -> NodeStore:
        """Where this force's Flower node finds its store (written to its node config)."""
        return NodeStore(store=self.store_dir, key_file=self.key_file)

    @property
    def store(self) -> ForceStore:
        """The force's store, opened with its key file."""
        if self._store is None:
            self._store = ForceStore.open(
                self.store_dir, MasterSecretSource.from_key_file(self.key_file)
            )
        return self._store

    def setup(self, export: Path, as_of: datetime, max_age_days: int) -> dict[str, Any]:
        """Create a fresh store with a new key file and ingest the export; returns counts.

        The key file holds a fresh random secret, or with ``key_seed`` one derived from the
        seed and the force name (SIMULATION ONLY, ``privacy.keys.SimulationSecretSource``).
        """
        for stale in (self.store_dir, self.key_file):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self._store = ForceStore.create(self.store_dir, self.name, self._new_secret_source())
        # A simulated force allows simulation-only settings (fixed seeds, scoped ledgers,
        # non-private references); every run manifest says so (see privacy_policy).
        install_policy(self._store, SIMULATION_POLICY)
        report = ingest_export(self._store, export, as_of=as_of, max_age_days=max_age_days)
        report.check()
        return {
            "input_rows": report.input_rows,
            "stored": report.stored,
            "duplicates": report.duplicates,
            "rejected": report.rejected,
        }

    def copy_to(self, store_dir: Path, key_file: Path) -> SimulatedForce:
        """A second, independent copy of this force's store and key file (a what-if branch).

        A study compares retention windows on the same ingested history: the runner ingests
        once, then copies the store per window before purging each copy to its own window.
        The copies share keys and pseudonyms (so vehicles line up across windows) but not
        their keyrings: purging one copy crypto-erases only that copy's day keys.
        """
        self._store = None
        for target in (Path(store_dir), Path(key_file)):
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        Path(key_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.store_dir, store_dir)
        shutil.copy2(self.key_file, key_file)
        return SimulatedForce(self.name, Path(store_dir), Path(key_file), self.key_seed)

    @staticmethod
    def seen_vrms(export: Path, candidates: pd.Series) -> set[str]:
        """Which of ``candidates`` (simulation truth) this force's export has read at least once."""
        if export.suffix == ".parquet":
            column = pq.read_table(export, columns=["vrm"])["vrm"]
        else:
            column = pa.array(pd.read_csv(export, usecols=["vrm"])["vrm"].astype(str))
        wanted = pa.array(candidates.astype(str).unique().tolist(), pa.string())
        present = pc.unique(column.filter(pc.is_in(column, value_set=wanted)))
        return set(present.to_pylist())

    def load_convictions(self, convictions: pd.DataFrame) -> int:
        """Load the force's intelligence log (raw VRMs, pseudonymised on the way in)."""
        report = ingest_labels_frame(self.store, convictions)
        return int(report.stored)

    def load_truth(self, offending: pd.Series) -> int:
        """Simulation only: which of the force's vehicles truly offend in the study window."""
        pseudonyms = self.store.pseudonymiser().pseudonymise(
            pa.array(offending.astype(str).tolist(), pa.string())
        )
        frame = pd.DataFrame({"vehicle": pseudonyms.to_pylist(), "label": 1})
        write_eval_labels(self.store, frame)
        return len(frame)

    def purge(self, as_of: datetime, max_age_days: int) -> dict[str, Any]:
        """Run the retention purge as of the study date; returns what it removed."""
        result = run_purge(self.store, as_of, RetentionPolicy(max_age_days=max_age_days))
        return {
            "purge_status": result.status,
            "days_purged": len(result.plan.days),
            "days_held_after_purge": len(self.store.days()),
        }

    # ------------------------------------------------------------------ training
    def dataset(
        self, settings: FlowerSettings, progress: ProgressCallback | None = None
    ) -> ForceDataset:
        """The force's examples, labels and held-out split for a sweep point.

        ``progress(stage, done, total)`` follows example building when it is not cached.
        """
        return load_force_dataset(self.store, settings, progress=progress)

    def write_node_config(self, node_config_dir: Path, partition_id: int) -> Path:
        """Write this force's simulated-node config file (its store and key file only)."""
        return write_node_config(node_config_dir, partition_id, self.store_dir, self.key_file)

    def ledger_path(self, settings: FlowerSettings) -> Path:
        """The privacy ledger the force's training uses for these settings."""
        return ledger_path_for(self.store_dir, settings)

    def train_local(self, settings: FlowerSettings, study_id: str) -> list[np.ndarray]:
        """Local-only design: the same DP rounds as the federation's, with no aggregation.

        Each round goes through ``client_force.flower_round.local_train``, the very code the
        Flower ClientApp runs, so the local-only and federated designs differ only in
        aggregation.
        """
        settings = settings.replace(study_id=study_id)
        weights = get_weights(_initial_model(settings))
        self._store = None  # local_train opens the store itself, under the store lock
        for round_id in range(1, settings.num_server_rounds + 1):
            outcome = local_train(
                self.node_store,
                settings,
                weights,
                server_round=round_id,
                run_id=f"local-{self.name}",
            )
            weights = outcome.arrays
        return weights

    def evaluate(
        self, weights: list[np.ndarray], settings: FlowerSettings
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the held-out vehicles and their truth flags (no identifiers)."""
        data = self.dataset(settings)
        model = TrajectoryModel(settings.model_config())
        set_weights(model, weights)
        scores = predict_scores(model, data.test)
        truth = data.test_truth if data.test_truth is not None else data.test_labels
        return np.asarray(scores, np.float64), np.asarray(truth, np.float64)

    def ledger_rows(self, settings: FlowerSettings) -> list[dict[str, Any]]:
        """One row per training round: its DP-SGD mechanism and the force's cumulative epsilon
        after the round's releases (the release of its scalars, any evaluations), for the
        results' privacy ledger."""
        ledger = ForcePrivacyEngine.for_store(self.store).open_existing(settings)
        if ledger is None:
            return []
        rows: list[dict[str, Any]] = []
        for e in ledger.entries:
            if e.kind == "train" or not rows:
                rows.append(
                    {
                        "force": self.name,
                        "round": e.round,
                        "epsilon": e.epsilon_after,
                        "delta": e.delta,
                        "noise_multiplier": e.noise_multiplier if e.kind == "train" else None,
                        "sample_rate": e.sample_rate if e.kind == "train" else None,
                        "steps": e.steps if e.kind == "train" else 0,
                        "max_grad_norm": e.max_grad_norm if e.kind == "train" else None,
                        "examples": e.examples,
                        "release_noise_multiplier": None,
                        "evaluate_releases": 0,
                        "epsilon_budget": ledger.epsilon_budget,
                        "accountant": "rdp",
                        "simulation_ledger": ledger.simulation,
                    }
                )
            if e.kind != "train":
                rows[-1]["epsilon"] = e.epsilon_after
                if e.kind == "release":
                    rows[-1]["release_noise_multiplier"] = e.noise_multiplier
                else:
                    rows[-1]["evaluate_releases"] += 1
        return rows

    @staticmethod
    def train_pooled(
        nodes: list[SimulatedForce],
        settings: FlowerSettings,
        on_epoch: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray]:
        """The pooled counterfactual: every force's training vehicles in one NON-PRIVATE model.

        ``on_epoch(done, total)`` reports epochs finished (progress on large studies).
        """
        from client_force.dp_recipe import nonprivate_training
        from client_force.training import TrainingConfig, train_nonprivate
        from federation.features import concat_examples

        datasets = [node.dataset(settings) for node in nodes]
        examples = concat_examples([d.train for d in datasets])
        labels = np.concatenate([d.train_labels for d in datasets])
        model = _initial_model(settings)
        # the repeat's training seed when the study fixes one, else the study seed
        seed = settings.training_seed if settings.training_seed >= 0 else settings.seed
        if settings.dp_recipe:  # the recipe's non-private rule (client_force.dp_recipe)
            plan = nonprivate_training(seed)
            epochs = plan.pop("epochs")
            training = TrainingConfig(**plan, frozen=frozen_prefixes(settings))
        else:
            epochs = settings.num_server_rounds * settings.local_epochs
            training = TrainingConfig(
                optimizer=settings.optimizer,
                learning_rate=settings.learning_rate,
                seed=seed,
                frozen=frozen_prefixes(settings),
            )
        report = (lambda done: on_epoch(done, epochs)) if on_epoch is not None else None
        train_nonprivate(model, examples, labels, epochs, training, on_epoch=report)
        return get_weights(model)


def _initial_model(settings: FlowerSettings) -> TrajectoryModel:
    """The model every design starts from: initialised with the study seed, as the server does."""
    if settings.init_weights:  # a public pre-trained start, as the server sends it
        model = TrajectoryModel(settings.model_config())
        set_weights(
            model,
            load_initial_weights(
                settings.model_config(),
                settings.init_weights,
                seed=settings.seed,
                encoder_only=settings.init_encoder_only,
            ),
        )
        return model
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(settings.seed)
        return TrajectoryModel(settings.model_config())
    finally:
        torch.random.set_rng_state(state)
