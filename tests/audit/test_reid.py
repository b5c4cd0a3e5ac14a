"""The re-identification demonstration: MD5 enumeration of UK plates against the keyed hash."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from privacy.plates import FORMATS, classify_vrm, iter_plates, plate_space_size
from research.audit.cli import app
from research.audit.md5_vector import md5_first64, md5_words
from research.audit.plate_space import blocks, sample_plates, space_size
from research.audit.reid import enumerate_md5, run_demo, unkeyed_md5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=7, max_size=7), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=55),
)
def test_numpy_md5_matches_hashlib(messages: list[bytes], length: int) -> None:
    rows = np.frombuffer(b"".join(m * 8 for m in messages), np.uint8).reshape(len(messages), 56)
    rows = rows[:, :length]
    digests = md5_words(rows).astype("<u4").tobytes()
    for i, row in enumerate(rows):
        assert digests[16 * i : 16 * i + 16] == hashlib.md5(row.tobytes()).digest()
    first = md5_first64(rows)
    assert first[0] == int.from_bytes(hashlib.md5(rows[0].tobytes()).digest()[:8], "little")


def test_plate_blocks_cover_the_whole_space_exactly() -> None:
    for fmt in FORMATS:
        assert space_size((fmt,)) == plate_space_size(fmt)
    assert space_size() == plate_space_size() == 1_370_844_468


@pytest.mark.parametrize(
    ("fmt", "prefix"),
    [
        ("current", "MA2"),
        ("prefix", "A12"),
        ("suffix", "ABC"),
        ("dateless", "A1"),
        ("dateless", "12"),
        ("dateless", "AZ1"),
    ],
)
def test_plate_blocks_enumerate_the_same_marks_as_iter_plates(fmt: str, prefix: str) -> None:
    found = []
    for block in blocks(fmt, prefix):
        for batch in block.outer_batches(0, block.outer_size, 1 << 12):
            raw = batch.tobytes()
            found += [raw[i : i + block.length].decode() for i in range(0, len(raw), block.length)]
    assert len(found) == len(set(found)) == plate_space_size(fmt, prefix)
    assert sorted(found) == sorted(iter_plates(fmt, prefix))
    assert all(classify_vrm(p) == fmt for p in found[:: max(1, len(found) // 500)])


def test_sampled_plates_are_distinct_valid_and_in_the_subspace() -> None:
    plates = sample_plates(np.random.default_rng(0), 50, FORMATS, "MA2")
    assert len(set(plates)) == 50
    assert all(p.startswith("MA2") and classify_vrm(p) is not None for p in plates)


def test_demo_recovers_every_md5_plate_of_a_reduced_subspace_and_no_keyed_one() -> None:
    report = run_demo(25, prefix="MA2", max_seconds=60, workers=1, seed=3, rate_seconds=0.2)
    md5, keyed = report.md5, report.keyed
    assert report.subspace_size == plate_space_size(None, "MA2")
    assert md5["subspace_complete"] and md5["candidates_hashed"] == report.subspace_size
    assert md5["recovered"] == report.sample == 25
    assert md5["recovered_verified_with_hashlib"]
    assert keyed["recovered_by_md5_enumeration"] == 0
    assert keyed["guessed_key_trial"] == {"candidates": report.subspace_size, "recovered": 0}
    assert keyed["key_bits"] == 256 and keyed["log10_expected_years_to_find_key"] > 60
    rates = report.rates_single_process
    assert min(rates.values()) > 0
    assert md5["projected_full_space_seconds"] == pytest.approx(
        report.full_space_size / md5["projection_rate_per_second"]
    )
    text = json.dumps(report.to_dict())
    assert "MA2" in text  # the prefix is reported ...
    assert not any(len(w) == 7 and w.startswith("MA2") for w in text.replace('"', " ").split())


def test_enumeration_in_worker_processes_finds_the_same_plates() -> None:
    plates = sample_plates(np.random.default_rng(1), 6, ("suffix",), "AB")
    targets = [hashlib.md5(p.encode()).digest() for p in plates]
    run = enumerate_md5(targets, ("suffix",), "AB", max_seconds=60, workers=2)
    assert run.complete and run.candidates == plate_space_size("suffix", "AB")
    assert sorted(run.recovered.values()) == sorted(plates)
    assert unkeyed_md5(plates[0].lower()) == targets[0].hex()


def test_enumeration_stops_at_the_time_limit() -> None:
    run = enumerate_md5([b"\0" * 16], ("current",), "", max_seconds=0.5, workers=1)
    assert not run.complete and 0 < run.candidates < plate_space_size("current")
    assert run.recovered == {}


def test_reid_cli_writes_the_report(tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "reid-demo",
            "--sample",
            "5",
            "--prefix",
            "YB5",
            "--format",
            "current",
            "--workers",
            "1",
            "--seed",
            "2",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "recovered 5 of 5" in result.output
    data = json.loads((tmp_path / "reid.json").read_text())
    assert data["md5"]["recovered"] == 5 and data["keyed"]["recovered_by_md5_enumeration"] == 0
    bad = CliRunner().invoke(app, ["reid-demo", "--prefix", "QQQ"])
    assert bad.exit_code == 2 and "no UK plate" in bad.output


def test_demo_over_the_whole_space_is_bounded_and_projects_the_rest() -> None:
    report = run_demo(
        12, formats=("current",), max_seconds=0.5, workers=1, seed=5, rate_seconds=0.1
    )
    md5 = report.md5
    assert report.subspace_size == plate_space_size("current") and not md5["subspace_complete"]
    assert 0 < md5["candidates_hashed"] < report.subspace_size
    assert 0 <= md5["recovered"] <= 12 and report.keyed["recovered_by_md5_enumeration"] == 0
    assert md5["projection_basis"] == "single-process measurement"  # too short to be sustained
    assert md5["projected_by_format_seconds"]["current"] == pytest.approx(
        plate_space_size("current") / md5["projection_rate_per_second"]
    )
