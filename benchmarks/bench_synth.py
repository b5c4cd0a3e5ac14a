"""Synthetic world generation: reads per second, and peak memory against world size.

Runs each variant in a fresh subprocess (so peak RSS is that variant's own) and reports
wall-clock and CPU time, reads generated per second, and peak RSS. Variants, in one run:

* ``baseline``: writing the same number of rows as the default world to one Parquet file
  with the reads schema (random VRMs, camera ids, sorted timestamps) -- the I/O floor every
  generator throughput is compared with;
* ``default``: the default world (north-west, 6,000 vehicles x 540 days, ~3 M reads);
* ``days x1/3/6``: 6,000 vehicles for 90, 270 and 540 days -- reads grow six-fold, peak
  memory should not (generation streams day chunks to disk);
* ``fleet x4/x16``: 24,000 and 96,000 vehicles for 60 days -- memory grows with the fleet
  (per-vehicle arrays), not with the number of reads.

The machine is shared (other jobs may run), so CPU time is reported next to wall time; the
ratios against the baseline come from the same run. Writes ``docs/benchmarks/synth.md``.

Usage: ``python benchmarks/bench_synth.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "synth.md"

_GENERATE = """
import json, resource, sys, time
from pathlib import Path
from research.synth.config import WorldConfig
from research.synth.world import generate_world
cfg = WorldConfig(vehicles=int(sys.argv[1]), days=int(sys.argv[2]), preset=sys.argv[3])
w0, c0 = time.perf_counter(), time.process_time()
summary = generate_world(cfg, Path(sys.argv[4]))
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"reads": summary.reads, "wall": wall, "cpu": cpu, "rss_mb": rss_mb}))
"""

_BASELINE = """
import json, resource, sys, time
import numpy as np, pyarrow as pa
from pathlib import Path
from research.synth.export import ForceExport
n = int(sys.argv[1])
rng = np.random.default_rng(0)
vrms = pa.array([f"AB{i % 100:02d}C{i // 100:04d}"[:7] for i in range(6000)])
cams = pa.array([f"GMP-{i:04d}" for i in range(400)])
w0, c0 = time.perf_counter(), time.process_time()
exp = ForceExport(Path(sys.argv[2]), "parquet", vrms, cams, 1_735_689_600_000_000, 6000)
chunk = 200_000
t = 0
for lo in range(0, n, chunk):
    k = min(chunk, n - lo)
    ts = t + np.sort(rng.integers(0, 86_400 * 30, k))
    t = int(ts[-1])
    exp.add(rng.integers(0, 6000, k).astype(np.int32), rng.integers(0, 400, k).astype(np.int32), ts)
exp.close()
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"reads": n, "wall": wall, "cpu": cpu, "rss_mb": rss_mb}))
"""


@dataclass
class Result:
    name: str
    vehicles: int
    days: int
    reads: int
    wall: float
    cpu: float
    rss_mb: float

    @property
    def per_s(self) -> float:
        return self.reads / self.wall

    @property
    def per_cpu_s(self) -> float:
        return self.reads / self.cpu


def _run(script: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def generate(name: str, vehicles: int, days: int, tmp: Path, preset: str = "north-west") -> Result:
    """Generate one world in a subprocess and collect its figures."""
    out = tmp / name.replace(" ", "_").replace("/", "_")
    r = _run(_GENERATE, str(vehicles), str(days), preset, str(out))
    return Result(name, vehicles, days, int(r["reads"]), r["wall"], r["cpu"], r["rss_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller worlds (smoke run)")
    args = parser.parse_args()
    scale = 4 if args.quick else 1
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as d:
        tmp = Path(d)
        default = generate("default", 6000 // scale, 540, tmp)
        b = _run(_BASELINE, str(default.reads), str(tmp / "baseline"))
        baseline = Result(
            "baseline (write only)", 0, 0, default.reads, b["wall"], b["cpu"], b["rss_mb"]
        )
        results += [baseline, default]
        for mult, days in ((1, 90), (3, 270), (6, 540)):
            results.append(generate(f"days x{mult}", 6000 // scale, days, tmp))
        for mult in (4, 16):
            results.append(generate(f"fleet x{mult}", 6000 * mult // scale, 60, tmp))
        results.append(generate("england-wales", 24000 // scale, 60, tmp, preset="england-wales"))

    header = (
        "| variant | vehicles | days | reads | wall s | reads/s | CPU s | reads/CPU-s | "
        "vs baseline (CPU) | peak RSS MB |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in results:
        lines.append(
            f"| {r.name} | {r.vehicles:,} | {r.days} | {r.reads:,} | {r.wall:.2f} | "
            f"{r.per_s:,.0f} | {r.cpu:.2f} | {r.per_cpu_s:,.0f} | "
            f"{r.per_cpu_s / baseline.per_cpu_s:.2f} | {r.rss_mb:,.0f} |"
        )
    days_rows = [r for r in results if r.name.startswith("days")]
    growth_reads = days_rows[-1].reads / days_rows[0].reads
    growth_rss = days_rows[-1].rss_mb / days_rows[0].rss_mb
    load = os.getloadavg()
    text = "\n".join(
        [
            "# Synthetic world generation",
            "",
            "Produced by `python benchmarks/bench_synth.py"
            + (" --quick" if args.quick else "")
            + "` (each variant in a fresh subprocess).",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; load average at the end {load[0]:.1f} "
            "(the machine is shared: wall time includes waiting for the CPU, CPU time does not).",
            "",
            *lines,
            "",
            f"Bounded memory: from 90 to 540 days reads grow x{growth_reads:.1f} while peak RSS "
            f"grows x{growth_rss:.2f}. Generation runs in two threads (tours of the next day chunk "
            "are drawn while the previous chunk's reads are expanded, sorted and written), so "
            "wall time can be below CPU time on an idle machine.",
            "",
            "`baseline (write only)` writes the same number of rows through the same Parquet "
            "writer with random content; `vs baseline` is the generator's reads per CPU-second "
            "divided by the baseline's (1.0 would mean simulating costs nothing).",
            "",
        ]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
