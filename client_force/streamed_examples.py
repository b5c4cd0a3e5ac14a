"""A force's examples for a window, built with memory bounded by a bucket of reads.

``build_window_examples(store, start, end, max_reads)`` gives exactly the examples
``federation.features.build_examples`` gives on the window's whole table of reads (same
vehicles, same order, same values: ``tests/flower/test_streamed_examples.py``), without ever
holding that table:

1. one pass over the window's day partitions, decrypting one day at a time (as a compact
   :class:`retention.read_block.ReadBlock`, 32 bytes a read), spilling each read to one of ``K``
   encrypted bucket files by its pseudonym's leading bits (:class:`retention.spill.
   PseudonymSpill`: per-build key in memory only, 0600 files in a private folder of the store,
   deleted after, also on error);
2. bucket by bucket, in ascending pseudonym order: the bucket's reads as a table, built by
   ``build_examples_chunked`` (which splits a bucket that came out larger than the budget);
3. the buckets' examples stacked into one ``ExampleSet`` (each bucket's arrays freed as they
   are copied).

``K`` comes from a memory budget, ``reads_per_bucket``: the window's reads are bounded above
from the partitions' sizes on disk (a stored read takes at least 16 bytes, its raw pseudonym),
so buckets hold at most about ``reads_per_bucket`` reads (pseudonyms are keyed hashes, uniform
over the buckets). Peak memory is one day's decrypted partition, one bucket's reads and
working arrays (~550-700 bytes a read, ``docs/benchmarks/scale-memory.md``) and the examples
themselves, which still grow with vehicles.

``progress(stage, done, total)`` is called after each day read (stage ``"read"``) and each
bucket built (stage ``"build"``); it receives counts only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from federation.features import ExampleSet
from federation.features.build import build_examples, build_examples_chunked
from retention.read_block import ReadBlock
from retention.spill import MAX_BUCKETS, PseudonymSpill

#: Reads a bucket holds at most (about): its table and building arrays, ~0.15 GB (and faster
#: than 1,000,000: docs/benchmarks/scale-memory.md).
DEFAULT_READS_PER_BUCKET = 250_000
#: A stored read takes at least this many bytes of its partition file (the raw pseudonym).
MIN_STORED_BYTES_PER_READ = 16

ProgressCallback = Callable[[str, int, int], None]


def bucket_count(store: Any, days: list[date], reads_per_bucket: int) -> int:
    """Buckets for the window: its reads (bounded above from the files' sizes) / the budget."""
    if reads_per_bucket < 1:
        raise ValueError(f"reads_per_bucket must be at least 1; got {reads_per_bucket}")
    size = sum(store.partition_path(d).stat().st_size for d in days)
    upper = size // MIN_STORED_BYTES_PER_READ
    return max(1, min(MAX_BUCKETS, math.ceil(upper / reads_per_bucket)))


def build_window_examples(
    store: Any,
    days: list[date],
    start: date,
    end: date,
    max_reads: int,
    *,
    reads_per_bucket: int = DEFAULT_READS_PER_BUCKET,
    progress: ProgressCallback | None = None,
) -> ExampleSet | None:
    """Examples of the reads on ``days`` (the window ``[start, end)``), or ``None`` if no read.

    See the module docstring; the result equals ``build_examples`` on the concatenated reads.
    """
    cameras = store.read_cameras().rename_columns(["camera", "lat", "lon", "road_class"])
    window_start, window_end = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    n_buckets = bucket_count(store, days, reads_per_bucket)
    parts: list[ExampleSet] = []
    with PseudonymSpill(store.root, n_buckets) as spill:
        for i, day in enumerate(days):
            spill.add(store.read_day_block(day))
            if progress is not None:
                progress("read", i + 1, len(days))
        if spill.total_reads == 0:
            return None
        for k in range(n_buckets):
            block = spill.take(k)
            if len(block):
                table = block.to_table()
                del block
                built = build_examples_chunked(
                    table,
                    cameras,
                    window_start,
                    window_end,
                    max_reads=max_reads,
                    chunk_reads=reads_per_bucket,
                )
                del table
                if len(built):
                    parts.append(built)
            if progress is not None:
                progress("build", k + 1, n_buckets)
    if not parts:  # reads, but none inside the window: the empty set build_examples gives
        empty = ReadBlock.empty().to_table()
        return build_examples(empty, cameras, window_start, window_end, max_reads=max_reads)
    return stack_examples(parts)


def stack_examples(parts: list[ExampleSet]) -> ExampleSet:
    """Stack example sets in order, releasing each part once copied (peak: the result + one
    part, where ``concat_examples`` holds every part and the result at once). Empties ``parts``.
    """
    if len(parts) == 1:
        return parts.pop()
    first = parts[0]
    n = sum(len(p) for p in parts)
    sequences = np.empty((n, *first.sequences.shape[1:]), first.sequences.dtype)
    mask = np.empty((n, *first.mask.shape[1:]), first.mask.dtype)
    summary = np.empty((n, first.summary.shape[1]), first.summary.dtype)
    width = max(p.vehicles.dtype.itemsize for p in parts) // 4
    vehicles = np.empty(n, dtype=f"<U{max(width, 1)}")
    n_reads = np.empty(n, np.int64)
    del first
    at = 0
    while parts:
        part = parts.pop(0)
        stop = at + len(part)
        sequences[at:stop] = part.sequences
        mask[at:stop] = part.mask
        summary[at:stop] = part.summary
        vehicles[at:stop] = part.vehicles
        n_reads[at:stop] = part.n_reads
        at = stop
        del part
    return ExampleSet(sequences, mask, summary, vehicles, n_reads)
