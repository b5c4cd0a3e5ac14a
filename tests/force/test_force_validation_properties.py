"""Property tests: normalisation, plate validation, memoised hashing, timestamps, row numbers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client_force.export_reader import iter_export
from client_force.validation import parse_read_at
from client_force.vrm_memo import MISSING, NON_UK, OK, UNREADABLE, VrmMemo, pack_short_strings
from privacy.plates import FORMATS, PLATE_REGEXES, normalise_vrm, reject_reason
from privacy.pseudonym import VrmPseudonymiser

KEY_A, KEY_B = bytes(range(32)), bytes(range(32, 64))
PLATE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -.abcxyz?*Äé\t"
vrm_text = st.text(alphabet=PLATE_ALPHABET, max_size=12)


def reference_status(v: str | None) -> int:
    if v is None or not v.strip():
        return MISSING
    r = reject_reason(v)
    return {None: OK, "unreadable": UNREADABLE, "non_uk": NON_UK}[r]


@settings(max_examples=300, deadline=None)
@given(vrm_text)
def test_normalisation_is_idempotent_and_canonical(v: str) -> None:
    n = normalise_vrm(v)
    assert normalise_vrm(n) == n
    assert (" " not in n and "-" not in n and n == n.upper()) or not n.isascii()
    # spelling variants of a mark normalise alike
    assert normalise_vrm(v.lower()) == normalise_vrm(v.upper()) or not v.isascii()


@settings(max_examples=300, deadline=None)
@given(vrm_text)
def test_validity_means_matching_a_uk_format(v: str) -> None:
    n = normalise_vrm(v)
    matches = any(PLATE_REGEXES[f].match(n) for f in FORMATS)
    assert (reject_reason(v) is None) == matches


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), vrm_text), min_size=1, max_size=60), st.integers(1, 4))
def test_memo_agrees_with_scalar_rules_across_chunks(values: list[str | None], parts: int) -> None:
    p = VrmPseudonymiser(KEY_A, KEY_B)
    memo = VrmMemo(p)
    arr = pa.array(values, pa.string())
    cuts = np.linspace(0, len(values), parts + 1).astype(int)
    statuses, blocks = [], []
    for lo, hi in itertools.pairwise(cuts):
        s, b = memo.lookup(arr.slice(lo, hi - lo))
        statuses.append(s)
        blocks.append(b)
    status = np.concatenate(statuses)
    block = np.concatenate(blocks)
    assert status.tolist() == [reference_status(v) for v in values]
    valid = [i for i, s in enumerate(status) if s == OK]
    if valid:
        want = p.pseudonymise(pa.array([values[i] for i in valid])).to_pylist()
        got = [block[i].astype(">u8").tobytes().hex() for i in valid]
        assert got == want
    normed = {normalise_vrm(values[i]) for i in valid}
    assert memo.hashed == len(normed)  # one keyed hash per distinct normalised VRM


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.binary(max_size=10)
        | st.sampled_from([b"", b"\x00", b"A\x00", b"A", b"AB\x00\x00\x00\x00\x00\x02"]),
        min_size=1,
        max_size=40,
    )
)
def test_packing_is_injective_where_it_claims_to_be(items: list[bytes]) -> None:
    arr = pa.array(items, pa.binary()).cast(pa.string(), safe=False)
    keys, unpackable = pack_short_strings(arr)
    seen: dict[int, bytes] = {}
    for k, item, bad in zip(keys.tolist(), items, unpackable.tolist(), strict=True):
        assert bad == (len(item) > 8 or (len(item) == 8 and item[-1] < 8))
        if not bad:
            assert seen.setdefault(k, item) == item


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2049, 12, 31)),
    st.integers(-12, 12),
)
def test_timestamps_with_offsets_are_normalised_to_utc(naive: datetime, hours: int) -> None:
    naive = naive.replace(microsecond=(naive.microsecond // 1000) * 1000)
    utc = naive.replace(tzinfo=UTC)
    local = utc.astimezone(__import__("datetime").timezone(timedelta(hours=hours)))
    forms = [
        utc.isoformat().replace("+00:00", "Z"),
        local.isoformat(),
        naive.isoformat(),  # no offset: the export contract says UTC
    ]
    expected = int((utc - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    for form in forms:
        micros, ok, missing = parse_read_at(pa.array([form]))
        assert ok[0] and not missing[0] and micros[0] == expected
    micros, ok, missing = parse_read_at(pa.array([*forms, "soon", "", None]))
    assert ok.tolist() == [True] * 3 + [False] * 3
    assert missing.tolist() == [False] * 4 + [True] * 2
    assert set(micros[:3].tolist()) == {expected}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.sampled_from([256, 1024, 1 << 20]))
def test_csv_row_numbers_survive_malformed_lines(
    tmp_path_factory, layout: list[bool], block: int
) -> None:
    path = Path(tmp_path_factory.mktemp("rows")) / "x.csv"
    lines = ["vrm,camera_id,read_at"]
    for i, good in enumerate(layout, start=1):
        lines.append(f"R{i},C,T" if good else f"R{i},C")
    path.write_text("\n".join(lines) + "\n")
    seen: dict[int, str] = {}
    for chunk in iter_export(path, block_bytes=block):
        for r, v in zip(chunk.row_numbers.tolist(), chunk.table["vrm"].to_pylist(), strict=True):
            seen[r] = v
        for m in chunk.malformed:
            seen[m.row_number] = m.text.split(",")[0]
    assert seen == {i: f"R{i}" for i in range(1, len(layout) + 1)}
