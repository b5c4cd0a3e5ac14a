"""Ingest: every row accounted for, rejects by reason and row number, idempotent, crash-safe."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from force_export_factory import Export, MessyExport, make_export, make_messy_export, write_table

from client_force.export_reader import ExportReadError, iter_export
from client_force.ingest import IngestError, ingest_export
from client_force.validation import REASONS
from retention.store import ForceStore
from safefiles import atomic as atomic_files

AS_OF = datetime(2024, 6, 2, tzinfo=UTC)  # the end of 2024-06-01


@pytest.fixture
def messy(tmp_path: Path) -> MessyExport:
    return make_messy_export(tmp_path / "messy")


def test_messy_export_every_row_accounted(store: ForceStore, messy: MessyExport) -> None:
    rep = ingest_export(store, messy.path, as_of=AS_OF)
    exp = messy.expected
    assert rep.input_rows == messy.rows
    assert rep.accounted and rep.input_rows == rep.stored + rep.duplicates + rep.rejected
    assert rep.stored == len(exp["ok"])
    assert rep.duplicates == len(exp["duplicate"])
    for reason in REASONS:
        want = exp.get(reason, set())
        assert rep.rejected_by_reason.get(reason, 0) == len(want), reason
        assert set(rep.rejected_row_numbers.get(reason, [])) == want, reason
    assert store.read_reads().num_rows == rep.stored
    assert "2023-06-03" in rep.days_written  # the read exactly at the retention cutoff
    # the quarantine holds every rejected row, encrypted, with its row number and reason
    quarantined = [store.read_quarantine(d) for d in store.quarantine_days()]
    q = pa.concat_tables([t for t in quarantined if t is not None])
    assert q.num_rows == rep.rejected
    by_reason: dict[str, set[int]] = {}
    for row in q.select(["reason", "row_number"]).to_pylist():
        by_reason.setdefault(row["reason"], set()).add(row["row_number"])
    assert by_reason == {r: exp[r] for r in REASONS if r in exp}
    unreadable = q.filter(pc.equal(q["reason"], "unreadable"))["vrm"].to_pylist()
    assert sorted(unreadable) == sorted(["AB?2CDE", "ÄB12CDE", "A"])
    # past-retention rows are quarantined under their own (expired) day, so a purge drops them
    assert date(2023, 1, 1) in store.quarantine_days()
    for d in store.quarantine_days():
        assert all(p.read_bytes()[:8] == b"ANPRFSE1" for p in store.day_files(d))


def test_reingest_is_idempotent(store: ForceStore, messy: MessyExport) -> None:
    first = ingest_export(store, messy.path, as_of=AS_OF)
    files = sorted(p.relative_to(store.root) for p in store.root.rglob("*.enc"))
    reads = store.read_reads()
    second = ingest_export(store, messy.path, as_of=AS_OF)
    assert second.stored == 0 and second.accounted
    assert second.duplicates == first.stored + first.duplicates
    assert second.rejected_by_reason == first.rejected_by_reason
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*.enc")) == files
    assert store.read_reads().equals(reads)
    log = (store.root / "logs" / "ingest.jsonl").read_text().splitlines()
    assert len(log) == 2


def test_parquet_export_gives_the_same_store(new_store, export: Export, tmp_path: Path) -> None:
    pq_path = write_table(pacsv.read_csv(export.path), tmp_path / "pq" / "export.parquet")
    a, b = new_store(), new_store()
    ra = ingest_export(a, export.path, as_of=AS_OF)
    rb = ingest_export(b, pq_path, cameras=export.cameras, as_of=AS_OF)
    assert (ra.stored, ra.duplicates, ra.rejected) == (rb.stored, rb.duplicates, rb.rejected)
    assert ra.stored == export.rows
    # different stores (keys) -> unrelated pseudonyms, same shape of data
    va = set(a.read_reads()["vehicle"].to_pylist())
    vb = set(b.read_reads()["vehicle"].to_pylist())
    assert len(va) == len(vb) == len(export.vrms) and not va & vb


def test_each_distinct_vrm_is_hashed_once(store: ForceStore, export: Export) -> None:
    rep = ingest_export(store, export.path, as_of=AS_OF, block_bytes=4096)
    # many chunks, mixed spellings: still one keyed hash per distinct normalised VRM
    assert len(list(iter_export(export.path, block_bytes=4096))) > 5
    assert rep.distinct_vrms_hashed == len(export.vrms)
    assert len(set(store.read_reads()["vehicle"].to_pylist())) == len(export.vrms)


def test_small_chunks_and_early_flushes_match_one_pass(new_store, messy: MessyExport) -> None:
    a, b = new_store(), new_store()
    ra = ingest_export(a, messy.path, as_of=AS_OF)
    rb = ingest_export(b, messy.path, as_of=AS_OF, block_bytes=2048, flush_rows=50)
    assert ra.to_dict()["rejected_by_reason"] == rb.to_dict()["rejected_by_reason"]
    assert ra.rejected_row_numbers == rb.rejected_row_numbers
    assert (ra.stored, ra.duplicates) == (rb.stored, rb.duplicates)
    assert a.read_reads().num_rows == b.read_reads().num_rows
    assert not atomic_files.stale_temp_files(b.root)


def test_crash_mid_ingest_leaves_no_half_partition(
    store: ForceStore, export: Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = atomic_files.os.replace
    calls = {"n": 0}

    def crashing_replace(src, dst):  # type: ignore[no-untyped-def]
        if str(dst).endswith("reads.parquet.enc"):
            calls["n"] += 1
            if calls["n"] == 2:  # the second partition: its tmp file is fully written
                raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        ingest_export(store, export.path, as_of=AS_OF)
    monkeypatch.setattr(atomic_files.os, "replace", real_replace)
    # only complete partitions are visible, and each one authenticates
    assert store.days() == [date(2024, 5, 1)]
    assert store.read_day(date(2024, 5, 1)).num_rows > 0
    rep = ingest_export(store, export.path, as_of=AS_OF)
    assert rep.accounted and rep.stored + rep.duplicates == export.rows
    assert rep.duplicates == store.read_day(date(2024, 5, 1)).num_rows
    assert store.read_reads().num_rows == export.rows
    assert not atomic_files.stale_temp_files(store.root)


# pyarrow reports the undecodable line of the binary file through sys.unraisablehook (no content)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_and_wrong_files_name_the_file(
    store: ForceStore, export: Export, tmp_path: Path
) -> None:
    bad_pq = tmp_path / "broken.parquet"
    bad_pq.write_bytes(b"PAR1" + bytes(range(200)) * 3)
    with pytest.raises(ExportReadError, match=r"broken\.parquet"):
        ingest_export(store, bad_pq, cameras=export.cameras, as_of=AS_OF)
    with pytest.raises(ExportReadError, match=r"none\.csv"):
        ingest_export(store, export.path, cameras=tmp_path / "none.csv", as_of=AS_OF)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 50)
    with pytest.raises(ExportReadError, match=r"binary\.csv"):
        ingest_export(store, binary, cameras=export.cameras, as_of=AS_OF)
    missing_col = tmp_path / "nocol.csv"
    missing_col.write_text("vrm,camera\nAB12CDE,CAM-1\n")
    with pytest.raises(ExportReadError, match=r"nocol.csv.*camera_id.*read_at"):
        list(iter_export(missing_col))
    with pytest.raises(ExportReadError, match="no such file"):
        list(iter_export(tmp_path / "absent.csv"))
    with pytest.raises(ExportReadError, match="unknown export format"):
        list(iter_export(missing_col.rename(tmp_path / "data.xlsx")))


def test_truncated_parquet_export_is_an_error_naming_it(
    store: ForceStore, export: Export, tmp_path: Path
) -> None:
    table = pacsv.read_csv(export.path)
    path = tmp_path / "cut.parquet"
    pq.write_table(table, path, row_group_size=200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportReadError, match=r"cut\.parquet"):
        ingest_export(store, path, cameras=export.cameras, as_of=AS_OF)
    assert store.days() == []


def test_register_is_required_and_unknown_cameras_rejected(
    store: ForceStore, tmp_path: Path
) -> None:
    e = make_export(tmp_path / "e", n_vehicles=20, reads_per_vehicle=3, n_cameras=10)
    e.cameras.unlink()
    with pytest.raises(IngestError, match="no camera register"):
        ingest_export(store, e.path, as_of=AS_OF)
    reg = write_table(
        pacsv.read_csv(
            make_export(tmp_path / "r", n_vehicles=5, n_cameras=5).cameras,
        ),
        tmp_path / "five.csv",
    )
    rep = ingest_export(store, e.path, cameras=reg, as_of=AS_OF)
    assert rep.accounted and rep.rejected_by_reason.get("unknown_camera", 0) > 0
    assert rep.cameras_in_register == 5
    # the register is stored by token: no raw camera id or coordinate in the file
    raw = store.register_path.read_bytes()
    assert b"CAM-0000" not in raw
    assert set(store.read_cameras().column_names) == {"token", "lat", "lon", "road_class"}
