"""A force's training and held-out examples, built from its own store.

``load_force_dataset(store, settings)``:

1. reads the retained reads of the study window (``window-start`` inclusive to
   ``window-end`` exclusive) and the camera register, and builds one location-free example per
   vehicle (``federation.features.build_examples``);
2. labels each vehicle from the force's conviction log: 1 if it has a conviction dated on or
   before ``as-of``, else 0;
3. splits vehicles into train and held-out sides by a seeded keyed hash of the pseudonym, so a
   vehicle stays on the same side in every round and run (until a key rotation renames it).

Built examples are cached twice: in this process per (store, key epoch, window, cap, partition
fingerprint), and, with ``feature-cache`` on, as an encrypted derived artifact in the store
whose manifest lists the day partitions it came from, so the retention purge deletes the cache
together with the reads it was built from.

Evaluation truth (simulation only): the study runner may store the world's ground truth per
pseudonym with :func:`write_eval_labels`; :func:`load_eval_labels` reads it back, and the
ClientApp evaluates against it when present (else against the conviction-log labels).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from client_force.streamed_examples import (
    DEFAULT_READS_PER_BUCKET,
    ProgressCallback,
    build_window_examples,
)
from federation.features import READ_FEATURES, SUMMARY_FEATURES, ExampleSet
from federation.flower_settings import FlowerSettings

log = logging.getLogger(__name__)

CACHE_PREFIX = "flower-examples-"
TRUTH_ARTIFACT = "sim-truth-labels"
FEATURE_SCHEMA_VERSION = 1
_MEMORY_CACHE_SIZE = 8
CACHE_BUDGET_ENV = "ANPRFED_EXAMPLE_CACHE_MB"
DEFAULT_CACHE_BUDGET_BYTES = 1 << 30
"""In-process example cache budget: 1 GiB unless ``ANPRFED_EXAMPLE_CACHE_MB`` says otherwise.

Sets beyond it are evicted oldest first (the newest set is always kept: its caller is using
it), so a process that trains several large forces in turn (a Ray worker, the study process)
holds about one force's examples, not every force's; an evicted set is re-read from the
store's encrypted feature cache (seconds against the minutes its DP training takes), or
rebuilt from the reads when the run turned ``feature-cache`` off."""
_MEMORY_CACHE: OrderedDict[tuple[Any, ...], ExampleSet] = OrderedDict()
_MEMORY_LOCK = threading.Lock()  # forces build their examples on two threads in a study


class ForceDataError(ValueError):
    """The store holds no usable examples for the study (counts only, never values)."""


@dataclass(frozen=True)
class ForceDataset:
    """One force's examples for a study: the training side and the held-out side."""

    train: ExampleSet
    train_labels: np.ndarray  # float32 0/1
    test: ExampleSet
    test_labels: np.ndarray  # float32 0/1 from the conviction log (as-of)
    test_truth: np.ndarray | None  # float32 0/1 simulation truth, when the store has it
    key_epoch: int
    source_days: tuple[date, ...]

    @property
    def eval_labels(self) -> np.ndarray:
        """Labels for evaluation: the simulation truth when present, else the conviction log."""
        return self.test_truth if self.test_truth is not None else self.test_labels


# ----------------------------------------------------------------------------- examples
def window_days(store: Any, start: date, end: date) -> list[date]:
    """Partition days of ``store`` inside ``[start, end)``."""
    return [d for d in store.days() if start <= d < end]


def _fingerprint(store: Any, days: list[date]) -> str:
    """Digest of the window's partition files (size and mtime) and the register's."""
    digest = hashlib.sha256()
    for day in days:
        path = store.partition_path(day)
        st = path.stat()
        digest.update(f"{day.isoformat()}:{st.st_size}:{st.st_mtime_ns};".encode())
    reg = store.register_path
    if reg.exists():
        st = reg.stat()
        digest.update(f"register:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _cache_name(key_epoch: int, start: date, end: date, max_reads: int, fingerprint: str) -> str:
    text = "|".join(
        [
            str(FEATURE_SCHEMA_VERSION),
            ",".join(READ_FEATURES),
            ",".join(SUMMARY_FEATURES),
            str(key_epoch),
            start.isoformat(),
            end.isoformat(),
            str(max_reads),
            fingerprint,
        ]
    )
    return CACHE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24]


def examples_to_table(examples: ExampleSet) -> pa.Table:
    """An ``ExampleSet`` as an Arrow table (fixed-size list columns, shapes in metadata)."""
    _, length, n_feat = examples.sequences.shape
    n_sum = examples.summary.shape[1]

    def fixed(values: np.ndarray, width: int) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)

    table = pa.table(
        {
            "vehicle": pa.array(examples.vehicles.astype(str), pa.string()),
            "n_reads": pa.array(examples.n_reads.astype(np.int64)),
            "summary": fixed(examples.summary.astype(np.float32), n_sum),
            "sequences": fixed(examples.sequences.astype(np.float32), length * n_feat),
            "mask": fixed(examples.mask.astype(bool), length),
        }
    )
    meta = {b"max_reads": str(length).encode(), b"n_features": str(n_feat).encode()}
    return table.replace_schema_metadata(meta)


