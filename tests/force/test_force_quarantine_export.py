"""``anprfed force quarantine``: rejected rows come back out, counted, private, re-ingestable."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

from force_export_factory import MessyExport, make_messy_export
from test_force_cli import init_store, run

INGEST_OPTIONS = ("--as-of", "2024-06-01", "--max-age-days", "365", "--json")


def _messy_store(tmp_path: Path) -> tuple[MessyExport, str, dict]:
    """A store that ingested the messy export: (the export, the store path, the report)."""
    messy = make_messy_export(tmp_path / "export")
    store = str(tmp_path / "s")
    init_store(store)
    code, out, _ = run(
        "ingest", store, str(messy.path), "--cameras", str(messy.cameras), *INGEST_OPTIONS
    )
    assert code == 0
    return messy, store, json.loads(out)


def test_every_rejected_row_is_exported_and_a_corrected_row_reingests(tmp_path: Path) -> None:
    messy, store, report = _messy_store(tmp_path)
    assert report["rejected"] > 0

    # Counts only: no --out, nothing written, and no raw value printed.
    code, out, _ = run("quarantine", store, "--json")
    counts = json.loads(out)
    assert code == 0 and counts["out"] is None
    assert counts["rows"] == report["rejected"]
    assert counts["by_reason"] == {k: v for k, v in report["rejected_by_reason"].items() if v}
    code, human, _ = run("quarantine", store)
    assert code == 0 and f"quarantined reads rows: {report['rejected']}" in human
    for vrm in messy.raw_vrms:
        assert vrm not in out and vrm not in human

    target = tmp_path / "fix" / "rejects.csv"
    code, out, _ = run("quarantine", store, "--out", str(target), "--json")
    assert code == 0 and json.loads(out)["rows"] == report["rejected"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with open(target, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report["rejected"]
    expected = {
        reason: rows_
        for reason, rows_ in messy.expected.items()
        if reason not in ("ok", "duplicate")
    }
    for reason, numbers in expected.items():
        assert {int(r["row_number"]) for r in rows if r["reason"] == reason} == numbers

    # Never overwritten.
    code, _, err = run("quarantine", store, "--out", str(target))
    assert code == 2 and "never overwritten" in err

    # The operator corrects an unknown-camera row and ingests the file again: it is stored.
    fixed = [dict(r, camera_id="CAM-00001") for r in rows if r["reason"] == "unknown_camera"]
    again = tmp_path / "fix" / "corrected.csv"
    with open(again, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(fixed)
    code, out, _ = run(
        "ingest", store, str(again), "--cameras", str(messy.cameras), *INGEST_OPTIONS
    )
    second = json.loads(out)
    assert code == 0 and second["input_rows"] == len(fixed)
    assert second["stored"] == len(fixed) and second["rejected"] == 0


def test_day_range_and_bad_options_are_clear(tmp_path: Path) -> None:
    _, store, _ = _messy_store(tmp_path)
    all_rows = json.loads(run("quarantine", store, "--json")[1])
    by_day = all_rows["by_day"]
    first_day = min(by_day)
    only_first = json.loads(
        run("quarantine", store, "--from", first_day, "--to", first_day, "--json")[1]
    )
    assert only_first["rows"] == by_day[first_day] < all_rows["rows"]
    code, _, err = run("quarantine", store, "--from", "yesterday")
    assert code == 2 and "--from" in err
    code, _, err = run("quarantine", store, "--from", "2024-06-01", "--to", "2024-05-01")
    assert code == 2 and "after" in err
    code, _, err = run("quarantine", store, "--kind", "plates")
    assert code == 2 and "kind" in err
    labels = json.loads(run("quarantine", store, "--kind", "labels", "--json")[1])
    assert labels["rows"] == 0
