"""The intelligence log: validated, pseudonymised, deduplicated, rejected rows quarantined."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from client_force.labels import ingest_labels
from retention.store import ForceStore

AS_OF = datetime(2024, 6, 2, tzinfo=UTC)


def test_labels_file_every_row_accounted(store: ForceStore, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "vrm,offence_start,offence_end,conviction_date\n"
        "AB12 CDE,2024-01-01,2024-02-01,2024-05-01\n"  # 1 ok
        "ab12cde,2024-01-01,2024-02-01,2024-05-01\n"  # 2 duplicate of 1 (same mark)
        "WDB1234567,2024-01-01,2024-02-01,2024-05-01\n"  # 3 non_uk
        "BC13DEF,2024-03-01,2024-02-01,2024-05-01\n"  # 4 inconsistent (ends before start)
        "BC13DEF,2024-01-01,2024-02-01,2024-07-01\n"  # 5 future conviction
        "BC13DEF,,2024-02-01,2024-05-01\n"  # 6 missing
        "BC13DEF,someday,2024-02-01,2024-05-01\n"  # 7 bad timestamp
        "BC13DEF,2024-01-01\n"  # 8 malformed
        "LV51ABC,2024-01-01T10:00:00Z,2024-01-03T00:00:00+01:00,2024-04-30\n"  # 9 ok
    )
    rep = ingest_labels(store, path, as_of=AS_OF)
    assert rep.accounted and rep.input_rows == 9
    assert (rep.stored, rep.duplicates, rep.rejected) == (2, 1, 6)
    assert rep.rejected_row_numbers == {
        "non_uk": [3],
        "inconsistent_dates": [4],
        "future": [5],
        "missing_field": [6],
        "bad_timestamp": [7],
        "malformed_row": [8],
    }
    labels = store.read_labels()
    assert labels.num_rows == 2
    expected = store.pseudonymiser().pseudonymise(pa.array(["AB12CDE", "LV51ABC"])).to_pylist()
    assert sorted(labels["vehicle"].to_pylist()) == sorted(expected)
    assert date(2024, 5, 1) in labels["conviction_date"].to_pylist()
    q = store.read_quarantine(date(2024, 6, 1))
    assert sorted(q["row_number"].to_pylist()) == [3, 4, 5, 6, 7, 8]
    assert b"WDB1234567" not in store.labels_path.read_bytes()
    again = ingest_labels(store, path, as_of=AS_OF)
    assert again.stored == 0 and again.duplicates == 3 and store.read_labels().num_rows == 2
