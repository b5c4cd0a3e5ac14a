"""``local-only``: every force trains alone under DP, with the same rounds as the federation."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from federation.flower_settings import FlowerSettings
from research.study.designs.registry import Design, DesignContext, register_design
from research.study.interrupt import worker_dies_with_parent


class LocalWorkerError(RuntimeError):
    """A local-only worker process died; the message says the likely causes."""


def _train_local(node: Any, settings: FlowerSettings, study_id: str) -> list[np.ndarray]:
    """One force's local-only training, in a worker process (one torch thread each)."""
    import torch

    torch.set_num_threads(1)
    return node.train_local(settings, study_id)


class LocalWorkers:
    """Worker processes for the local-only design, started on first use and kept for the study.

    Every force trains alone, as many at once as there are cores: forces share nothing, so this
    is the honest parallelism of N independent forces, and each worker opens its own force's
    store. Keeping the workers across sweep points saves their start-up (a fresh interpreter
    importing torch) and lets them reuse the examples they already built for a window.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if exc_type is None:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        # Failed or interrupted: stop the workers now rather than wait for their training.
        # (ProcessPoolExecutor has no public terminate before Python 3.14.)
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)

    def train_all(
        self, nodes: list[Any], settings: FlowerSettings, study_id: str
    ) -> dict[str, list[np.ndarray]]:
        """Train every force's local-only model; weights by force name."""
        if self._pool is None:
            workers = max(1, min(len(nodes), os.cpu_count() or 1))
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=worker_dies_with_parent,
                initargs=(os.getpid(),),
            )
        futures = {
            node.name: self._pool.submit(_train_local, node.detached(), settings, study_id)
            for node in nodes
        }
        try:
            return {name: future.result() for name, future in futures.items()}
        except BrokenProcessPool:
            self._pool = None
            raise LocalWorkerError(
                "a local-only worker process died (killed, out of memory, or started from a "
                "script without an `if __name__ == '__main__':` guard, which the spawn start "
                "method needs)"
            ) from None


def train(ctx: DesignContext) -> dict[str, list[np.ndarray]]:
    """Each force's own model, trained in the runner's worker pool."""
    return ctx.local_workers.train_all(ctx.nodes, ctx.settings, ctx.study_id)


DESIGN = register_design(
    Design(
        "local-only",
        train,
        colour="#d95f02",
        private=True,
        description="each force alone, under DP",
    )
)
