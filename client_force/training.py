"""A force's local training round under vehicle-level DP, with its persistent privacy ledger.

``train_round`` is what the force's Flower ClientApp calls each round:

1. align labels with the examples (one example = one vehicle) and check
   ``delta <= 1/(10 x vehicles)``;
2. take the study's noise multiplier (calibrated once for the whole plan, see
   ``privacy.dp.accountant.study_noise_multiplier``);
3. *reserve* the round in the force's ledger -- this computes the cumulative epsilon the round
   would reach over everything ever recorded at this force and refuses with
   ``PrivacyBudgetExceeded`` if it exceeds the force's budget; otherwise it is written before
   any training happens;
4. run DP-SGD (Opacus, Poisson sampling, clipping, Gaussian noise) with an accountant that
   starts from the ledger's history, and check that it recorded exactly the reserved steps;
5. load the trained weights into ``model``, mark the round completed and return a
   ``RoundResult`` whose ``metrics()`` are the only scalars allowed to leave the force.

``train_nonprivate`` is for the non-private reference designs only; it does not touch the
ledger, and its output must never leave a force.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client_force.dp_trainer import make_generator, run_dp_sgd, trainable_parameters
from client_force.gradient_canaries import GradientCanaries
from federation.features import ExampleSet, align_labels
from federation.metrics import DEFAULT_TARGET_PREVALENCE, evaluate_scores
from federation.model import example_tensors, predict_scores
from privacy.dp.accountant import study_noise_multiplier
from privacy.dp.config import DPConfig, check_delta
from privacy.dp.ledger import PrivacyLedger

METRIC_ALLOWLIST = ("examples", "loss", "epsilon", "delta")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser settings of local training (not privacy settings; see ``DPConfig``).

    The defaults are for DP-SGD: plain SGD with momentum and a large step, because per-vehicle
    clipping bounds every gradient by ``max_grad_norm`` (Adam was less stable under DP noise
    on the planted-pattern worlds). ``NONPRIVATE_TRAINING`` holds the non-private defaults.

    ``seed`` fixes sampling and noise for tests and benchmarks; leave it None in a deployment,
    where a predictable noise stream would void the guarantee.
    """

    optimizer: str = "sgd"
    learning_rate: float = 0.5
    momentum: float = 0.9
    pos_weight: float | None = None
    grad_sample_mode: str = "hooks"
    batch_size: int = 256  # non-private training only
    seed: int | None = None
    frozen: tuple[str, ...] = ()  # parameter-name prefixes kept fixed (e.g. a public encoder)

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        """Freeze ``model``'s parameters named by ``frozen``; return the ones left to train."""
        return trainable_parameters(model, self.frozen)

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.learning_rate)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.learning_rate, momentum=self.momentum)
        raise ValueError(f"unknown optimizer {self.optimizer!r} (use 'adam' or 'sgd')")

    def make_loss(self) -> nn.Module:
        pos_weight = None if self.pos_weight is None else torch.tensor(float(self.pos_weight))
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


NONPRIVATE_TRAINING = TrainingConfig(optimizer="adam", learning_rate=3e-3)
"""Defaults for ``train_nonprivate`` (unclipped gradients: Adam at a small step)."""


@dataclass(frozen=True)
class RoundResult:
    """Outcome of one local round; ``metrics()`` is what may leave the force."""

    loss: float
    examples: int
    epsilon_spent: float  # the force's cumulative epsilon at ``delta`` after this round
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    ledger_seq: int

    def metrics(self) -> dict[str, float]:
        """The allowlisted scalars: examples, loss, epsilon, delta."""
        return {
            "examples": float(self.examples),
            "loss": float(self.loss),
            "epsilon": float(self.epsilon_spent),
            "delta": float(self.delta),
        }


def tensor_dataset(examples: ExampleSet, y: np.ndarray) -> TensorDataset:
    """The examples and their labels as a torch ``TensorDataset`` (seqs, mask, summary, y)."""
    seqs, mask, summary = example_tensors(examples)
    return TensorDataset(seqs, mask, summary, torch.from_numpy(y.astype(np.float32)))


