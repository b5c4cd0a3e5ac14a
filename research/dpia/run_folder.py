"""Read a study's results folder for the DPIA: tables, manifest, audits, server records.

Only files are read (no key, no store opened). Missing optional files (an audit not yet run)
are reported as missing, so the DPIA can say what evidence is absent instead of failing; a
folder without ``manifest.json`` and ``metrics.csv`` is not a results folder and is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from research.study.layout import RunLayout, parse_epsilon

# Relative paths of the files read here; every one comes from RunLayout.
MANIFEST = RunLayout.MANIFEST
METRICS = f"{RunLayout.METRICS}.csv"
LEDGER = f"{RunLayout.LEDGER}.csv"
RETENTION = f"{RunLayout.RETENTION}.csv"
INGEST = f"{RunLayout.INGEST}.csv"
REPEATS = f"{RunLayout.REPEATS}.csv"
WORLD = f"{RunLayout.WORLD}/world.json"
MEMBERSHIP = f"{RunLayout.PRIVACY}/{RunLayout.MEMBERSHIP_ROWS}.csv"
MEMBERSHIP_AUDIT = f"{RunLayout.PRIVACY}/{RunLayout.MEMBERSHIP_AUDIT}"
REID = f"{RunLayout.PRIVACY}/{RunLayout.REID}"
ALL_FORCES = "all forces"


class RunFolderError(ValueError):
    """The folder is not a study's results folder, or a file in it is unreadable."""


def _epsilon(value: Any) -> float:
    return parse_epsilon(value)


@dataclass
class ServerRecord:
    """One sweep point's server outputs (``server/<tag>/``)."""

    tag: str
    design: str
    epsilon: float
    retention_days: int
    status_file: str | None
    status: dict[str, Any] | None
    checkpoint: str | None


@dataclass
class RunFolder:
    """The parsed contents of a results folder (paths relative to ``root``)."""

    root: Path
    manifest: dict[str, Any]
    metrics: pd.DataFrame
    ledger: pd.DataFrame
    retention: pd.DataFrame
    ingest: pd.DataFrame
    world: dict[str, Any] | None
    membership: pd.DataFrame
    membership_audit: dict[str, Any] | None
    reid: dict[str, Any] | None
    servers: list[ServerRecord] = field(default_factory=list)
    store_meta: dict[tuple[int, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    def has(self, rel: str) -> bool:
        """Whether the run folder holds the file ``rel``."""
        return (self.root / rel).is_file()

    @property
    def spec(self) -> dict[str, Any]:
        """The study spec as recorded in the manifest."""
        return self.manifest.get("spec", {})

    @property
    def forces(self) -> list[str]:
        """Force names, in the order of the metrics table."""
        names = [f for f in self.metrics["force"].drop_duplicates() if f != ALL_FORCES]
        return [str(f) for f in names]

    @property
    def main_epsilon(self) -> float:
        """The study's headline epsilon (the spec's ``dp.epsilon``)."""
        return _epsilon(self.spec.get("dp", {}).get("epsilon", math.inf))

    @property
    def main_retention(self) -> int:
        """The study's headline retention window in days."""
        return int(self.spec.get("retention", {}).get("max_age_days", 365))


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a table with no rows (e.g. no DP design, no ledger)
        return pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunFolderError(f"{path}: unreadable CSV ({exc})") from None
    if "epsilon" in frame.columns:
        frame["epsilon"] = frame["epsilon"].map(_epsilon)
    if "target_epsilon" in frame.columns:
        frame["target_epsilon"] = frame["target_epsilon"].map(_epsilon)
    return frame


def _read_json(path: Path, required: bool = False) -> Any:
    if not path.is_file():
        if required:
            raise RunFolderError(f"{path}: missing; is this a study results folder?")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable JSON ({exc})") from None


def _servers(root: Path) -> list[ServerRecord]:
    out = []
    layout = RunLayout(root)
    for tag, folder in layout.sweep_tags():
        status_path = layout.status(tag)
        status = _read_json(status_path)
        final = layout.checkpoint(tag)
        out.append(
            ServerRecord(
                tag=folder.name,
                design=tag.design,
                epsilon=tag.epsilon,
                retention_days=tag.retention_days,
                status_file=str(status_path.relative_to(root)) if status is not None else None,
                status=status,
                checkpoint=str(final.relative_to(root)) if final.is_file() else None,
            )
        )
    return out


def _store_meta(root: Path) -> dict[tuple[int, str], tuple[str, dict[str, Any]]]:
    """``store.json`` (public metadata, no key material) of every force store."""
    found: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
    layout = RunLayout(root)
    for days in layout.store_windows():
        window_dir = layout.stores_dir(days)
        for store in sorted(p for p in window_dir.iterdir() if p.is_dir()):
            meta_path = store / "store.json"
            meta = _read_json(meta_path)
            if meta is not None:
                found[(days, store.name)] = (str(meta_path.relative_to(root)), meta)
    return found


def load_run_folder(root: Path) -> RunFolder:
    """Parse a results folder written by ``anprfed study run`` (and the audits, if run)."""
    root = Path(root)
    if not root.is_dir():
        raise RunFolderError(f"{root}: no such folder")
    manifest = _read_json(root / MANIFEST, required=True)
    metrics = _read_csv(root / METRICS)
    if metrics.empty:
        raise RunFolderError(f"{root / METRICS}: missing or empty; is this a study results folder?")
    plots = sorted(str(p.relative_to(root)) for p in RunLayout(root).plots_dir.glob("*.png"))
    return RunFolder(
        root=root,
        manifest=manifest,
        metrics=metrics,
        ledger=_read_csv(root / LEDGER),
        retention=_read_csv(root / RETENTION),
        ingest=_read_csv(root / INGEST),
        world=_read_json(root / WORLD),
        membership=_read_csv(root / MEMBERSHIP),
        membership_audit=_read_json(root / MEMBERSHIP_AUDIT),
        reid=_read_json(root / REID),
        servers=_servers(root),
        store_meta=_store_meta(root),
        plots=plots,
    )
