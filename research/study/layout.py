"""``RunLayout``: where every file of a study's results folder lives, in one place.

The runner writes a results folder, and the membership audit (``research.audit``) and the DPIA
pack (``research.dpia``) read it back. They all ask this module for paths, the sweep-point tag
(``<design>-eps<e>-ret<w>d``) and the checkpoint names, instead of spelling them again::

    <root>/
      manifest.json  metrics.csv/.json  privacy_ledger.csv/.json  retention.csv/.json
      ingest.csv/.json  repeats.csv/.json (when the spec asks for repeats)
      world/                          the synthetic world (world.json, exports, truth)
      stores/retention-<w>d/<force>/  one encrypted force store per retention window
      keys/retention-<w>d/<force>.key the simulation's key files
      server/<tag>/                   one sweep point: status.json, checkpoints/final.npz (a
                                      shared model) or checkpoints/<force>/final.npz (one model
                                      per force, local-only), round checkpoints, node configs
      plots/*.png
      privacy/                        the membership audit and re-identification demo
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from server_national.checkpoint import FINAL_NAME

FINAL_CHECKPOINT = FINAL_NAME  # "final.npz": the server's name, used for every design
CHECKPOINTS = "checkpoints"
STATUS = "status.json"

_TAG = re.compile(r"^(?P<design>[a-z][a-z0-9-]*?)-eps(?P<eps>[0-9.e+-]+|inf)-ret(?P<ret>\d+)d$")


def eps_label(epsilon: float) -> str:
    """A printable epsilon ("inf" for non-private)."""
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def parse_epsilon(value: object) -> float:
    """An epsilon from a table cell or tag ("inf"/"infinity" for non-private)."""
    if isinstance(value, str):
        return math.inf if value.strip().lower() in ("inf", "infinity") else float(value)
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SweepTag:
    """One sweep point of a study: a design at an epsilon and a retention window."""

    design: str
    epsilon: float
    retention_days: int

    def __str__(self) -> str:
        return f"{self.design}-eps{eps_label(self.epsilon)}-ret{self.retention_days}d"

    @property
    def study_id(self) -> str:
        """The part of the ledger's study id after the study name."""
        return f"{self.design}/eps{eps_label(self.epsilon)}/ret{self.retention_days}d"

    @classmethod
    def parse(cls, name: str) -> SweepTag | None:
        """The tag a server folder is named with, or None if ``name`` is not one."""
        m = _TAG.match(name)
        if not m:
            return None
        return cls(m["design"], parse_epsilon(m["eps"]), int(m["ret"]))


@dataclass(frozen=True)
class RunLayout:
    """Paths of a results folder rooted at ``root`` (nothing is created or read here)."""

    root: Path

    MANIFEST = "manifest.json"
    METRICS = "metrics"
    LEDGER = "privacy_ledger"
    RETENTION = "retention"
    INGEST = "ingest"
    REPEATS = "repeats"
    WORLD = "world"
    PLOTS = "plots"
    SERVER = "server"
    STORES = "stores"
    KEYS = "keys"
    PRIVACY = "privacy"
    MEMBERSHIP_ROWS = "membership_inference"
    MEMBERSHIP_ROC = "membership_roc.json"
    MEMBERSHIP_AUDIT = "membership_audit.json"
    MEMBERSHIP_PLOT = "membership_inference_roc.png"
    REID = "reid.json"

    # --- tables (a stem: the same rows as .csv and .json) -------------------------------
    def table(self, stem: str) -> Path:
        """``<root>/<stem>`` without suffix (``write_table`` adds .csv and .json)."""
        return self.root / stem

    def csv(self, stem: str) -> Path:
        """``<root>/<stem>.csv``."""
        return self.root / f"{stem}.csv"

    @property
    def manifest(self) -> Path:
        """The run's manifest (spec, seeds, versions, timings, files)."""
        return self.root / self.MANIFEST

    @property
    def world_dir(self) -> Path:
        """The synthetic world's folder."""
        return self.root / self.WORLD

    @property
    def world_file(self) -> Path:
        """The world's settings and summary (``world/world.json``)."""
        return self.world_dir / "world.json"

    @property
    def plots_dir(self) -> Path:
        """Where the PNG figures go."""
        return self.root / self.PLOTS

    def plot(self, name: str) -> Path:
        """``plots/<name>``."""
        return self.plots_dir / name

    # --- per force and retention window ------------------------------------------------
    def stores_dir(self, retention_days: int) -> Path:
        """The folder holding every force's store for one retention window."""
        return self.root / self.STORES / f"retention-{retention_days}d"

    def store(self, retention_days: int, force: str) -> Path:
        """One force's store for one retention window."""
        return self.stores_dir(retention_days) / force

    def key_file(self, retention_days: int, force: str) -> Path:
        """The key file that opens :meth:`store`."""
        return self.root / self.KEYS / f"retention-{retention_days}d" / f"{force}.key"

    def store_windows(self) -> list[int]:
        """Retention windows with a stores folder, ascending."""
        base = self.root / self.STORES
        found = []
        for folder in base.glob("retention-*d") if base.is_dir() else []:
            days = folder.name.removeprefix("retention-").removesuffix("d")
            if days.isdigit() and folder.is_dir():
                found.append(int(days))
        return sorted(found)

    # --- sweep points ------------------------------------------------------------------
    @property
    def server_dir(self) -> Path:
        """Every sweep point's server folder lives under here."""
        return self.root / self.SERVER

    def sweep_dir(self, tag: SweepTag) -> Path:
        """``server/<tag>``: the sweep point's server outputs and checkpoints."""
        return self.server_dir / str(tag)

    def repeat_dir(self, tag: SweepTag, repeat: int = 0) -> Path:
        """Where one repeat of a sweep point writes: the sweep folder itself for repeat 0 (the
        study's own run, which the audits attack), ``server/<tag>/repeat-<r>`` otherwise."""
        return self.sweep_dir(tag) if repeat == 0 else self.sweep_dir(tag) / f"repeat-{repeat}"

    def checkpoints_dir(self, tag: SweepTag) -> Path:
        """``server/<tag>/checkpoints``."""
        return self.sweep_dir(tag) / CHECKPOINTS

    def checkpoint(self, tag: SweepTag, force: str | None = None) -> Path:
        """The final model: shared (``force`` None) or one force's own (local-only)."""
        return self.checkpoint_in(self.sweep_dir(tag), force)

    @staticmethod
    def checkpoint_in(sweep_dir: Path, force: str | None = None) -> Path:
        """The final model inside a sweep point's folder (shared, or ``force``'s own)."""
        base = Path(sweep_dir) / CHECKPOINTS
        return base / force / FINAL_CHECKPOINT if force else base / FINAL_CHECKPOINT

    def status(self, tag: SweepTag) -> Path:
        """The server's ``status.json`` for a sweep point."""
        return self.sweep_dir(tag) / STATUS

    def sweep_tags(self) -> list[tuple[SweepTag, Path]]:
        """Every ``server/<tag>`` folder present, sorted by folder name."""
        base = self.server_dir
        found = []
        for folder in sorted(base.iterdir()) if base.is_dir() else []:
            tag = SweepTag.parse(folder.name)
            if tag is not None and folder.is_dir():
                found.append((tag, folder))
        return found

    # --- audits ------------------------------------------------------------------------
    @property
    def privacy_dir(self) -> Path:
        """Where the membership audit and the re-identification demo write."""
        return self.root / self.PRIVACY

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, as text (for manifests and the DPIA)."""
        return str(Path(path).relative_to(self.root))