def train_round(
    model: nn.Module,
    examples: ExampleSet,
    labels: Any,
    dp: DPConfig,
    ledger: PrivacyLedger,
    local_epochs: int | None = None,
    round_id: int = 0,
    *,
    study_id: str,
    run_id: str = "",
    training: TrainingConfig | None = None,
    recipe: Mapping[str, Any] | None = None,
    probes: GradientCanaries | None = None,
    probe_seed: int | None = None,
) -> RoundResult:
    """Train ``model`` in place for one round of vehicle-level DP-SGD (see module docstring).

    Args:
        model: the global model for this round; its weights are replaced by the trained ones.
        examples: the force's examples (one per vehicle).
        labels: labels aligned with ``examples.vehicles`` or a vehicle -> 0/1 mapping.
        dp: the study's DP settings at this force.
        ledger: the force's persistent privacy ledger.
        local_epochs: epochs this round (default ``dp.local_epochs``, the planned value).
        round_id: the federated round number (recorded in the ledger).
        study_id: the study's identifier (recorded in the ledger).
        run_id: identifier of this run of the study (recorded in the ledger).
        training: optimiser settings.
        recipe: the training recipe these settings came from (``client_force.dp_recipe``;
            name, version and every value), recorded in the ledger entry.
        probes: audit probes (Dirac gradient canaries) to add in every DP-SGD step; only the
            force's privacy engine passes them, when its policy allows
            (``client_force.gradient_canaries``). ``probe_seed`` seeds their Poisson draws.

    Raises:
        PrivacyBudgetExceeded: the round would take the force past its epsilon budget.
        DPConfigError: delta above 1/(10 x vehicles), or other invalid DP settings.
    """
    training = training or TrainingConfig()
    y = align_labels(examples.vehicles, labels)
    n = len(examples)
    check_delta(dp.target_delta, n)
    epochs = dp.local_epochs if local_epochs is None else int(local_epochs)
    if epochs < 1:
        raise ValueError("local_epochs must be at least 1")
    sigma = study_noise_multiplier(dp)
    entry = ledger.reserve(
        noise_multiplier=sigma,
        sample_rate=dp.sample_rate,
        steps=epochs * dp.steps_per_epoch,
        max_grad_norm=dp.max_grad_norm,
        delta=dp.target_delta,
        study_id=study_id,
        round_id=round_id,
        run_id=run_id,
        examples=n,
        orders=dp.orders,
        recipe=recipe,
    )
    prior = [e.mechanism for e in ledger.entries[: entry.seq]]
    result = run_dp_sgd(
        model,
        tensor_dataset(examples, y),
        prior_history=prior,
        noise_multiplier=sigma,
        sample_rate=dp.sample_rate,
        max_grad_norm=dp.max_grad_norm,
        epochs=epochs,
        make_optimizer=training.make_optimizer,
        frozen=training.frozen,
        loss_fn=training.make_loss(),
        generator=make_generator(training.seed),
        grad_sample_mode=training.grad_sample_mode,
        probes=probes,
        probe_generator=None if probes is None else make_generator(probe_seed),
    )
    model.load_state_dict(result.state_dict)
    ledger.complete(entry.seq)
    return RoundResult(
        loss=result.mean_loss,
        examples=n,
        epsilon_spent=entry.epsilon_after,
        delta=dp.target_delta,
        noise_multiplier=sigma,
        sample_rate=dp.sample_rate,
        steps=result.steps,
        ledger_seq=entry.seq,
    )


def train_nonprivate(
    model: nn.Module,
    examples: ExampleSet,
    labels: Any,
    epochs: int,
    training: TrainingConfig | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> float:
    """Non-private minibatch training in place (reference designs only); returns mean loss.

    ``on_epoch(epochs_done)`` is called after each epoch (progress on long runs).

    No ledger entry is written because no DP guarantee exists: a model trained this way
    has epsilon = infinity for every vehicle in ``examples`` and must not leave the force.
    """
    training = training or NONPRIVATE_TRAINING
    y = align_labels(examples.vehicles, labels)
    generator = make_generator(training.seed)
    loader = DataLoader(
        tensor_dataset(examples, y),
        batch_size=training.batch_size,
        shuffle=True,
        generator=generator,
    )
    work = copy.deepcopy(model)
    work.train()
    optimizer = training.make_optimizer(training.trainable(work))
    loss_fn = training.make_loss()
    total, rows = 0.0, 0
    for epoch in range(epochs):
        for seqs, mask, summary, target in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(work(seqs, mask, summary), target)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(target)
            rows += len(target)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    model.load_state_dict(work.state_dict())
    return total / rows if rows else math.nan


def evaluate_local(
    model: nn.Module,
    examples: ExampleSet,
    labels: Any,
    *,
    target_prevalence: float = DEFAULT_TARGET_PREVALENCE,
) -> dict[str, float]:
    """PR-AUC, precision at recall 0.5 and base-rate figures on (held-out) examples.

    These describe the force's own vehicles and stay inside the force unless a study's
    metric allowlist says otherwise.
    """
    y = align_labels(examples.vehicles, labels)
    return evaluate_scores(y, predict_scores(model, examples), target_prevalence=target_prevalence)
