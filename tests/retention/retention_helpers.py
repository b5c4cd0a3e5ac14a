"""Real force stores for the retention tests: a few vehicles over 40 days, and helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from privacy.keys import MasterSecretSource
from privacy.pseudonym import CameraTokeniser
from retention.store import ForceStore

PASSPHRASE = "retention-tests-passphrase"
START = date(2024, 1, 1)
N_DAYS = 40
VRMS = [f"AB{10 + i} C{chr(65 + i)}E" for i in range(6)]
CAMERAS = [f"CAM-{i:03d}" for i in range(5)]


def secret() -> MasterSecretSource:
    """The test stores' secret (cheap scrypt: recorded in the store, used to open it)."""
    return MasterSecretSource.from_passphrase(PASSPHRASE, scrypt_log2_n=4)


def open_store(root: Path) -> ForceStore:
    """Open a test store."""
    return ForceStore.open(root, secret())


def day(k: int) -> date:
    """The k-th day of the test stores (0 = 2024-01-01)."""
    return START + timedelta(days=k)


def as_of_expiring(k: int, max_age_days: int = 365) -> datetime:
    """The earliest as-of at which days 0..k-1 are expired and day k is not."""
    return datetime.combine(day(k), datetime.min.time(), tzinfo=UTC) + timedelta(days=max_age_days)


@dataclass
class BuiltStore:
    """What a test store holds, for assertions."""

    root: Path
    days: list[date]
    pseudonyms: set[str] = field(default_factory=set)
    camera_tokens: set[str] = field(default_factory=set)
    quarantine_days: list[date] = field(default_factory=list)
    derived_sources: dict[str, list[date]] = field(default_factory=dict)


def build_store(root: Path, n_days: int = N_DAYS, seed: int = 0) -> BuiltStore:
    """A store with reads of 6 vehicles on ``n_days`` days, 2 quarantine days, 3 derived sets."""
    rng = np.random.default_rng(seed)
    store = ForceStore.create(root, "testforce", secret())
    vehicles = store.pseudonymiser().pseudonymise(pa.array(VRMS))
    tokens = CameraTokeniser(store.master.camera_token_key()).tokens(pa.array(CAMERAS))
    built = BuiltStore(root=root, days=[day(k) for k in range(n_days)])
    built.pseudonyms = {str(v) for v in vehicles.to_pylist()}
    built.camera_tokens = {str(t) for t in tokens.to_pylist()}
    for d in built.days:
        n = 12
        start_us = int(datetime.combine(d, datetime.min.time(), tzinfo=UTC).timestamp() * 1e6)
        table = pa.table(
            {
                "vehicle": vehicles.take(pa.array(rng.integers(0, len(VRMS), n))),
                "camera": tokens.take(pa.array(rng.integers(0, len(CAMERAS), n))),
                "read_at": pa.array(
                    start_us + rng.integers(0, 86_400_000_000, n), pa.timestamp("us", tz="UTC")
                ),
            }
        )
        store.write_day(d, table)
    built.quarantine_days = [day(3), day(35)]
    for d in built.quarantine_days:
        store.write_quarantine(
            d, "batch1", pa.table({"row": [7, 9], "reason": ["bad read_at", "empty vrm"]})
        )
    built.derived_sources = {
        "features-early": built.days[:10],
        "features-late": built.days[-5:],
        "sequences-all": built.days,
    }
    for name, src in built.derived_sources.items():
        store.write_derived(name, pa.table({"x": np.arange(len(src))}), src)
    return built


def tree_digest(root: Path) -> str:
    """SHA-256 over every path, mode and content under ``root`` (directories included)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + oct(p.stat().st_mode).encode() + b"\0")
        if p.is_file():
            h.update(p.read_bytes())
        h.update(b"\1")
    return h.hexdigest()
