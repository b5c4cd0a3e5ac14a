"""The UK plate space as index ranges, for enumerating candidates in numpy batches.

``privacy.plates`` defines each format as layouts of slots (a slot lists its tokens, e.g. the
23 letters of a memory tag or the serials 1-999). Here every layout is split into *blocks*
whose slots each hold tokens of one width (serials 1-9, 10-99 and 100-999 become three
blocks), so every plate of a block has the same length and plate ``i`` of the block is a
mixed-radix decoding of ``i``: no Python loop per plate. A prefix filter (``"MA"``,
``"MA2"``) narrows the leading slots, giving the reduced subspaces the tests enumerate.

The blocks of a format cover exactly the marks of ``privacy.plates.iter_plates`` (the tests
check sizes against ``plate_space_size`` and contents against ``iter_plates`` on subspaces).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from privacy.plates import FORMATS, normalise_vrm, plate_layouts

INNER_MAX = 1 << 16
"""Largest product of trailing slots precomputed as one table (one batch of candidates)."""


@dataclass(frozen=True)
class PlateBlock:
    """Every plate of one fixed-width layout: the product of its slots' token tables.

    Plate ``i`` is the mixed-radix decoding of ``i`` (last slot fastest). For fast batches the
    slots are split into *outer* slots and trailing *inner* slots whose every combination is
    precomputed once (``inner_table``), so a batch is a few outer prefixes each followed by the
    whole inner table: two memory copies, no per-plate arithmetic.
    """

    fmt: str
    tables: tuple[np.ndarray, ...]  # per slot: uint8 [tokens, width]

    @property
    def radices(self) -> tuple[int, ...]:
        """Tokens per slot."""
        return tuple(t.shape[0] for t in self.tables)

    @property
    def length(self) -> int:
        """Characters in every plate of the block."""
        return sum(t.shape[1] for t in self.tables)

    @property
    def size(self) -> int:
        """Plates in the block."""
        return int(np.prod(self.radices, dtype=object))

    @cached_property
    def n_outer_slots(self) -> int:
        """Leading slots not in the inner table (the inner product stays <= ``INNER_MAX``)."""
        product, k = 1, len(self.tables)
        while k > 0 and product * self.tables[k - 1].shape[0] <= INNER_MAX:
            k -= 1
            product *= self.tables[k].shape[0]
        return min(k, len(self.tables) - 1)

    @property
    def inner_size(self) -> int:
        """Plates per outer prefix."""
        return int(np.prod(self.radices[self.n_outer_slots :], dtype=object))

    @property
    def outer_size(self) -> int:
        """Distinct outer prefixes."""
        return self.size // self.inner_size

    @staticmethod
    def _decode(tables: tuple[np.ndarray, ...], index: np.ndarray) -> np.ndarray:
        width = sum(t.shape[1] for t in tables)
        out = np.empty((index.size, width), np.uint8)
        col = width
        for table in reversed(tables):
            index, digit = np.divmod(index, table.shape[0])
            col -= table.shape[1]
            out[:, col : col + table.shape[1]] = table[digit]
        return out

    @cached_property
    def inner_table(self) -> np.ndarray:
        """``uint8 [inner_size, inner width]``: every combination of the inner slots."""
        inner = self.tables[self.n_outer_slots :]
        return self._decode(inner, np.arange(self.inner_size, dtype=np.int64))

    def plates(self, start: int, stop: int) -> np.ndarray:
        """Plates ``start`` to ``stop - 1`` as ``uint8 [n, length]`` ASCII rows."""
        index = np.arange(start, min(stop, self.size), dtype=np.int64)
        return self._decode(self.tables, index)

    def outer_batches(self, outer_start: int, outer_stop: int, batch: int = INNER_MAX):
        """Yield ``uint8`` plate rows for outer prefixes ``[outer_start, outer_stop)``.

        Each batch holds whole outer prefixes (about ``batch`` plates, at least one prefix),
        in the same order as :meth:`plates`.
        """
        k = self.n_outer_slots
        outer_tables, inner = self.tables[:k], self.inner_table
        step = max(1, batch // self.inner_size)
        split = self.length - inner.shape[1]
        for lo in range(outer_start, outer_stop, step):
            hi = min(lo + step, outer_stop)
            out = np.empty(((hi - lo) * self.inner_size, self.length), np.uint8)
            if k:
                prefixes = self._decode(outer_tables, np.arange(lo, hi, dtype=np.int64))
                out[:, :split] = np.repeat(prefixes, self.inner_size, axis=0)
            out[:, split:] = np.tile(inner, (hi - lo, 1))
            yield out

    def plate(self, i: int) -> str:
        """Plate ``i`` as text."""
        return self.plates(i, i + 1)[0].tobytes().decode("ascii")


def _table(tokens: list[str]) -> np.ndarray:
    width = len(tokens[0])
    return np.frombuffer("".join(tokens).encode("ascii"), np.uint8).reshape(len(tokens), width)


def _filter(groups: list[list[str]], prefix: str) -> list[list[str]] | None:
    """Narrow fixed-width slot token lists to those consistent with ``prefix``; None if empty."""
    out, pos = [], 0
    for tokens in groups:
        seg = prefix[pos : pos + len(tokens[0])]
        kept = [t for t in tokens if t.startswith(seg)] if seg else tokens
        if not kept:
            return None
        out.append(kept)
        pos += len(tokens[0])
    return out if pos >= len(prefix) else None


@lru_cache(maxsize=64)
def blocks(fmt: str, prefix: str = "") -> tuple[PlateBlock, ...]:
    """The fixed-width blocks of format ``fmt`` whose plates start with ``prefix``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown plate format {fmt!r}; expected one of {', '.join(FORMATS)}")
    prefix = normalise_vrm(prefix)
    found: list[PlateBlock] = []
    for layout in plate_layouts(fmt):
        by_width = []
        for slot in layout:
            widths = sorted({len(t) for t in slot})
            by_width.append([[t for t in slot if len(t) == w] for w in widths])
        for groups in itertools.product(*by_width):
            kept = _filter(list(groups), prefix)
            if kept is not None:
                found.append(PlateBlock(fmt, tuple(_table(g) for g in kept)))
    return tuple(found)


def space_size(formats: tuple[str, ...] = FORMATS, prefix: str = "") -> int:
    """Plates in the given formats starting with ``prefix``."""
    return sum(b.size for f in formats for b in blocks(f, prefix))


def sample_plates(
    rng: np.random.Generator, n: int, formats: tuple[str, ...] = FORMATS, prefix: str = ""
) -> list[str]:
    """``n`` distinct plates drawn uniformly from the subspace (formats, prefix)."""
    all_blocks = [b for f in formats for b in blocks(f, prefix)]
    sizes = np.array([b.size for b in all_blocks], dtype=np.float64)
    total = int(sizes.sum())
    if n > total:
        raise ValueError(f"cannot draw {n} distinct plates from a subspace of {total}")
    chosen: set[str] = set()
    while len(chosen) < n:
        which = rng.choice(len(all_blocks), p=sizes / sizes.sum())
        block = all_blocks[which]
        chosen.add(block.plate(int(rng.integers(0, block.size))))
    return sorted(chosen, key=lambda _: rng.random())
