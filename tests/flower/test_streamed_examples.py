"""Examples built from a store bucket by bucket (encrypted spill) equal the in-memory build."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from client_force import force_dataset
from client_force.force_dataset import load_examples
from client_force.streamed_examples import bucket_count, build_window_examples
from federation.features import ExampleSet, build_examples
from privacy.keys import MasterSecretSource
from retention.read_block import ReadBlock
from retention.spill import SPILL_FOLDER, PseudonymSpill, bucket_of, sweep_stale_spills
from retention.store import ForceStore
from retention.store_errors import PartitionIntegrityError

START = date(2024, 3, 1)
N_DAYS = 20
REPO = Path(__file__).resolve().parents[2]


def _secret() -> MasterSecretSource:
    return MasterSecretSource.from_passphrase("streamed-examples-tests", scrypt_log2_n=4)


def _store(root: Path, vehicles: int = 400, reads_per_day: int = 300) -> ForceStore:
    rng = np.random.default_rng(7)
    store = ForceStore.create(root, "streamforce", _secret())
    cams = 25
    tokens = np.array([os.urandom(8).hex() for _ in range(cams)])
    store.write_cameras(
        pa.table(
            {
                "token": tokens,
                "lat": rng.uniform(53.0, 54.0, cams),
                "lon": rng.uniform(-3.0, -2.0, cams),
                "road_class": rng.choice(["motorway", "urban", "a_road", "odd"], cams),
            }
        )
    )
    pseudonyms = np.array([os.urandom(16).hex() for _ in range(vehicles)])
    heavy = rng.zipf(1.6, vehicles).astype(float)  # a few vehicles with many reads
    weights = heavy / heavy.sum()
    for k in range(N_DAYS):
        day = START + timedelta(days=k)
        start_us = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp() * 1e6)
        store.write_day(
            day,
            pa.table(
                {
                    "vehicle": pseudonyms[rng.choice(vehicles, reads_per_day, p=weights)],
                    "camera": tokens[rng.integers(0, cams, reads_per_day)],
                    "read_at": pa.array(
                        start_us + rng.integers(0, 86_400, reads_per_day) * 1_000_000,
                        pa.timestamp("us", tz="UTC"),
                    ),
                }
            ),
        )
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ForceStore:
    return _store(tmp_path_factory.mktemp("streamed") / "store")


def _in_memory(store: ForceStore, start: date, end: date, max_reads: int) -> ExampleSet:
    """The builder before streaming: the window's whole table of reads at once."""
    reads = store.read_reads(start, end - timedelta(days=1))
    cameras = store.read_cameras().rename_columns(["camera", "lat", "lon", "road_class"])
    return build_examples(
        reads,
        cameras,
        pd.Timestamp(start, tz="UTC"),
        pd.Timestamp(end, tz="UTC"),
        max_reads=max_reads,
    )


def _assert_same(a: ExampleSet, b: ExampleSet) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.vehicles, b.vehicles)
    np.testing.assert_array_equal(a.n_reads, b.n_reads)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.summary, b.summary)


@pytest.mark.parametrize("reads_per_bucket", [150, 1_000, 10**7])
def test_streamed_build_equals_the_in_memory_build(
    store: ForceStore, reads_per_bucket: int
) -> None:
    start, end = START + timedelta(days=2), START + timedelta(days=17)
    days = [d for d in store.days() if start <= d < end]
    calls: list[tuple[str, int, int]] = []
    streamed = build_window_examples(
        store,
        days,
        start,
        end,
        max_reads=8,
        reads_per_bucket=reads_per_bucket,
        progress=lambda *a: calls.append(a),
    )
    assert streamed is not None
    _assert_same(streamed, _in_memory(store, start, end, 8))
    n_buckets = bucket_count(store, days, reads_per_bucket)
    if reads_per_bucket == 10**7:
        assert n_buckets == 1
    if reads_per_bucket == 150:
        assert n_buckets > 20  # many buckets, most holding a handful of vehicles
    assert [c for c in calls if c[0] == "read"][-1] == ("read", len(days), len(days))
    assert [c for c in calls if c[0] == "build"][-1] == ("build", n_buckets, n_buckets)
    assert not (store.root / SPILL_FOLDER).exists()  # deleted after the build


def test_load_examples_streams_and_caches_the_same_examples(
    store: ForceStore, tmp_path: Path
) -> None:
    force_dataset.clear_memory_cache()
    start, end = START, START + timedelta(days=N_DAYS)
    examples, days = load_examples(
        store, start, end, 16, use_store_cache=False, reads_per_bucket=500
    )
    assert len(days) == N_DAYS
    _assert_same(examples, _in_memory(store, start, end, 16))
    force_dataset.clear_memory_cache()


