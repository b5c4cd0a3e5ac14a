"""A retention sweep: each force is ingested once, and every window purges its own copy."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_study_end_to_end import TINY

from privacy.keys import MasterSecretSource
from research.study.runner import run_study
from research.study.spec import spec_from_dict
from retention.store import ForceStore


def test_windows_are_purged_copies_of_one_ingest(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {**TINY, "designs": ["pooled"], "retention": {"max_age_days": 60, "sweep": [30]}}
    )
    result = run_study(spec, tmp_path)
    ingest = pd.read_csv(tmp_path / "ingest.csv")
    assert list(ingest["retention_days"].unique()) == [60, 30]
    by_window = {w: rows.set_index("force") for w, rows in ingest.groupby("retention_days")}
    # One ingest: the same counts in both windows, every input row stored or reported.
    for column in ("input_rows", "stored", "duplicates", "rejected", "convictions_loaded"):
        assert (by_window[60][column] == by_window[30][column]).all()
    assert (
        ingest["stored"] + ingest["duplicates"] + ingest["rejected"] == ingest["input_rows"]
    ).all()
    assert (by_window[30]["days_held_after_purge"] <= 30).all()
    assert (by_window[60]["days_held_after_purge"] > by_window[30]["days_held_after_purge"]).all()

    force = by_window[60].index[0]

    def store(window: int) -> ForceStore:
        return ForceStore.open(
            tmp_path / "stores" / f"retention-{window}d" / force,
            MasterSecretSource.from_key_file(
                tmp_path / "keys" / f"retention-{window}d" / f"{force}.key"
            ),
        )

    long, short = store(60), store(30)
    # Purging the 30-day copy erased only its own day keys: the 60-day copy still reads them.
    erased_in_short = sorted(set(long.days()) - set(short.days()))
    assert erased_in_short
    assert long.read_reads(erased_in_short[0], erased_in_short[0]).num_rows > 0
    assert not short.keyring.key_ids_for_day(erased_in_short[0])
    # Same keys and pseudonyms in both copies: a vehicle has one name across windows.
    day = short.days()[-1]
    assert sorted(short.read_reads(day, day)["vehicle"].to_pylist()) == sorted(
        long.read_reads(day, day)["vehicle"].to_pylist()
    )
    assert {m["design"] for m in result.metrics} == {"pooled"}
