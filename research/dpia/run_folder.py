"""Read a study's results folder for the DPIA: tables, manifest, audits, server records.

Only files are read (no key, no store opened). Missing optional files (an audit not yet run)
are reported as missing, so the DPIA can say what evidence is absent instead of failing; a
folder without ``manifest.json`` and ``metrics.csv`` is not a results folder and is refused.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST = "manifest.json"
METRICS = "metrics.csv"
LEDGER = "privacy_ledger.csv"
RETENTION = "retention.csv"
INGEST = "ingest.csv"
WORLD = "world/world.json"
MEMBERSHIP = "privacy/membership_inference.csv"
MEMBERSHIP_AUDIT = "privacy/membership_audit.json"
REID = "privacy/reid.json"
ALL_FORCES = "all forces"
_TAG = re.compile(r"^(?P<design>[a-z][a-z-]*?)-eps(?P<eps>[0-9.e+-]+|inf)-ret(?P<ret>\d+)d$")


class RunFolderError(ValueError):
    """The folder is not a study's results folder, or a file in it is unreadable."""


def _epsilon(value: Any) -> float:
    if isinstance(value, str):
        return math.inf if value.strip().lower() in ("inf", "infinity") else float(value)
    return float(value)


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
    base = root / "server"
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        m = _TAG.match(folder.name)
        if not m or not folder.is_dir():
            continue
        status_path = folder / "status.json"
        status = _read_json(status_path)
        final = folder / "checkpoints" / "final.npz"
        out.append(
            ServerRecord(
                tag=folder.name,
                design=m["design"],
                epsilon=_epsilon(m["eps"]),
                retention_days=int(m["ret"]),
                status_file=str(status_path.relative_to(root)) if status is not None else None,
                status=status,
                checkpoint=str(final.relative_to(root)) if final.is_file() else None,
            )
        )
    return out


def _store_meta(root: Path) -> dict[tuple[int, str], tuple[str, dict[str, Any]]]:
    """``store.json`` (public metadata, no key material) of every force store."""
    found: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
    base = root / "stores"
    for window_dir in sorted(base.glob("retention-*d")) if base.is_dir() else []:
        days = int(window_dir.name.removeprefix("retention-").removesuffix("d"))
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
    plots = sorted(str(p.relative_to(root)) for p in (root / "plots").glob("*.png"))
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
