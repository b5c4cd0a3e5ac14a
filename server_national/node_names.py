"""Name forces, not Flower node ids, in a finished run's outputs.

Flower gives every node a random 64-bit id per run; the server records per-node metrics,
ledger entries, rejections and failures under it (``run_outputs``). An id means nothing to a
reader and differs from run to run, so once the run is over the operator who knows which node
is which force relabels the outputs: in a deployment from the SuperNode authentication
registry (each force's node public key, see ``deployment``), in a simulation from each force's
own participation log (the study runner). A node missing from ``names`` keeps a neutral
``node <id>`` label, so nothing is guessed.

Only labels change: no figure is added, removed or recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server_national.run_outputs import (
    FAILURES_FILE,
    LEDGER_FILE,
    METRICS_FILE,
    REJECTIONS_FILE,
    write_json_atomic,
)


def node_label(node_id: Any, names: Mapping[int, str]) -> str:
    """The force's name for ``node_id``, or ``node <id>`` when it is not known."""
    try:
        key = int(node_id)
    except (TypeError, ValueError):
        return str(node_id)
    return names.get(key, f"node {key}")


def _relabel_entry(entry: dict[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "node_id":
            out["force"] = node_label(value, names)
        else:
            out[key] = value
    return out


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def name_forces(results_dir: Path, names: Mapping[int, str]) -> list[Path]:
    """Rewrite ``metrics.json``, ``ledger.json``, ``rejections.json`` and ``failures.json``
    under ``results_dir`` with force names in place of node ids; returns the files rewritten.
    """
    results_dir = Path(results_dir)
    written: list[Path] = []
    metrics_path = results_dir / METRICS_FILE
    if metrics_path.exists():
        metrics = _read(metrics_path)
        for record in metrics.get("rounds", []):
            for kind in ("train", "evaluate"):
                phase = record.get(kind)
                if isinstance(phase, dict) and isinstance(phase.get("nodes"), dict):
                    phase["nodes"] = {
                        node_label(node, names): values
                        for node, values in sorted(
                            phase["nodes"].items(), key=lambda kv: node_label(kv[0], names)
                        )
                    }
        write_json_atomic(metrics_path, metrics)
        written.append(metrics_path)
    ledger_path = results_dir / LEDGER_FILE
    if ledger_path.exists():
        ledger = _read(ledger_path)
        ledger["entries"] = [_relabel_entry(e, names) for e in ledger.get("entries", [])]
        ledger["latest"] = {
            node_label(node, names): _relabel_entry(e, names)
            for node, e in ledger.get("latest", {}).items()
        }
        write_json_atomic(ledger_path, ledger)
        written.append(ledger_path)
    for name in (REJECTIONS_FILE, FAILURES_FILE):
        path = results_dir / name
        if path.exists():
            write_json_atomic(path, [_relabel_entry(e, names) for e in _read(path)])
            written.append(path)
    return written
