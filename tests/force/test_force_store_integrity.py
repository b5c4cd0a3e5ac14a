"""Encrypted partitions: round trips, and every kind of tampering is detected, never read."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest

from privacy.aead import SealedBlobError, open_sealed, seal
from retention.store import ForceStore, PartitionIntegrityError, StoreError

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)


def reads(store: ForceStore, day: date, n: int = 50, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    vrms = [f"AB{10 + i}CDE" for i in range(10)]
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1e6)
    return pa.table(
        {
            "vehicle": store.pseudonymiser().pseudonymise(
                pa.array([vrms[i] for i in rng.integers(0, 10, n)])
            ),
            "camera": pa.array([f"{c:016x}" for c in rng.integers(0, 5, n)]),
            "read_at": pa.array(
                start + rng.integers(0, 86_400_000_000, n), pa.timestamp("us", tz="UTC")
            ),
        }
    )


def test_sealed_blob_round_trip_and_tamper() -> None:
    key = bytes(32)
    blob = seal(key, "k1", b"ctx", b"hello parquet", epoch=3)
    header, plain = open_sealed(key, blob, b"ctx")
    assert plain == b"hello parquet" and header.epoch == 3 and header.key_id == "k1"
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(SealedBlobError):
            open_sealed(key, bytes(bad), b"ctx")
    for cut in (0, 5, len(blob) // 2, len(blob) - 1):
        with pytest.raises(SealedBlobError):
            open_sealed(key, blob[:cut], b"ctx")
    with pytest.raises(SealedBlobError):
        open_sealed(key, blob, b"other context")


def test_write_read_round_trip_and_plaintext_absent(store: ForceStore) -> None:
    t = reads(store, D1)
    added, dups = store.write_day(D1, t)
    got = store.read_day(D1)
    expected = t.group_by(t.column_names).aggregate([]).sort_by("read_at")
    assert added == len(expected) and added + dups == len(t)
    assert sorted(got.to_pylist(), key=str) == sorted(expected.to_pylist(), key=str)
    raw = store.partition_path(D1).read_bytes()
    assert b"PAR1" not in raw  # not Parquet on disk: encrypted
    assert t["vehicle"][0].as_py().encode() not in raw
    assert bytes.fromhex(t["vehicle"][0].as_py()) not in raw
    assert store.write_day(D1, t) == (0, len(t))  # idempotent


@pytest.mark.parametrize("where", ["header", "middle", "tag"])
def test_flipped_byte_is_detected(store: ForceStore, where: str) -> None:
    store.write_day(D1, reads(store, D1))
    path = store.partition_path(D1)
    data = bytearray(path.read_bytes())
    pos = {"header": 10, "middle": len(data) // 2, "tag": len(data) - 1}[where]
    data[pos] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(PartitionIntegrityError, match=str(path)):
        store.read_day(D1)


@pytest.mark.parametrize("keep", [0, 7, 40, -1])
def test_truncated_partition_is_detected(store: ForceStore, keep: int) -> None:
    store.write_day(D1, reads(store, D1))
    path = store.partition_path(D1)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(PartitionIntegrityError, match="day=2024-05-01"):
        store.read_day(D1)


def test_swapped_day_files_are_detected(store: ForceStore) -> None:
    store.write_day(D1, reads(store, D1, seed=1))
    store.write_day(D2, reads(store, D2, seed=2))
    p1, p2 = store.partition_path(D1), store.partition_path(D2)
    b1, b2 = p1.read_bytes(), p2.read_bytes()
    p1.write_bytes(b2)
    p2.write_bytes(b1)
    for d in (D1, D2):
        with pytest.raises(PartitionIntegrityError, match="another scope"):
            store.read_day(d)


def test_file_from_another_store_is_refused(new_store) -> None:
    a, b = new_store("force_a"), new_store("force_b")
    a.write_day(D1, reads(a, D1))
    b.write_day(D1, reads(b, D1))
    shutil.copy(a.partition_path(D1), b.partition_path(D1))
    with pytest.raises(PartitionIntegrityError, match="not in the keyring"):
        b.read_day(D1)


def test_destroyed_day_key_is_a_cryptographic_erase(store: ForceStore) -> None:
    store.write_day(D1, reads(store, D1))
    (kid,) = store.day_key_ids(D1)
    assert store.has_key(kid)
    assert store.destroy_key(kid) and not store.has_key(kid)
    with pytest.raises(PartitionIntegrityError, match="erased"):
        store.read_day(D1)


def test_rows_on_the_wrong_day_are_refused(store: ForceStore) -> None:
    with pytest.raises(StoreError, match="other days"):
        store.write_day(D2, reads(store, D1))


def test_derived_artifacts_bind_their_source_days(store: ForceStore) -> None:
    t = pa.table({"x": [1, 2, 3]})
    art = store.write_derived("features", t, [D2, D1])
    assert art.source_days == (D1, D2)
    assert store.read_derived("features").equals(t)
    (listed,) = store.derived_artifacts()
    assert listed.source_days == (D1, D2) and store.has_key(listed.key_id)
    # editing the manifest to hide a source day breaks authentication of the artifact
    manifest = store.root / "derived" / "features" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["source_days"] = ["2024-05-02"]
    manifest.write_text(json.dumps(m))
    # (regression, issue 15: the edited day list used to be trusted by the purge)
    (edited,) = store.derived_artifacts()
    assert edited.source_days == () and not edited.authenticated
    with pytest.raises(PartitionIntegrityError):
        store.read_derived("features")
    store.delete_derived("features")
    assert not store.derived_artifacts() and not store.has_key(art.key_id)


def test_register_and_labels_are_encrypted(store: ForceStore) -> None:
    store.write_cameras(
        pa.table({"token": ["00aa"], "lat": [53.4], "lon": [-2.2], "road_class": ["urban"]})
    )
    assert store.read_cameras()["lat"].to_pylist() == [53.4]
    assert b"53.4" not in store.register_path.read_bytes()
    assert store.read_labels() is None
