"""Quarantined input rows: ``quarantine/day=YYYY-MM-DD/rejects-<batch>.parquet.enc``.

Rows an ingest rejected are kept, encrypted under the day's key (so the purge erases them with
the day), one file per ingest batch, for an operator to inspect and correct.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa

from retention.keyring import day_scope
from retention.partitions import day_dir_name, days_under
from retention.sealed_files import SealedFileStore, check_name, table_to_parquet


class QuarantineStore(SealedFileStore):
    """Quarantine files of rejected rows (part of :class:`retention.store.ForceStore`)."""

    def quarantine_days(self) -> list[date]:
        """Sorted days that have quarantined (rejected) rows."""
        return days_under(self.root / "quarantine", None)

    def quarantine_path(self, day: date, batch: str) -> Path:
        """Path of one batch's quarantine file for ``day``."""
        return self.root / "quarantine" / day_dir_name(day) / f"rejects-{batch}.parquet.enc"

    def write_quarantine(self, day: date, batch: str, table: pa.Table) -> Path:
        """Encrypt rejected rows of ``day`` under the day's key (overwrites the same batch)."""
        check_name(batch, "quarantine batch")
        path = self.quarantine_path(day, batch)
        self._write_sealed(
            path,
            "quarantine",
            f"{day_scope(day)}|{batch}",
            day_scope(day),
            table_to_parquet(table),
        )
        return path

    def quarantine_batches(self, day: date) -> list[str]:
        """Names of ``day``'s quarantine batches (one per ingest that rejected rows of it)."""
        d = self.root / "quarantine" / day_dir_name(day)
        files = sorted(d.glob("rejects-*.parquet.enc")) if d.is_dir() else []
        return [p.name[len("rejects-") : -len(".parquet.enc")] for p in files]

    def read_quarantine_batch(self, day: date, batch: str) -> pa.Table:
        """One quarantine batch of ``day`` (row numbers, reasons and the raw content)."""
        return self._read_sealed_table(
            self.quarantine_path(day, batch),
            "quarantine",
            f"{day_scope(day)}|{batch}",
            day_scope(day),
        )[1]

    def read_quarantine(self, day: date) -> pa.Table | None:
        """All quarantined rows of ``day`` (row numbers, reasons and the raw content)."""
        tables = [self.read_quarantine_batch(day, b) for b in self.quarantine_batches(day)]
        return pa.concat_tables(tables, promote_options="default") if tables else None
