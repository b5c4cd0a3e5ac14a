"""Building examples range by range of pseudonyms gives exactly the whole table's examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from federation.features import build_examples
from federation.features.build import build_examples_chunked


def _world(vehicles: int, reads_per_vehicle: int, seed: int) -> tuple[pa.Table, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cams = 40
    tokens = np.array([f"cam{i:03d}" for i in range(cams)])
    names = np.array([f"{rng.integers(0, 2**63):016x}" for _ in range(vehicles)])
    n = vehicles * reads_per_vehicle
    per = rng.integers(1, 2 * reads_per_vehicle, vehicles)  # uneven reads per vehicle
    owner = np.repeat(names, per)[:n] if per.sum() >= n else np.repeat(names, per)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    t = start.value + rng.integers(0, 60 * 86400, len(owner)) * 1_000_000_000
    order = rng.permutation(len(owner))  # reads in no particular order
    reads = pa.table(
        {
            "vehicle": pa.array(owner[order]),
            "camera": pa.array(tokens[rng.integers(0, cams, len(owner))]),
            "read_at": pa.array(t[order].astype("datetime64[ns]"), pa.timestamp("ns", tz="UTC")),
        }
    )
    register = pd.DataFrame(
        {
            "camera": tokens,
            "lat": rng.uniform(53.0, 54.0, cams),
            "lon": rng.uniform(-3.0, -2.0, cams),
            "road_class": rng.choice(["motorway", "trunk", "a_road", "urban"], cams),
        }
    )
    return reads, register


@pytest.mark.parametrize("chunk_reads", [50, 333, 10_000])
def test_chunked_equals_whole(chunk_reads: int) -> None:
    reads, register = _world(vehicles=120, reads_per_vehicle=12, seed=chunk_reads)
    start, end = pd.Timestamp("2025-01-05", tz="UTC"), pd.Timestamp("2025-02-20", tz="UTC")
    whole = build_examples(reads, register, start, end, max_reads=8)
    chunked = build_examples_chunked(
        reads, register, start, end, max_reads=8, chunk_reads=chunk_reads
    )
    np.testing.assert_array_equal(chunked.vehicles, whole.vehicles)
    np.testing.assert_array_equal(chunked.n_reads, whole.n_reads)
    np.testing.assert_array_equal(chunked.mask, whole.mask)
    np.testing.assert_array_equal(chunked.sequences, whole.sequences)
    np.testing.assert_array_equal(chunked.summary, whole.summary)
