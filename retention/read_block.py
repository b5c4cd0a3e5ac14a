"""A compact numeric form of pseudonymised reads, for fast merging and exact de-duplication.

The store's API gives reads as ``vehicle`` (32 hex chars), ``camera`` (16 hex chars) and
``read_at`` (timestamp[us, UTC]); on disk the pseudonym is kept as its 16 raw bytes.
In memory a :class:`ReadBlock` holds the same information as four numpy columns: the 16-byte
pseudonym as two big-endian uint64 halves, the 8-byte camera token as one uint64, and
``read_at`` as int64 microseconds since the Unix epoch. Conversion both ways is exact.

De-duplication is exact: rows are put in time order (timsort, cheap on already-ordered input),
cut into cache-sized blocks at ``read_at`` boundaries (duplicates share ``read_at``, so they never
straddle a cut), hashed per block on a 64-bit mix of the four columns, and every row flagged as a
duplicate is verified column by column against its first occurrence. A hash collision (never
expected) falls back to an exact sort-based pass for that block.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from privacy.pseudonym import BLOCK, TOKEN_BYTES, blocks_to_hex, hex_to_blocks

READS_SCHEMA = pa.schema(
    [
        pa.field("vehicle", pa.string(), nullable=False),
        pa.field("camera", pa.string(), nullable=False),
        pa.field("read_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
#: On-disk form of a day partition: the pseudonym as its 16 raw bytes (hex only in the API).
STORAGE_SCHEMA = pa.schema(
    [
        pa.field("vehicle", pa.binary(16), nullable=False),
        pa.field("camera", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("read_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
US_PER_DAY = 86_400_000_000
_DEDUPE_BLOCK_ROWS = 32_768
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0x165667B19E3779F9)


@dataclass
class ReadBlock:
    """Reads as numpy columns (see the module docstring)."""

    vehicle_hi: np.ndarray
    vehicle_lo: np.ndarray
    camera: np.ndarray
    read_at: np.ndarray

    def __len__(self) -> int:
        return int(self.read_at.shape[0])

    @classmethod
    def empty(cls) -> ReadBlock:
        """A block with no rows."""
        u = np.empty(0, dtype=np.uint64)
        return cls(u, u.copy(), u.copy(), np.empty(0, dtype=np.int64))

    @classmethod
    def from_table(cls, table: pa.Table) -> ReadBlock:
        """From a table with the stored schema; ``ValueError`` on nulls or malformed values."""
        missing = {"vehicle", "camera", "read_at"} - set(table.column_names)
        if missing:
            raise ValueError(f"reads table lacks column(s): {', '.join(sorted(missing))}")
        if len(table) == 0:
            return cls.empty()
        veh = np.frombuffer(hex_to_blocks(table["vehicle"], BLOCK), dtype=">u8").reshape(-1, 2)
        cam = np.frombuffer(hex_to_blocks(table["camera"], TOKEN_BYTES), dtype=">u8")
        ts_col = table["read_at"]
        if ts_col.null_count:
            raise ValueError("read_at contains nulls")
        ts = ts_col.cast(pa.timestamp("us", tz="UTC")).to_numpy().astype("datetime64[us]")
        return cls(
            veh[:, 0].astype(np.uint64),
            veh[:, 1].astype(np.uint64),
            cam.astype(np.uint64),
            ts.view(np.int64).copy(),
        )

    def to_table(self) -> pa.Table:
        """The API-schema table (:data:`READS_SCHEMA`: hex strings and UTC timestamps)."""
        cams = self.camera.astype(">u8")
        return pa.Table.from_arrays(
            [
                blocks_to_hex(self.vehicle_bytes(), BLOCK),
                blocks_to_hex(cams.tobytes(), TOKEN_BYTES),
                pa.array(self.read_at, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            ],
            schema=READS_SCHEMA,
        )

    def vehicle_bytes(self) -> bytes:
        """The pseudonyms as concatenated 16-byte blocks."""
        veh = np.empty((len(self), 2), dtype=">u8")
        veh[:, 0] = self.vehicle_hi
        veh[:, 1] = self.vehicle_lo
        return veh.tobytes()

    def to_storage_table(self) -> pa.Table:
        """The on-disk form (:data:`STORAGE_SCHEMA`)."""
        vehicle = pa.Array.from_buffers(
            pa.binary(16), len(self), [None, pa.py_buffer(self.vehicle_bytes())]
        )
        # a force has thousands of cameras: hand Parquet the dictionary instead of letting it
        # hash millions of token strings
        codes, uniques = pd.factorize(self.camera)
        camera = pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int32)),
            blocks_to_hex(
                np.asarray(uniques, dtype=np.uint64).astype(">u8").tobytes(), TOKEN_BYTES
            ),
        )
        return pa.Table.from_arrays(
            [
                vehicle,
                camera,
                pa.array(self.read_at, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            ],
            schema=STORAGE_SCHEMA,
        )

    @classmethod
    def from_storage_table(cls, table: pa.Table) -> ReadBlock:
        """Inverse of :meth:`to_storage_table`."""
        if len(table) == 0:
            return cls.empty()
        veh_col = table["vehicle"].combine_chunks()
        if veh_col.type != pa.binary(16) or veh_col.null_count:
            raise ValueError("stored vehicle column is not 16-byte binary")
        raw = veh_col.buffers()[1]
        start = veh_col.offset * 16
        veh = np.frombuffer(raw, dtype=">u8")[start // 8 : start // 8 + 2 * len(veh_col)]
        veh = veh.reshape(-1, 2)
        cam = _camera_tokens(table["camera"])
        ts = table["read_at"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
        return cls(
            veh[:, 0].astype(np.uint64),
            veh[:, 1].astype(np.uint64),
            cam.astype(np.uint64),
            np.asarray(ts, dtype=np.int64).copy(),
        )

    @staticmethod
    def storage_to_api(table: pa.Table) -> pa.Table:
        """Convert an on-disk table to :data:`READS_SCHEMA` (pseudonyms as 32 hex chars)."""
        veh = table["vehicle"].combine_chunks()
        if len(veh) == 0:
            hexed = pa.array([], pa.string())
        else:
            raw = veh.buffers()[1]
            data = bytes(memoryview(raw)[veh.offset * 16 : (veh.offset + len(veh)) * 16])
            hexed = blocks_to_hex(data, BLOCK)
        camera = table["camera"]
        if pa.types.is_dictionary(camera.type):
            camera = camera.cast(pa.string())
        return pa.Table.from_arrays([hexed, camera, table["read_at"]], schema=READS_SCHEMA)

    def take(self, idx: np.ndarray) -> ReadBlock:
        """Rows at ``idx`` (indices or boolean mask)."""
        return ReadBlock(
            self.vehicle_hi[idx], self.vehicle_lo[idx], self.camera[idx], self.read_at[idx]
        )

    @staticmethod
    def concat(blocks: Sequence[ReadBlock]) -> ReadBlock:
        """Concatenate blocks in order."""
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return ReadBlock.empty()
        if len(blocks) == 1:
            return blocks[0]
        return ReadBlock(
            np.concatenate([b.vehicle_hi for b in blocks]),
            np.concatenate([b.vehicle_lo for b in blocks]),
            np.concatenate([b.camera for b in blocks]),
            np.concatenate([b.read_at for b in blocks]),
        )

    def days(self) -> np.ndarray:
        """UTC day number (days since 1970-01-01) of each read."""
        return np.floor_divide(self.read_at, US_PER_DAY)

    def sorted_unique(self) -> ReadBlock:
        """Rows in time order with exact duplicates removed (first occurrence kept)."""
        n = len(self)
        if n == 0:
            return self
        ts = self.read_at
        if n > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
            srt = self.take(np.argsort(ts, kind="stable"))
        else:
            srt = self
        return srt.take(~_duplicate_mask(srt))


def _camera_tokens(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """uint64 camera tokens of a stored ``camera`` column (dictionary or plain hex strings)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        if arr.null_count:
            raise ValueError("camera column contains nulls")
        uniq = np.frombuffer(hex_to_blocks(arr.dictionary, TOKEN_BYTES), dtype=">u8")
        return uniq.astype(np.uint64)[arr.indices.to_numpy(zero_copy_only=False)]
    return np.frombuffer(hex_to_blocks(arr, TOKEN_BYTES), dtype=">u8").astype(np.uint64)


