"""UK vehicle registration marks (VRMs): normalisation, format rules, plate space, generation.

This module is a leaf: standard library and numpy only at import time (pyarrow / pandas are
imported lazily by the vectorised helpers when they are handed such objects).

Rules implemented (GB, DVLA), on *normalised* marks (upper case, no spaces or separators):

``current`` (1 Sep 2001 - 28 Feb 2051), ``AB12CDE``
    * memory tag, letter 1: a DVLA region letter, one of ``ABCDEFGHKLMNOPRSVWY`` (19 letters;
      I, J, Q, T, U, X, Z are not region letters -- X is reserved for personal exports);
    * memory tag, letter 2: any letter except I, Q and Z (23 letters) -- "the letters I, Q and Z
      are not used in the first two characters";
    * age identifier: March-August registrations use the year's last two digits (``02``..``50``),
      September-February use year + 50 (``51``..``99``, then ``00`` for September 2050).
      ``01`` is never issued (the scheme started in September 2001 with ``51``): 99 codes;
    * three random letters: any letter except I and Q (24 letters; unlike the memory tag, Z is
      allowed).
``prefix`` (Aug 1983 - Aug 2001), ``A123BCD``
    * year letter: A-Y without I, O, Q, U, Z (21 letters);
    * serial number 1-999 without leading zeros;
    * three letters (serial letter + two-letter area code): A-Z without I, Q, Z (23 letters;
      I and Z were reserved for Northern Ireland, Q for vehicles of uncertain age).
``suffix`` (1963 - Jul 1983), ``ABC123D``
    * three letters as above (23-letter alphabet), serial 1-999, year letter as for prefix.
``dateless`` (1903 - 1963, now mostly cherished marks)
    * GB: 1-3 letters (23-letter alphabet, no I, Q, Z) then 1-4 digits (1-9999, no leading
      zero), or the reverse (digits first);
    * Northern Ireland (optional, see :func:`is_northern_ireland`): an optional letter (23-letter
      alphabet) + a two-letter NI code (all contain I or Z, e.g. ``IA``, ``LZ``) + 1-9999.
      NI marks are classified as ``dateless`` (they carry no age identifier).

Not modelled: Q plates, diplomatic marks (``123D456``), trade plates, the DVLA's withheld
offensive combinations and per-region second-letter tables (every region letter is combined
with all 23 second letters, a slight over-count).

Plate-space sizes (see :func:`plate_space_size`):

=============  =====================================  ================
format         rule                                   marks
=============  =====================================  ================
current        19 x 23 x 99 x 24^3                    598,067,712
prefix         21 x 999 x 23^3                        255,251,493
suffix         23^3 x 999 x 21                        255,251,493
dateless       2 x (23+23^2+23^3) x 9999              254,354,562
               + NI (1+23) x 33 x 9999                  7,919,208
total                                                 1,370,844,468
=============  =====================================  ================

That is the "about 1.5e9 possible marks" of the design, computed from the rules rather than
quoted: small enough that an unkeyed hash of a VRM is reversed by enumeration in minutes.

Rejects are split by :func:`reject_reason` into ``unreadable`` (nothing a plate could be: empty,
characters other than A-Z/0-9 after normalisation, shorter than 2 or longer than 10) and
``non_uk`` (well-formed alphanumerics of plausible length that match no UK format, e.g. most
foreign plates).
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any, Literal

import numpy as np

PlateFormat = Literal["current", "prefix", "suffix", "dateless"]
RejectReason = Literal["unreadable", "non_uk"]

#: The four UK formats, in classification order.
FORMATS: tuple[PlateFormat, ...] = ("current", "prefix", "suffix", "dateless")

#: Default share of each format among generated plates: the UK fleet is mostly post-2001.
DEFAULT_FORMAT_MIX: dict[str, float] = {
    "current": 0.88,
    "prefix": 0.07,
    "suffix": 0.015,
    "dateless": 0.035,
}

# --- alphabets -----------------------------------------------------------------------------

_UPPER = string.ascii_uppercase
_DIGITS = string.digits


def _without(chars: str) -> str:
    return "".join(c for c in _UPPER if c not in chars)


#: DVLA region letters (first memory-tag letter).
CURRENT_REGION_LETTERS = "ABCDEFGHKLMNOPRSVWY"
#: Second memory-tag letter: no I, Q, Z.
CURRENT_OFFICE_LETTERS = _without("IQZ")
#: The three random letters of a current mark: no I, Q (Z allowed).
CURRENT_RANDOM_LETTERS = _without("IQ")
#: Year letters of the prefix and suffix systems: no I, O, Q, U, Z.
YEAR_LETTERS = _without("IOQUZ")
#: Serial / area letters of pre-2001 marks in Great Britain: no I, Q, Z.
OLD_LETTERS = _without("IQZ")
#: Two-letter Northern Ireland codes (each contains I or Z).
NI_CODES: tuple[str, ...] = (
    "AZ", "BZ", "CZ", "DZ", "EZ", "FZ", "GZ", "HZ", "IA", "IB", "IG", "IJ", "IL", "IW",
    "JI", "JZ", "KZ", "LZ", "MZ", "NZ", "OI", "OZ", "PZ", "RZ", "SZ", "TZ", "UI", "UZ",
    "VZ", "WZ", "XI", "XZ", "YZ",
)  # fmt: skip


def _age_identifier_issue_dates() -> dict[str, date]:
    """Map every current-format age identifier to the first day it was (or will be) issued."""
    issued: dict[str, date] = {}
    for year in range(2002, 2051):  # March codes 02..50
        issued[f"{year - 2000:02d}"] = date(year, 3, 1)
    for year in range(2001, 2051):  # September codes 51..99, then 00 (Sep 2050)
        issued[f"{(year - 2000 + 50) % 100:02d}"] = date(year, 9, 1)
    return issued


#: Age identifier -> first issue date (99 codes; ``01`` never issued).
AGE_IDENTIFIER_ISSUED: dict[str, date] = _age_identifier_issue_dates()
AGE_IDENTIFIERS: tuple[str, ...] = tuple(sorted(AGE_IDENTIFIER_ISSUED))

# --- regular expressions (RE2-compatible, so pyarrow.compute can run them too) ------------------


def _cls(chars: str) -> str:
    return "[" + chars + "]"


_AGE_RE = "(?:0[02-9]|[1-9][0-9])"
_SERIAL3 = "[1-9][0-9]{0,2}"
_SERIAL4 = "[1-9][0-9]{0,3}"
_OLD = _cls(OLD_LETTERS)
_NI = "(?:" + "|".join(NI_CODES) + ")"

_PATTERNS: dict[PlateFormat, str] = {
    "current": f"^{_cls(CURRENT_REGION_LETTERS)}{_cls(CURRENT_OFFICE_LETTERS)}{_AGE_RE}"
    f"{_cls(CURRENT_RANDOM_LETTERS)}{{3}}$",
    "prefix": f"^{_cls(YEAR_LETTERS)}{_SERIAL3}{_OLD}{{3}}$",
    "suffix": f"^{_OLD}{{3}}{_SERIAL3}{_cls(YEAR_LETTERS)}$",
    "dateless": f"^(?:{_OLD}{{1,3}}{_SERIAL4}|{_SERIAL4}{_OLD}{{1,3}}|{_OLD}?{_NI}{_SERIAL4})$",
}
_NI_PATTERN = f"^{_OLD}?{_NI}{_SERIAL4}$"

#: Compiled regexes, one per format, to be applied to normalised marks.
PLATE_REGEXES: dict[PlateFormat, re.Pattern[str]] = {k: re.compile(v) for k, v in _PATTERNS.items()}
NORTHERN_IRELAND_REGEX = re.compile(_NI_PATTERN)

#: Characters removed by normalisation: whitespace and the separators seen in exports.
#: OCR placeholders such as ``?`` and ``*`` are deliberately kept so they make a read unreadable.
SEPARATORS = " \t\r\n\f\v-._/\\,:;'\"`|~·"
_NORMALISE_TABLE = str.maketrans(string.ascii_lowercase, string.ascii_uppercase, SEPARATORS)
#: The same separator set as an RE2 character class (for pyarrow.compute).
_SEPARATOR_RE2 = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in SEPARATORS) + "]"
_ALNUM_RE = re.compile(r"^[A-Z0-9]+$")
MIN_LENGTH = 2
MAX_LENGTH = 10

# --- scalar API ----------------------------------------------------------------------------------


def normalise_vrm(s: str) -> str:
    """Upper-case ASCII letters and remove whitespace and separator punctuation (idempotent).

    Only ASCII is case-mapped, so the scalar and vectorised versions agree exactly; any other
    character survives and makes the mark ``unreadable``.
    """
    return s.translate(_NORMALISE_TABLE)


def classify_vrm(s: str) -> PlateFormat | None:
    """Return the UK format of a mark (normalised first), or ``None`` if it matches none."""
    v = normalise_vrm(s)
    for fmt in FORMATS:
        if PLATE_REGEXES[fmt].match(v):
            return fmt
    return None


def is_northern_ireland(s: str) -> bool:
    """True if the (normalised) mark has the Northern Ireland layout, e.g. ``ABZ 1234``."""
    return NORTHERN_IRELAND_REGEX.match(normalise_vrm(s)) is not None


def reject_reason(s: str) -> RejectReason | None:
    """Why a mark is not a valid UK VRM: ``unreadable``, ``non_uk``, or ``None`` if valid."""
    v = normalise_vrm(s)
    if not (MIN_LENGTH <= len(v) <= MAX_LENGTH) or not _ALNUM_RE.match(v):
        return "unreadable"
    return None if classify_vrm(v) is not None else "non_uk"


# --- vectorised API ------------------------------------------------------------------------------


def _to_arrow(values: Any) -> Any:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    if _is_pandas(values):
        return pa.array(values.astype(object), type=pa.string(), from_pandas=True)
    return pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)


def _is_pandas(values: Any) -> bool:
    mod = type(values).__module__
    return mod.startswith("pandas")


def normalise_vrms(values: Any) -> Any:
    """Vectorised :func:`normalise_vrm` for a pandas Series, pyarrow array or sequence.

    Returns the same kind of object it was given (pandas Series keeps its index; a pyarrow
    array or chunked array gives a pyarrow string array; anything else a numpy object array).
    Nulls stay null.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _to_arrow(values)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    out = pc.ascii_upper(pc.replace_substring_regex(arr, _SEPARATOR_RE2, ""))
    if _is_pandas(values):
        import pandas as pd

        return pd.Series(out.to_pandas(), index=values.index, name=values.name, dtype=object)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return out
    return np.asarray(out.to_pylist(), dtype=object)


