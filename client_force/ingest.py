"""Ingest a raw force export into the encrypted store: stream, validate, pseudonymise, merge.

Every input row ends in exactly one place: stored, deduplicated, or rejected with a reason
(and quarantined, encrypted, under a day key). :class:`IngestReport` counts them and
:meth:`IngestReport.check` refuses a report whose counts do not add up to the input rows.

Memory is bounded: the export is read in chunks; validated reads are buffered per UTC day and,
when the buffer passes ``flush_rows`` (and at the end), each day is merged with its existing
partition (exact de-duplication, so re-ingesting is idempotent) and written atomically. A crash
leaves complete partitions and stray temp files only; the next ingest removes the temp files
and de-duplicates what was already merged.
"""

from __future__ import annotations

import hmac
import io
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from client_force.camera_register import default_register_path, load_register, tokens_as_uint64
from client_force.export_reader import (
    DEFAULT_BLOCK_BYTES,
    ExportChunk,
    ExportReadError,
    export_format,
    iter_export,
)
from client_force.validation import CODE, OK, REASONS, ChunkValidator
from privacy.pseudonym import CameraTokeniser
from retention.keyring import day_scope
from retention.read_block import ReadBlock
from retention.store import ForceStore

__all__ = [
    "DEFAULT_MAX_AGE_DAYS",
    "QUARANTINE_SCHEMA",
    "AccountingError",
    "ExportReadError",
    "IngestError",
    "IngestReport",
    "ingest_export",
    "quarantine_batch_name",
]

DEFAULT_MAX_AGE_DAYS = 365
DEFAULT_FLUSH_ROWS = 4_000_000
ROW_SAMPLE = 20  # row numbers per reason shown in reports (all of them are in the quarantine)
LABEL_QUARANTINE_NAMES = b"anprfed/v1/quarantine-batch-names"
US_PER_DAY = 86_400_000_000

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("row_number", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("vrm", pa.string()),
        pa.field("camera_id", pa.string()),
        pa.field("read_at", pa.string()),
        pa.field("raw_line", pa.string()),
    ]
)


class IngestError(Exception):
    """Ingest cannot proceed (no camera register, bad options); message has no raw values."""


class AccountingError(IngestError):
    """Counts do not add up to the input rows (a bug: the report is refused)."""