def _mix(b: ReadBlock) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (
            b.vehicle_hi
            ^ (b.vehicle_lo * _M1)
            ^ (b.camera * _M2)
            ^ (b.read_at.view(np.uint64) * _M3)
        )


def _block_starts(ts: np.ndarray) -> np.ndarray:
    """Cut points every ~_DEDUPE_BLOCK_ROWS rows, moved back to the start of a read_at run."""
    cand = np.arange(_DEDUPE_BLOCK_ROWS, len(ts), _DEDUPE_BLOCK_ROWS)
    starts = np.searchsorted(ts, ts[cand], side="left") if len(cand) else cand
    return np.unique(np.concatenate([[0], starts, [len(ts)]]))


def _duplicate_mask(b: ReadBlock) -> np.ndarray:
    """True for rows equal (all four columns) to an earlier row; input sorted by read_at."""
    key = _mix(b)
    dup = np.zeros(len(b), dtype=bool)
    bounds = _block_starts(b.read_at)
    cols = (b.vehicle_hi, b.vehicle_lo, b.camera, b.read_at)
    for lo, hi in itertools.pairwise(bounds):
        if hi - lo < 2:
            continue
        codes, _ = pd.factorize(key[lo:hi])
        # factorize numbers codes by first appearance: a row is a first occurrence iff its
        # code exceeds every earlier code.
        running = np.maximum.accumulate(codes)
        first = np.ones(hi - lo, dtype=bool)
        first[1:] = codes[1:] > running[:-1]
        if first.all():
            continue
        first_row = np.flatnonzero(first)[codes] + lo
        same = np.ones(hi - lo, dtype=bool)
        for c in cols:
            same &= c[lo:hi] == c[first_row]
        if np.any(~first & ~same):  # 64-bit mix collision: redo this block exactly
            dup[lo:hi] = _exact_duplicate_mask([c[lo:hi] for c in cols])
        else:
            dup[lo:hi] = ~first
    return dup


def _exact_duplicate_mask(cols: list[np.ndarray]) -> np.ndarray:
    """Exact duplicate flags by a full lexicographic sort (slow path, never expected)."""
    order = np.lexsort(tuple(reversed(cols)))
    dup_sorted = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        eq = np.ones(len(order) - 1, dtype=bool)
        for c in cols:
            s = c[order]
            eq &= s[1:] == s[:-1]
        dup_sorted[1:] = eq
    # keep the earliest row of each group: within a group, lexsort is stable by position
    out = np.zeros(len(order), dtype=bool)
    out[order] = dup_sorted
    return out