def _format_codes(norm: Any) -> np.ndarray:
    """Per element: index into FORMATS, or -1 for none (input: normalised pyarrow strings)."""
    import pyarrow.compute as pc

    codes = np.full(len(norm), -1, dtype=np.int8)
    for i, fmt in reversed(list(enumerate(FORMATS))):
        hit = pc.match_substring_regex(norm, _PATTERNS[fmt]).fill_null(False)
        codes[np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)] = i
    return codes


def _wrap_categories(codes: np.ndarray, categories: Sequence[str], values: Any) -> Any:
    import pandas as pd
    import pyarrow as pa

    cat = pd.Categorical.from_codes(codes, categories=list(categories))
    if _is_pandas(values):
        return pd.Series(cat, index=values.index, name=values.name)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int32), mask=codes < 0), pa.array(list(categories))
        )
    return cat


def classify_vrms(values: Any) -> Any:
    """Vectorised :func:`classify_vrm`: a categorical of format names (missing where none).

    A pandas Series gives a categorical Series (same index); a pyarrow array gives a pyarrow
    DictionaryArray with nulls; anything else gives a ``pandas.Categorical``.
    """
    norm = _to_arrow(normalise_vrms(_to_arrow(values)))
    return _wrap_categories(_format_codes(norm), FORMATS, values)


