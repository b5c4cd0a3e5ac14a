"""The force's camera register: load it, tokenise the camera ids, keep it encrypted.

Input (CSV or Parquet): ``camera_id, lat, lon, road_class``. The raw ids never reach the store:
each becomes its keyed token (:class:`privacy.pseudonym.CameraTokeniser`), and the register is
stored as ``token, lat, lon, road_class`` in ``cameras/register.parquet.enc``. Errors name the
file and row numbers, never an id or a coordinate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client_force.export_reader import ExportReadError, iter_export
from privacy.pseudonym import TOKEN_BYTES, CameraTokeniser, blocks_to_hex

REGISTER_COLUMNS = ("camera_id", "lat", "lon", "road_class")
DEFAULT_NAMES = ("cameras.parquet", "cameras.csv")
_MAX_ROWS_IN_MESSAGE = 10


def default_register_path(export: Path) -> Path | None:
    """``cameras.parquet`` or ``cameras.csv`` beside the export, if one exists."""
    for name in DEFAULT_NAMES:
        p = Path(export).parent / name
        if p.is_file():
            return p
    return None


def _rows_text(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_MAX_ROWS_IN_MESSAGE])
    extra = len(rows) - _MAX_ROWS_IN_MESSAGE
    more = f" and {extra} more" if extra > 0 else ""
    return shown + more


def load_register(path: Path, tokeniser: CameraTokeniser) -> tuple[pa.Table, np.ndarray]:
    """Read and tokenise a register; returns ``(table(token, lat, lon, road_class), tokens)``.

    ``tokens`` is the uint64 form of each token (for fast membership tests). Raises
    :class:`ExportReadError` for a missing id, a bad coordinate, or conflicting duplicate ids.
    """
    path = Path(path)
    chunks = list(iter_export(path, columns=REGISTER_COLUMNS))
    bad_lines = [m.row_number for c in chunks for m in c.malformed]
    if bad_lines:
        rows = np.array(sorted(bad_lines))
        raise ExportReadError(f"{path}: malformed register row(s) {_rows_text(rows)}")
    tables = [c.table for c in chunks if c.table.num_rows]
    if not tables:
        raise ExportReadError(f"{path}: the camera register is empty")
    raw = pa.concat_tables(tables, promote_options="permissive")
    rows = np.concatenate([c.row_numbers for c in chunks])
    ids = pc.utf8_trim_whitespace(raw["camera_id"].cast(pa.string()))
    missing = pc.fill_null(pc.equal(pc.utf8_length(ids), 0), True).to_numpy(zero_copy_only=False)
    if missing.any():
        raise ExportReadError(
            f"{path}: register row(s) {_rows_text(rows[missing])} have no camera_id"
        )
    coords = {}
    for col in ("lat", "lon"):
        try:
            coords[col] = pc.cast(raw[col], pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ExportReadError(f"{path}: column {col} is not numeric") from None
    lat = coords["lat"].to_numpy(zero_copy_only=False)
    lon = coords["lon"].to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(lat) | ~np.isfinite(lon) | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    if bad.any():
        raise ExportReadError(
            f"{path}: register row(s) {_rows_text(rows[bad])} have a missing or invalid lat/lon"
        )
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    token_bytes = tokeniser.token_blocks(ids)
    tokens = np.frombuffer(token_bytes, dtype=">u8").astype(np.uint64)
    table = pa.table(
        {
            "token": blocks_to_hex(token_bytes, TOKEN_BYTES),
            "lat": coords["lat"],
            "lon": coords["lon"],
            "road_class": raw["road_class"].cast(pa.string()),
        }
    )
    uniq_tokens, first = np.unique(tokens, return_index=True)
    if len(uniq_tokens) != len(tokens):
        dup_rows = np.setdiff1d(np.arange(len(tokens)), first)
        n_ids = len(pc.unique(ids))
        if n_ids != len(uniq_tokens):  # two different ids, one token: astronomically unlikely
            raise ExportReadError(f"{path}: camera token collision; re-key the store")
        keep = table.take(pa.array(first))
        # identical duplicate rows are harmless; conflicting ones are an error
        if len(table.group_by(table.column_names).aggregate([])) != len(keep):
            raise ExportReadError(
                f"{path}: camera id(s) at row(s) {_rows_text(rows[dup_rows])} "
                "repeat with different details"
            )
        table, tokens = keep, uniq_tokens
    return table, tokens


def tokens_as_uint64(table: pa.Table) -> np.ndarray:
    """uint64 form of a stored register's ``token`` column."""
    from privacy.pseudonym import hex_to_blocks

    if len(table) == 0:
        return np.empty(0, dtype=np.uint64)
    return np.frombuffer(hex_to_blocks(table["token"], TOKEN_BYTES), dtype=">u8").astype(np.uint64)
