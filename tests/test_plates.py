"""Property and unit tests for privacy.plates (UK VRM rules, plate space, generation)."""

from __future__ import annotations

import string
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import plates as P  # noqa: N812

ALNUM = string.ascii_uppercase + string.digits


@given(st.text(max_size=20))
def test_normalise_is_idempotent(s: str) -> None:
    once = P.normalise_vrm(s)
    assert P.normalise_vrm(once) == once
    assert not any(c in once for c in P.SEPARATORS)


@given(st.lists(st.text(max_size=12), max_size=30))
def test_vectorised_normalise_matches_scalar(values: list[str]) -> None:
    assert list(P.normalise_vrms(values)) == [P.normalise_vrm(v) for v in values]


@given(st.lists(st.text(alphabet=ALNUM + " -ab?", max_size=9), max_size=30))
def test_vectorised_classify_and_reject_match_scalar(values: list[str]) -> None:
    cats = P.classify_vrms(pd.Series(values, dtype=object))
    assert [None if pd.isna(c) else c for c in cats] == [P.classify_vrm(v) for v in values]
    rej = P.reject_reasons(values)
    assert [None if pd.isna(c) else c for c in rej] == [P.reject_reason(v) for v in values]


@pytest.mark.parametrize("fmt", P.FORMATS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_generated_plates_classify_to_their_format(fmt: str, seed: int) -> None:
    plates = P.random_plates(np.random.default_rng(seed), 200, {fmt: 1.0})
    assert len(set(plates)) == 200
    assert {P.classify_vrm(p) for p in plates} == {fmt}
    assert all(P.reject_reason(p) is None for p in plates)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 500))
def test_random_plates_unique_valid_and_deterministic(seed: int, n: int) -> None:
    a = P.random_plates(np.random.default_rng(seed), n, as_of=date(2025, 1, 1))
    b = P.random_plates(np.random.default_rng(seed), n, as_of=date(2025, 1, 1))
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == n
    fmts = [P.classify_vrm(p) for p in a]
    assert None not in fmts
    # age identifiers never postdate the as_of date
    issued = P.age_identifiers_issued_by(date(2025, 1, 1))
    assert all(p[2:4] in issued for p, f in zip(a, fmts, strict=True) if f == "current")


def test_format_mix_is_respected() -> None:
    plates = P.random_plates(np.random.default_rng(0), 20_000)
    counts = pd.Series([P.classify_vrm(p) for p in plates]).value_counts(normalize=True)
    for fmt, share in P.DEFAULT_FORMAT_MIX.items():
        # binomial sd at n=20k is <= 0.0036; 5 sd
        assert abs(counts.get(fmt, 0.0) - share) < 0.018


def test_exclude_is_honoured() -> None:
    rng = np.random.default_rng(3)
    first = P.random_plates(rng, 50, {"dateless": 1.0})
    second = P.random_plates(np.random.default_rng(3), 50, {"dateless": 1.0}, exclude=set(first))
    assert not set(first) & set(second)


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("ab12 cde", "current"),
        ("MA71ZZZ", "current"),
        ("A123 BCD", "prefix"),
        ("Y9XYZ", None),  # Z not an old-system letter in GB
        ("ABC 123D", "suffix"),
        ("1 A", "dateless"),
        ("ABC 1234", "dateless"),
        ("9999 XYZ", None),
        ("9999 XYA", "dateless"),
        ("ABZ 1234", "dateless"),  # Northern Ireland
        ("IA 1", "dateless"),
        ("IB12CDE", None),  # I never in a memory tag
        ("AZ12CDE", None),  # Z never in a memory tag
        ("AB01CDE", None),  # 01 never issued
        ("AB12CDI", None),  # I never in random letters
        ("I123ABC", None),  # I not a year letter
        ("A012BCD", None),  # leading zero in serial
    ],
)
def test_known_marks(raw: str, fmt: str | None) -> None:
    assert P.classify_vrm(raw) == fmt


def test_northern_ireland_flag() -> None:
    assert P.is_northern_ireland("ABZ 1234")
    assert P.is_northern_ireland("LZ 55")
    assert not P.is_northern_ireland("ABC 123")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "unreadable"),
        ("   ", "unreadable"),
        ("A", "unreadable"),
        ("AB1?CDE", "unreadable"),
        ("AB12ÇDE", "unreadable"),
        ("ABCDEFGHIJK", "unreadable"),
        ("AB-123-CD", "non_uk"),  # French SIV layout
        ("ZZ99ZZZ", "non_uk"),
        ("AB12 CDE", None),
    ],
)
def test_reject_reasons(raw: str, reason: str | None) -> None:
    assert P.reject_reason(raw) == reason


def test_vectorised_pyarrow_returns_dictionary_with_nulls() -> None:
    arr = pa.array(["AB12CDE", None, "XXXX", "A1"])
    out = P.classify_vrms(arr)
    assert isinstance(out, pa.DictionaryArray)
    assert out.to_pylist() == ["current", None, None, "dateless"]
    rej = P.reject_reasons(pa.chunked_array([arr]))
    assert rej.to_pylist() == [None, "unreadable", "non_uk", None]


def test_plate_space_sizes_follow_from_rules() -> None:
    assert P.plate_space_size("current") == 19 * 23 * 99 * 24**3
    assert P.plate_space_size("prefix") == 21 * 999 * 23**3
    assert P.plate_space_size("suffix") == 21 * 999 * 23**3
    gb = 2 * (23 + 23**2 + 23**3) * 9999
    ni = (1 + 23) * len(P.NI_CODES) * 9999
    assert P.plate_space_size("dateless") == gb + ni
    total = P.plate_space_size()
    assert total == sum(P.plate_space_size(f) for f in P.FORMATS)
    assert 1.3e9 < total < 1.6e9
    with pytest.raises(ValueError, match="unknown plate format"):
        P.plate_space_size("vanity")


@pytest.mark.parametrize(
    ("fmt", "prefix"), [("current", "MA2"), ("prefix", "K1"), ("dateless", "AB")]
)
def test_iter_plates_matches_size_and_rules(fmt: str, prefix: str) -> None:
    plates = list(P.iter_plates(fmt, prefix))
    assert len(plates) == P.plate_space_size(fmt, prefix) > 0
    assert len(set(plates)) == len(plates)
    assert all(p.startswith(prefix) for p in plates)
    assert {P.classify_vrm(p) for p in plates} == {fmt}


def test_age_identifier_dates() -> None:
    assert P.AGE_IDENTIFIER_ISSUED["51"] == date(2001, 9, 1)
    assert P.AGE_IDENTIFIER_ISSUED["02"] == date(2002, 3, 1)
    assert P.AGE_IDENTIFIER_ISSUED["74"] == date(2024, 9, 1)
    assert P.AGE_IDENTIFIER_ISSUED["00"] == date(2050, 9, 1)
    assert len(P.AGE_IDENTIFIERS) == 99 and "01" not in P.AGE_IDENTIFIERS
    assert P.age_identifiers_issued_by(date(2025, 1, 1))[-1] == "74"
