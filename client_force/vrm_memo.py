"""Per-ingest memo: classify and keyed-hash each distinct VRM once per export, not per read.

Two levels, both keyed by a lossless 64-bit packing of short strings (:func:`pack_short_strings`)
and numbered by persistent hash-indexed tables (``pandas.Index`` segments) that live across
chunks:

1. raw value -> normalised value: each distinct *raw* spelling is normalised once;
2. normalised value -> (status, pseudonym): each distinct *normalised* VRM is classified
   against the UK formats and, if valid, keyed-hashed once, so spelling variants (``ab12 cde``,
   ``AB12CDE``) share one HMAC.

Raw values longer than 8 bytes take a per-chunk path (arrow dictionary encoding) into level 2;
normalised values longer than 8 bytes cannot be UK marks (at most 7 characters) and are
classified directly. The memo lives in memory only and is never written; past ``limit``
distinct raw values it is cleared, which costs only re-hashing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from privacy.plates import PLATE_REGEXES, normalise_vrms, reject_reasons
from privacy.pseudonym import VrmPseudonymiser

OK, MISSING, UNREADABLE, NON_UK = 0, 1, 2, 3
DEFAULT_LIMIT = 4_000_000
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
_SHIFT56 = np.uint64(56)


def pack_short_strings(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Pack each string into a uint64 key, injectively for the strings it accepts.

    A string of up to 7 bytes keeps its bytes in the low 7 bytes and its length in the top
    byte; an 8-byte string is its 8 bytes (accepted only if the last byte is >= 8, so it cannot
    look like a length). Returns ``(keys, unpackable)``; ``unpackable`` marks everything else
    (longer strings). Nulls pack as the empty string.
    """
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=bool)
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    lens = np.diff(offs)
    if arr.null_count:
        lens = np.where(pc.is_valid(arr).to_numpy(zero_copy_only=False), lens, 0)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.empty(0, np.uint8)
    padded = np.concatenate([data[offs[0] : offs[-1]], np.zeros(8, dtype=np.uint8)])
    raw8 = sliding_window_view(padded, 8)[offs[:-1] - offs[0]].copy().view("<u8").ravel()
    lens64 = lens.astype(np.uint64)
    short = lens <= 7
    keys = np.where(short, (raw8 & _LOW_BYTES[np.minimum(lens, 8)]) | (lens64 << _SHIFT56), raw8)
    unpackable = (lens > 8) | ((lens == 8) & ((raw8 >> _SHIFT56) < 8))
    return keys, unpackable


class _Grow:
    """A numpy array with amortised appends."""

    def __init__(self, dtype: type, width: int = 0) -> None:
        self.shape_tail = (width,) if width else ()
        self.buf = np.zeros((1024, *self.shape_tail), dtype=dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.buf):
            new = np.zeros((max(need, 2 * len(self.buf)), *self.shape_tail), dtype=self.buf.dtype)
            new[: self.n] = self.buf[: self.n]
            self.buf = new
        self.buf[self.n : need] = values
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


