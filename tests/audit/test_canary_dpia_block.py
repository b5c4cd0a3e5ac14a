"""The DPIA pack shows the canary audit's verdict beside its figures, or says how to get it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from research.audit.canary_report import ROWS_STEM, SUMMARY_FILE
from research.dpia.blocks import Missing, Table
from research.dpia.evidence import EvidenceBook
from research.dpia.sections.canary import canary_blocks
from safefiles import atomic_write_json

VERDICT = (
    "Tested with power: the noise-free reference was flagged (epsilon >= 2.10 > 1), so the "
    "audit could have caught a failure; the claimed run's lower bound is 0.00, within its "
    "claim of 1."
)


def _row(variant: str, view: str, bound: float) -> dict:
    return {
        "design": "federated",
        "epsilon": 1.0,
        "retention_days": 365,
        "force": "cumbria",
        "claimed_epsilon": 1.0,
        "variant": variant,
        "view": view,
        "eps_lower_bound": bound,
    }


def test_verdict_and_bounds_sit_beside_each_other(tmp_path: Path) -> None:
    privacy = tmp_path / "privacy"
    privacy.mkdir()
    rows = [
        _row("claimed", "white-box", 0.0),
        _row("claimed", "black-box", 0.3),
        _row("reference", "white-box", 2.1),
        _row("reference", "black-box", 1.2),
    ]
    pd.DataFrame(rows).to_csv(privacy / f"{ROWS_STEM}.csv", index=False)
    summary = {**{k: rows[0][k] for k in ("design", "epsilon", "retention_days", "force")}}
    summary.update(claimed_epsilon=1.0, verdict=VERDICT, tested_with_power=True, flagged=False)
    atomic_write_json(privacy / SUMMARY_FILE, {"audits": [summary]})
    book = EvidenceBook(tmp_path)
    blocks = canary_blocks(tmp_path, book, "risks")
    table = next(b for b in blocks if isinstance(b, Table))
    (row,) = table.rows
    assert row[0] == "federated, eps 1.0, 365-day retention, cumbria"
    assert [item.value for item in row[1:4]] == [1.0, 0.3, 2.1]
    assert row[4] == VERDICT
    assert f"privacy/{SUMMARY_FILE}" in book.source_files


def test_a_run_without_canary_audit_says_how_to_produce_it(tmp_path: Path) -> None:
    (block,) = canary_blocks(tmp_path, EvidenceBook(tmp_path), "risks")
    assert isinstance(block, Missing)
    assert "anprfed privacy canary-audit" in block.how
