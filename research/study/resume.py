"""Resuming a study: a finished design run is recorded, and not run again unless asked.

Each design run (one design at one sweep point) ends by writing its record atomically to
``<out>/designs/<run>.npz``: the held-out scores and truth flags of every force (no
identifiers) and its ledger rows, under a key over the design, its settings and the keys of
the stores it trained on. A later run of the study with the same key loads the record
instead of training again, and recomputes the metrics from it exactly as a fresh run would.
``anprfed study run --force-rerun`` ignores every record.

The results folder is complete only when ``manifest.json`` exists with ``"complete": true``:
a run removes any earlier manifest before it starts and writes the new one last, so a run
stopped half-way leaves no folder that looks finished.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from research.study.evaluation import ForceScores
from safefiles import atomic_write_bytes, remove_file

RECORDS_DIR = "designs"
RECORD_FORMAT = 1


def run_key(design: str, settings: Any, store_keys: list[str]) -> str:
    """Digest of everything a design run's outcome depends on."""
    payload = {
        "format": RECORD_FORMAT,
        "design": design,
        "settings": asdict(settings),
        "stores": store_keys,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def record_path(out: Path, name: str) -> Path:
    """Where the record of the design run ``name`` (a file-name-safe slug) lies."""
    return out / RECORDS_DIR / f"{name}.npz"


def save_record(
    out: Path, name: str, key: str, per_force: list[ForceScores], ledger: list[dict[str, Any]]
) -> Path:
    """Write a finished design run's record (atomically)."""
    arrays: dict[str, np.ndarray] = {}
    for i, force in enumerate(per_force):
        arrays[f"scores_{i}"] = np.asarray(force.scores, np.float64)
        arrays[f"truth_{i}"] = np.asarray(force.truth, np.float64)
    meta = {"key": key, "forces": [f.force for f in per_force], "ledger": ledger}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_plain).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(record_path(out, name), buffer.getvalue())


def load_record(
    out: Path, name: str, key: str
) -> tuple[list[ForceScores], list[dict[str, Any]]] | None:
    """The per-force scores and ledger rows of a finished run with ``key``, else ``None``."""
    path = record_path(out, name)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("key") != key:
                return None
            per_force = [
                ForceScores(force, data[f"scores_{i}"], data[f"truth_{i}"])
                for i, force in enumerate(meta["forces"])
            ]
    except (OSError, ValueError, KeyError):
        return None  # a damaged record is re-run, never trusted
    return per_force, list(meta["ledger"])


def forget_record(out: Path, name: str) -> None:
    """Drop a record before its design runs again."""
    remove_file(record_path(out, name))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