class _Numbering:
    """Numbers uint64 keys 0, 1, 2, ... in order of first appearance, across many calls.

    Known keys live in a few ``pandas.Index`` segments (each with its own hash engine) holding
    consecutive numbers; new keys are numbered with ``pandas.factorize`` and added as a segment,
    and segments of similar size are merged, so a call costs its input times the number of
    segments (logarithmic in the table) and the table is rebuilt only O(log n) times.
    """

    def __init__(self) -> None:
        self._segments: list[tuple[int, pd.Index]] = []  # (first number, keys in number order)
        self.count = 0

    def __call__(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Numbers of ``keys`` and the positions of the first occurrences of new keys."""
        keys = np.asarray(keys, dtype=np.uint64)
        labels = np.empty(len(keys), dtype=np.int64)
        rest = np.arange(len(keys))
        for base, index in reversed(self._segments):
            if not len(rest):
                break
            found = index.get_indexer(keys[rest])
            hit = found >= 0
            labels[rest[hit]] = base + found[hit]
            rest = rest[~hit]
        if not len(rest):
            return labels, rest
        codes, uniques = pd.factorize(keys[rest])
        labels[rest] = self.count + codes
        running = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
        first = rest[codes > running]
        self._segments.append((self.count, pd.Index(np.asarray(uniques, dtype=np.uint64))))
        self.count += len(uniques)
        while len(self._segments) > 1 and len(self._segments[-2][1]) <= 2 * len(
            self._segments[-1][1]
        ):
            (base, older), (_, newer) = self._segments[-2:]
            self._segments[-2:] = [(base, older.append(newer))]
        return labels, first


class VrmMemo:
    """Maps raw VRM columns to (status code, 16-byte pseudonym halves) per row."""

    def __init__(self, pseudonymiser: VrmPseudonymiser, limit: int = DEFAULT_LIMIT) -> None:
        self._pseudonymiser = pseudonymiser
        self.limit = limit
        self.hashed = 0  # HMAC evaluations (distinct valid normalised VRMs)
        self.classified = 0  # distinct normalised values checked against the UK formats
        self._reset()

    def _reset(self) -> None:
        self._raw = _Numbering()
        self._raw_norm = _Grow(np.int64)  # raw label -> normalised label (-1: missing)
        self._norm = _Numbering()
        self._norm_code = _Grow(np.int8)
        self._norm_blocks = _Grow(np.uint64, 2)
        # normalised values too long to pack: never valid, so only their status is kept
        self._extra_code = _Grow(np.int8)

    def lookup(self, raw: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Per row: status (OK, MISSING, UNREADABLE, NON_UK) and pseudonym halves (n, 2).

        Pseudonym halves are only meaningful where the status is OK.
        """
        n = len(raw)
        if raw.type != pa.string():
            raw = raw.cast(pa.string())
        if self._raw.count > self.limit:
            self._reset()
        keys, long_rows = pack_short_strings(raw)
        norm_label = np.empty(n, dtype=np.int64)
        rows = np.flatnonzero(~long_rows) if long_rows.any() else None
        skeys = keys[rows] if rows is not None else keys
        if len(skeys):
            labels, first = self._raw(skeys)
            if len(first):
                src = rows[first] if rows is not None else first
                self._raw_norm.extend(self._normalised_labels(raw.take(pa.array(src))))
            mapped = self._raw_norm.view[labels]
            if rows is None:
                norm_label = mapped
            else:
                norm_label[rows] = mapped
        if rows is not None:
            lrows = np.flatnonzero(long_rows)
            enc = pc.dictionary_encode(raw.take(pa.array(lrows)))
            per_unique = self._normalised_labels(enc.dictionary)
            norm_label[lrows] = per_unique[enc.indices.to_numpy(zero_copy_only=False)]
        return self._status_and_blocks(norm_label)

    def _status_and_blocks(self, norm_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label encoding: >= 0 normalised memo; -1 missing; <= -2 the long-normalised table."""
        n = len(norm_label)
        if self._norm_code.n == 0:
            codes = np.full(n, MISSING, dtype=np.int8)
            blocks = np.zeros((n, 2), dtype=np.uint64)
        else:
            safe = np.maximum(norm_label, 0)
            codes = self._norm_code.view[safe]
            blocks = self._norm_blocks.view[safe]
        neg = norm_label < 0
        if neg.any():
            codes = codes.copy()
            codes[norm_label == -1] = MISSING
            extra = norm_label <= -2
            if extra.any():
                codes[extra] = self._extra_code.view[-norm_label[extra] - 2]
        return codes, blocks

    def _normalised_labels(self, uniques: pa.Array) -> np.ndarray:
        """Normalised-memo label for each distinct raw value (classifying new normal forms)."""
        out = np.full(len(uniques), -1, dtype=np.int64)
        trimmed_len = pc.utf8_length(pc.utf8_trim_whitespace(uniques)).fill_null(0)
        present = np.flatnonzero(trimmed_len.to_numpy(zero_copy_only=False) > 0)
        if len(present) == 0:
            return out
        norm = normalise_vrms(uniques.take(pa.array(present)))
        nkeys, too_long = pack_short_strings(norm)
        ok_rows = np.flatnonzero(~too_long)
        if len(ok_rows):
            labels, first = self._norm(nkeys[ok_rows])
            if len(first):
                self._classify_new(norm.take(pa.array(ok_rows[first])))
            out[present[ok_rows]] = labels
        long_rows = np.flatnonzero(too_long)
        if len(long_rows):  # longer than any UK mark: a status only, stored apart
            code = _codes(norm.take(pa.array(long_rows)))
            base = self._extra_code.n
            self._extra_code.extend(code)
            self.classified += len(long_rows)
            out[present[long_rows]] = -2 - (base + np.arange(len(long_rows)))
        return out

    def _classify_new(self, norm_unique: pa.Array) -> None:
        """Append status and pseudonym for new distinct normalised values (in label order)."""
        code = _codes(norm_unique)
        self.classified += len(code)
        blocks = np.zeros((len(code), 2), dtype=np.uint64)
        ok = np.flatnonzero(code == OK)
        if len(ok):
            fresh = self._pseudonymiser.pseudonym_blocks(norm_unique.take(pa.array(ok)))
            self.hashed += len(ok)
            blocks[ok] = np.frombuffer(fresh, dtype=">u8").reshape(-1, 2)
        self._norm_code.extend(code)
        self._norm_blocks.extend(blocks)


_CURRENT = PLATE_REGEXES["current"].pattern


def _codes(norm: pa.Array) -> np.ndarray:
    """Status of normalised values: OK, UNREADABLE or NON_UK (empty normal forms: UNREADABLE).

    Most marks are current-format, so that one pattern is tried first and the full rules of
    :func:`privacy.plates.reject_reasons` run only on the rest.
    """
    code = np.full(len(norm), OK, dtype=np.int8)
    current = pc.match_substring_regex(norm, _CURRENT).fill_null(False)
    rest = np.flatnonzero(~np.asarray(current.to_numpy(zero_copy_only=False), dtype=bool))
    if len(rest):
        rr = reject_reasons(norm.take(pa.array(rest))).indices.fill_null(-1)
        rr = rr.to_numpy(zero_copy_only=False)
        code[rest] = np.where(rr == 0, UNREADABLE, np.where(rr == 1, NON_UK, OK))
    return code
