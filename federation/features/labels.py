"""Line labels up with an ``ExampleSet``'s vehicles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def align_labels(vehicles: np.ndarray, labels: Any, *, missing: int | None = 0) -> np.ndarray:
    """Return ``float32 [N]`` 0/1 labels in the order of ``vehicles``.

    Args:
        vehicles: the example set's pseudonyms.
        labels: an array already aligned with ``vehicles``, or a mapping / ``pd.Series`` /
            two-column DataFrame (``vehicle``, ``label``) from pseudonym to 0/1.
        missing: label for a vehicle absent from a mapping (a vehicle with no conviction is
            a negative), or None to make absence an error.

    Raises:
        ValueError: a label that is not 0/1, a length mismatch, or (``missing=None``) vehicles
            without a label, reported as a count.
    """
    if isinstance(labels, pd.DataFrame):
        if not {"vehicle", "label"} <= set(labels.columns):
            raise ValueError("labels DataFrame needs columns 'vehicle' and 'label'")
        labels = pd.Series(labels["label"].to_numpy(), index=labels["vehicle"].to_numpy())
    if isinstance(labels, Mapping):
        labels = pd.Series(labels, dtype="float64")
    if isinstance(labels, pd.Series):
        if labels.index.has_duplicates:
            raise ValueError(f"labels: {int(labels.index.duplicated().sum())} duplicate vehicle(s)")
        aligned = labels.reindex(pd.Index(vehicles)).to_numpy(dtype=np.float64)
        absent = np.isnan(aligned)
        if absent.any():
            if missing is None:
                raise ValueError(f"labels: {int(absent.sum())} vehicle(s) have no label")
            aligned[absent] = missing
    else:
        aligned = np.asarray(labels, dtype=np.float64)
        if aligned.shape != (len(vehicles),):
            raise ValueError(f"labels: expected {len(vehicles)} values, got shape {aligned.shape}")
    bad = ~np.isin(aligned, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"labels: {int(bad.sum())} value(s) are not 0/1 (first at position "
            f"{int(np.flatnonzero(bad)[0])})"
        )
    return aligned.astype(np.float32)