def test_spill_files_are_private_encrypted_and_removed_on_error(store: ForceStore) -> None:
    block = store.read_day_block(START)
    raw = block.vehicle_bytes()[:16]  # one read's pseudonym as stored
    # ... and as an unsealed spill would hold it: its two halves as native uint64 columns
    halves = [np.uint64(block.vehicle_hi[0]).tobytes(), np.uint64(block.vehicle_lo[0]).tobytes()]
    seen: dict[str, object] = {}

    def look(stage: str, done: int, total: int) -> None:
        # Look once every read is spilled and before any bucket is taken (taking a bucket
        # deletes its file, and how the random pseudonyms fall into buckets varies by run).
        if stage == "read" and done == total:
            [folder] = list((store.root / SPILL_FOLDER).iterdir())
            seen["folder_mode"] = stat.S_IMODE(folder.stat().st_mode)
            files = sorted(folder.iterdir())
            seen["names"] = [f.name for f in files]
            seen["modes"] = {stat.S_IMODE(f.stat().st_mode) for f in files}
            content = b"".join(f.read_bytes() for f in files)
            seen["plain_pseudonym"] = any(
                part in content for part in (raw, raw.hex().encode(), *halves)
            )
            seen["bytes"] = len(content)
        if stage == "build" and done == 1:
            raise KeyboardInterrupt  # a crash mid-build

    days = store.days()
    with pytest.raises(KeyboardInterrupt):
        build_window_examples(
            store,
            days,
            days[0],
            days[-1] + timedelta(days=1),
            8,
            reads_per_bucket=300,
            progress=look,
        )
    assert seen["folder_mode"] == 0o700 and seen["modes"] == {0o600}
    assert all(
        n == "lock" or (n.startswith("bucket-") and n.endswith(".enc")) for n in seen["names"]
    )
    spilled_reads = sum(len(store.read_day_block(day)) for day in days)
    # each read's four 8-byte columns, sealed: nothing was skipped, nothing is plain
    assert seen["bytes"] > 32 * spilled_reads and seen["plain_pseudonym"] is False
    assert not (store.root / SPILL_FOLDER).exists()  # removed although the build failed


def test_spill_detects_tampering_and_a_dropped_record(store: ForceStore, tmp_path: Path) -> None:
    block = store.read_day_block(START)
    with PseudonymSpill(tmp_path, 1) as spill:
        spill.add(block)
        spill.add(block)
        path = spill.folder / "bucket-0000.enc"
        data = bytearray(path.read_bytes())
        data[-5] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(PartitionIntegrityError, match="integrity check failed"):
            spill.take(0)
    with PseudonymSpill(tmp_path, 1) as spill:
        spill.add(block)
        spill.add(block)
        path = spill.folder / "bucket-0000.enc"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 + 2])
        with pytest.raises(PartitionIntegrityError, match="truncated"):
            spill.take(0)
    with PseudonymSpill(tmp_path, 3) as spill:
        spill.add(block)
        back = [spill.take(k) for k in range(3)]
    merged = ReadBlock.concat(back)

    def rows(b: ReadBlock) -> list[tuple[int, ...]]:
        return sorted(zip(b.vehicle_hi, b.vehicle_lo, b.camera, b.read_at, strict=True))

    assert rows(merged) == rows(block)  # every read back, once
    highs = [b.vehicle_hi for b in back if len(b)]
    assert len(highs) > 1
    assert all(a.max() < b.min() for a, b in itertools.pairwise(highs))
    assert not (tmp_path / SPILL_FOLDER).exists()


def test_bucket_of_keeps_pseudonym_order() -> None:
    hi = np.sort(np.random.default_rng(3).integers(0, 2**63, 5000, dtype=np.uint64) * 2)
    for k in (1, 3, 7, 4096):
        b = bucket_of(hi, k)
        assert b.min() >= 0 and b.max() < k and np.all(np.diff(b) >= 0)


def test_a_killed_build_leaves_ciphertext_the_next_build_sweeps(
    store: ForceStore, tmp_path: Path
) -> None:
    root = tmp_path / "kill"
    root.mkdir()
    script = (
        "import os, sys\n"
        "from retention.read_block import ReadBlock\n"
        "from retention.spill import PseudonymSpill\n"
        "import numpy as np\n"
        "s = PseudonymSpill(sys.argv[1], 2).__enter__()\n"
        "u = np.arange(1, 101, dtype=np.uint64) << np.uint64(40)\n"
        "s.add(ReadBlock(u, u, u, np.arange(100, dtype=np.int64)))\n"
        "os._exit(9)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(root)], env=env, check=False)
    assert done.returncode == 9
    [left] = list((root / SPILL_FOLDER).iterdir())
    assert any(f.name.startswith("bucket-") for f in left.iterdir())
    with PseudonymSpill(root, 1) as live:
        # the killed build's folder is swept; a live build's folder is not
        assert not left.exists()
        assert sweep_stale_spills(root) == 0 and live.folder.is_dir()
    assert not (root / SPILL_FOLDER).exists()
