"""Load a force's intelligence log (convictions) into the store, pseudonymised.

Input (CSV, Parquet, or a DataFrame): ``vrm, offence_start, offence_end, conviction_date``.
Every row is stored, deduplicated, or rejected with one reason (quarantined, encrypted, under
the as-of day's key), and the report's counts add up to the input rows. Reasons, first wins:

``malformed_row``, ``missing_field`` (any of the four empty), ``bad_timestamp`` (a date that does
not parse), ``unreadable`` / ``non_uk`` (the VRM), ``inconsistent_dates`` (offence end before its
start, or conviction before the offence started), ``future`` (conviction after the as-of date or
offence starting at/after the as-of instant).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from client_force.export_reader import export_format, iter_export
from client_force.ingest import IngestReport, quarantine_batch_name
from client_force.validation import _array, parse_read_at
from client_force.vrm_memo import MISSING, NON_UK, OK, UNREADABLE, VrmMemo
from retention.store import LABELS_SCHEMA, ForceStore

LABEL_COLUMNS = ("vrm", "offence_start", "offence_end", "conviction_date")
LABEL_REASONS: tuple[str, ...] = (
    "malformed_row",
    "missing_field",
    "bad_timestamp",
    "unreadable",
    "non_uk",
    "inconsistent_dates",
    "future",
)
_CODE = {r: i + 1 for i, r in enumerate(LABEL_REASONS)}
US_PER_DAY = 86_400_000_000

LABEL_BATCH_PREFIX = "labels-"  # quarantine batches of a conviction log (rows of reads: no prefix)
LABELS_QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("row_number", pa.int64()),
        pa.field("reason", pa.string()),
        *[pa.field(c, pa.string()) for c in LABEL_COLUMNS],
        pa.field("raw_line", pa.string()),
    ]
)


def _assign(codes: np.ndarray, mask: np.ndarray, reason: str) -> None:
    codes[(codes == 0) & mask] = _CODE[reason]


def _validate(table: pa.Table, memo: VrmMemo, as_of_us: int) -> tuple[np.ndarray, pa.Table | None]:
    """Reason code per row (0 = valid) and the valid rows as a LABELS_SCHEMA table."""
    n = table.num_rows
    codes = np.zeros(n, dtype=np.int8)
    status, blocks = memo.lookup(_array(table["vrm"]))
    parsed = {c: parse_read_at(table[c]) for c in LABEL_COLUMNS[1:]}
    missing = status == MISSING
    bad_ts = np.zeros(n, dtype=bool)
    for _micros, ok, miss in parsed.values():
        missing |= miss
        bad_ts |= ~ok
    _assign(codes, missing, "missing_field")
    _assign(codes, bad_ts, "bad_timestamp")
    _assign(codes, status == UNREADABLE, "unreadable")
    _assign(codes, status == NON_UK, "non_uk")
    start, end, conv = (parsed[c][0] for c in LABEL_COLUMNS[1:])
    conv_day = conv // US_PER_DAY
    _assign(codes, (end < start) | (conv_day < start // US_PER_DAY), "inconsistent_dates")
    as_of_day = (as_of_us - 1) // US_PER_DAY
    _assign(codes, (conv_day > as_of_day) | (start >= as_of_us), "future")
    valid = np.flatnonzero((codes == 0) & (status == OK))
    if len(valid) == 0:
        return codes, None
    from privacy.pseudonym import BLOCK, blocks_to_hex

    vb = np.empty((len(valid), 2), dtype=">u8")
    vb[:] = blocks[valid]
    ts = pa.timestamp("us", tz="UTC")
    out = pa.table(
        {
            "vehicle": blocks_to_hex(vb.tobytes(), BLOCK),
            "offence_start": pa.array(start[valid]).cast(ts),
            "offence_end": pa.array(end[valid]).cast(ts),
            "conviction_date": pa.array(conv_day[valid].astype(np.int32), pa.int32()).cast(
                pa.date32()
            ),
        },
        schema=LABELS_SCHEMA,
    )
    return codes, out


def _ingest_chunks(
    store: ForceStore, chunks: Any, report: IngestReport, as_of: datetime
) -> IngestReport:
    t0 = time.perf_counter()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    as_of_us = int((as_of - epoch) / timedelta(microseconds=1))
    as_of_day: date = (as_of - timedelta(microseconds=1)).date()
    memo = VrmMemo(store.pseudonymiser())
    good: list[pa.Table] = []
    rejects: list[pa.Table] = []
    for chunk in chunks:
        report.input_rows += chunk.table.num_rows + len(chunk.malformed)
        if chunk.malformed:
            rows = np.array([m.row_number for m in chunk.malformed], dtype=np.int64)
            report.add_rejects("malformed_row", rows)
            k = len(rows)
            rejects.append(
                pa.table(
                    {
                        "row_number": pa.array(rows),
                        "reason": pa.array(["malformed_row"] * k, pa.string()),
                        **{c: pa.nulls(k, pa.string()) for c in LABEL_COLUMNS},
                        "raw_line": pa.array([m.text for m in chunk.malformed], pa.string()),
                    },
                    schema=LABELS_QUARANTINE_SCHEMA,
                )
            )
        if chunk.table.num_rows == 0:
            continue
        codes, valid = _validate(chunk.table, memo, as_of_us)
        if valid is not None:
            good.append(valid)
        bad = np.flatnonzero(codes != 0)
        if len(bad):
            for code in np.unique(codes[bad]):
                report.add_rejects(LABEL_REASONS[code - 1], chunk.row_numbers[codes == code])
            sel = chunk.table.take(pa.array(bad))
            rejects.append(
                pa.table(
                    {
                        "row_number": pa.array(chunk.row_numbers[bad]),
                        "reason": pa.array(
                            np.asarray(LABEL_REASONS, dtype=object)[codes[bad] - 1], pa.string()
                        ),
                        **{c: sel[c].cast(pa.string()) for c in LABEL_COLUMNS},
                        "raw_line": pa.nulls(len(bad), pa.string()),
                    },
                    schema=LABELS_QUARANTINE_SCHEMA,
                )
            )
    if good:
        added, dups = store.write_labels(pa.concat_tables(good))
        report.stored += added
        report.duplicates += dups
    if rejects:
        table = pa.concat_tables(rejects).sort_by("row_number")
        batch = LABEL_BATCH_PREFIX + quarantine_batch_name(store, as_of_day, table)
        store.write_quarantine(as_of_day, batch, table)
        report.quarantine_files = 1
    report.distinct_vrms_hashed = memo.hashed
    report.seconds = time.perf_counter() - t0
    report.check()
    store.append_log("ingest", {"event": "labels", **report.to_dict()})
    return report


def _new_report(name: str, fmt: str, as_of: datetime) -> IngestReport:
    return IngestReport(
        export=name, format=fmt, as_of=as_of.isoformat(), max_age_days=0, reasons=LABEL_REASONS
    )


def ingest_labels(
    store: ForceStore, path: Path, as_of: datetime | None = None, lock_timeout: float = 0.0
) -> IngestReport:
    """Load an intelligence-log file (CSV or Parquet) into ``store``; holds the store lock."""
    path = Path(path)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    report = _new_report(path.name, export_format(path), as_of)
    with store.lock("labels", timeout=lock_timeout):
        store.refresh()
        store.check_tree()
        store.clean_interrupted_writes()
        return _ingest_chunks(store, iter_export(path, columns=LABEL_COLUMNS), report, as_of)


def ingest_labels_frame(
    store: ForceStore,
    frame: pd.DataFrame,
    as_of: datetime | None = None,
    lock_timeout: float = 0.0,
) -> IngestReport:
    """Load an intelligence log given as a DataFrame (same columns); rows numbered from 1."""
    from client_force.export_reader import ExportChunk, ExportReadError

    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise ExportReadError(f"labels frame: missing required column(s): {', '.join(missing)}")
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    cols = {}
    for c in LABEL_COLUMNS:
        s = frame[c]
        if c == "vrm" or not (
            pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_object_dtype(s)
        ):
            cols[c] = pa.array(s.astype("string").to_numpy(na_value=None), pa.string())
        else:
            cols[c] = pa.array(s, from_pandas=True)
            if pa.types.is_null(cols[c].type):
                cols[c] = cols[c].cast(pa.string())
            elif not (
                pa.types.is_timestamp(cols[c].type)
                or pa.types.is_date(cols[c].type)
                or pa.types.is_string(cols[c].type)
            ):
                cols[c] = pa.array([None if v is None else str(v) for v in cols[c].to_pylist()])
    table = pa.table(cols)
    chunk = ExportChunk(table, np.arange(1, len(frame) + 1, dtype=np.int64), [])
    report = _new_report("<frame>", "frame", as_of)
    with store.lock("labels", timeout=lock_timeout):
        store.refresh()
        store.check_tree()
        store.clean_interrupted_writes()
        return _ingest_chunks(store, [chunk], report, as_of)
