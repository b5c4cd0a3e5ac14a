"""Will a study fit this machine? An estimate of its peak memory and disk, made before it starts.

The estimate multiplies the study's size (reads = vehicles x days x reads per vehicle-day of
the preset; the largest force's share; vehicles) by per-read and per-vehicle costs measured
on this code (the benchmarks named beside each constant). It is an estimate, not a bound:
``anprfed study run`` refuses a study whose estimate exceeds the memory available or the free
disk under the results folder, naming the estimate and the figure it exceeds, rather than
failing an hour in; ``--skip-capacity-check`` runs it anyway.

Known to be low: at 100,000 vehicles (north-west-realistic scaled down, federated + pooled)
the whole process tree peaked at 8.54 GiB of PSS against an estimate of 4.7 GB
(``benchmarks/peak_memory.py``; docs/benchmarks/scale.md). Each Ray worker's own process,
Ray's system processes and memory the study process keeps after freeing it are not modelled.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from client_force.force_dataset import cache_budget_bytes
from client_force.streamed_examples import DEFAULT_READS_PER_BUCKET
from research.study.public_init import public_world_spec
from research.study.spec import StudySpec

# Reads per vehicle per simulated day (docs/benchmarks/synth.md; a 40,000-vehicle, 60-day
# north-west world gave 2,446,208 reads = 1.02).
READS_PER_VEHICLE_DAY = {"north-west": 1.02, "england-wales": 1.15}
# The largest force's share of the reads (north-west: Merseyside 26.6 % of that world;
# england-wales: the Metropolitan Police's share of the preset's town population, 14.1 %),
# with a margin for through traffic.
LARGEST_FORCE_SHARE = {"north-west": 0.30, "england-wales": 0.16}
EXPORT_BYTES_PER_READ = 4.7  # Parquet export: 11.46 MB for 2,446,208 reads (same world)
STORE_BYTES_PER_READ = (
    20.2  # encrypted store: 101 MB for 5,000,000 reads (docs/benchmarks/ingest.md)
)
# Example building streams the window's reads from the store bucket by bucket of pseudonyms
# (client_force.streamed_examples): what grows with reads is one bucket of at most
# DEFAULT_READS_PER_BUCKET reads, its table and building arrays, measured at 420-680 bytes a
# read of the bucket (docs/benchmarks/scale-memory.md), plus one decrypted day partition.
BUCKET_BYTES_PER_READ = 700.0
# Examples held while a force's dataset is made: the built set (1x; buckets are stacked as
# they are freed), its train/held-out copies (1x) and, writing the encrypted feature cache,
# its Arrow copy and Parquet and sealed bytes (up to 1x more, transient).
EXAMPLE_COPIES = 3.0
# Public pre-training (research.study.public_init) builds each public force's examples from
# its whole export in memory (public data, not a store): ~400 bytes a read of table plus
# ~335 of working arrays (docs/benchmarks/scale-memory-ranges.md, the in-memory builder).
IN_MEMORY_BUILD_BYTES_PER_READ = 735.0
BASE_PROCESS_BYTES = 1.5 * 2**30  # torch, Flower, Ray client, pandas in the study process


@dataclass(frozen=True)
class CapacityEstimate:
    """Estimated size of a study and what this machine offers."""

    reads: int
    largest_force_reads_in_window: int
    peak_memory_bytes: float
    disk_bytes: float
    memory_available_bytes: float
    disk_free_bytes: float

    def problems(self) -> list[str]:
        """Sentences naming each estimate that exceeds what the machine has (empty: fits)."""
        found = []
        if self.peak_memory_bytes > self.memory_available_bytes:
            found.append(
                f"estimated peak memory {_gb(self.peak_memory_bytes)} exceeds the "
                f"{_gb(self.memory_available_bytes)} available"
            )
        if self.disk_bytes > self.disk_free_bytes:
            found.append(
                f"estimated disk {_gb(self.disk_bytes)} exceeds the {_gb(self.disk_free_bytes)} "
                "free under the results folder"
            )
        return found

    def summary(self) -> str:
        """One line: reads, peak memory and disk estimates."""
        return (
            f"{self.reads:,} reads ({self.largest_force_reads_in_window:,} in the largest "
            f"force's longest window); estimated peak memory {_gb(self.peak_memory_bytes)}, "
            f"disk {_gb(self.disk_bytes)}"
        )


def _gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GB"


def memory_available() -> float:
    """``MemAvailable`` from /proc/meminfo (Linux), else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def estimate(spec: StudySpec, out: Path) -> CapacityEstimate:
    """Estimate the study's peak memory and disk, and read what the machine offers."""
    preset = spec.world.preset
    per_day = READS_PER_VEHICLE_DAY.get(preset, max(READS_PER_VEHICLE_DAY.values()))
    share = LARGEST_FORCE_SHARE.get(preset, max(LARGEST_FORCE_SHARE.values()))
    reads = int(spec.world.vehicles * spec.world.days * per_day)
    windows = spec.retention_windows()
    longest = min(max(windows), spec.world.days)
    largest_window_reads = int(spec.world.vehicles * longest * per_day * share)
    n_read_features, n_summary = 19, 24
    example_bytes = spec.training.max_reads * (n_read_features * 4 + 1) + n_summary * 4 + 300
    # Largest force's examples (all its vehicles), built from all its reads in the window.
    largest_vehicles = spec.world.vehicles * share
    # Building streams the reads bucket by bucket: one bucket's reads and arrays at a time,
    # then the examples (EXAMPLE_COPIES of them: built set, split, feature cache).
    build = min(largest_window_reads, DEFAULT_READS_PER_BUCKET) * BUCKET_BYTES_PER_READ
    build += EXAMPLE_COPIES * largest_vehicles * example_bytes
    # The pooled counterfactual holds every force's training examples, concatenated (x2).
    pooled = 2 * spec.world.vehicles * example_bytes if "pooled" in spec.designs else 0.0
    # The study process and each worker process (local-only workers, Ray actors running the
    # ClientApps: one a core) keep the examples they loaded in an in-process cache
    # (client_force.force_dataset): older sets are evicted beyond its byte budget
    # (ANPRFED_EXAMPLE_CACHE_MB, 1 GiB) but the newest, one force's, is kept; so at most the
    # larger of the budget and one force's set, and never more than every force's.
    largest_set = largest_vehicles * example_bytes
    cached = min(spec.world.vehicles * example_bytes, max(cache_budget_bytes(), largest_set))
    workers = os.cpu_count() or 1
    designs_peak = BASE_PROCESS_BYTES + (1 + workers) * cached + max(build, pooled)
    # Before the designs: the public world (capped in vehicles) is built force by force in
    # memory, then its examples are concatenated (x2) and trained on.
    public_vehicles = 0
    public_peak = 0.0
    if spec.training.public_pretraining != "none":
        public_vehicles = public_world_spec(spec.world).vehicles
        public_force_reads = public_vehicles * longest * per_day * share
        public_peak = (
            BASE_PROCESS_BYTES
            + public_force_reads * IN_MEMORY_BUILD_BYTES_PER_READ
            + 2 * public_vehicles * example_bytes
        )
    peak = max(designs_peak, public_peak)
    stored = sum(spec.world.vehicles * min(w, spec.world.days) * per_day for w in windows)
    public_reads = public_vehicles * spec.world.days * per_day
    disk = (reads + public_reads) * EXPORT_BYTES_PER_READ + stored * STORE_BYTES_PER_READ
    out = Path(out).resolve()
    probe = next((p for p in (out, *out.parents) if p.exists()), Path("/"))
    return CapacityEstimate(
        reads=reads,
        largest_force_reads_in_window=largest_window_reads,
        peak_memory_bytes=peak,
        disk_bytes=disk,
        memory_available_bytes=memory_available(),
        disk_free_bytes=float(shutil.disk_usage(probe).free),
    )
