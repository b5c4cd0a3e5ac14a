"""Everything the national server writes about a run, in one results folder.

Layout of ``results-dir`` (all JSON written atomically, rewritten after every round so a
failed or interrupted run still leaves what it did)::

    status.json        status (running | completed | failed), rounds completed, error message,
                       run id, settings, the egress contract's array names/shapes/dtypes
    metrics.json       per round: aggregated train and evaluate metrics, per-node metrics,
                       how many forces were sampled and how many replies were accepted
    rejections.json    replies the egress guard refused: node id, round, kind, reason codes
    failures.json      error replies (code only) and timeouts: node id, round, kind
    ledger.json        each force's reported (epsilon, delta) per round (LedgerView)
    checkpoints/       round-0001.npz ... and final.npz (or ``checkpoint-dir``)

Nothing in here holds reply content beyond the allowlisted metrics and aggregated arrays.
Paths inside ``results-dir`` are written relative to it (``.`` for the folder itself), so the
folder can be moved or shared without naming the machine's directories.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

from federation.contract import EgressContract
from safefiles import atomic_write_json
from server_national.checkpoint import FINAL_NAME, round_checkpoint_name, save_checkpoint
from server_national.egress_guard import Failure, Rejection
from server_national.ledger_view import LedgerView

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
REJECTIONS_FILE = "rejections.json"
FAILURES_FILE = "failures.json"
LEDGER_FILE = "ledger.json"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (``safefiles``)."""
    atomic_write_json(path, payload, mode=0o644)


def portable_path(path: Path | str, root: Path) -> str:
    """``path`` relative to ``root`` when it lies inside it (``.`` for ``root``), else as is."""
    candidate = Path(path)
    try:
        relative = candidate.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return str(candidate)
    return relative.as_posix() or "."


def _portable_settings(settings: dict[str, Any], root: Path) -> dict[str, Any]:
    return {
        key: portable_path(value, root)
        if isinstance(value, str) and value and Path(value).is_absolute()
        else value
        for key, value in settings.items()
    }


class RunOutputs:
    """Collects a run's records and writes them under ``results_dir``."""

    def __init__(
        self,
        results_dir: Path,
        checkpoint_dir: Path,
        contract: EgressContract,
        ledger: LedgerView,
        run_id: int,
        settings: dict[str, Any],
    ) -> None:
        self.results_dir = Path(results_dir)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.contract = contract
        self.ledger = ledger
        self.run_id = int(run_id)
        self.settings = dict(settings)
        self.rounds: dict[int, dict[str, Any]] = {}
        self.rejections: list[Rejection] = []
        self.failures: list[Failure] = []
        self.status = "running"
        self.error: str | None = None
        self.rounds_completed = 0
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.final_checkpoint: Path | None = None
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.flush()

    # ------------------------------------------------------------------ recording
    def _round(self, server_round: int) -> dict[str, Any]:
        return self.rounds.setdefault(
            int(server_round), {"round": int(server_round), "train": None, "evaluate": None}
        )

    def record_phase(
        self,
        server_round: int,
        kind: str,
        *,
        sampled: int,
        per_node: dict[int, dict[str, float | int]],
        aggregated: dict[str, float | int] | None,
    ) -> None:
        """Record one phase (``train``/``evaluate``) of a round."""
        self._round(server_round)[kind] = {
            "sampled": int(sampled),
            "accepted": len(per_node),
            "aggregated": aggregated,
            "nodes": {str(node): metrics for node, metrics in sorted(per_node.items())},
        }
        self.flush()

    def record_rejection(self, rejection: Rejection) -> None:
        """Record a guard rejection (persisted immediately)."""
        self.rejections.append(rejection)
        self.flush()

    def record_failure(self, failure: Failure) -> None:
        """Record an error reply or a timeout (persisted immediately)."""
        self.failures.append(failure)
        self.flush()

    def checkpoint(self, server_round: int, arrays: ArrayRecord) -> Path:
        """Save the global arrays after ``server_round`` and count the round completed."""
        path = save_checkpoint(self.checkpoint_dir, round_checkpoint_name(server_round), arrays)
        self.rounds_completed = max(self.rounds_completed, int(server_round))
        self._round(server_round)["checkpoint"] = portable_path(path, self.results_dir)
        self.flush()
        return path

    def finish(self, arrays: ArrayRecord | None, error: BaseException | None = None) -> None:
        """Mark the run completed (saving ``final.npz``) or failed (with the error message)."""
        if arrays is not None and error is None:
            self.final_checkpoint = save_checkpoint(self.checkpoint_dir, FINAL_NAME, arrays)
        self.status = "failed" if error is not None else "completed"
        self.error = f"{type(error).__name__}: {error}" if error is not None else None
        self.finished_at = time.time()
        self.flush()

    # ------------------------------------------------------------------ writing
    def status_json(self) -> dict[str, Any]:
        """The ``status.json`` payload."""
        return {
            "status": self.status,
            "error": self.error,
            "run_id": self.run_id,
            "rounds_completed": self.rounds_completed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "final_checkpoint": portable_path(self.final_checkpoint, self.results_dir)
            if self.final_checkpoint
            else None,
            "checkpoint_dir": portable_path(self.checkpoint_dir, self.results_dir),
            "settings": _portable_settings(self.settings, self.results_dir),
            # Settings only a simulated force accepts (a deployed force's policy refuses them).
            "simulation_only_settings": _simulation_only(self.settings),
            "contract": {
                "arrays": [
                    {"name": a.name, "shape": list(a.shape), "dtype": a.dtype}
                    for a in self.contract.arrays
                ],
                "train_metrics": sorted(self.contract.train_metrics),
                "evaluate_metrics": sorted(self.contract.evaluate_metrics),
            },
        }

    def flush(self) -> None:
        """Rewrite every output file."""
        write_json_atomic(self.results_dir / STATUS_FILE, self.status_json())
        write_json_atomic(
            self.results_dir / METRICS_FILE,
            {"rounds": [self.rounds[r] for r in sorted(self.rounds)]},
        )
        write_json_atomic(
            self.results_dir / REJECTIONS_FILE, [r.to_json() for r in self.rejections]
        )
        write_json_atomic(self.results_dir / FAILURES_FILE, [f.to_json() for f in self.failures])
        write_json_atomic(self.results_dir / LEDGER_FILE, self.ledger.to_json())


def _simulation_only(settings: dict[str, Any]) -> dict[str, Any]:
    """The simulation-only run-config keys in use: fixed DP seed, ledger scope, no DP."""
    used: dict[str, Any] = {}
    if int(settings.get("training-seed", -1)) >= 0:
        used["training-seed"] = settings["training-seed"]
    if settings.get("ledger-scope"):
        used["ledger-scope"] = settings["ledger-scope"]
    if settings.get("dp-enabled") is False:
        used["dp-enabled"] = False
    return used
