"""What a force does when the national server asks it to train or evaluate one round.

Shared by the Message-API ClientApp (``client_force.client_app``) and the legacy SecAgg+
client (``client_force.secagg_client``), so both paths train and evaluate identically:

* open the node's own store (``node_settings``) under the store lock, and its
  :class:`~client_force.private_training.ForcePrivacyEngine` (the force's privacy policy,
  keyed ledger, CSPRNG noise and DP releases);
* check what the run config requests against the force's policy, before any work;
* load its examples and labels (``force_dataset``);
* **train**: load the global arrays, run one round of vehicle-level DP-SGD through the engine,
  and return the new arrays with DP-released metrics (or, in a simulation whose policy allows
  it, a non-private reference round marked ``epsilon = inf``);
* **evaluate**: a capped, charged DP release of held-out metrics of the global arrays.

Anything that stops a round is raised as :class:`RoundRefusedError` with one of the contract's
error codes; the apps turn it into a Flower error reply carrying that code only. A refusal of
the policy (``policy-refused``) happens before anything is trained or spent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from client_force.dp_recipe import RecipeError
from client_force.dp_recipe import resolve as resolve_recipe
from client_force.force_dataset import ForceDataError, ForceDataset, load_force_dataset
from client_force.gradient_canaries import ProbeError
from client_force.node_settings import NodeSettingsError, NodeStore, resolve_node_store
from client_force.privacy_policy import PolicyError, PolicyRefusedError
from client_force.private_training import ForcePrivacyEngine, ledger_path_for
from client_force.proximal import proximal_training
from client_force.training import TrainingConfig
from federation.contract import CLIENT_ERROR_BY_NAME, EgressContract
from federation.flower_settings import FlowerSettings, frozen_prefixes
from federation.model import TrajectoryModel, get_weights, set_weights
from privacy.dp.config import DPConfig, DPConfigError
from privacy.dp.ledger import LedgerError, PrivacyBudgetExceeded
from privacy.keys import KeyManagementError
from retention.lock import StoreLockedError
from retention.store import ForceStore, StoreError

log = logging.getLogger(__name__)

STORE_LOCK_HOLDER = "flower-round"
PARTICIPATION_LOG = "flower-rounds.jsonl"
STORE_LOCK_TIMEOUT = 60.0

__all__ = [
    "RoundRefusedError",
    "TrainOutcome",
    "contract_for",
    "ledger_path_for",
    "local_evaluate",
    "local_train",
    "node_store",
]


class RoundRefusedError(Exception):
    """This force will not (or cannot) take part in this round; ``code`` says why."""

    def __init__(self, name: str, message: str) -> None:
        self.code = CLIENT_ERROR_BY_NAME[name]
        self.name = name
        super().__init__(message)


@dataclass(frozen=True)
class TrainOutcome:
    """New arrays (model order) and the allowlisted train metrics."""

    arrays: list[np.ndarray]
    metrics: dict[str, int | float]


def contract_for(settings: FlowerSettings) -> EgressContract:
    """The egress contract of the model these settings describe."""
    return EgressContract.from_model_config(settings.model_config())


def node_store(node_config: Mapping[str, Any], settings: FlowerSettings) -> NodeStore:
    """This node's store, or :class:`RoundRefusedError` (``store-unavailable``)."""
    try:
        return resolve_node_store(node_config, settings.node_config_dir)
    except NodeSettingsError as exc:
        raise RoundRefusedError("store-unavailable", str(exc)) from None


class _OpenStore(AbstractContextManager["tuple[ForceStore, ForcePrivacyEngine]"]):
    """Open the store and its privacy engine; hold the store lock for the round."""

    def __init__(self, node: NodeStore) -> None:
        self.node = node
        self._lock: Any = None

    def __enter__(self) -> tuple[ForceStore, ForcePrivacyEngine]:
        try:
            store = ForceStore.open(self.node.store, self.node.secret())
            self._lock = store.lock(STORE_LOCK_HOLDER, timeout=STORE_LOCK_TIMEOUT)
            self._lock.__enter__()
        except (StoreError, KeyManagementError, StoreLockedError, OSError) as exc:
            raise RoundRefusedError("store-unavailable", f"{type(exc).__name__}: {exc}") from None
        try:
            engine = ForcePrivacyEngine.for_store(store, self.node.policy_file)
        except PolicyError as exc:
            self.__exit__(None, None, None)
            raise RoundRefusedError("store-unavailable", str(exc)) from None
        return store, engine

    def __exit__(self, *exc_info: Any) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc_info)
            self._lock = None


