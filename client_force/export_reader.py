"""Streaming reader for a force's raw exports (CSV or Parquet) in bounded-memory chunks.

An export has the columns ``vrm``, ``camera_id`` and ``read_at`` (extra columns are ignored).
Each chunk carries the 1-based *row number* of every row: the data row's position in the file
(the first row after a CSV header is row 1; a Parquet file's first row is row 1). CSV lines with
the wrong number of fields are not dropped: they come back as :class:`MalformedRow` with their
row number, so every input row is accounted for.

Errors name the file and at most a row number; they never quote file content, because the
content is raw VRMs (pyarrow's own messages quote values, so they are never passed on).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

EXPORT_COLUMNS = ("vrm", "camera_id", "read_at")
# CSV bytes per chunk (~100k reads). Arrow's streaming reader reads ~32 blocks ahead, so this
# also bounds the reader's memory (~130 MiB); smaller blocks cost per-chunk overhead.
DEFAULT_BLOCK_BYTES = 4 << 20
DEFAULT_PARQUET_BATCH_ROWS = 500_000


class ExportReadError(Exception):
    """The export file cannot be read (missing, corrupt, wrong format or columns)."""


@dataclass(frozen=True)
class MalformedRow:
    """A CSV line that does not have the header's number of fields (kept for quarantine)."""

    row_number: int
    text: str = field(repr=False)


@dataclass
class ExportChunk:
    """One chunk: the export columns (strings, or a timestamp ``read_at`` from Parquet)."""

    table: pa.Table
    row_numbers: np.ndarray  # int64, 1-based, one per table row
    malformed: list[MalformedRow]


def export_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name (``.csv[.gz]``, ``.parquet``, ``.pq``)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".txt")):
        return "csv"
    raise ExportReadError(f"{path}: unknown export format (expected .csv or .parquet)")


def iter_export(
    path: Path,
    columns: tuple[str, ...] = EXPORT_COLUMNS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    parquet_batch_rows: int = DEFAULT_PARQUET_BATCH_ROWS,
) -> Iterator[ExportChunk]:
    """Yield the export in chunks; :class:`ExportReadError` names the file on any failure."""
    path = Path(path)
    if not path.is_file():
        raise ExportReadError(f"{path}: no such file")
    if export_format(path) == "parquet":
        yield from _iter_parquet(path, columns, parquet_batch_rows)
    else:
        yield from _iter_csv(path, columns, block_bytes)


def _check_columns(path: Path, names: list[str], columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ExportReadError(f"{path}: missing required column(s): {', '.join(missing)}")


def _iter_parquet(path: Path, columns: tuple[str, ...], batch_rows: int) -> Iterator[ExportChunk]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError):
        raise ExportReadError(f"{path}: not a readable Parquet file (corrupt?)") from None
    _check_columns(path, pf.schema_arrow.names, columns)
    start = 1
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            yield ExportChunk(table, np.arange(start, start + n, dtype=np.int64), [])
            start += n
    except (pa.ArrowException, OSError):
        raise ExportReadError(
            f"{path}: corrupt Parquet data after row {start - 1}; nothing after it was read"
        ) from None


def _iter_csv(path: Path, columns: tuple[str, ...], block_bytes: int) -> Iterator[ExportChunk]:
    pending: list[MalformedRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # Single-threaded reading gives the physical line number; line 1 is the header.
        number = int(row.number) - 1 if row.number is not None else -1
        pending.append(MalformedRow(number, row.text))
        return "skip"

    def open_reader(include: list[str] | None) -> pacsv.CSVStreamingReader:
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_bytes, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                include_columns=include,
                strings_can_be_null=False,
            ),
        )

    try:
        reader = open_reader(list(columns))
    except KeyError:  # pyarrow's ArrowKeyError: a column of include_columns is not in the header
        try:
            names = open_reader(None).schema.names
        except (pa.ArrowException, OSError, UnicodeDecodeError):
            names = []
        _check_columns(path, names, columns)
        raise ExportReadError(f"{path}: unreadable CSV header") from None
    except (pa.ArrowException, OSError, UnicodeDecodeError):
        raise ExportReadError(f"{path}: not a readable CSV file (corrupt or empty?)") from None
    tracker = _RowNumbers()
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowException, OSError, UnicodeDecodeError):
            raise ExportReadError(
                f"{path}: corrupt CSV data after row {tracker.records}; nothing after it was read"
            ) from None
        bad, pending[:] = list(pending), []
        if any(r.row_number < 0 for r in bad):  # pragma: no cover - single-threaded reader
            raise ExportReadError(f"{path}: cannot number malformed CSV rows")
        table = pa.Table.from_batches([batch]).select(list(columns))
        yield ExportChunk(table, tracker.next_chunk(table.num_rows, bad), bad)
    if pending:
        bad = list(pending)
        empty = pa.table({c: pa.array([], pa.string()) for c in columns})
        yield ExportChunk(empty, tracker.next_chunk(0, bad), bad)


class _RowNumbers:
    """Numbers valid CSV rows around the malformed ones (which pyarrow numbers itself).

    The k-th valid row overall (0-based) is row ``k + 1 + j``, where ``j`` counts malformed rows
    before it; the i-th malformed row (by number ``m_i``) has ``m_i - 1 - i`` valid rows before
    it. Malformed rows may be reported a block early (read-ahead); that does not matter, since
    every number is absolute.
    """

    def __init__(self) -> None:
        self.valid = 0
        self.bad: list[int] = []

    @property
    def records(self) -> int:
        """Rows (valid and malformed) numbered so far."""
        return self.valid + len(self.bad)

    def next_chunk(self, n_valid: int, bad: list[MalformedRow]) -> np.ndarray:
        """Row numbers of the next ``n_valid`` valid rows, given newly seen malformed rows."""
        if bad:
            self.bad = sorted(self.bad + [r.row_number for r in bad])
        k = np.arange(self.valid, self.valid + n_valid, dtype=np.int64)
        self.valid += n_valid
        if not self.bad:
            return k + 1
        m = np.asarray(self.bad, dtype=np.int64)
        valid_before_bad = m - 1 - np.arange(len(m))
        return k + 1 + np.searchsorted(valid_before_bad, k, side="right")
