"""The DP-SGD loop: Opacus, Poisson sampling over vehicles, a fixed number of steps.

Kept apart from the round bookkeeping (``client_force.training``) so that this module does one
thing: run ``epochs x steps_per_epoch`` DP-SGD steps on a copy of the model and hand back the
trained weights, the mean loss and the accountant history Opacus recorded.

Sampling: each step includes every vehicle independently with probability q (Opacus's
``UniformWithReplacementSampler``) and an epoch is exactly ``1/q`` steps; the loader is built
here with the step count given explicitly, because Opacus derives it as ``int(1/q)``, which
floating point makes one short for some q (e.g. 1/93).

Memory: a logical (Poisson) batch is processed in physical chunks of at most
``max_physical_batch`` vehicles (Opacus's ``BatchMemoryManager``): each chunk's per-sample
gradients are clipped and summed, and the noise and the optimiser step come once per logical
batch, so the mechanism, the accountant's record and (up to float rounding) the weights are
those of the unsplit step. Without it a step holds every sampled vehicle's per-sample gradient
and activations at once, ~145 KiB a vehicle for the recipe's model at 32 reads: 2.9 GiB for the
21,000-vehicle batches a million-vehicle force's recipe asks for
(docs/benchmarks/physical-batch.md).

Randomness: ``secure_mode=False`` is passed explicitly. torchcsprng, which Opacus needs for
secure mode, has no wheel for this platform, so sampling and noise come from torch's
Mersenne-Twister generator; see ``docs/residual-risks.md``.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.data_loader import wrap_collate_with_empty
from opacus.utils.batch_memory_manager import wrap_data_loader
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data._utils.collate import default_collate

from client_force.dp_recipe import MAX_PHYSICAL_BATCH
from client_force.gradient_canaries import GradientCanaries, attach
from privacy.dp.accountant import Mechanism, make_accountant

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]

_KNOWN_WARNINGS = (
    # secure_mode=False is a documented residual risk (docs/residual-risks.md).
    "Secure RNG turned off",
    # Inputs never require grad; Opacus's backward hooks still see every layer's output grad.
    "Full backward hook is firing",
)


@dataclass(frozen=True)
class DPRunResult:
    """What a DP-SGD run produced."""

    state_dict: dict[str, torch.Tensor]
    mean_loss: float
    history: list[Mechanism]
    steps: int


def make_generator(seed: int | None) -> torch.Generator:
    """A torch generator seeded with ``seed``, or from the OS entropy pool if None.

    A fixed seed makes the DP noise reproducible and therefore predictable: tests and
    benchmarks only, never a deployment.
    """
    g = torch.Generator()
    g.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return g


def poisson_loader(
    dataset: TensorDataset, *, sample_rate: float, steps: int, generator: torch.Generator
) -> DataLoader:
    """A loader of ``steps`` Poisson-sampled batches (each row kept with prob ``sample_rate``)."""
    sampler = UniformWithReplacementSampler(
        num_samples=len(dataset), sample_rate=sample_rate, generator=generator, steps=steps
    )
    first = dataset[0]
    collate = wrap_collate_with_empty(
        collate_fn=default_collate,
        sample_empty_shapes=[(0, *t.shape) for t in first],
        dtypes=[t.dtype for t in first],
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)


def _steps_by_mechanism(history: list[Mechanism]) -> Counter:
    counts: Counter = Counter()
    for sigma, q, n in history:
        counts[(float(sigma), float(q))] += int(n)
    return counts


def trainable_parameters(model: nn.Module, frozen: tuple[str, ...]) -> list[nn.Parameter]:
    """Set ``requires_grad`` off on parameters whose name starts with a ``frozen`` prefix.

    Returns the parameters still trained. Raises ``ValueError`` if nothing is left to train.
    """
    keep = []
    for name, param in model.named_parameters():
        fixed = bool(frozen) and name.startswith(frozen)
        param.requires_grad_(not fixed)
        if not fixed:
            keep.append(param)
    if not keep:
        raise ValueError(f"every parameter is frozen by {frozen!r}; nothing to train")
    return keep


def run_dp_sgd(
    model: nn.Module,
    dataset: TensorDataset,
    *,
    prior_history: list[Mechanism],
    noise_multiplier: float,
    sample_rate: float,
    max_grad_norm: float,
    epochs: int,
    make_optimizer: OptimizerFactory,
    loss_fn: nn.Module,
    generator: torch.Generator,
    grad_sample_mode: str = "hooks",
    frozen: tuple[str, ...] = (),
    probes: GradientCanaries | None = None,
    probe_generator: torch.Generator | None = None,
    max_physical_batch: int | None = MAX_PHYSICAL_BATCH,
) -> DPRunResult:
    """Train a deep copy of ``model`` with DP-SGD; ``model`` itself is not modified.

    Parameters named by a ``frozen`` prefix keep their values (no per-sample gradient, no
    noise: a fixed public encoder); the others are trained.

    ``probes`` (audits only, see ``client_force.gradient_canaries``) are added to every step's
    clipped sum before the noise, each Poisson-sampled at ``sample_rate`` from
    ``probe_generator`` (a generator of their own, so the data's sampling and noise streams
    are the same with or without probes).

    The Opacus accountant starts from ``prior_history`` (the force's ledger), so its history
    after the run is the force's whole history; the run checks that it grew by exactly this
    run's ``(noise_multiplier, sample_rate, epochs / sample_rate)``.

    ``max_physical_batch`` bounds the vehicles whose per-sample gradients are held at once
    (``None``: each logical batch in one pass; ghost clipping holds no per-sample gradients
    and is never split).
    """
    steps_per_epoch = round(1.0 / sample_rate)
    if max_physical_batch is not None and max_physical_batch < 1:
        raise ValueError(f"max_physical_batch must be at least 1; got {max_physical_batch}")
    if sample_rate * len(dataset) < 1.0:
        raise ValueError(
            f"sample rate {sample_rate:.3g} x {len(dataset)} vehicles is below one expected "
            "vehicle per batch; use a larger sample rate"
        )
    with warnings.catch_warnings():
        for message in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        return _run(
            model,
            dataset,
            prior_history=prior_history,
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            max_grad_norm=max_grad_norm,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            make_optimizer=make_optimizer,
            loss_fn=loss_fn,
            generator=generator,
            grad_sample_mode=grad_sample_mode,
            frozen=frozen,
            probes=probes,
            probe_generator=probe_generator,
            max_physical_batch=max_physical_batch,
        )


def _run(
    model: nn.Module,
    dataset: TensorDataset,
    *,
    prior_history: list[Mechanism],
    noise_multiplier: float,
    sample_rate: float,
    max_grad_norm: float,
    epochs: int,
    steps_per_epoch: int,
    make_optimizer: OptimizerFactory,
    loss_fn: nn.Module,
    generator: torch.Generator,
    grad_sample_mode: str,
    frozen: tuple[str, ...] = (),
    probes: GradientCanaries | None = None,
    probe_generator: torch.Generator | None = None,
    max_physical_batch: int | None = MAX_PHYSICAL_BATCH,
) -> DPRunResult:
    """``run_dp_sgd`` after validation, with Opacus's known warnings silenced."""
    work = copy.deepcopy(model)
    work.train()
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    engine.accountant = make_accountant(prior_history)
    loader = poisson_loader(
        dataset, sample_rate=sample_rate, steps=steps_per_epoch, generator=generator
    )
    made = engine.make_private(
        module=work,
        optimizer=make_optimizer(trainable_parameters(work, frozen)),
        data_loader=loader,
        criterion=loss_fn,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=False,  # the loader above already samples Poisson batches
        noise_generator=generator,
        grad_sample_mode=grad_sample_mode,
    )
    if grad_sample_mode == "ghost":
        dp_model, optimizer, criterion, dp_loader = made
    else:
        dp_model, optimizer, dp_loader = made
        criterion = loss_fn
    if abs(optimizer.expected_batch_size - sample_rate * len(dataset)) > 1.0:
        raise RuntimeError("Opacus derived a different sample rate from the loader")
    if probes is not None:
        if probe_generator is None:
            raise ValueError("audit probes need their own generator")
        attach(optimizer, probes, sample_rate=sample_rate, generator=probe_generator)

    if max_physical_batch is not None and "ghost" not in grad_sample_mode:
        # Chunks of at most max_physical_batch; Opacus steps (noise, accountant, probes) once
        # per logical batch and only clips and sums on the chunks before its last.
        dp_loader = wrap_data_loader(
            data_loader=dp_loader, max_batch_size=max_physical_batch, optimizer=optimizer
        )
    total_loss, total_rows = 0.0, 0
    for _ in range(epochs):
        for seqs, mask, summary, labels in dp_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(dp_model(seqs, mask, summary), labels)
            loss.backward()
            optimizer.step()
            if len(labels):  # an empty Poisson batch still takes a (pure-noise) step
                total_loss += float(loss.detach()) * len(labels)
                total_rows += len(labels)

    history = [tuple(h) for h in engine.accountant.history]
    expected = _steps_by_mechanism(
        [*prior_history, (noise_multiplier, sample_rate, epochs * steps_per_epoch)]
    )
    if _steps_by_mechanism(history) != expected:
        raise RuntimeError(
            "the Opacus accountant recorded a different number of DP steps than planned; "
            "refusing to report this round"
        )
    inner = dp_model._module if hasattr(dp_model, "_module") else dp_model
    return DPRunResult(
        state_dict={k: v.detach().clone() for k, v in inner.state_dict().items()},
        mean_loss=total_loss / total_rows if total_rows else float("nan"),
        history=history,
        steps=epochs * steps_per_epoch,
    )
