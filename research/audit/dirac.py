"""Dirac gradient canaries for the one-run audit: which coordinates, and how they are scored.

A gradient canary (``client_force.gradient_canaries``) is the vector ``C * e_j`` added to a
DP-SGD step's clipped sum, Poisson-sampled like a vehicle. Each of the ``m`` canaries gets its
own coordinate ``j`` of the flat parameter vector (in ``get_weights`` order), drawn (seeded)
from the large weight matrices -- never a bias, the attention score or the output layer, which
every real gradient moves strongly -- and is included with probability 1/2.

Scores (higher = "included"): with plain SGD the weights move *down* the noisy gradient, so a
sampled canary lowers its coordinate by ``lr x C / B`` per step (momentum only spreads that
over later steps). So

* **final model** (black-box in weight space; the server chose ``w_0``): ``w_0[j] - w_T[j]``;
* **white-box** (the server's round-by-round view): the sum over rounds of each round's step
  ``w_{t-1}[j] - w_t[j]``, each round's steps divided by their spread over the canary
  coordinates (a round is weighted by how much it moved them, which the server sees per
  round). With one force and FedAvg the unweighted sum telescopes to the final-model score,
  so the two views differ only by that weighting.

Both subtract ``noise_effects`` when given: the displacement a *known* noise sequence caused
in each round (:mod:`research.audit.broken_dp`, the replayed-noise variant), which the server
can only compute if it can regenerate the noise.

Real-gradient drift in a coordinate is independent of the coins, so it does not bias the
bound; it only costs power. :func:`drift_summary` measures it on the excluded canaries. It
can be removed with a ``baseline``: the rounds of a *drift pilot*, a noise-free run of the same
settings on the same data WITHOUT canaries and with its own sampling seed: each round's step
of the pilot is subtracted from the audited run's. The pilot does not depend on the coins, so
the one-run bound stays valid (its theorem allows any guesser that does not see the coins).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from client_force.gradient_canaries import GradientCanaries
from federation.model import ModelConfig, weight_spec

MIN_MATRIX = 256
"""Only weight matrices with at least this many entries hold canaries."""
MAX_SHARE = 0.9
"""At most this share of the eligible coordinates becomes canaries."""


@dataclass(frozen=True)
class DiracCanaries:
    """``m`` canary coordinates and their inclusion coins (the auditor's secret)."""

    coordinates: np.ndarray  # int64 [m], distinct flat indices
    included: np.ndarray  # bool [m]
    seed: int

    def __len__(self) -> int:
        return len(self.coordinates)

    @property
    def probes(self) -> GradientCanaries:
        """What the force is given: the included coordinates only."""
        return GradientCanaries(np.sort(self.coordinates[self.included]).astype(np.int64))


def eligible_coordinates(config: ModelConfig) -> np.ndarray:
    """Flat indices of every entry of the model's weight matrices of >= ``MIN_MATRIX`` entries."""
    out, start = [], 0
    for name, shape, _ in weight_spec(config):
        size = int(np.prod(shape))
        if name.endswith("weight") and len(shape) == 2 and size >= MIN_MATRIX:
            out.append(np.arange(start, start + size, dtype=np.int64))
        start += size
    if not out:
        raise ValueError("this model has no weight matrix large enough for canaries")
    return np.concatenate(out)


def max_canaries(config: ModelConfig) -> int:
    """The most canaries this model can hold (``MAX_SHARE`` of the eligible coordinates)."""
    return int(MAX_SHARE * len(eligible_coordinates(config)))


def draw_dirac(m: int, config: ModelConfig, seed: int) -> DiracCanaries:
    """``m`` distinct canary coordinates and their fair inclusion coins, fixed by ``seed``."""
    limit = max_canaries(config)
    if not 2 <= m <= limit:
        raise ValueError(
            f"this model ({len(eligible_coordinates(config))} eligible weights) holds 2 to "
            f"{limit} gradient canaries; got {m}"
        )
    rng = np.random.default_rng(seed)
    coordinates = rng.choice(eligible_coordinates(config), size=m, replace=False)
    included = rng.random(m) < 0.5
    return DiracCanaries(coordinates.astype(np.int64), included, seed)


def flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays as one float64 vector (``get_weights`` order)."""
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def _steps(
    rounds: Sequence[Sequence[np.ndarray]],
    coordinates: np.ndarray,
    noise_effects: Sequence[np.ndarray] | None,
    baseline: Sequence[Sequence[np.ndarray]] | None = None,
) -> list[np.ndarray]:
    if len(rounds) < 2:
        raise ValueError("need the initial model and at least one round")
    if noise_effects is not None and len(noise_effects) != len(rounds) - 1:
        raise ValueError("need one noise effect per round")
    if baseline is not None and len(baseline) != len(rounds):
        raise ValueError("the drift baseline needs as many rounds as the run")
    steps = []
    for t, (before, after) in enumerate(itertools.pairwise(rounds)):
        step = flat(before)[coordinates] - flat(after)[coordinates]
        if noise_effects is not None:
            step = step + np.asarray(noise_effects[t], np.float64)[coordinates]
        if baseline is not None:
            step = step - (flat(baseline[t])[coordinates] - flat(baseline[t + 1])[coordinates])
        steps.append(step)
    return steps


def final_model_scores(
    rounds: Sequence[Sequence[np.ndarray]],
    canaries: DiracCanaries,
    noise_effects: Sequence[np.ndarray] | None = None,
    baseline: Sequence[Sequence[np.ndarray]] | None = None,
) -> np.ndarray:
    """``w_0[j] - w_T[j]`` per canary (minus the known noise's part and the baseline's drift,
    if given)."""
    return np.sum(_steps(rounds, canaries.coordinates, noise_effects, baseline), axis=0)


def white_box_scores(
    rounds: Sequence[Sequence[np.ndarray]],
    canaries: DiracCanaries,
    noise_effects: Sequence[np.ndarray] | None = None,
    baseline: Sequence[Sequence[np.ndarray]] | None = None,
) -> np.ndarray:
    """Sum over rounds of ``w_{t-1}[j] - w_t[j]``, each round scaled by its spread (MAD)."""
    total = np.zeros(len(canaries), np.float64)
    for step in _steps(rounds, canaries.coordinates, noise_effects, baseline):
        spread = float(np.median(np.abs(step - np.median(step))))
        total += step / max(spread, 1e-12)
    return total


def drift_summary(scores: np.ndarray, canaries: DiracCanaries) -> dict[str, float]:
    """How far excluded canaries' scores spread (drift + noise) against included ones' shift.

    ``separation`` = (median included - median excluded) / spread of the excluded (MAD x
    1.4826); a few units means most guesses can be right.
    """
    s = np.asarray(scores, np.float64)
    inc, exc = s[canaries.included], s[~canaries.included]
    spread = 1.4826 * float(np.median(np.abs(exc - np.median(exc)))) if len(exc) else np.nan
    shift = float(np.median(inc) - np.median(exc)) if len(inc) and len(exc) else np.nan
    return {
        "excluded_spread": spread,
        "included_shift": shift,
        "separation": shift / spread if spread and spread > 0 else float("nan"),
    }