def _dataset(store: ForceStore, settings: FlowerSettings) -> ForceDataset:
    try:
        return load_force_dataset(store, settings)
    except ForceDataError as exc:
        raise RoundRefusedError("no-training-data", str(exc)) from None


def _model(
    settings: FlowerSettings, contract: EgressContract, arrays: Sequence[np.ndarray]
) -> TrajectoryModel:
    model = TrajectoryModel(settings.model_config())
    try:
        set_weights(model, list(arrays))
    except ValueError as exc:
        raise RoundRefusedError("invalid-instruction", str(exc)) from None
    return model


def dp_config(settings: FlowerSettings, n_vehicles: int) -> DPConfig:
    """The DP plan the run config requests at a force with ``n_vehicles`` training vehicles
    (the force's privacy engine then applies its policy: delta, noise, sample rate)."""
    dp = DPConfig.plan(
        n_vehicles=n_vehicles,
        target_epsilon=settings.dp_target_epsilon,
        expected_batch_size=settings.batch_size,
        total_rounds=settings.num_server_rounds,
        local_epochs=settings.local_epochs,
        max_grad_norm=settings.dp_max_grad_norm,
        target_delta=settings.dp_delta if settings.dp_delta > 0 else None,
    )
    if settings.dp_noise_multiplier > 0:
        dp = replace(dp, noise_multiplier=settings.dp_noise_multiplier)
    return dp


def round_plan(
    settings: FlowerSettings, n_vehicles: int, seed: int | None = None
) -> tuple[TrainingConfig, DPConfig, dict[str, Any] | None]:
    """Optimiser settings, requested DP plan and (when ``dp-recipe`` is set) the recipe.

    With ``dp-recipe`` empty the run config's explicit values are used; with a recipe name
    the force derives them from that fixed public rule and its own vehicle count
    (``client_force.dp_recipe``); the run config's epsilon, delta and model still apply.
    The force's privacy engine seeds the noise (``seed`` is kept for other callers).
    """
    if not settings.dp_recipe:
        training = TrainingConfig(
            optimizer=settings.optimizer,
            learning_rate=settings.learning_rate,
            seed=seed,
            frozen=frozen_prefixes(settings),
        )
        return training, dp_config(settings, n_vehicles), None
    recipe = resolve_recipe(settings.dp_recipe, n_vehicles, settings.num_server_rounds)
    recipe = replace(
        recipe,
        model_hidden=settings.model_hidden,
        model_conv_layers=settings.model_conv_layers,
        trainable=settings.train_layers,
    )
    training = TrainingConfig(
        optimizer=recipe.optimizer,
        learning_rate=recipe.learning_rate,
        momentum=recipe.momentum,
        seed=seed,
        frozen=frozen_prefixes(settings),
    )
    dp = DPConfig.plan(
        n_vehicles=n_vehicles,
        target_epsilon=settings.dp_target_epsilon,
        expected_batch_size=recipe.expected_batch_size,
        total_rounds=settings.num_server_rounds,
        local_epochs=recipe.local_epochs,
        max_grad_norm=recipe.max_grad_norm,
        target_delta=settings.dp_delta if settings.dp_delta > 0 else None,
    )
    if settings.dp_noise_multiplier > 0:
        dp = replace(dp, noise_multiplier=settings.dp_noise_multiplier)
    return training, dp, recipe.to_dict()


def _check(engine: ForcePrivacyEngine, settings: FlowerSettings) -> None:
    try:
        engine.check_request(settings)
    except PolicyRefusedError as exc:
        raise RoundRefusedError("policy-refused", str(exc)) from None


