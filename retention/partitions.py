"""Day partitions of a force store: ``partitions/day=YYYY-MM-DD/reads.parquet.enc``.

Each day's reads (vehicle pseudonym, camera token, read time) are one sealed Parquet file under
the day's data key (scope ``day:YYYY-MM-DD``), bound to the day and to the pseudonym epoch.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from retention.keyring import day_scope
from retention.read_block import READS_SCHEMA, ReadBlock
from retention.sealed_files import SealedFileStore
from retention.store_errors import PartitionIntegrityError, StoreError

PARTITION_NAME = "reads.parquet.enc"
DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")


def day_dir_name(day: date) -> str:
    """The folder name of ``day`` (``day=YYYY-MM-DD``)."""
    return f"day={day.isoformat()}"


def days_under(base: Path, filename: str | None) -> list[date]:
    """Sorted days with a ``day=YYYY-MM-DD`` folder under ``base`` holding data.

    With ``filename``, a day counts when that file exists in its folder; without, when the
    folder holds any ``*.parquet.enc`` file. Nothing is decrypted (no key needed).
    """
    out: list[date] = []
    if not base.is_dir():
        return out
    for d in base.iterdir():
        m = DAY_DIR.match(d.name)
        if not m or not d.is_dir():
            continue
        if filename is not None and not (d / filename).is_file():
            continue
        if filename is None and not any(d.glob("*.parquet.enc")):
            continue
        with contextlib.suppress(ValueError):
            out.append(date.fromisoformat(m.group(1)))
    return sorted(out)


def reads_to_parquet(block: ReadBlock) -> bytes:
    """A day's reads in their on-disk form. Pseudonyms are random bytes (nothing to compress),
    camera tokens are dictionary-encoded and the time-ordered ``read_at`` delta-encoded, so a
    general-purpose codec would only cost time."""
    sink = io.BytesIO()
    pq.write_table(
        block.to_storage_table(),
        sink,
        compression="none",
        use_dictionary=["camera"],
        column_encoding={"read_at": "DELTA_BINARY_PACKED"},
        write_statistics=False,
    )
    return sink.getvalue()


def storage_block(path: Path, table: pa.Table) -> ReadBlock:
    """A decrypted partition table as a :class:`ReadBlock` (integrity error if malformed)."""
    try:
        return ReadBlock.from_storage_table(table)
    except (ValueError, KeyError, pa.ArrowException):
        raise PartitionIntegrityError(path, "content does not have the reads schema") from None


class PartitionStore(SealedFileStore):
    """Reading and merging day partitions (part of :class:`retention.store.ForceStore`)."""

    def partition_path(self, day: date) -> Path:
        """Path of ``day``'s reads partition (it may not exist)."""
        return self.root / "partitions" / day_dir_name(day) / PARTITION_NAME

    def days(self) -> list[date]:
        """Sorted days that have a reads partition."""
        return days_under(self.root / "partitions", PARTITION_NAME)

    def read_day_block(self, day: date) -> ReadBlock:
        """One day's reads in numeric form (empty if the day has no partition)."""
        self._check_not_rotating()
        path = self.partition_path(day)
        if not path.exists():
            return ReadBlock.empty()
        _, table = self._read_sealed_table(
            path, "reads", day_scope(day), day_scope(day), {self.key_epoch}
        )
        return storage_block(path, table)

    def read_day(self, day: date, columns: list[str] | None = None) -> pa.Table:
        """One day's reads (vehicle, camera, read_at); ``PartitionIntegrityError`` if tampered.

        A day without a partition gives an empty table.
        """
        self._check_not_rotating()
        path = self.partition_path(day)
        if not path.exists():
            table = READS_SCHEMA.empty_table()
        else:
            _, stored = self._read_sealed_table(
                path, "reads", day_scope(day), day_scope(day), {self.key_epoch}
            )
            try:
                table = ReadBlock.storage_to_api(stored)
            except (ValueError, KeyError, pa.ArrowException):
                raise PartitionIntegrityError(path, "content is not a reads table") from None
        return table.select(columns) if columns else table

    def read_days(
        self, days: list[date] | None = None, columns: list[str] | None = None
    ) -> Iterator[tuple[date, pa.Table]]:
        """Yield ``(day, table)`` for each requested day (all partition days if ``None``)."""
        for day in sorted(self.days() if days is None else days):
            yield day, self.read_day(day, columns)

    def read_reads(self, start: date | None = None, end: date | None = None) -> pa.Table:
        """All reads of partition days in ``[start, end]`` (inclusive) concatenated."""
        days = [
            d for d in self.days() if (start is None or d >= start) and (end is None or d <= end)
        ]
        tables = [t for _, t in self.read_days(days)]
        return pa.concat_tables(tables) if tables else READS_SCHEMA.empty_table()

    def write_day(self, day: date, table: pa.Table) -> tuple[int, int]:
        """Merge ``table`` into ``day``'s partition atomically; returns ``(added, duplicates)``.

        Rows must all fall on ``day`` (UTC). Existing and new rows are de-duplicated exactly,
        so writing the same rows again adds nothing.
        """
        return self.merge_day_block(day, ReadBlock.from_table(table))

    def merge_day_block(self, day: date, block: ReadBlock) -> tuple[int, int]:
        """As :meth:`write_day` for a :class:`ReadBlock`; returns ``(added, duplicates)``."""
        self._check_not_rotating()
        if len(block):
            days = block.days()
            want = (day - date(1970, 1, 1)).days
            if int(days.min()) != want or int(days.max()) != want:
                raise StoreError(f"rows given for {day} fall on other days")
        existing = self.read_day_block(day)
        merged = ReadBlock.concat([existing, block]).sorted_unique()
        added = len(merged) - len(existing)
        if added:
            self._write_sealed(
                self.partition_path(day),
                "reads",
                day_scope(day),
                day_scope(day),
                reads_to_parquet(merged),
                self.key_epoch,
            )
        return added, len(block) - added
