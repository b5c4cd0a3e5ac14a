"""Deliberately BROKEN DP implementations, for the canary audit's tests and benchmarks ONLY.

Nothing on the CLI path imports this module (``tests/audit/test_gradient_canary_audit.py``
checks it); each helper patches the force's training code for the duration of a ``with``
block, so an audit can show that it catches an implementation that lies to its ledger:

* :func:`broken_noise` -- DP-SGD runs with a noise multiplier near zero while the ledger
  reserves and records the calibrated one (a noise bug that the ledger cannot see);
* :func:`replayed_noise` -- the noise has the calibrated size but is drawn from a generator
  seeded by a value the server knows (e.g. the run config's ``seed``), one stream per round:
  the server can regenerate the noise and subtract it. With SGD the round's update is linear
  in the noise, so :func:`replay_noise_effects` recomputes exactly what the noise moved.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

import client_force.dp_trainer as dp_trainer_module
import client_force.training as training_module


@contextlib.contextmanager
def broken_noise(noise: float) -> Iterator[None]:
    """DP-SGD with ``noise`` whatever the ledger reserved (tests and benchmarks only)."""
    real = training_module.run_dp_sgd

    def lying(*args: Any, **kwargs: Any) -> Any:
        kwargs["noise_multiplier"] = noise
        return real(*args, **kwargs)

    training_module.run_dp_sgd = lying
    try:
        yield
    finally:
        training_module.run_dp_sgd = real


def replay_seed(server_seed: int, round_index: int) -> int:
    """The seed of round ``round_index``'s (0-based) noise stream under :func:`replayed_noise`."""
    text = f"replayed-noise|{server_seed}|{round_index}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


@contextlib.contextmanager
def replayed_noise(server_seed: int) -> Iterator[None]:
    """Opacus draws each round's noise from a generator the server can re-create.

    Round ``k`` (the ``k``-th DP-SGD run inside the block) gets ``replay_seed(server_seed,
    k)``; Poisson sampling keeps the force's own generator.
    """
    real_engine = dp_trainer_module.PrivacyEngine
    calls = [0]

    class ReplayableEngine(real_engine):  # type: ignore[misc, valid-type]
        def make_private(self, *args: Any, **kwargs: Any) -> Any:
            g = torch.Generator()
            g.manual_seed(replay_seed(server_seed, calls[0]))
            calls[0] += 1
            kwargs["noise_generator"] = g
            return super().make_private(*args, **kwargs)

    dp_trainer_module.PrivacyEngine = ReplayableEngine
    try:
        yield
    finally:
        dp_trainer_module.PrivacyEngine = real_engine


def expected_batch(examples: int, sample_rate: float) -> int:
    """Opacus's ``expected_batch_size`` for our loader (``1 / steps_per_epoch`` x examples)."""
    steps_per_epoch = round(1.0 / sample_rate)
    return int(examples * (1 / steps_per_epoch))


def replay_noise_effects(
    shapes: Sequence[tuple[int, ...]],
    rounds: Sequence[dict[str, Any]],
    *,
    server_seed: int,
    learning_rate: float,
    momentum: float,
) -> list[np.ndarray]:
    """What the replayed noise added to the weights in each round (flat, ``get_weights`` order).

    ``rounds`` are the ledger's train rows of the run (noise multiplier, sample rate, steps,
    clipping norm, examples). Regenerates Opacus's draws (per step, per parameter in order,
    ``N(0, (sigma C)^2)``), divides by the expected batch and runs them through the same SGD
    (momentum) from zero: SGD is linear, so ``w_t = w_{t-1} + real part + this``.
    """
    effects = []
    for k, row in enumerate(rounds):
        g = torch.Generator()
        g.manual_seed(replay_seed(server_seed, k))
        std = float(row["noise_multiplier"]) * float(row["max_grad_norm"])
        batch = expected_batch(int(row["examples"]), float(row["sample_rate"]))
        params = [torch.zeros(s, dtype=torch.float32, requires_grad=True) for s in shapes]
        optimizer = torch.optim.SGD(params, lr=learning_rate, momentum=momentum)
        for _ in range(int(row["steps"])):
            for p in params:
                noise = torch.normal(mean=0, std=std, size=p.shape, generator=g)
                p.grad = noise / batch
            optimizer.step()
        effects.append(np.concatenate([p.detach().double().numpy().ravel() for p in params]))
    return effects