def examples_from_table(table: pa.Table) -> ExampleSet:
    """Inverse of :func:`examples_to_table`."""
    meta = table.schema.metadata or {}
    length = int(meta[b"max_reads"])
    n_feat = int(meta[b"n_features"])
    n = table.num_rows

    def flat(name: str, dtype: Any) -> np.ndarray:
        column = table.column(name).combine_chunks()
        return np.asarray(column.values.to_numpy(zero_copy_only=False), dtype=dtype)

    return ExampleSet(
        sequences=flat("sequences", np.float32).reshape(n, length, n_feat),
        mask=flat("mask", bool).reshape(n, length),
        summary=flat("summary", np.float32).reshape(n, -1)
        if n
        else np.zeros((0, len(SUMMARY_FEATURES)), np.float32),
        vehicles=np.asarray(table.column("vehicle").to_pylist(), dtype=str),
        n_reads=table.column("n_reads").to_numpy().astype(np.int64),
    )


def load_examples(
    store: Any,
    start: date,
    end: date,
    max_reads: int,
    *,
    use_store_cache: bool = True,
    reads_per_bucket: int = DEFAULT_READS_PER_BUCKET,
    progress: ProgressCallback | None = None,
) -> tuple[ExampleSet, tuple[date, ...]]:
    """The force's examples for ``[start, end)`` and the partition days they came from.

    Built by :func:`client_force.streamed_examples.build_window_examples` (memory bounded by
    ``reads_per_bucket`` reads at a time) unless cached; ``progress(stage, done, total)``
    reports days read and buckets built (counts only).
    """
    days = window_days(store, start, end)
    fingerprint = _fingerprint(store, days)
    name = _cache_name(store.key_epoch, start, end, max_reads, fingerprint)
    memory_key = (str(store.root.resolve()), name)
    with _MEMORY_LOCK:
        cached = _MEMORY_CACHE.get(memory_key)
        if cached is not None:
            _MEMORY_CACHE.move_to_end(memory_key)
            return cached, tuple(days)
    examples = None
    if use_store_cache and any(a.name == name for a in store.derived_artifacts()):
        try:
            examples = examples_from_table(store.read_derived(name))
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("feature cache unreadable (%s); rebuilding", type(exc).__name__)
            examples = None
    if examples is None:
        # One pass over the day partitions, spilled by pseudonym bucket (encrypted), then
        # built bucket by bucket: the same examples, memory bounded by a bucket of reads.
        built = (
            build_window_examples(
                store,
                days,
                start,
                end,
                max_reads,
                reads_per_bucket=reads_per_bucket,
                progress=progress,
            )
            if days
            else None
        )
        if built is None:
            raise ForceDataError(
                f"no retained reads between {start.isoformat()} and {end.isoformat()}"
            )
        examples = built
        if use_store_cache:
            _write_cache(store, name, examples, days)
    with _MEMORY_LOCK:
        _MEMORY_CACHE[memory_key] = examples
        budget = cache_budget_bytes()
        while len(_MEMORY_CACHE) > 1 and (
            len(_MEMORY_CACHE) > _MEMORY_CACHE_SIZE or _held_bytes() > budget
        ):
            _MEMORY_CACHE.popitem(last=False)
    return examples, tuple(days)


