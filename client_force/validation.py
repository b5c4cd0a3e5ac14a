"""Vectorised validation and pseudonymisation of one export chunk.

Every row gets exactly one outcome: valid (it becomes a pseudonymised read), or one reject
reason. Reasons are checked in this order and the first that applies wins:

``malformed_row``   CSV line with the wrong number of fields (decided by the reader)
``missing_field``   vrm, camera_id or read_at empty or null
``bad_timestamp``   read_at is not an ISO-8601 timestamp (offset-less values are taken as UTC)
``unreadable``      the VRM is no plate at all (see :mod:`privacy.plates`)
``non_uk``          the VRM is well-formed but matches no UK format
``unknown_camera``  camera_id is not in the force's camera register
``future``          read_at is at or after the as-of instant
``past_retention``  read_at is older than the retention window (``read_at < as_of - max_age``)

Work is done per *distinct* value: each distinct VRM is normalised, classified and keyed-hashed
once per ingest (:mod:`client_force.vrm_memo`); camera ids are tokenised once per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from client_force.vrm_memo import DEFAULT_LIMIT, MISSING, NON_UK, UNREADABLE, VrmMemo
from privacy.pseudonym import CameraTokeniser, VrmPseudonymiser
from retention.read_block import ReadBlock

REASONS: tuple[str, ...] = (
    "malformed_row",
    "missing_field",
    "bad_timestamp",
    "unreadable",
    "non_uk",
    "unknown_camera",
    "future",
    "past_retention",
)
OK = 0
CODE = {name: i + 1 for i, name in enumerate(REASONS)}
_TS_UTC = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _np_bool(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _to_utc_us(ts: pa.Array) -> pa.Array:
    if ts.type.tz is None:
        ts = pc.assume_timezone(ts, "UTC")
    return ts.cast(_TS_UTC)


def parse_read_at(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``read_at`` to int64 µs since the epoch (UTC).

    Returns ``(micros, ok, missing)``: ``ok`` where parsed, ``missing`` where the value is empty
    or null (every other failure is a bad timestamp). Strings with an offset are converted to
    UTC; strings without one are taken as UTC (the export contract says read_at is UTC).
    """
    arr = _array(col)
    n = len(arr)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        ts = _to_utc_us(arr.cast(pa.timestamp("us")) if pa.types.is_date(arr.type) else arr)
        ok = ~_np_bool(pc.is_null(ts))
        micros = ts.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return micros.astype(np.int64), ok, ~ok
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    parsed: pa.Array | None = None
    for target in (_TS_UTC, pa.timestamp("us")):  # fast paths: all with, or all without offset
        try:
            parsed = _to_utc_us(pc.cast(arr, target))
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    if parsed is not None:
        ok = ~_np_bool(pc.is_null(parsed))
        micros = parsed.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    else:  # mixed or bad values: per-value ISO-8601 parse, failures become NaT
        series = pd.Series(arr.to_pandas(), dtype=object)
        dt = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
        ok = dt.notna().to_numpy()
        micros = np.zeros(n, dtype=np.int64)
        micros[ok] = dt[ok].dt.as_unit("us").astype("int64").to_numpy()
    missing = np.zeros(n, dtype=bool)
    failed = np.flatnonzero(~ok)
    if len(failed):  # only failures can be empty: tell missing from malformed there
        sub = arr.take(pa.array(failed))
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(sub)), 0)
        missing[failed] = _np_bool(empty) | _np_bool(pc.is_null(sub))
    return micros.astype(np.int64), ok, missing


@dataclass
class ValidatedChunk:
    """Outcome of one chunk: a reason code per row (0 = valid) and the valid rows' reads."""

    codes: np.ndarray  # int8, one per input row
    reads: ReadBlock  # valid rows only, in input order
    read_at_us: np.ndarray  # int64 per input row (meaningful where ts_ok)
    ts_ok: np.ndarray  # bool per input row


