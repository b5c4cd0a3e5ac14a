"""Benchmark: end-to-end force ingest (CSV) against a naive per-row HMAC and this machine's
raw keyed-hash rate, all in one run. Writes docs/benchmarks/ingest.md.

    .venv/bin/python benchmarks/bench_ingest.py                # 5M reads, ~1M vehicles
    .venv/bin/python benchmarks/bench_ingest.py --rows 1000000 # quicker

The export looks like ``anprfed synth`` output (``vrm,camera_id,read_at`` with ISO-8601 UTC
times, unquoted, time-ordered) with a realistic repeat rate: vehicles are read a heavy-tailed
number of times (a few commute daily, most are seen once or twice a week), and ~15% of reads
spell the mark differently (``AB12 CDE``, lower case), as real exports do.

"Per core" is measured honestly: Arrow's thread pools are limited to one thread and the rate
is reads divided by the process's CPU time (user + system), so work hidden in helper threads
still counts.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from client_force.ingest import ingest_export
from privacy.keys import MasterSecretSource
from privacy.plates import random_plates
from privacy.pseudonym import KeyedHash
from retention.store import ForceStore

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "ingest.md"
START = date(2025, 3, 3)


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is reset by exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_export(folder: Path, rows: int, days: int, reads_per_vehicle: float, seed: int) -> dict:
    """Write ``reads.csv`` and ``cameras.csv`` into ``folder``; return their description."""
    rng = np.random.default_rng(seed)
    n_vehicles = max(1, int(rows / reads_per_vehicle))
    plates = random_plates(rng, n_vehicles, as_of=START)
    # heavy-tailed activity: Pareto weights, so some vehicles are read daily, most rarely
    weights = rng.pareto(1.6, n_vehicles) + 0.2
    who = rng.choice(n_vehicles, size=rows, p=weights / weights.sum())
    canonical = pa.array(plates, pa.string())
    spaced = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(canonical, 0, -3), pc.utf8_slice_codeunits(canonical, -3), " "
    )
    spellings = pa.concat_arrays([canonical, spaced, pc.utf8_lower(canonical)])
    style = rng.choice(3, size=rows, p=[0.85, 0.10, 0.05])
    vrm = spellings.take(pa.array(style * n_vehicles + who))
    n_cameras = 3000
    cam_ids = pa.array([f"CHS-{i:05d}" for i in range(n_cameras)], pa.string())
    t0 = int(datetime(START.year, START.month, START.day, tzinfo=UTC).timestamp())
    secs = np.sort(rng.integers(t0, t0 + days * 86400, rows))
    read_at = pc.strftime(
        pa.array(secs, pa.int64()).cast(pa.timestamp("s", tz="UTC")),
        format="%Y-%m-%dT%H:%M:%SZ",
    )
    table = pa.table(
        {
            "vrm": vrm,
            "camera_id": cam_ids.take(pa.array(rng.integers(0, n_cameras, rows))),
            "read_at": read_at,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    opts = pacsv.WriteOptions(quoting_style="none")
    pacsv.write_csv(table, folder / "reads.csv", write_options=opts)
    register = pa.table(
        {
            "camera_id": cam_ids,
            "lat": rng.uniform(53.0, 54.5, n_cameras),
            "lon": rng.uniform(-3.2, -2.0, n_cameras),
            "road_class": rng.choice(["motorway", "a_road", "urban"], n_cameras),
        }
    )
    pacsv.write_csv(register, folder / "cameras.csv", write_options=opts)
    return {
        "rows": rows,
        "vehicles": int(np.unique(who).size),
        "raw_spellings": int(pc.count_distinct(vrm).as_py()),
        "days": days,
        "bytes": (folder / "reads.csv").stat().st_size,
    }


def bench_ingest(export: Path, store_dir: Path) -> dict:
    """End-to-end ingest into a fresh store, then a re-ingest; rates, report, peak memory.

    Runs in this process; :func:`main` calls it in a fresh child process (``--phase ingest``)
    so that its CPU time and peak RSS are its own.
    """
    store = ForceStore.create(store_dir, "bench", MasterSecretSource.from_passphrase("bench"))
    as_of = datetime(START.year, START.month + 1, START.day, tzinfo=UTC)
    c0, w0 = cpu_seconds(), time.perf_counter()
    report = ingest_export(store, export, as_of=as_of)
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    peak = peak_rss_mb()
    c1, w1 = cpu_seconds(), time.perf_counter()
    again = ingest_export(store, export, as_of=as_of)
    cpu2, wall2 = cpu_seconds() - c1, time.perf_counter() - w1
    assert report.accounted and again.accounted and again.stored == 0
    return {
        "report": report.to_dict(),
        "cpu": cpu,
        "wall": wall,
        "reingest_cpu": cpu2,
        "reingest_wall": wall2,
        "peak_rss_mb": peak,
        "store_bytes": store.bytes_on_disk(),
    }


def run_ingest_child(export: Path, store_dir: Path) -> dict:
    """:func:`bench_ingest` in a fresh interpreter (clean CPU and memory accounting)."""
    shutil.rmtree(store_dir, ignore_errors=True)
    cmd = [sys.executable, __file__, "--phase", "ingest", "--workdir", str(export.parent.parent)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_naive(export: Path, key: bytes) -> dict:
    """Naive baseline: read the CSV, normalise and ``hmac.new`` every row's VRM."""
    c0 = cpu_seconds()
    vrms = pacsv.read_csv(
        export,
        read_options=pacsv.ReadOptions(use_threads=False),
        convert_options=pacsv.ConvertOptions(include_columns=["vrm"]),
    )["vrm"].to_pylist()
    read_cpu = cpu_seconds() - c0
    c1 = cpu_seconds()
    out = [
        hmac.new(key, v.upper().replace(" ", "").encode(), hashlib.sha256).digest() for v in vrms
    ]
    hash_cpu = cpu_seconds() - c1
    assert len(out) == len(vrms)
    return {"rows": len(vrms), "read_cpu": read_cpu, "hash_cpu": hash_cpu}