def cache_budget_bytes() -> int:
    """The in-process example cache budget in bytes (``ANPRFED_EXAMPLE_CACHE_MB`` or 1 GiB)."""
    raw = os.environ.get(CACHE_BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_BUDGET_BYTES
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(
            f"{CACHE_BUDGET_ENV}={raw!r}: expected a number of megabytes (e.g. 2048)"
        ) from None
    if megabytes < 0:
        raise ValueError(f"{CACHE_BUDGET_ENV}={raw!r}: must not be negative")
    return int(megabytes * 2**20)


def example_set_bytes(examples: ExampleSet) -> int:
    """Bytes an example set holds in memory (its arrays; pseudonyms as stored)."""
    arrays = (examples.sequences, examples.mask, examples.summary, examples.n_reads)
    vehicles = examples.vehicles
    names = vehicles.nbytes if vehicles.dtype != object else 100 * len(vehicles)
    return sum(a.nbytes for a in arrays) + names


def _held_bytes() -> int:
    """Bytes the example cache holds (caller holds ``_MEMORY_LOCK``)."""
    return sum(example_set_bytes(e) for e in _MEMORY_CACHE.values())


def memory_cache_size() -> tuple[int, int]:
    """(sets, bytes) held by this process's example cache."""
    with _MEMORY_LOCK:
        return len(_MEMORY_CACHE), _held_bytes()


def _write_cache(store: Any, name: str, examples: ExampleSet, days: list[date]) -> None:
    """Replace older Flower feature caches with this one (source days in its manifest)."""
    for artifact in store.derived_artifacts():
        if artifact.name.startswith(CACHE_PREFIX) and artifact.name != name:
            store.delete_derived(artifact.name)
    store.write_derived(name, examples_to_table(examples), days)


def clear_memory_cache() -> None:
    """Forget every in-process example cache (tests, or after a purge in this process)."""
    with _MEMORY_LOCK:
        _MEMORY_CACHE.clear()


# ----------------------------------------------------------------------------- labels
def conviction_labels(store: Any, vehicles: np.ndarray, as_of: date) -> np.ndarray:
    """``float32 [N]``: 1 where the vehicle has a conviction dated on or before ``as_of``."""
    table = store.read_labels()
    if table is None or table.num_rows == 0:
        return np.zeros(len(vehicles), np.float32)
    frame = table.select(["vehicle", "conviction_date"]).to_pandas()
    dates = pd.to_datetime(frame["conviction_date"]).dt.date
    convicted = frame.loc[dates.notna() & (dates <= as_of), "vehicle"].to_numpy(dtype=str)
    return np.isin(vehicles, convicted).astype(np.float32)


def write_eval_labels(store: Any, labels: pd.DataFrame) -> None:
    """Store simulation truth labels (``vehicle``, ``label`` 0/1) encrypted in the force store.

    Uses the store's own truth-label support when it has one (``write_labels(kind='truth')``),
    else a derived artifact named :data:`TRUTH_ARTIFACT` with no source days.
    """
    frame = pd.DataFrame(
        {
            "vehicle": labels["vehicle"].astype(str).to_numpy(),
            "label": labels["label"].astype(np.int8).to_numpy(),
        }
    )
    bad = ~frame["label"].isin([0, 1])
    if bad.any():
        raise ValueError(f"truth labels: {int(bad.sum())} value(s) are not 0/1")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if _accepts_kind(store.write_labels):
        store.write_labels(table, kind="truth")
    else:
        store.write_derived(TRUTH_ARTIFACT, table, [])


def load_eval_labels(store: Any) -> pd.Series | None:
    """Simulation truth labels (pseudonym -> 0/1) if the runner stored them, else ``None``."""
    table = None
    if _accepts_kind(store.read_labels):
        table = store.read_labels(kind="truth")
    elif any(a.name == TRUTH_ARTIFACT for a in store.derived_artifacts()):
        table = store.read_derived(TRUTH_ARTIFACT)
    if table is None:
        return None
    frame = table.select(["vehicle", "label"]).to_pandas()
    return pd.Series(frame["label"].to_numpy(np.float32), index=frame["vehicle"].astype(str))


def _accepts_kind(method: Any) -> bool:
    """Whether a store method takes a ``kind`` argument (truth-label support)."""
    try:
        return "kind" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- split
def split_by_pseudonym(
    vehicles: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions: a vehicle is held out when its keyed hash falls below the fraction.

    The hash is SipHash (pandas ``hash_pandas_object``) keyed by ``seed``, so the split is
    deterministic per pseudonym and independent of the other vehicles and of the labels.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    hash_key = hashlib.sha256(f"anprfed-split-{int(seed)}".encode()).hexdigest()[:16]
    hashed = pd.util.hash_pandas_object(
        pd.Series(np.asarray(vehicles, dtype=str)), index=False, hash_key=hash_key
    ).to_numpy(np.uint64)
    unit = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    test = unit < test_fraction
    return np.flatnonzero(~test), np.flatnonzero(test)


# ----------------------------------------------------------------------------- dataset
def load_force_dataset(
    store: Any,
    settings: FlowerSettings,
    *,
    use_store_cache: bool | None = None,
    progress: ProgressCallback | None = None,
) -> ForceDataset:
    """Examples, labels and the train/held-out split of one force for the study settings.

    ``progress(stage, done, total)``, if given, follows example building (:func:`load_examples`).
    """
    cache = settings.feature_cache if use_store_cache is None else use_store_cache
    examples, days = load_examples(
        store,
        settings.window_start_date,
        settings.window_end_date,
        settings.max_reads,
        use_store_cache=cache,
        progress=progress,
    )
    if len(examples) == 0:
        raise ForceDataError("no vehicle has a retained read in the study window")
    labels = conviction_labels(store, examples.vehicles, settings.as_of_date)
    train_idx, test_idx = split_by_pseudonym(
        examples.vehicles, settings.test_fraction, settings.seed
    )
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ForceDataError(
            f"split left {len(train_idx)} training and {len(test_idx)} held-out vehicles"
        )
    truth = load_eval_labels(store)
    test = examples.subset(test_idx)
    test_truth = None
    if truth is not None:
        aligned = truth.reindex(pd.Index(test.vehicles)).to_numpy(np.float64)
        aligned[np.isnan(aligned)] = 0.0
        test_truth = aligned.astype(np.float32)
    return ForceDataset(
        train=examples.subset(train_idx),
        train_labels=labels[train_idx],
        test=test,
        test_labels=labels[test_idx],
        test_truth=test_truth,
        key_epoch=int(store.key_epoch),
        source_days=tuple(days),
    )
