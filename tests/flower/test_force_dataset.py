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


def test_the_in_process_cache_holds_at_most_its_budget(
    world: FlowerWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that loads several forces in turn keeps about one set, not every force's."""
    force_dataset.clear_memory_cache()
    settings = world.settings()
    first = load_force_dataset(_open(world, 0), settings)
    second = load_force_dataset(_open(world, 1), settings)
    sets, held = force_dataset.memory_cache_size()
    assert sets == 2  # the default budget (1 GiB) holds both toy forces
    one = force_dataset.example_set_bytes(first.train) + force_dataset.example_set_bytes(first.test)
    assert held > one > 0
    # A budget smaller than one set: the newest set stays (its caller uses it), older go.
    monkeypatch.setenv(force_dataset.CACHE_BUDGET_ENV, "0.001")
    third = load_force_dataset(_open(world, 2), settings)
    assert force_dataset.memory_cache_size()[0] == 1
    # The evicted forces load again, identical, from their stores' encrypted feature caches.
    again = load_force_dataset(_open(world, 0), settings)
    assert np.array_equal(again.train.sequences, first.train.sequences)
    assert len(third.train) > 0 and len(second.train) > 0
    force_dataset.clear_memory_cache()


def test_a_bad_cache_budget_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(force_dataset.CACHE_BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match="ANPRFED_EXAMPLE_CACHE_MB='lots'"):
        force_dataset.cache_budget_bytes()
    monkeypatch.setenv(force_dataset.CACHE_BUDGET_ENV, "2048")
    assert force_dataset.cache_budget_bytes() == 2048 * 2**20
