"""What a force store holds, as counts: days, reads, vehicles, bytes, key epoch.

Reading the counts decrypts every partition (each is authenticated on the way), so ``status``
doubles as an integrity check of the whole store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from client_force.private_training import ledger_health
from retention.store import ForceStore

_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class StoreStatus:
    """Counts only: no pseudonym, camera token or coordinate."""

    force: str
    key_epoch: int
    rotation_pending: bool
    days_held: int
    first_day: str | None
    last_day: str | None
    oldest_read: str | None
    newest_read: str | None
    reads: int
    vehicles: int
    cameras: int
    quarantine_days: int
    quarantine_files: int
    labels: int
    derived_artifacts: int
    keys_in_keyring: int
    stale_epoch_keys: int  # > 0: an interrupted rotation left an old key; run rotate-key
    bytes: int
    # each privacy ledger checked against its key and its anchor (truncation, rollback)
    privacy_ledgers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def store_status(store: ForceStore) -> StoreStatus:
    """Compute the status of ``store`` (decrypts and authenticates every partition).

    ``vehicles`` counts distinct pseudonyms across all days by a 64-bit fold of each 128-bit
    pseudonym, exact unless two of the n vehicles collide (probability below n^2 / 2^65).
    """
    days = store.days()
    seen = _DistinctCounter()
    reads = 0
    oldest = newest = None
    for day in days:
        block = store.read_day_block(day)
        if not len(block):
            continue
        reads += len(block)
        with np.errstate(over="ignore"):
            folded = block.vehicle_hi ^ (block.vehicle_lo * _MIX)
        seen.add(folded)
        lo, hi = int(block.read_at.min()), int(block.read_at.max())
        oldest = lo if oldest is None else min(oldest, lo)
        newest = hi if newest is None else max(newest, hi)
    q_days = store.quarantine_days()
    q_files = sum(1 for d in q_days for p in store.day_files(d) if p.name.startswith("rejects-"))
    labels = store.read_labels()
    return StoreStatus(
        force=store.force,
        key_epoch=store.key_epoch,
        rotation_pending=store.rotation_pending is not None,
        days_held=len(days),
        first_day=days[0].isoformat() if days else None,
        last_day=days[-1].isoformat() if days else None,
        oldest_read=_iso(oldest),
        newest_read=_iso(newest),
        reads=reads,
        vehicles=seen.count(),
        cameras=len(store.read_cameras()),
        quarantine_days=len(q_days),
        quarantine_files=q_files,
        labels=0 if labels is None else len(labels),
        derived_artifacts=len(store.derived_artifacts()),
        keys_in_keyring=len(store.keyring.entries()),
        stale_epoch_keys=len(store.stale_epoch_key_ids()),
        bytes=store.bytes_on_disk(),
        privacy_ledgers=ledger_health(store),
    )


class _DistinctCounter:
    """Counts distinct uint64 values fed in chunks (``pandas.unique``, amortised merges)."""

    def __init__(self) -> None:
        self._unique = np.empty(0, dtype=np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def add(self, values: np.ndarray) -> None:
        """Add a chunk of values."""
        chunk = pd.unique(values)
        self._pending.append(chunk)
        self._pending_rows += len(chunk)
        if self._pending_rows > max(1 << 20, len(self._unique)):
            self._merge()

    def _merge(self) -> None:
        self._unique = pd.unique(np.concatenate([self._unique, *self._pending]))
        self._pending, self._pending_rows = [], 0

    def count(self) -> int:
        """How many distinct values were added."""
        self._merge()
        return len(self._unique)


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    import pyarrow as pa

    scalar = pc.cast(pa.scalar(micros, pa.int64()), pa.timestamp("us", tz="UTC"))
    return scalar.as_py().isoformat()
