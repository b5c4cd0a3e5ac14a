"""What Ray and an idle simulated force cost before any data: PSS by process name.

The capacity estimate (``research.study.capacity``) counts the study process, Ray's system
processes and one Ray worker per core. This measures the last two on this machine: it starts
a local Ray (as the simulation does, one CPU a worker), starts ``--workers`` actors that import
the force's client stack (torch, Opacus, Flower, ``client_force.client_app``), and prints the
PSS of every process below this one, grouped by name (``benchmarks/peak_memory.py``'s PSS).

Usage::

    python benchmarks/ray_base_memory.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

from peak_memory import descendants, process_name, pss_bytes


def by_name(exclude: set[int]) -> dict[str, list[int]]:
    """PSS bytes of every process below this one but ``exclude``, by process name."""
    grouped: dict[str, list[int]] = {}
    for pid in descendants(os.getpid())[1:]:
        if pid not in exclude:
            grouped.setdefault(process_name(pid), []).append(pss_bytes(pid))
    return grouped


def main() -> None:
    """Start Ray and the workers, wait for them to settle, print the PSS table as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--settle-s", type=float, default=5.0)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Force:
        def load(self) -> int:
            import client_force.client_app  # noqa: F401  (torch, Opacus, Flower with it)

            return os.getpid()

    forces = [Force.remote() for _ in range(args.workers)]
    worker_pids = set(ray.get([f.load.remote() for f in forces]))
    time.sleep(args.settle_s)
    workers = [pss_bytes(pid) for pid in worker_pids]
    system = {name: sum(sizes) for name, sizes in by_name(exclude=worker_pids).items()}
    gib = 2**30
    print(
        json.dumps(
            {
                "worker_gib_each": [round(w / gib, 3) for w in workers],
                "ray_system_gib": round(sum(system.values()) / gib, 3),
                "ray_system_by_name_mib": {k: round(v / 2**20) for k, v in system.items()},
            },
            indent=1,
        )
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