def reject_reasons(values: Any) -> Any:
    """Vectorised :func:`reject_reason`: categorical ``unreadable``/``non_uk``, missing if valid."""
    import pyarrow.compute as pc

    norm = _to_arrow(normalise_vrms(_to_arrow(values)))
    lengths = pc.utf8_length(norm).fill_null(0).to_numpy(zero_copy_only=False)
    alnum = pc.match_substring_regex(norm, "^[A-Z0-9]+$").fill_null(False)
    alnum = np.asarray(alnum.to_numpy(zero_copy_only=False), dtype=bool)
    unreadable = (~alnum) | (lengths < MIN_LENGTH) | (lengths > MAX_LENGTH)
    codes = np.full(len(norm), -1, dtype=np.int8)
    codes[(_format_codes(norm) < 0) & ~unreadable] = 1
    codes[unreadable] = 0
    return _wrap_categories(codes, ("unreadable", "non_uk"), values)


# --- plate space ---------------------------------------------------------------------------------

_SERIAL_999 = tuple(str(i) for i in range(1, 1000))
_SERIAL_9999 = tuple(str(i) for i in range(1, 10000))
_OLD_T = tuple(OLD_LETTERS)


def plate_layouts(
    fmt: str, age_identifiers: Sequence[str] | None = None
) -> list[list[Sequence[str]]]:
    """Each format as a list of layouts; a layout is a list of slots; a slot lists its tokens."""
    if fmt == "current":
        ages = tuple(sorted(age_identifiers)) if age_identifiers is not None else AGE_IDENTIFIERS
        rnd = tuple(CURRENT_RANDOM_LETTERS)
        return [[tuple(CURRENT_REGION_LETTERS), tuple(CURRENT_OFFICE_LETTERS), ages, rnd, rnd, rnd]]
    if fmt == "prefix":
        return [[tuple(YEAR_LETTERS), _SERIAL_999, _OLD_T, _OLD_T, _OLD_T]]
    if fmt == "suffix":
        return [[_OLD_T, _OLD_T, _OLD_T, _SERIAL_999, tuple(YEAR_LETTERS)]]
    if fmt == "dateless":
        letters_first = [[_OLD_T] * k + [_SERIAL_9999] for k in (1, 2, 3)]
        digits_first = [[_SERIAL_9999] + [_OLD_T] * k for k in (1, 2, 3)]
        ni = [[NI_CODES, _SERIAL_9999], [_OLD_T, NI_CODES, _SERIAL_9999]]
        return letters_first + digits_first + ni
    raise ValueError(f"unknown plate format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _count(slots: Sequence[Sequence[str]], prefix: str) -> int:
    if not prefix:
        return int(np.prod([len(s) for s in slots], dtype=object)) if slots else 1
    if not slots:
        return 0
    total = 0
    for tok in slots[0]:
        if prefix.startswith(tok):
            total += _count(slots[1:], prefix[len(tok) :])
        elif tok.startswith(prefix):
            total += _count(slots[1:], "")
    return total


def plate_space_size(fmt: str | None = None, prefix_filter: str | None = None) -> int:
    """Number of distinct marks of format ``fmt`` (all formats if ``None``).

    With ``prefix_filter`` only marks starting with that (normalised) prefix are counted, which
    sizes the reduced subspace a re-identification demo enumerates.
    """
    formats = FORMATS if fmt is None else (fmt,)
    prefix = normalise_vrm(prefix_filter or "")
    return sum(_count(layout, prefix) for f in formats for layout in plate_layouts(f))


def _iter_layout(slots: Sequence[Sequence[str]], prefix: str) -> Iterator[str]:
    if not slots:
        if not prefix:
            yield ""
        return
    if not prefix:
        for combo in itertools.product(*slots):
            yield "".join(combo)
        return
    for tok in slots[0]:
        if prefix.startswith(tok):
            for rest in _iter_layout(slots[1:], prefix[len(tok) :]):
                yield tok + rest
        elif tok.startswith(prefix):
            for rest in _iter_layout(slots[1:], ""):
                yield tok + rest


def iter_plates(fmt: str, prefix_filter: str | None = None) -> Iterator[str]:
    """Enumerate every normalised mark of format ``fmt`` (optionally only those with a prefix).

    The order is deterministic (layout by layout, slot tokens in rule order). The full space is
    huge; pass ``prefix_filter`` (e.g. ``"MA2"``) to enumerate a reduced subspace whose size is
    ``plate_space_size(fmt, prefix_filter)``.
    """
    prefix = normalise_vrm(prefix_filter or "")
    for layout in plate_layouts(fmt):
        yield from _iter_layout(layout, prefix)


# --- generation ----------------------------------------------------------------------------------


def age_identifiers_issued_by(as_of: date) -> tuple[str, ...]:
    """Current-format age identifiers issued on or before ``as_of``."""
    codes = tuple(sorted(c for c, d in AGE_IDENTIFIER_ISSUED.items() if d <= as_of))
    if not codes:
        raise ValueError("no current-format age identifier was issued before 1 Sep 2001")
    return codes


def _draw(rng: np.random.Generator, fmt: str, n: int, as_of: date | None) -> np.ndarray:
    """Draw ``n`` (not necessarily unique) marks of one format, vectorised over slots."""
    ages = age_identifiers_issued_by(as_of) if as_of is not None else None
    layouts = plate_layouts(fmt, ages)
    sizes = np.array([np.prod([len(s) for s in lay], dtype=float) for lay in layouts])
    which = rng.choice(len(layouts), size=n, p=sizes / sizes.sum())
    out = np.empty(n, dtype=object)
    for li, layout in enumerate(layouts):
        idx = np.flatnonzero(which == li)
        if idx.size == 0:
            continue
        parts = np.full(idx.size, "", dtype=object)
        for slot in layout:
            tokens = np.asarray(slot, dtype=object)
            parts = parts + tokens[rng.integers(0, len(tokens), size=idx.size)]
        out[idx] = parts
    return out


def random_plates(
    rng: np.random.Generator,
    n: int,
    mix: Mapping[str, float] | None = None,
    *,
    as_of: date | None = None,
    exclude: set[str] | None = None,
) -> np.ndarray:
    """Draw ``n`` unique, valid, normalised UK marks (numpy object array), shuffled.

    ``mix`` maps format name to weight (default :data:`DEFAULT_FORMAT_MIX`); counts per format
    are drawn multinomially. ``as_of`` restricts current-format age identifiers to those issued
    by that date (so a 2025 world has no ``49`` plates). ``exclude`` lists marks never to return.
    Deterministic for a given generator state.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    weights = dict(DEFAULT_FORMAT_MIX if mix is None else mix)
    unknown = set(weights) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown plate format(s) in mix: {sorted(unknown)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError("format mix weights must be >= 0 and sum to > 0")
    names = [f for f in FORMATS if weights.get(f, 0) > 0]
    p = np.array([weights[f] for f in names], dtype=float)
    counts = rng.multinomial(n, p / p.sum())
    seen: set[str] = set(exclude or ())
    chunks: list[np.ndarray] = []
    for fmt, want in zip(names, counts, strict=True):
        got: list[np.ndarray] = []
        have = 0
        while have < want:
            cand = _draw(rng, fmt, int((want - have) * 1.1) + 8, as_of)
            _, first = np.unique(cand, return_index=True)
            cand = cand[np.sort(first)]
            if seen:
                cand = cand[[c not in seen for c in cand]]
            cand = cand[: want - have]
            seen.update(cand.tolist())
            got.append(cand)
            have += cand.size
        chunks.append(np.concatenate(got) if got else np.empty(0, dtype=object))
    out = np.concatenate(chunks) if chunks else np.empty(0, dtype=object)
    return out[rng.permutation(out.size)]