def record_participation(
    store_root: Path, *, run_id: str, node_id: int, server_round: int, metrics: Mapping[str, Any]
) -> None:
    """Append this round to ``STORE/logs/flower-rounds.jsonl`` (stays in the force).

    It lets the force (and a study runner that plays every force) match the national server's
    per-node records, which are keyed by Flower node id, to this store.
    """
    path = Path(store_root) / "logs" / PARTICIPATION_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "run_id": str(run_id),
        "node_id": int(node_id),
        "round": int(server_round),
        **{k: metrics[k] for k in ("num-examples", "epsilon", "delta") if k in metrics},
    }
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def local_train(
    node: NodeStore,
    settings: FlowerSettings,
    arrays: Sequence[np.ndarray],
    *,
    server_round: int,
    run_id: str,
    proximal_mu: float = 0.0,
    node_id: int | None = None,
) -> TrainOutcome:
    """One training round at this force from the global ``arrays`` (DP unless a simulation's
    policy allows ``dp-enabled = false``).

    With ``node_id`` (the Flower node id), the round is also appended to the store's
    participation log (:func:`record_participation`).
    """
    contract = contract_for(settings)
    with _OpenStore(node) as (store, engine):
        _check(engine, settings)
        data = _dataset(store, settings)
        model = _model(settings, contract, arrays)
        try:
            training, dp_request, recipe = round_plan(settings, len(data.train))
        except RecipeError as exc:
            raise RoundRefusedError("invalid-instruction", str(exc)) from None
        except DPConfigError as exc:
            raise RoundRefusedError("no-training-data", f"{type(exc).__name__}: {exc}") from None
        training = proximal_training(training, model, proximal_mu)
        try:
            probes = engine.audit_probes(store, settings)
            if probes is not None and not settings.dp_enabled:
                raise PolicyRefusedError("audit probes need DP training (dp-enabled = true)")
            if settings.dp_enabled:
                metrics = engine.train(
                    model,
                    data.train,
                    data.train_labels,
                    settings,
                    server_round=int(server_round),
                    run_id=run_id,
                    force=store.force,
                    training=training,
                    dp_request=dp_request,
                    recipe=recipe,
                    probes=probes,
                ).metrics
            else:
                metrics = engine.train_nonprivate(
                    model,
                    data.train,
                    data.train_labels,
                    settings,
                    server_round=int(server_round),
                    force=store.force,
                    training=training,
                )
        except PolicyRefusedError as exc:
            raise RoundRefusedError("policy-refused", str(exc)) from None
        except PrivacyBudgetExceeded as exc:
            raise RoundRefusedError("privacy-budget-exhausted", str(exc)) from None
        except DPConfigError as exc:
            raise RoundRefusedError("no-training-data", f"{type(exc).__name__}: {exc}") from None
        except LedgerError as exc:  # tampered, rolled back or deleted: nothing trains
            raise RoundRefusedError("store-unavailable", f"{type(exc).__name__}: {exc}") from None
        except (StoreError, ProbeError) as exc:  # e.g. a planted audit-probe artifact
            raise RoundRefusedError("store-unavailable", f"{type(exc).__name__}: {exc}") from None
        outcome = TrainOutcome(arrays=get_weights(model), metrics=metrics)
        if node_id is not None:
            record_participation(
                store.root,
                run_id=run_id,
                node_id=node_id,
                server_round=server_round,
                metrics=outcome.metrics,
            )
        return outcome


def local_evaluate(
    node: NodeStore,
    settings: FlowerSettings,
    arrays: Sequence[np.ndarray],
    *,
    server_round: int = 0,
    run_id: str = "",
) -> dict[str, int | float]:
    """DP-released held-out metrics of the global ``arrays`` at this force (capped, charged)."""
    contract = contract_for(settings)
    with _OpenStore(node) as (store, engine):
        _check(engine, settings)
        data = _dataset(store, settings)
        model = _model(settings, contract, arrays)
        try:
            return engine.evaluate(
                model,
                data.test,
                data.eval_labels,
                settings,
                server_round=int(server_round),
                run_id=run_id,
                force=store.force,
            )
        except PolicyRefusedError as exc:
            raise RoundRefusedError("policy-refused", str(exc)) from None
        except PrivacyBudgetExceeded as exc:
            raise RoundRefusedError("privacy-budget-exhausted", str(exc)) from None
        except DPConfigError as exc:
            raise RoundRefusedError("no-training-data", f"{type(exc).__name__}: {exc}") from None
        except LedgerError as exc:  # tampered, rolled back or deleted: nothing trains
            raise RoundRefusedError("store-unavailable", f"{type(exc).__name__}: {exc}") from None