@dataclass
class IngestReport:
    """Counts of one ingest. Rows are identified by 1-based row number, never by value."""

    export: str
    format: str
    as_of: str
    max_age_days: int
    input_rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_row_numbers: dict[str, list[int]] = field(default_factory=dict)
    days_written: list[str] = field(default_factory=list)
    quarantine_files: int = 0
    cameras_in_register: int = 0
    distinct_vrms_hashed: int = 0
    seconds: float = 0.0
    reasons: tuple[str, ...] = REASONS

    @property
    def rejected(self) -> int:
        """All rejected rows (every one is quarantined)."""
        return sum(self.rejected_by_reason.values())

    @property
    def accounted(self) -> bool:
        """Whether ``input_rows == stored + duplicates + rejected``."""
        return self.input_rows == self.stored + self.duplicates + self.rejected

    def check(self) -> None:
        """Raise :class:`AccountingError` unless every input row is accounted for."""
        if not self.accounted:
            raise AccountingError(
                f"ingest accounting mismatch: {self.input_rows} input rows but "
                f"{self.stored} stored + {self.duplicates} duplicates + {self.rejected} rejected"
            )

    def add_rejects(self, reason: str, rows: np.ndarray) -> None:
        """Count rejected rows of one reason and keep the first row numbers for the report."""
        if len(rows) == 0:
            return
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + len(rows)
        sample = self.rejected_row_numbers.setdefault(reason, [])
        if len(sample) < ROW_SAMPLE:
            sample.extend(int(r) for r in np.sort(rows)[: ROW_SAMPLE - len(sample)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (counts, row numbers and days only)."""
        return {
            "export": self.export,
            "format": self.format,
            "as_of": self.as_of,
            "max_age_days": self.max_age_days,
            "input_rows": self.input_rows,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejected_by_reason": {r: self.rejected_by_reason.get(r, 0) for r in self.reasons},
            "rejected_row_numbers": {
                r: sorted(v) for r, v in sorted(self.rejected_row_numbers.items())
            },
            "row_numbers_shown_per_reason": ROW_SAMPLE,
            "days_written": self.days_written,
            "quarantine_files": self.quarantine_files,
            "cameras_in_register": self.cameras_in_register,
            "distinct_vrms_hashed": self.distinct_vrms_hashed,
            "accounted": self.accounted,
            "seconds": round(self.seconds, 3),
        }


def _day_of(micros: int) -> date:
    return date(1970, 1, 1) + timedelta(days=micros // US_PER_DAY)


def quarantine_batch_name(store: ForceStore, day: date, table: pa.Table) -> str:
    """Content-derived quarantine file name (keyed, so it reveals nothing about the rows).

    The same rejected rows give the same name, so re-ingesting an export overwrites its own
    quarantine file instead of adding a copy.
    """
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    key = store.master.derive(LABEL_QUARANTINE_NAMES)
    return hmac.new(key, day.isoformat().encode() + sink.getvalue(), sha256).hexdigest()[:20]


class _Quarantine:
    """Collects rejected rows (raw content, memory only) per quarantine day."""

    def __init__(self, as_of_day: date) -> None:
        self.as_of_day = as_of_day
        self.parts: dict[date, list[pa.Table]] = defaultdict(list)

    def add_malformed(self, chunk: ExportChunk) -> None:
        if not chunk.malformed:
            return
        n = len(chunk.malformed)
        self.parts[self.as_of_day].append(
            pa.table(
                {
                    "row_number": pa.array([m.row_number for m in chunk.malformed], pa.int64()),
                    "reason": pa.array(["malformed_row"] * n, pa.string()),
                    "vrm": pa.nulls(n, pa.string()),
                    "camera_id": pa.nulls(n, pa.string()),
                    "read_at": pa.nulls(n, pa.string()),
                    "raw_line": pa.array([m.text for m in chunk.malformed], pa.string()),
                },
                schema=QUARANTINE_SCHEMA,
            )
        )

    def add_rows(
        self,
        table: pa.Table,
        rows: np.ndarray,
        codes: np.ndarray,
        read_at_us: np.ndarray,
        ts_ok: np.ndarray,
        future_code: int,
    ) -> None:
        bad = np.flatnonzero(codes != OK)
        if len(bad) == 0:
            return
        sel = table.take(pa.array(bad))
        reasons = np.asarray(REASONS, dtype=object)[codes[bad] - 1]
        # Rows with a usable day are quarantined under that day (so they are purged with it);
        # the rest (and future rows) under the as-of day.
        own_day = ts_ok[bad] & (codes[bad] != future_code)
        as_of_dn = (self.as_of_day - date(1970, 1, 1)).days
        day_numbers = np.where(own_day, read_at_us[bad] // US_PER_DAY, as_of_dn)
        qt = pa.table(
            {
                "row_number": pa.array(rows[bad], pa.int64()),
                "reason": pa.array(reasons, pa.string()),
                "vrm": sel["vrm"].cast(pa.string()),
                "camera_id": sel["camera_id"].cast(pa.string()),
                "read_at": sel["read_at"].cast(pa.string()),
                "raw_line": pa.nulls(len(bad), pa.string()),
            },
            schema=QUARANTINE_SCHEMA,
        )
        for dn in np.unique(day_numbers):
            mask = day_numbers == dn
            self.parts[date(1970, 1, 1) + timedelta(days=int(dn))].append(qt.filter(pa.array(mask)))

    def write(self, store: ForceStore) -> int:
        files = 0
        for day in sorted(self.parts):
            table = pa.concat_tables(self.parts[day]).sort_by("row_number")
            store.write_quarantine(day, quarantine_batch_name(store, day, table), table)
            files += 1
        return files


class _DayBuffer:
    """Validated reads per UTC day; merged into their partitions when the buffer fills.

    When more than ``flush_rows`` reads are buffered, days absent from the latest chunk
    (finished, in a time-ordered export) are merged into their partitions first, then the rest
    if still needed. Merging a day twice in one ingest is correct (the second merge
    de-duplicates against the first), so an unordered export only costs extra rewrites.
    """

    def __init__(self, store: ForceStore, report: IngestReport, flush_rows: int) -> None:
        self.store = store
        self.report = report
        self.flush_rows = flush_rows
        self.blocks: dict[int, list[ReadBlock]] = defaultdict(list)
        self.rows = 0

    def add(self, reads: ReadBlock) -> None:
        if not len(reads):
            return
        days = reads.days()
        if days[0] == days[-1] and bool(np.all(days == days[0])):
            latest = {int(days[0])}
            self.blocks[int(days[0])].append(reads)
        else:
            order = np.argsort(days, kind="stable")
            sd = days[order]
            cuts = np.flatnonzero(sd[1:] != sd[:-1]) + 1
            latest = set()
            for part in np.split(order, cuts):
                dn = int(days[part[0]])
                latest.add(dn)
                self.blocks[dn].append(reads.take(part))
        self.rows += len(reads)
        if self.rows > self.flush_rows:
            self.prepare_keys(sorted(self.blocks))
            for dn in sorted(set(self.blocks) - latest):
                self.merge(dn)
            if self.rows > self.flush_rows // 2:
                for dn in sorted(self.blocks):
                    self.merge(dn)

    def merge(self, dn: int) -> None:
        """Merge one buffered day into its partition (atomic write) and count the outcome."""
        block = ReadBlock.concat(self.blocks.pop(dn, []))
        self.rows -= len(block)
        day = _dn_date(dn)
        added, dups = self.store.merge_day_block(day, block)
        self.report.stored += added
        self.report.duplicates += dups
        if added and day.isoformat() not in self.report.days_written:
            self.report.days_written.append(day.isoformat())

    def merge_all(self) -> None:
        self.prepare_keys(sorted(self.blocks))
        for dn in sorted(self.blocks):
            self.merge(dn)

    def prepare_keys(self, dns: list[int]) -> None:
        """Create the data keys of every day about to be written in one keyring rewrite."""
        self.store.keyring.ensure_scopes([day_scope(_dn_date(dn)) for dn in dns])


def _dn_date(dn: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(dn))


def ingest_export(
    store: ForceStore,
    export: Path,
    cameras: Path | None = None,
    as_of: datetime | None = None,
    max_age_days: int = DEFAULT_MAX_AGE_DAYS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    flush_rows: int = DEFAULT_FLUSH_ROWS,
    lock_timeout: float = 0.0,
) -> IngestReport:
    """Ingest one export (CSV or Parquet) into ``store``; see the module docstring.

    ``cameras`` defaults to ``cameras.parquet``/``cameras.csv`` beside the export; without
    one, the store's existing register is used. ``as_of`` (aware datetime, default now) decides
    ``future`` and ``past_retention``. Holds the store lock throughout.
    """
    t0 = time.perf_counter()
    export = Path(export)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    if max_age_days < 1:
        raise IngestError("--max-age-days must be at least 1")
    fmt = export_format(export)
    if not export.is_file():
        raise ExportReadError(f"{export}: no such file")
    report = IngestReport(
        export=export.name, format=fmt, as_of=as_of.isoformat(), max_age_days=max_age_days
    )
    with store.lock("ingest", timeout=lock_timeout):
        store.refresh()
        store.check_tree()
        store.clean_interrupted_writes()
        tokeniser = CameraTokeniser(store.master.camera_token_key())
        register = cameras if cameras is not None else default_register_path(export)
        if register is not None:
            reg_table, _ = load_register(register, tokeniser)
            store.write_cameras(reg_table)
        known = tokens_as_uint64(store.read_cameras())
        report.cameras_in_register = len(known)
        if len(known) == 0:
            raise IngestError(
                "no camera register: pass --cameras (camera_id, lat, lon, road_class) or put "
                "cameras.parquet / cameras.csv beside the export"
            )
        validator = ChunkValidator(store.pseudonymiser(), tokeniser, known, as_of, max_age_days)
        as_of_day = (as_of - timedelta(microseconds=1)).date()
        quarantine = _Quarantine(as_of_day)
        buffer = _DayBuffer(store, report, flush_rows)
        for chunk in iter_export(export, block_bytes=block_bytes):
            report.input_rows += chunk.table.num_rows + len(chunk.malformed)
            if chunk.malformed:
                rows = np.array([m.row_number for m in chunk.malformed], dtype=np.int64)
                report.add_rejects("malformed_row", rows)
                quarantine.add_malformed(chunk)
            if chunk.table.num_rows == 0:
                continue
            v = validator.validate(chunk.table)
            bad = v.codes != OK
            if bad.any():
                for code in np.unique(v.codes[bad]):
                    report.add_rejects(REASONS[int(code) - 1], chunk.row_numbers[v.codes == code])
                quarantine.add_rows(
                    chunk.table,
                    chunk.row_numbers,
                    v.codes,
                    v.read_at_us,
                    v.ts_ok,
                    CODE["future"],
                )
            buffer.add(v.reads)
        buffer.merge_all()
        report.days_written.sort()
        report.quarantine_files = quarantine.write(store)
        report.distinct_vrms_hashed = validator.hashed
        report.seconds = time.perf_counter() - t0
        report.check()
        store.append_log("ingest", {"event": "ingest", **report.to_dict()})
    return report
