"""Purge cost: a 365-day backlog from a store holding 730 days, at two row densities.

Builds real force stores (``ForceStore``: AES-256-GCM day partitions, keyring, derived
artifacts) with 730 day partitions, then times ``run_purge`` as of the end of day 730 with a
365-day window, which removes 365 partitions, their keys and the derived artifacts built from
them, and writes the signed intent and commit entries. Variants, timed in the same run:

* ``base``: ``--rows`` reads per day, 365-partition backlog -- the baseline of every ratio;
* ``10x rows``: ten times the reads per day, same backlog (cost should not grow: a purge
  unlinks files and destroys keys, it never reads a partition);
* ``quarter backlog``: base density, a 91-partition backlog (cost should scale with the
  number of partitions).

Each variant purges ``--repeats`` fresh copies of its store (copied from a template, so the
build cost is paid once, and flushed to disk before timing) in round-robin order, rotated each
round; the median is reported.
Writes ``docs/benchmarks/purge.md``.

Usage: ``python benchmarks/bench_purge.py [--days 730] [--rows 200] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from privacy.keys import MasterSecretSource
from privacy.pseudonym import CameraTokeniser
from retention.policy import RetentionPolicy
from retention.purge import run_purge
from retention.store import ForceStore

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "purge.md"
START = date(2023, 1, 1)
PASSPHRASE = "bench-purge"
POLICY = RetentionPolicy(365)


def _secret() -> MasterSecretSource:
    # Cheap scrypt: opening cost is not what this benchmark measures.
    return MasterSecretSource.from_passphrase(PASSPHRASE, scrypt_log2_n=4)


def build(root: Path, n_days: int, rows_per_day: int, vehicles: int = 2000) -> float:
    """Create a store with ``n_days`` partitions of ``rows_per_day`` reads; returns seconds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(7)
    store = ForceStore.create(root, "bench", _secret())
    vrms = pa.array([f"B{i:05d}X" for i in range(vehicles)])
    pseudonyms = store.pseudonymiser().pseudonymise(vrms)
    tokens = CameraTokeniser(store.master.camera_token_key()).tokens(
        pa.array([f"CAM{i:04d}" for i in range(300)])
    )
    for k in range(n_days):
        day = START + timedelta(days=k)
        start_us = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp() * 1e6)
        table = pa.table(
            {
                "vehicle": pseudonyms.take(pa.array(rng.integers(0, vehicles, rows_per_day))),
                "camera": tokens.take(pa.array(rng.integers(0, len(tokens), rows_per_day))),
                "read_at": pa.array(
                    start_us + rng.integers(0, 86_400_000_000, rows_per_day),
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        )
        store.write_day(day, table)
        if k % 30 == 0:
            store.write_quarantine(day, "b1", pa.table({"row": [1], "reason": ["bad read_at"]}))
    days = [START + timedelta(days=k) for k in range(n_days)]
    # Feature caches built month by month, plus one over the whole history.
    for m in range(0, n_days, 30):
        store.write_derived(f"features-m{m // 30:02d}", pa.table({"x": [m]}), days[m : m + 30])
    store.write_derived("sequences-all", pa.table({"x": [0]}), days)
    return time.perf_counter() - t0


@dataclass
class Variant:
    """One benchmark variant: a template store and the backlog to purge from it."""

    name: str
    template: Path
    rows_per_day: int
    backlog: int
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    partitions: int = 0
    bytes_removed: int = 0
    store_bytes: int = 0

    @property
    def as_of(self) -> datetime:
        # Days 0..backlog-1 expire: the cutoff is the start of day `backlog`.
        first_kept = START + timedelta(days=self.backlog)
        return datetime.combine(first_kept, datetime.min.time(), tzinfo=UTC) + POLICY.window


def run_once(variant: Variant, work: Path, i: int) -> None:
    """Purge a fresh copy of the variant's template and record the time."""
    root = work / f"{variant.name.replace(' ', '_')}-{i}"
    shutil.copytree(variant.template, root)
    store = ForceStore.open(root, _secret())
    os.sync()  # flush the copy first, so its writeback does not land in the purge's fsyncs
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_purge(store, variant.as_of, POLICY)
    variant.times.append(time.perf_counter() - t0)
    variant.cpu_times.append(time.process_time() - c0)
    variant.partitions = len(result.days_removed)
    variant.bytes_removed = result.bytes_removed
    assert result.status == "purged" and variant.partitions == variant.backlog
    shutil.rmtree(root)


def main() -> None:
    """Build the stores, time the purges, print and write docs/benchmarks/purge.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--rows", type=int, default=200, help="reads per day (base density)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-purge-") as tmp:
        work = Path(tmp)
        build_s = {}
        templates = {}
        for label, rows in (("base", args.rows), ("dense", args.rows * 10)):
            templates[label] = work / f"template-{label}"
            build_s[label] = build(templates[label], args.days, rows)
            print(f"built {label}: {args.days} days x {rows} rows in {build_s[label]:.1f} s")
        half = args.days // 2
        variants = [
            Variant("base", templates["base"], args.rows, half),
            Variant("10x rows", templates["dense"], args.rows * 10, half),
            Variant("quarter backlog", templates["base"], args.rows, half // 4),
        ]
        for v in variants:
            v.store_bytes = sum(p.stat().st_size for p in v.template.rglob("*") if p.is_file())
        for i in range(args.repeats):
            # Rotate the order each round so no variant always runs first.
            for v in variants[i % 3 :] + variants[: i % 3]:
                run_once(v, work, i)
        for v in variants:
            print(f"{v.name}: wall " + ", ".join(f"{t:.3f}" for t in v.times) + " s")
            print(f"{v.name}: cpu  " + ", ".join(f"{t:.3f}" for t in v.cpu_times) + " s")

    base = statistics.median(variants[0].times)
    base_cpu = statistics.median(variants[0].cpu_times)
    base_per_partition = base / variants[0].partitions
    rows = []
    for v in variants:
        med = statistics.median(v.times)
        cpu = statistics.median(v.cpu_times)
        rows.append(
            f"| {v.name} | {v.rows_per_day} | {v.store_bytes / 1e6:.1f} | {v.partitions} | "
            f"{v.bytes_removed / 1e6:.1f} | {med:.3f} | {med / v.partitions * 1e3:.2f} | "
            f"{med / base:.2f} | {cpu:.3f} | {cpu / v.partitions * 1e3:.2f} | "
            f"{cpu / base_cpu:.2f} |"
        )
    table = "\n".join(
        [
            "| variant | reads/day | store MB | partitions purged | MB removed | wall s | "
            "wall ms / partition | wall ratio | CPU s | CPU ms / partition | CPU ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    spread = "\n".join(
        f"* {v.name}: wall {min(v.times):.3f}-{max(v.times):.3f} s, "
        f"CPU {min(v.cpu_times):.3f}-{max(v.cpu_times):.3f} s"
        for v in variants
    )
    dense, quarter = variants[1], variants[2]
    dense_ratio = statistics.median(dense.times) / base
    quarter_ratio = statistics.median(quarter.times) / base
    dense_cpu = statistics.median(dense.cpu_times) / base_cpu
    quarter_cpu = statistics.median(quarter.cpu_times) / base_cpu
    text = f"""# Purge benchmark

`python benchmarks/bench_purge.py --days {args.days} --rows {args.rows} --repeats {args.repeats}`
(median of {args.repeats} purges per variant, round-robin, each on a fresh copy of a template
store; {platform.python_implementation()} {platform.python_version()}, {platform.machine()}).

Each store holds {args.days} encrypted day partitions, a quarantine file every 30 days, a
feature cache per 30 days and one sequence cache over all days. The purge runs as of the end
of the backlog plus 365 days (window 365 days): it removes the expired partitions, quarantine
files and every derived artifact built from an expired day, destroys their keys in the keyring,
and appends the signed intent and commit entries to the purge log (all fsync'd).

{table}

Ratios are against the base variant of the same run. Wall time includes waiting for fsync and
for the CPU (other processes on the machine); CPU time (user + system of this process) is the
steadier measure of the work done. Range over the runs:

{spread}

* **Rows do not matter**: ten times the reads per day ({dense.rows_per_day} vs
  {variants[0].rows_per_day}), so roughly ten times the bytes removed, costs
  **{dense_cpu:.2f}x** the base purge's CPU time ({dense_ratio:.2f}x its wall time). The purge
  unlinks files and destroys keys; it never reads or decrypts a partition.
* **Partitions do**: a quarter of the backlog ({quarter.partitions} partitions,
  {quarter.partitions / variants[0].partitions:.2f}x) costs **{quarter_cpu:.2f}x** the base
  purge's CPU time ({quarter_ratio:.2f}x wall); the rest is a fixed cost per purge (listing
  the store, two keyring rewrites, two signed log entries). Wall time per partition is about
  {base_per_partition * 1e3:.1f} ms, mostly spent waiting on the filesystem (one unlink per file,
  one rmdir per day directory, a few fsyncs), against well under 1 ms of CPU; the keyring
  is rewritten twice per purge whatever the number of keys, and the log gets two signed,
  fsync'd entries.

Build time of the templates (not part of the purge): base {build_s["base"]:.1f} s,
10x rows {build_s["dense"]:.1f} s.
"""
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
