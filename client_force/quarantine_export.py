"""Export a store's quarantined (rejected) rows so an operator can correct and re-ingest them.

Ingest never drops a row: a row it cannot store goes, with its row number, reason and raw
content, into an encrypted quarantine file under its day's key (or the ingest day's, when the
row has no usable date), so the retention purge erases it with the day. This module decrypts
those files into one plain CSV **inside the force**: it holds raw VRMs and camera ids, so it is
written owner-only (mode 0600) and never overwrites a file. Its ``vrm``, ``camera_id`` and
``read_at`` columns are the export columns: correct the rows, then ``anprfed force ingest`` the
file again (the extra columns are ignored).

What the function returns (and the CLI prints) is counts per kind, reason and day, never a
value from a row.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from client_force.labels import LABEL_BATCH_PREFIX
from retention.store import ForceStore

KINDS = ("reads", "labels")


class QuarantineExportError(ValueError):
    """The export cannot be written (file exists, bad day range); no row content in it."""


@dataclass
class QuarantineExport:
    """What was exported: rows per kind, per reason and per day (counts only)."""

    out: Path | None
    rows: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_day: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return {
            "out": str(self.out) if self.out else None,
            "rows": self.rows,
            "by_kind": dict(self.by_kind),
            "by_reason": dict(self.by_reason),
            "by_day": dict(sorted(self.by_day.items())),
        }


def _kind_of(batch: str) -> str:
    return "labels" if batch.startswith(LABEL_BATCH_PREFIX) else "reads"


def quarantined_tables(
    store: ForceStore, kind: str, first: date | None = None, last: date | None = None
) -> list[tuple[date, pa.Table]]:
    """Decrypted quarantine tables of ``kind`` ("reads" or "labels") per day, oldest first."""
    if kind not in KINDS:
        raise QuarantineExportError(f"kind must be one of {KINDS}, got {kind!r}")
    out = []
    for day in store.quarantine_days():
        if (first and day < first) or (last and day > last):
            continue
        tables = [
            store.read_quarantine_batch(day, batch)
            for batch in store.quarantine_batches(day)
            if _kind_of(batch) == kind
        ]
        if tables:
            table = pa.concat_tables(tables, promote_options="default")
            if table.num_rows:
                out.append((day, table))
    return out


def export_quarantine(
    store: ForceStore,
    out: Path | None,
    kind: str = "reads",
    first: date | None = None,
    last: date | None = None,
) -> QuarantineExport:
    """Write the quarantined rows of ``kind`` between ``first`` and ``last`` to CSV ``out``.

    With ``out=None`` nothing is written and only the counts are returned.
    """
    if first and last and first > last:
        raise QuarantineExportError(f"--from {first} is after --to {last}")
    if out is not None and Path(out).exists():
        raise QuarantineExportError(f"{out} exists; choose a new file (it is never overwritten)")
    result = QuarantineExport(out=Path(out) if out else None)
    tables = []
    for day, table in quarantined_tables(store, kind, first, last):
        n = table.num_rows
        result.rows += n
        result.by_kind[kind] += n
        result.by_day[day.isoformat()] += n
        result.by_reason.update(table.column("reason").to_pylist())
        tables.append(
            table.add_column(0, "quarantine_day", pa.array([day.isoformat()] * n, pa.string()))
        )
    if out is not None:
        _write_private_csv(Path(out), tables)
    return result


def _write_private_csv(path: Path, tables: list[pa.Table]) -> None:
    """Create ``path`` owner-only and exclusively (never follows or replaces a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as sink:
        if tables:
            table = pa.concat_tables(tables, promote_options="default")
            pacsv.write_csv(table, sink)
        else:
            sink.write(b"quarantine_day,row_number,reason\n")
