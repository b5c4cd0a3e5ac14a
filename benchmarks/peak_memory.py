"""Peak memory of a command and every process it starts (Ray head, raylet, workers included).

``/usr/bin/time -v`` reports the largest single process; a study spreads its memory over the
study process, a Ray head and one worker per core, so the figure a capacity estimate must be
checked against is the *sum* over the process tree at its peak. This samples the tree every
``--interval`` seconds from ``/proc`` (Linux) and sums each process's proportional set size
(PSS, from ``smaps_rollup``: shared pages divided among the processes that map them, so
torch's libraries are not counted once per worker), and reports the peak of the sum, the
largest single process, the number of processes at the peak and each of them (name, PSS).

Usage::

    python benchmarks/peak_memory.py --out runs/mem.json -- \\
        anprfed study run s.toml --out runs/s

Only processes descended from the command are counted (the study's Ray processes are: the
study starts Ray under a subreaper supervisor). Exit status: the command's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _children_map() -> dict[int, list[int]]:
    """{parent pid: [child pids]} for every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children = _children_map()
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def pss_bytes(pid: int) -> int:
    """A process's proportional set size in bytes (0 if it is gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


def process_name(pid: int) -> str:
    """The process's short name (``comm``: e.g. ``python``, ``raylet``, ``ray::ClientAppActor``)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def main() -> int:
    """Run the command, sample its process tree, write the peak figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    started = time.monotonic()
    proc = subprocess.Popen(command)
    peak = {"total_bytes": 0, "largest_process_bytes": 0, "processes": 0, "at_s": 0.0}
    breakdown: list[dict] = []  # each process at the peak: pid, name, PSS
    series: list[tuple[float, float]] = []  # (seconds, total GiB): peaks per stage, later
    while proc.poll() is None:
        pids = descendants(proc.pid)
        sizes = [pss_bytes(pid) for pid in pids]
        total = sum(sizes)
        series.append((round(time.monotonic() - started, 1), round(total / 2**30, 3)))
        if total > peak["total_bytes"]:
            peak.update(
                total_bytes=total,
                processes=sum(1 for s in sizes if s),
                at_s=round(time.monotonic() - started, 1),
            )
            breakdown = [
                {"pid": pid, "name": process_name(pid), "gib": round(size / 2**30, 3)}
                for pid, size in sorted(zip(pids, sizes, strict=True), key=lambda p: -p[1])
                if size
            ]
        peak["largest_process_bytes"] = max(peak["largest_process_bytes"], max(sizes, default=0))
        time.sleep(args.interval)
    result = {
        "command": command,
        "exit_code": proc.returncode,
        "wall_s": round(time.monotonic() - started, 1),
        "peak_total_gib": round(peak["total_bytes"] / 2**30, 3),
        "peak_largest_process_gib": round(peak["largest_process_bytes"] / 2**30, 3),
        "processes_at_peak": peak["processes"],
        "peak_at_s": peak["at_s"],
        "processes_at_peak_gib": breakdown,
        "interval_s": args.interval,
        "series_s_gib": series,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "series_s_gib"}), file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
