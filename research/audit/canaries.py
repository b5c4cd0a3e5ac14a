"""Canary vehicles: synthetic training examples built to be told apart, and the coin flips
that decide which of them a training run sees.

A canary is one *vehicle* (one example, so DP-SGD's vehicle-level guarantee covers it exactly
as it covers a real vehicle): a sequence of reads and a summary row whose features, in the
model's standardised units, are drawn far outside the range real vehicles occupy
(``amplitude`` reference standard deviations in a random direction), with a label drawn by a
fair coin. Each canary's pattern is its own, and its label is independent of its features, so
a model can only fit a canary by having seen it: learning one canary tells it nothing about
another. This is the "input-space canary with a rare feature pattern" of the one-run audit
(Steinke, Nasr and Jagielski 2023); it goes through the real training path like any vehicle.

Each canary is included in the training data independently with probability 1/2
(:attr:`CanarySet.included`), from a seeded generator the audit keeps to itself. Canary
pseudonyms are random 64-hex strings (the format of a keyed pseudonym) chosen to fall on the
training side of the force's keyed split, so that an included canary is trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from federation.features import READ_FEATURES, SUMMARY_FEATURES, ExampleSet, concat_examples
from federation.features.scaling import read_scaling, summary_scaling

DEFAULT_AMPLITUDE = 4.0
"""How far outside the real data a canary's features lie, in reference standard deviations."""


@dataclass(frozen=True)
class CanarySet:
    """``m`` canaries, their fixed labels and which of them the run includes."""

    examples: ExampleSet
    labels: np.ndarray  # float32 0/1, one per canary
    included: np.ndarray  # bool, one per canary: in the training data or not
    seed: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def planted(self) -> ExampleSet:
        """The canaries that go into the training data."""
        return self.examples.subset(np.flatnonzero(self.included))

    @property
    def planted_labels(self) -> np.ndarray:
        """Labels of :attr:`planted`."""
        return self.labels[self.included]


def _pseudonyms(
    m: int, rng: np.random.Generator, keep: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """``m`` distinct random 64-hex pseudonyms, each accepted by ``keep`` (a bool mask)."""
    found: list[str] = []
    while len(found) < m:
        batch = np.array([rng.bytes(32).hex() for _ in range(2 * (m - len(found)) + 8)])
        if keep is not None:
            batch = batch[np.asarray(keep(batch), dtype=bool)]
        found.extend(batch.tolist())
    return np.array(sorted(set(found[:m])), dtype=str)


def make_canaries(
    m: int,
    *,
    max_reads: int,
    seed: int,
    amplitude: float = DEFAULT_AMPLITUDE,
    reads_per_canary: int | None = None,
    on_training_side: Callable[[np.ndarray], np.ndarray] | None = None,
) -> CanarySet:
    """Draw ``m`` canaries for sequences of ``max_reads`` reads, and their inclusion coins.

    ``on_training_side(pseudonyms) -> bool mask`` is the force's split rule; canaries are
    drawn until ``m`` pass it. Everything is fixed by ``seed``.
    """
    if m < 2:
        raise ValueError(f"need at least two canaries; got {m}")
    if max_reads < 1:
        raise ValueError("max_reads must be at least 1")
    rng = np.random.default_rng(seed)
    reads = min(max_reads, reads_per_canary or max(1, min(max_reads, 16)))
    r_centre, r_scale = read_scaling()
    s_centre, s_scale = summary_scaling()
    n_f, n_s = len(READ_FEATURES), len(SUMMARY_FEATURES)

    def far(shape: tuple[int, ...], width: int) -> np.ndarray:
        """Unit-free draws whose norm per row is ``amplitude`` x sqrt(width)."""
        z = rng.standard_normal(shape)
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        return z / np.maximum(norm, 1e-9) * amplitude * np.sqrt(width)

    seq = np.zeros((m, max_reads, n_f), np.float32)
    seq[:, :reads, :] = (r_centre + r_scale * far((m, reads, n_f), n_f)).astype(np.float32)
    mask = np.zeros((m, max_reads), bool)
    mask[:, :reads] = True
    summary = (s_centre + s_scale * far((m, n_s), n_s)).astype(np.float32)
    labels = (rng.random(m) < 0.5).astype(np.float32)
    included = rng.random(m) < 0.5
    vehicles = _pseudonyms(m, rng, on_training_side)
    examples = ExampleSet(
        sequences=seq,
        mask=mask,
        summary=summary,
        vehicles=vehicles,
        n_reads=np.full(m, reads, np.int64),
    )
    return CanarySet(examples=examples, labels=labels, included=included, seed=seed)


def with_canaries(
    examples: ExampleSet, labels: np.ndarray, canaries: CanarySet
) -> tuple[ExampleSet, np.ndarray]:
    """The training examples with the included canaries added, in ascending pseudonym order."""
    joined = concat_examples([examples, canaries.planted])
    y = np.concatenate([np.asarray(labels, np.float32), canaries.planted_labels])
    order = np.argsort(joined.vehicles, kind="stable")
    return joined.subset(order), y[order]