class ChunkValidator:
    """Validates and pseudonymises chunks against one register, as-of instant and window.

    Holds a :class:`~client_force.vrm_memo.VrmMemo`, so across the chunks of one ingest each
    distinct VRM is classified and keyed-hashed once.
    """

    def __init__(
        self,
        pseudonymiser: VrmPseudonymiser,
        tokeniser: CameraTokeniser,
        known_tokens: np.ndarray,
        as_of: datetime,
        max_age_days: int,
        memo_limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._tokeniser = tokeniser
        self._known = np.unique(np.asarray(known_tokens, dtype=np.uint64))
        self._vrms = VrmMemo(pseudonymiser, memo_limit)
        self._camera_memo: dict[bytes, int] = {}
        as_of = as_of.astimezone(UTC)
        self.as_of_us = int((as_of - _EPOCH).total_seconds()) * 1_000_000 + as_of.microsecond
        self.cutoff_us = self.as_of_us - max_age_days * 86_400_000_000

    def _camera_tokens(self, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """uint64 tokens of distinct (trimmed) camera ids and whether each is registered.

        Tokens are memoised across chunks (a force has thousands of cameras, not millions).
        """
        if len(ids) == 0:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=bool)
        keys = ids.cast(pa.binary()).to_pylist()
        missing = [k for k in set(keys) if k not in self._camera_memo]
        if missing:
            blocks = self._tokeniser.token_blocks(pa.array(missing, pa.binary()))
            fresh = np.frombuffer(blocks, dtype=">u8").astype(np.uint64)
            if len(self._camera_memo) > 1_000_000:
                self._camera_memo.clear()
            self._camera_memo.update(zip(missing, fresh.tolist(), strict=True))
        tokens = np.fromiter((self._camera_memo[k] for k in keys), np.uint64, len(keys))
        return tokens, np.isin(tokens, self._known)

    @property
    def hashed(self) -> int:
        """Keyed-hash evaluations so far (distinct normalised VRMs)."""
        return self._vrms.hashed

    def validate(self, table: pa.Table) -> ValidatedChunk:
        """Classify every row of ``table`` (vrm, camera_id, read_at) and pseudonymise the valid."""
        n = table.num_rows
        codes = np.zeros(n, dtype=np.int8)
        vstatus, vblocks = self._vrms.lookup(_array(table["vrm"]))
        # camera ids: per distinct value (a force has thousands, a chunk has hundreds of thousands)
        cenc = pc.dictionary_encode(_array(table["camera_id"]).cast(pa.string()))
        cidx = _indices(cenc)
        cdict = pc.utf8_trim_whitespace(cenc.dictionary)
        c_missing_u = _np_bool(pc.equal(pc.utf8_length(cdict), 0))
        ctok_u, cknown_u = self._camera_tokens(cdict)
        ts, ts_ok, ts_missing = parse_read_at(table["read_at"])

        # reasons, in precedence order (first applicable wins)
        c_missing = _take(c_missing_u, cidx, True)
        _assign(codes, (vstatus == MISSING) | c_missing | ts_missing, CODE["missing_field"])
        _assign(codes, ~ts_ok, CODE["bad_timestamp"])
        _assign(codes, vstatus == UNREADABLE, CODE["unreadable"])
        _assign(codes, vstatus == NON_UK, CODE["non_uk"])
        _assign(codes, ~_take(cknown_u, cidx, False), CODE["unknown_camera"])
        _assign(codes, ts >= self.as_of_us, CODE["future"])
        _assign(codes, ts < self.cutoff_us, CODE["past_retention"])

        valid = codes == OK
        if valid.all():
            reads = ReadBlock(
                np.ascontiguousarray(vblocks[:, 0]),
                np.ascontiguousarray(vblocks[:, 1]),
                ctok_u[cidx],
                ts,
            )
        else:
            vb = vblocks[valid]
            reads = ReadBlock(
                np.ascontiguousarray(vb[:, 0]),
                np.ascontiguousarray(vb[:, 1]),
                ctok_u[cidx[valid]],
                ts[valid],
            )
        return ValidatedChunk(codes, reads, ts, ts_ok)


def _indices(enc: pa.DictionaryArray) -> np.ndarray:
    """Dictionary indices as int64 with -1 for nulls."""
    idx = enc.indices
    if idx.null_count:
        idx = idx.fill_null(-1)
    return idx.to_numpy(zero_copy_only=False).astype(np.int64)


def _take(values: np.ndarray, idx: np.ndarray, fill: object) -> np.ndarray:
    """``values[idx]`` with ``fill`` where ``idx < 0`` (null)."""
    if len(values) == 0:
        return np.full(len(idx), fill, dtype=values.dtype if values.size else type(fill))
    out = values[np.where(idx < 0, 0, idx)]
    if (idx < 0).any():
        out = out.copy()
        out[idx < 0] = fill
    return out


def _assign(codes: np.ndarray, mask: np.ndarray, code: int) -> None:
    codes[(codes == OK) & mask] = code
