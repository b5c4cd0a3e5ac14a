"""Which convicted offenders' reads survive rolling deletion until conviction."""

from __future__ import annotations

from datetime import date

import pandas as pd

from research.study.retention_outcome import OffenderReads, retention_outcome


def _reads(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"vrm": [r[0] for r in rows], "read_at": pd.to_datetime([r[1] for r in rows], utc=True)}
    )


TRUTH = pd.DataFrame(
    {
        "vrm": ["A", "B", "C"],
        "offence_start": [date(2024, 1, 1), date(2025, 1, 1), date(2025, 6, 1)],
        "offence_end": [date(2024, 3, 1), date(2025, 3, 1), date(2025, 9, 1)],
        "conviction_date": [date(2025, 9, 1), date(2025, 6, 1), date(2027, 1, 1)],
    }
)


def test_a_one_year_window_loses_a_slow_conviction_that_two_years_keep() -> None:
    force_1 = _reads([("A", "2024-02-15"), ("B", "2025-02-01"), ("C", "2025-07-01")])
    force_2 = _reads([("A", "2024-02-20"), ("X", "2025-02-01")])
    as_of = date(2026, 1, 1)
    one_year = retention_outcome(
        TRUTH, [OffenderReads("f1", force_1), OffenderReads("f2", force_2)], 365, as_of
    )
    two_years = retention_outcome(
        TRUTH, [OffenderReads("f1", force_1), OffenderReads("f2", force_2)], 730, as_of
    )
    by = {(r["force"]): r for r in one_year}
    # A: last offence read 2024-02-15, convicted 2025-09-01 (>1 year later): lost at 365.
    # B: read 2025-02-01, convicted 2025-06-01: held. C: not convicted by the study date.
    assert by["f1"]["offenders_seen"] == 3
    assert by["f1"]["convicted_by_study_date"] == 2
    assert by["f1"]["conviction_arrived_while_held"] == 1
    assert by["f1"]["lost_to_deletion_before_conviction"] == 1
    assert by["f1"]["not_yet_convicted"] == 1
    assert by["all forces"]["offenders_seen"] == 3  # A counted once across forces
    two = {(r["force"]): r for r in two_years}
    assert two["f1"]["conviction_arrived_while_held"] == 2
    assert two["all forces"]["lost_to_deletion_before_conviction"] == 0


def test_the_conviction_log_and_the_retention_counts_agree_and_say_why_they_differ() -> None:
    # f1 reads B only after its offence period: B is in f1's conviction log (the force has read
    # it) but is not a positive it could learn the offence from.
    force_1 = _reads([("A", "2024-02-15"), ("B", "2025-05-01")])
    rows = retention_outcome(TRUTH, [OffenderReads("f1", force_1)], 730, date(2026, 1, 1))
    f1 = rows[0]
    assert f1["convictions_in_log"] == 2
    assert f1["convicted_by_study_date"] == 1
    assert f1["convicted_not_read_while_offending"] == 1
    assert (
        f1["usable_positives_at_study_date"]
        <= f1["conviction_arrived_while_held"]
        <= f1["convicted_by_study_date"]
    )