def bench_raw_hash(key: bytes, n: int) -> dict:
    """The machine's keyed-hash rate on 7-byte marks (no I/O, no validation, no storage)."""
    rng = np.random.default_rng(1)
    msgs = [bytes(x) for x in rng.integers(65, 91, size=(n, 7), dtype=np.uint8)]
    kh = KeyedHash(key)
    c0 = cpu_seconds()
    kh.digest_many(msgs, 16)
    batched = cpu_seconds() - c0
    c1 = cpu_seconds()
    for m in msgs:
        hmac.digest(key, m, "sha256")
    oneshot = cpu_seconds() - c1
    return {"n": n, "batched": n / batched, "oneshot": n / oneshot}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--reads-per-vehicle", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--phase", choices=["all", "ingest"], default="all", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if args.phase == "ingest":
        print(
            json.dumps(bench_ingest(args.workdir / "export" / "reads.csv", args.workdir / "store"))
        )
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="anprfed-bench-"))
    try:
        t = time.perf_counter()
        desc = make_export(work / "export", args.rows, args.days, args.reads_per_vehicle, args.seed)
        print(f"generated {desc['rows']:,} reads in {time.perf_counter() - t:.1f} s", flush=True)
        export = work / "export" / "reads.csv"
        key = os.urandom(32)
        raw = bench_raw_hash(key, 1_000_000)
        naive = bench_naive(export, key)
        load_before = os.getloadavg()[0]
        res = run_ingest_child(export, work / "store")
        load_after = os.getloadavg()[0]
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    rep = res["report"]
    rows = desc["rows"]
    e2e = rows / res["cpu"]
    naive_hash = naive["rows"] / naive["hash_cpu"]
    naive_total = naive["rows"] / (naive["hash_cpu"] + naive["read_cpu"])
    table = [
        ("ingest end to end (this code)", e2e, rows / res["wall"], "1.00"),
        (
            "re-ingest, all duplicates (this code)",
            rows / res["reingest_cpu"],
            rows / res["reingest_wall"],
            f"{(rows / res['reingest_cpu']) / e2e:.2f}",
        ),
        ("naive: CSV read + per-row hmac.new (no validation, no storage)", naive_total, None,
         f"{naive_total / e2e:.2f}"),
        ("naive: per-row hmac.new only (limit of a per-read design)", naive_hash, None,
         f"{naive_hash / e2e:.2f}"),
        ("raw keyed hash, one-shot hmac.digest per mark", raw["oneshot"], None,
         f"{raw['oneshot'] / e2e:.2f}"),
        ("raw keyed hash, precomputed pads (KeyedHash, as used)", raw["batched"], None,
         f"{raw['batched'] / e2e:.2f}"),
    ]  # fmt: skip
    lines = [
        "# Ingest benchmark",
        "",
        "Reproduce: `.venv/bin/python benchmarks/bench_ingest.py"
        + (f" --rows {rows}" if rows != 5_000_000 else "")
        + "`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, Python "
        f"{platform.python_version()}, pyarrow {pa.__version__}; Arrow limited to 1 thread. "
        "Rates are per CPU-second of this process (user + system), i.e. per core. "
        f"1-minute load average around the ingest: {load_before:.1f} before, "
        f"{load_after:.1f} after (other jobs share these CPUs; wall rates suffer most).",
        "",
        f"Export: {rows:,} reads, {desc['vehicles']:,} vehicles "
        f"({rows / desc['vehicles']:.1f} reads each on average, heavy-tailed), "
        f"{desc['raw_spellings']:,} distinct raw spellings, {desc['days']} days, "
        f"{desc['bytes'] / 1e6:.0f} MB CSV, 3,000 cameras.",
        "",
        "| what | reads (or hashes) / s per core | wall reads / s | ratio to ingest |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rate, wall, ratio in table:
        wall_s = f"{wall:,.0f}" if wall else ""
        lines.append(f"| {name} | {rate:,.0f} | {wall_s} | {ratio} |")
    lines += [
        "",
        f"Ingest outcome: {rep['stored']:,} stored, {rep['duplicates']:,} deduplicated, "
        f"{rep['rejected']:,} rejected ({'all' if rep['accounted'] else 'NOT all'} rows "
        f"accounted for); {len(rep['days_written'])} day partitions; keyed hashes computed: "
        f"{rep['distinct_vrms_hashed']:,} (one per distinct normalised VRM in the export, "
        f"{rep['distinct_vrms_hashed'] / rows:.2f} per read). Store on disk: "
        f"{res['store_bytes'] / 1e6:.0f} MB. Peak RSS of the ingest process: "
        f"{res['peak_rss_mb']:,.0f} MB.",
        "",
        f"Target: 1,000,000 reads/s per core end to end. Measured: {e2e:,.0f} "
        f"({'met' if e2e >= 1e6 else 'not met'}).",
        "",
        "How to read this: a design that keyed-hashes every read cannot go faster than the "
        "raw keyed-hash rows, before parsing, validating or storing anything. This ingest "
        "parses, validates (UK formats, cameras, timestamps, retention), pseudonymises, "
        "de-duplicates, encrypts and fsyncs, yet hashes each distinct normalised VRM once per "
        "export, so it runs at about the rate of hashing alone. What remains is roughly, per "
        "profile: keyed hashing of distinct VRMs ~20%, merging and writing partitions "
        "(de-duplication, Parquet, AES-GCM, fsync) ~20%, numbering raw VRMs in the memo ~15%, "
        "CSV parsing ~11%, classification and normalisation of distinct values ~10%. The "
        "remaining gap to 1M/s is mostly the Python-level cost of one HMAC (~1.2-1.5 us) per "
        "distinct vehicle on this CPU, and it grows with the share of vehicles seen once.",
        "",
    ]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
