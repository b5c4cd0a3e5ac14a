"""Reusing ingested force stores across runs: a store is rebuilt only when what made it changed.

A study's force stores (``<out>/stores/retention-<N>d/<force>``) depend only on the world, the
study date, the retention window and how ingest ran: not on the designs, epsilons or training
settings. After a store is ingested, labelled and purged, the runner writes a marker beside it
(``<force>.ingest.json``, atomically, last) holding a key over exactly those inputs and the
ingest counts. A later run, even with a different spec, whose key matches reuses the store
instead of ingesting again; a store without a marker (an interrupted ingest) or with another
key is rebuilt from scratch.

Training leaves per-study state in a reused store (scoped privacy ledgers, feature caches):
feature caches are keyed by the partitions they came from, so they stay valid; a design run's
scoped ledger is reset before it trains (:func:`reset_scoped_ledger`), because each run of a
sweep point is a fresh hypothetical study, never a second release charged to the first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from research.study.spec import StudySpec
from safefiles import atomic_write_json, remove_file

# Bump when ingest, label loading, truth loading or the purge change what a store holds.
STORE_FORMAT = 1
MARKER_SUFFIX = ".ingest.json"


def ingest_max_age_days(spec: StudySpec, window: int) -> int:
    """How old a read may be at ingest: the whole world (every read is younger than this)."""
    return max(spec.world.days + 1, window)


def store_key(spec: StudySpec, window: int) -> str:
    """Digest of everything a force store for ``window`` depends on."""
    world = asdict(spec.world)
    world["start"] = spec.world.start.isoformat()
    payload = {
        "format": STORE_FORMAT,
        "world": world,
        "as_of": spec.as_of.isoformat(),
        "retention_days": window,
        "ingest_max_age_days": ingest_max_age_days(spec, window),
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def marker_path(store_dir: Path) -> Path:
    """Where the completion marker of the store at ``store_dir`` lies (beside it)."""
    return store_dir.with_name(store_dir.name + MARKER_SUFFIX)


def ready_store(store_dir: Path, key_file: Path, key: str) -> dict[str, Any] | None:
    """The ingest counts of a finished store built with ``key``, or ``None`` to rebuild it."""
    marker = marker_path(store_dir)
    if not (marker.is_file() and store_dir.is_dir() and key_file.is_file()):
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    if not isinstance(data.get("row"), dict):
        return None
    return data["row"]


def forget_store(store_dir: Path) -> None:
    """Remove the marker first, so a rebuild interrupted half-way is never taken as finished."""
    remove_file(marker_path(store_dir))


def mark_store_ready(store_dir: Path, key: str, row: dict[str, Any]) -> None:
    """Record that the store is finished (written last, atomically)."""
    atomic_write_json(marker_path(store_dir), {"key": key, "row": row})


def reset_scoped_ledger(ledger_file: Path) -> None:
    """Delete a simulation-only scoped ledger (``privacy/scopes/<scope>/``) before a design run.

    Only scoped ledgers (``.../privacy/scopes/<scope>/ledger.json``) are ever reset; a force's
    lifetime ledger is refused.
    """
    scope_dir = ledger_file.parent
    if scope_dir.parent.name != "scopes" or scope_dir.parent.parent.name != "privacy":
        raise ValueError("only a scoped (simulation) ledger may be reset")
    if scope_dir.is_dir() and not scope_dir.is_symlink():
        shutil.rmtree(scope_dir)
