"""Wall time of the built-in default study, by phase, against the 5-minute budget.

Runs ``run_study(default_spec())`` exactly as ``anprfed study run`` does (a fresh output
folder, so the world is synthesised too) and reports each phase's share of the total and the
total as a ratio of the 300 s budget issue #6 sets. The machine's load average is recorded
beside it, because a shared machine slows every phase.

Usage: ``python benchmarks/bench_study.py [--out DIR]`` (writes ``docs/benchmarks/study.md``)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from research.study.runner import run_study
from research.study.spec import default_spec

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "study.md"
BUDGET_S = 300.0


def main() -> None:
    """Run the default study once and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: temp)")
    args = parser.parse_args()
    spec = default_spec()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "default"
        started = time.perf_counter()
        result = run_study(spec, out)
        wall = time.perf_counter() - started
        runs = {
            design: sum(
                1 for m in result.metrics if m["design"] == design and m["force"] == "all forces"
            )
            for design in spec.designs
        }
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    timings = {k: v for k, v in manifest["timings_s"].items() if k != "total"}
    load_after = os.getloadavg()[0]
    rows = []
    for phase, seconds in timings.items():
        count = runs.get(phase, 0)
        per_run = f"{seconds / count:.1f}" if count else ""
        rows.append(
            f"| {phase} | {seconds:.1f} | {seconds / wall:.0%} | {count or ''} | {per_run} |"
        )
    report = "\n".join(
        [
            "# The default study's wall time",
            "",
            "`python benchmarks/bench_study.py` (the same as `anprfed study run` into a fresh "
            "folder)",
            "",
            f"World: {spec.world.vehicles:,} vehicles x {spec.world.days} days, "
            f"{spec.training.rounds} rounds, epsilons {list(spec.epsilons())} at "
            f"{spec.retention.max_age_days} days and windows {list(spec.retention_windows())} at "
            f"epsilon {spec.dp.epsilon:g}. Machine: {platform.machine()}, {os.cpu_count()} "
            f"CPU(s); load average {load_before:.2f} before, {load_after:.2f} after.",
            "",
            f"**Total: {wall:.0f} s = {wall / BUDGET_S:.2f} x the {BUDGET_S:.0f} s budget.**",
            "",
            "| phase | seconds | share | runs | seconds per run |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "Phases as the manifest times them. `ingest+purge` ingests each force's export once "
            "and copies the store for the second retention window; `federated` includes "
            "waiting for the study's Ray head node, which boots during ingest.",
            "",
        ]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
