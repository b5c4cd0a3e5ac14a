"""Will a study fit this machine? An estimate of its peak memory and disk, made before it starts.

The estimate multiplies the study's size (reads = vehicles x days x reads per vehicle-day of
the preset; the largest force's share; vehicles) by per-read and per-vehicle costs measured
on this code (the benchmarks named beside each constant). It is an estimate, not a bound:
``anprfed study run`` refuses a study whose estimate exceeds the memory available or the free
disk under the results folder, naming the estimate and the figure it exceeds, rather than
failing an hour in; ``--skip-capacity-check`` runs it anyway.

Every process is counted: the study process, Ray's system processes and, per core, one Ray
worker (federated designs) and one local-only worker, each with its own process, its DP-SGD
working memory (bounded by physical chunks, ``client_force.dp_recipe.MAX_PHYSICAL_BATCH``)
and its copies of the examples. The per-process terms are calibrated on three measured studies
on 2 cores (``benchmarks/peak_memory.py``, PSS summed over the whole process tree, per process
at the peak; docs/benchmarks/scale.md): the default study (5.08 GiB) and north-west at 100,000
vehicles, federated + pooled (6.98 GiB) and local-only + federated (10.70 GiB); the estimate
is 1.1-1.4x above each (``tests/study/test_scenarios.py`` keeps it at or above them, within
1.5x). Before that calibration it was 1.8x low. Beyond 100,000 vehicles how the examples'
copies grow (the example cache is capped at its byte budget) is extrapolated, not measured.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from client_force.dp_recipe import MAX_PHYSICAL_BATCH, dp_recipe
from client_force.force_dataset import cache_budget_bytes
from client_force.streamed_examples import DEFAULT_READS_PER_BUCKET
from research.study.designs import get_design
from research.study.public_init import public_world_spec
from research.study.spec import StudySpec
from research.synth.presets import load_preset

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
# Ray's own processes (GCS, raylet, dashboard and runtime-env agents, helpers): 0.33 GiB PSS
# on a fresh cluster (``benchmarks/ray_base_memory.py --workers 2``), 0.45 GiB at the peak of
# the 100,000-vehicle local-only + federated study.
RAY_SYSTEM_BYTES = 0.45 * 2**30
# A worker's own process once it has trained (Ray ClientApp actor or local-only worker): 0.37
# GiB idle with the client stack imported (same benchmark); the default study's workers peaked
# at 0.78-0.87 GiB PSS with little DP working memory and examples (~0.1 GiB).
WORKER_PROCESS_BYTES = 0.75 * 2**30
# What each process holds in examples, as multiples of the examples its cache can hold (the
# cache, the train/held-out subsets and training tensors of the forces it served, and what
# the allocator keeps of them). Calibrated, not derived: at 100,000 vehicles (2 cores;
# docs/benchmarks/scale.md) with 0.27 GiB of cacheable examples, beyond their process and DP
# working memory, the Ray workers held up to 1.71 GiB (6.3x) at the end of the federated
# design, the local-only workers 0.32 GiB (1.2x), the study process (evaluating every force)
# 0.64-0.98 GiB (2.4-3.6x). Why the Ray workers hold so much is not yet known.
RAY_WORKER_EXAMPLE_COPIES = 6.5
LOCAL_WORKER_EXAMPLE_COPIES = 1.5
STUDY_EXAMPLE_COPIES = 4.0
# DP-SGD's working memory in a training process: per-sample gradients and activations of one
# physical chunk (at most MAX_PHYSICAL_BATCH vehicles of the recipe's logical batch) and the
# optimiser's state: 0.12-0.14 GiB at 500 vehicles, 0.27-0.34 GiB at a full chunk, flat
# beyond (docs/benchmarks/physical-batch.md).
DP_TRAINING_FIXED_BYTES = 0.05 * 2**30
DP_TRAINING_BYTES_PER_VEHICLE = 0.3 * 2**20


@dataclass(frozen=True)
class CapacityEstimate:
    """Estimated size of a study and what this machine offers."""

    reads: int
    largest_force_reads_in_window: int
    peak_memory_bytes: float
    disk_bytes: float
    memory_available_bytes: float
    disk_free_bytes: float
    stage_peak_bytes: dict[str, float] = field(default_factory=dict)  # the peak is their max

    @property
    def peak_stage(self) -> str:
        """The stage whose estimate sets the peak ("" if stages were not given)."""
        if not self.stage_peak_bytes:
            return ""
        return max(self.stage_peak_bytes, key=lambda stage: self.stage_peak_bytes[stage])

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
            f"force's longest window); estimated peak memory {_gb(self.peak_memory_bytes)}"
            + (f" (in {self.peak_stage})" if self.peak_stage else "")
            + f", disk {_gb(self.disk_bytes)}"
        )


def _gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


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


def _preset_forces(preset: str, default: int) -> int:
    """The number of forces of a world preset (``default`` if the preset is unknown)."""
    try:
        return len(load_preset(preset)["forces"])
    except (KeyError, ValueError, OSError):  # PresetError is a ValueError
        return default


def _dp_training_bytes(training_vehicles: float) -> float:
    """DP-SGD working memory for the recipe's logical batch over ``training_vehicles``."""
    logical = dp_recipe(max(1, int(training_vehicles))).expected_batch_size
    chunk = min(logical, MAX_PHYSICAL_BATCH)
    return DP_TRAINING_FIXED_BYTES + chunk * DP_TRAINING_BYTES_PER_VEHICLE


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
    cores = os.cpu_count() or 1
    designs = [get_design(name) for name in spec.designs]
    # Worker processes alive together: Flower's Ray backend starts one ClientApp actor per CPU
    # of the study's Ray head (one a core) and any of them may serve any force; the local-only
    # pool has one worker a core, at most one a force, kept for the whole study.
    ray_workers = cores if any(d.needs_ray for d in designs) else 0
    n_forces = len(spec.forces) or _preset_forces(preset, cores)
    local_workers = min(cores, n_forces) if "local-only" in spec.designs else 0
    train_fraction = 1.0 - spec.evaluation.test_fraction
    worker = WORKER_PROCESS_BYTES + _dp_training_bytes(largest_vehicles * train_fraction)
    # The study process trains the pooled design on every force's training vehicles (counted
    # whether or not the study runs it: a small, conservative term).
    study_process = (
        BASE_PROCESS_BYTES
        + STUDY_EXAMPLE_COPIES * cached
        + _dp_training_bytes(spec.world.vehicles * train_fraction)
    )
    designs_peak = (
        study_process
        + (RAY_SYSTEM_BYTES if ray_workers else 0.0)
        + ray_workers * (worker + RAY_WORKER_EXAMPLE_COPIES * cached)
        + local_workers * (worker + LOCAL_WORKER_EXAMPLE_COPIES * cached)
        + max(build, pooled)
    )
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
    stages = {"the designs": designs_peak}
    if public_peak:
        stages["public pre-training"] = public_peak
    peak = max(stages.values())
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
        stage_peak_bytes=stages,
    )
