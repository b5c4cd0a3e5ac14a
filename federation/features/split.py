"""Split examples into training and held-out vehicles."""

from __future__ import annotations

import numpy as np


def split_examples(
    labels: np.ndarray, *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split of example positions into (train, test) index arrays.

    A vehicle is entirely in one side, because one example is one vehicle. Each class is
    shuffled with ``seed`` and ``round(test_fraction * class size)`` of it (at least one when
    the class has two or more members) goes to the test side. Indices come back sorted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        k = round(test_fraction * len(members))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        test_parts.append(rng.permutation(members)[:k])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test
