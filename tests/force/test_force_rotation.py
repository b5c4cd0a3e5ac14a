"""rotate-key: pseudonyms re-keyed without raw VRMs; old ones unlinkable once the key is gone."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest
from force_export_factory import Export

from client_force.ingest import ingest_export
from client_force.labels import ingest_labels_frame
from privacy.pseudonym import VrmPseudonymiser
from retention.keyring import epoch_scope
from retention.store import ForceStore, RotationIncompleteError
from safefiles import atomic as atomic_files

AS_OF = datetime(2024, 6, 2, tzinfo=UTC)


def snapshot(store: ForceStore) -> dict[date, pa.Table]:
    return {d: store.read_day(d) for d in store.days()}


def test_rotation_rekeys_and_destroys_the_old_key(store: ForceStore, export: Export) -> None:
    import pandas as pd

    ingest_export(store, export.path, as_of=AS_OF)
    vrms = list(export.vrms[:5])
    ingest_labels_frame(
        store,
        pd.DataFrame(
            {
                "vrm": vrms,
                "offence_start": ["2024-01-01T00:00:00Z"] * 5,
                "offence_end": ["2024-02-01T00:00:00Z"] * 5,
                "conviction_date": ["2024-05-20"] * 5,
            }
        ),
        as_of=AS_OF,
    )
    store.write_derived("cache", pa.table({"x": [1]}), store.days())
    before = snapshot(store)
    old_labels = store.read_labels()["vehicle"].to_pylist()
    (old_kid,) = store.keyring.key_ids_for_scope(epoch_scope(1))
    old_vehicles = {v for t in before.values() for v in t["vehicle"].to_pylist()}

    rep = store.rotate_pseudonym_key()
    assert (rep.old_epoch, rep.new_epoch) == (1, 2) and store.key_epoch == 2
    assert rep.partitions_rekeyed == len(before) and rep.derived_removed == 1
    assert rep.destroyed_key_ids == (old_kid,)
    after = snapshot(store)

    # counts are stable, every pseudonym changed, and the mapping is one-to-one across days
    mapping: dict[str, str] = {}
    for d, t in before.items():
        assert after[d].num_rows == t.num_rows
        assert after[d]["read_at"].equals(t["read_at"]) and after[d]["camera"].equals(t["camera"])
        for o, n in zip(t["vehicle"].to_pylist(), after[d]["vehicle"].to_pylist(), strict=True):
            assert mapping.setdefault(o, n) == n
    assert len(set(mapping.values())) == len(mapping) == len(old_vehicles)
    new_vehicles = set(mapping.values())
    assert not new_vehicles & old_vehicles
    # vehicles still link across days after rotation (same new pseudonym on every day)
    multi_day = [
        v
        for v in new_vehicles
        if sum(v in set(t["vehicle"].to_pylist()) for t in after.values()) > 1
    ]
    assert multi_day
    # labels re-keyed with the same mapping; derived caches removed
    assert store.read_labels()["vehicle"].to_pylist() != old_labels
    assert {mapping[v] for v in old_labels} == set(store.read_labels()["vehicle"].to_pylist())
    assert not store.derived_artifacts()

    # the old epoch key is gone from the keyring (and from the file)
    assert not store.has_key(old_kid)
    assert old_kid not in (store.root / "keys" / "keyring.json").read_text()
    assert [e.scope for e in store.keyring.entries() if e.scope.startswith("epoch:")] == ["epoch:2"]
    # raw VRMs pseudonymise to the NEW pseudonyms (new ingests link up) ...
    fresh = set(store.pseudonymiser().pseudonymise(pa.array(list(export.vrms))).to_pylist())
    assert fresh == new_vehicles
    # ... and no key material left in the store recomputes an old pseudonym
    base = store.master.pseudonym_base_key()
    candidates = [store.keyring.unwrap(e.key_id) for e in store.keyring.entries()]
    candidates += [
        store.master.wrapping_key(),
        store.master.camera_token_key(),
        base,
    ]
    for key in candidates:
        recomputed = VrmPseudonymiser(base, key).pseudonymise(pa.array(list(export.vrms)))
        assert not set(recomputed.to_pylist()) & old_vehicles


def test_interrupted_rotation_blocks_reads_and_resumes(
    store: ForceStore, export: Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_export(store, export.path, as_of=AS_OF)
    before = snapshot(store)
    real_replace = atomic_files.os.replace
    calls = {"n": 0}

    def crashing_replace(src, dst):  # type: ignore[no-untyped-def]
        if str(dst).endswith("reads.parquet.enc"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        store.rotate_pseudonym_key()
    monkeypatch.setattr(atomic_files.os, "replace", real_replace)
    reopened = ForceStore.open(store.root, _secret())
    assert reopened.rotation_pending == {"from": 1, "to": 2}
    with pytest.raises(RotationIncompleteError, match="rotate-key"):
        reopened.read_day(next(iter(before)))
    rep = reopened.rotate_pseudonym_key()
    assert rep.partitions_rekeyed == len(before) - 1 and reopened.key_epoch == 2
    after = snapshot(reopened)
    mapping: dict[str, str] = {}
    for d, t in before.items():
        for o, n in zip(t["vehicle"].to_pylist(), after[d]["vehicle"].to_pylist(), strict=True):
            assert mapping.setdefault(o, n) == n and o != n


def _secret():  # type: ignore[no-untyped-def]
    from force_export_factory import PASSPHRASE

    from privacy.keys import MasterSecretSource

    return MasterSecretSource.from_passphrase(PASSPHRASE)


def test_another_handle_sees_the_rotation(store: ForceStore, export: Export) -> None:
    ingest_export(store, export.path, as_of=AS_OF)
    other = ForceStore.open(store.root, _secret())
    day = other.days()[0]
    other.read_day(day)
    store.rotate_pseudonym_key()
    assert other.read_day(day).equals(store.read_day(day)) and other.key_epoch == 2
    rep = ingest_export(other, export.path, as_of=AS_OF)  # links to the rotated pseudonyms
    assert rep.stored == 0 and rep.duplicates == export.rows
