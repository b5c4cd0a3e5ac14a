"""A force's examples, labels, split and feature cache, read from a real store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from flower_world import LABEL_AS_OF, WINDOW_DAYS, WINDOW_START, FlowerWorld

from client_force import force_dataset
from client_force.force_dataset import (
    CACHE_PREFIX,
    ForceDataError,
    load_force_dataset,
    split_by_pseudonym,
)
from privacy.keys import MasterSecretSource
from retention.policy import RetentionPolicy
from retention.purge import run_purge
from retention.store import ForceStore


def _open(world: FlowerWorld, i: int = 0) -> ForceStore:
    force = world.forces[i]
    return ForceStore.open(force.store, MasterSecretSource.from_key_file(force.key_file))


def test_examples_labels_and_split_come_from_the_store(world: FlowerWorld) -> None:
    store = _open(world)
    settings = world.settings()
    data = load_force_dataset(store, settings)
    assert len(data.train) + len(data.test) == world.forces[0].n_vehicles
    assert not set(data.train.vehicles) & set(data.test.vehicles)
    assert data.train.max_reads == settings.max_reads
    positives = set(
        store.pseudonymiser().pseudonymise(pa.array(world.forces[0].positive_vrms)).to_pylist()
    )
    assert data.train_labels.sum() == len(positives & set(data.train.vehicles)) > 0
    assert data.test_labels.sum() == len(positives & set(data.test.vehicles))
    # The toy world's truth is the planted positives, stored by the runner as eval labels.
    assert np.array_equal(data.eval_labels, data.test_labels)
    assert data.source_days == tuple(WINDOW_START + timedelta(days=k) for k in range(WINDOW_DAYS))
    # Convictions dated after as-of are not positives yet.
    early = load_force_dataset(store, settings.replace(as_of=WINDOW_START.isoformat()))
    assert early.train_labels.sum() == 0


def test_split_is_a_stable_keyed_hash_of_the_pseudonym() -> None:
    vehicles = np.array([f"{i:064x}" for i in range(2000)])
    train, test = split_by_pseudonym(vehicles, 0.3, seed=1)
    assert len(train) + len(test) == 2000 and not set(train) & set(test)
    assert 0.25 < len(test) / 2000 < 0.35
    # One vehicle's side does not depend on which other vehicles are present.
    _sub_train, sub_test = split_by_pseudonym(vehicles[::2], 0.3, seed=1)
    assert set(vehicles[::2][sub_test]) == set(vehicles[test]) & set(vehicles[::2])
    _other_train, other_test = split_by_pseudonym(vehicles, 0.3, seed=2)
    assert set(vehicles[other_test]) != set(vehicles[test])


def test_feature_cache_is_an_encrypted_derived_artifact_the_purge_removes(
    world: FlowerWorld,
) -> None:
    store = _open(world)
    settings = world.settings()
    first = load_force_dataset(store, settings)
    [cache] = [a for a in store.derived_artifacts() if a.name.startswith(CACHE_PREFIX)]
    assert cache.source_days == first.source_days
    assert world.forces[0].vrms[0].encode() not in cache.path.read_bytes()
    force_dataset.clear_memory_cache()
    again = load_force_dataset(store, settings)  # read back from the store's cache
    assert np.array_equal(again.train.sequences, first.train.sequences)
    assert list(again.test.vehicles) == list(first.test.vehicles)
    # Retention: purging the window's first day removes the cache built from it.
    as_of = datetime.combine(WINDOW_START + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    run_purge(store, as_of + timedelta(days=365), RetentionPolicy(365))
    assert not [a for a in store.derived_artifacts() if a.name.startswith(CACHE_PREFIX)]
    force_dataset.clear_memory_cache()
    rebuilt = load_force_dataset(store, settings)
    assert len(rebuilt.source_days) == WINDOW_DAYS - 1


def test_a_window_without_reads_is_a_clear_refusal(world: FlowerWorld) -> None:
    store = _open(world)
    settings = world.settings(window_start="2020-01-01", window_end="2020-02-01")
    with pytest.raises(ForceDataError, match="no retained reads between 2020-01-01 and 2020-02-01"):
        load_force_dataset(store, settings)
    assert date.fromisoformat(world.settings().as_of) == LABEL_AS_OF
