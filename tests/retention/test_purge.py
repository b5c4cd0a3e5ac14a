"""The purge engine on real force stores: what goes, what stays, crashes, backups, the log."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import date, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retention_helpers import BuiltStore, as_of_expiring, day, open_store, tree_digest

from privacy.aead import SealedBlobError, open_sealed, read_header
from retention.policy import RetentionPolicy, is_day_expired, parse_as_of
from retention.purge import (
    FAULT_STEPS,
    SimulatedCrash,
    check_consistency,
    pending_intents,
    plan_purge,
    purged_days,
    run_purge,
)
from retention.purge_log import PurgeLog, verify_log
from retention.store import PartitionIntegrityError

POLICY = RetentionPolicy(365)


def _assert_agree(built: BuiltStore, expected_removed: set[date]) -> None:
    """Store, keyring and log agree, and the log's commits cover exactly the removed days."""
    store = open_store(built.root)
    entries = PurgeLog(built.root).entries()
    assert check_consistency(store, entries) == []
    assert not pending_intents(entries)
    report = verify_log(built.root, store.signing_key().public_key())
    assert report.ok and not report.warnings, report
    held = set(store.held_days())
    assert held == set(built.days) - expected_removed
    assert purged_days(entries) == expected_removed
    for d in expected_removed:
        assert store.day_files(d) == [] and store.day_key_ids(d) == []
        assert not (built.root / "partitions" / f"day={d}").exists()
    for d in held:
        assert store.day_files(d) and store.day_key_ids(d)
    derived = {a.name for a in store.derived_artifacts()}
    for name, src in built.derived_sources.items():
        assert (name in derived) == (not expected_removed.intersection(src)), name
        if name not in derived:
            assert store.keyring.key_ids_for_scope(f"derived:{name}") == []


def test_purge_removes_expired_days_derived_and_keys(built: BuiltStore) -> None:
    store = open_store(built.root)
    before = store.bytes_on_disk()
    result = run_purge(store, as_of_expiring(15), POLICY)
    removed = {day(k) for k in range(15)}
    assert result.status == "purged"
    assert set(result.days_removed) == removed
    # 15 partitions, 1 quarantine file (day 3), 2 derived artifacts x (data + manifest).
    assert result.files_removed == 15 + 1 + 4
    assert result.derived_removed == 2
    assert result.keys_destroyed == 15 + 2
    assert 0 < result.bytes_removed < before
    assert store.quarantine_days() == [day(35)]
    _assert_agree(built, removed)
    entries = PurgeLog(built.root).entries()
    assert [e.type for e in entries] == ["intent", "commit"]
    intent, commit = entries
    assert commit.payload["intent_seq"] == intent.seq
    assert commit.payload["intent_hash"] == intent.hash
    assert intent.payload["policy"]["max_age_days"] == 365
    assert intent.payload["day_count"] == 15
    assert intent.tool_version and intent.payload["bytes"] == result.bytes_removed


def test_second_purge_has_nothing_to_do(built: BuiltStore) -> None:
    store = open_store(built.root)
    run_purge(store, as_of_expiring(15), POLICY)
    log_bytes = PurgeLog(built.root).path.read_bytes()
    digest = tree_digest(built.root)
    again = run_purge(open_store(built.root), as_of_expiring(15), POLICY)
    assert again.status == "nothing-to-do" and again.plan.is_empty
    assert PurgeLog(built.root).path.read_bytes() == log_bytes
    assert tree_digest(built.root) == digest


def test_dry_run_changes_nothing(built: BuiltStore) -> None:
    digest = tree_digest(built.root)
    store = open_store(built.root)
    result = run_purge(store, as_of_expiring(15), POLICY, dry_run=True)
    assert result.status == "dry-run"
    assert result.plan.days == [day(k) for k in range(15)]
    assert result.plan.derived == ["features-early", "sequences-all"]
    assert len(result.plan.key_ids) == 17 and result.plan.bytes > 0
    assert tree_digest(built.root) == digest
    assert not (built.root / "lock").exists()


def test_as_of_in_the_past_and_across_dst_keeps_the_window(built: BuiltStore) -> None:
    """An as-of given in London summer time, before all data expires, removes nothing early."""
    store = open_store(built.root)
    # 2025-01-20 00:30 London (GMT) - 365 x 24 h = 2024-01-21 00:30Z (2024 is a leap year):
    # days up to 2024-01-20 (day 19) are expired, 2024-01-21 is not.
    result = run_purge(store, parse_as_of("2025-01-20T00:30:00+00:00"), POLICY)
    assert max(result.days_removed) == day(19)
    # Summer-time as-of: 2024-07-01 00:30 BST = 2024-06-30 23:30Z: nothing of 2024 expires.
    again = run_purge(open_store(built.root), parse_as_of("2024-07-01T00:30:00+01:00"), POLICY)
    assert again.status == "nothing-to-do"
    remaining = open_store(built.root)
    assert min(remaining.held_days()) == day(20)
    assert len(remaining.read_day(day(20))) > 0


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_crash_at_each_step_then_rerun_completes(
    make_store: Callable[[], BuiltStore], step: str
) -> None:
    built = make_store()
    with pytest.raises(SimulatedCrash):
        run_purge(open_store(built.root), as_of_expiring(15), POLICY, fault_at=step)
    rerun = run_purge(open_store(built.root), as_of_expiring(15), POLICY)
    removed = {day(k) for k in range(15)}
    if step in ("after_lock", "after_commit"):
        assert rerun.status == ("purged" if step == "after_lock" else "nothing-to-do")
        assert rerun.completed_intents == []
    else:
        assert rerun.status == "purged"
        assert rerun.completed_intents == [1]
        assert rerun.plan.is_empty  # the completed intent covered everything
    _assert_agree(built, removed)
    entries = PurgeLog(built.root).entries()
    assert [e.type for e in entries] == ["intent", "commit"]
    # A later, wider purge still works and keeps everything consistent.
    run_purge(open_store(built.root), as_of_expiring(20), POLICY)
    _assert_agree(built, {day(k) for k in range(20)})


def test_crash_then_rerun_with_other_as_of_completes_old_plan_first(built: BuiltStore) -> None:
    with pytest.raises(SimulatedCrash):
        run_purge(open_store(built.root), as_of_expiring(10), POLICY, fault_at="mid_delete")
    result = run_purge(open_store(built.root), as_of_expiring(12), POLICY)
    assert result.completed_intents == [1]
    assert sorted(result.days_removed) == [day(k) for k in range(12)]
    _assert_agree(built, {day(k) for k in range(12)})
    assert [e.type for e in PurgeLog(built.root).entries()] == [
        "intent",
        "commit",
        "intent",
        "commit",
    ]


def test_backup_copies_cannot_be_decrypted_after_purge(built: BuiltStore, tmp_path: Path) -> None:
    store = open_store(built.root)
    target = store.partition_path(day(2))
    backup = tmp_path / "backup.enc"
    shutil.copy2(target, backup)
    assert len(store.read_day(day(2))) > 0  # readable before
    run_purge(store, as_of_expiring(15), POLICY)
    # Put the backup back where it was: the store refuses it (its key is gone) ...
    target.parent.mkdir(parents=True)
    shutil.copy2(backup, target)
    after = open_store(built.root)
    with pytest.raises(PartitionIntegrityError, match="not in the keyring"):
        after.read_day(day(2))
    # ... and no key left in the keyring (nor any derived key) opens it.
    blob = backup.read_bytes()
    assert not after.has_key(read_header(blob).key_id)
    for entry in after.keyring.entries():
        key = after.keyring.unwrap(entry.key_id)
        for scope in (f"day:{day(2)}", entry.scope):
            context = f"anprfed/v1|force={after.force}|kind=reads|scope={scope}".encode()
            with pytest.raises(SealedBlobError):
                open_sealed(key, blob, context)


def test_log_never_records_a_pseudonym_or_camera_token(built: BuiltStore) -> None:
    store = open_store(built.root)
    stored = {str(v) for d in store.days() for v in store.read_day(d)["vehicle"].to_pylist()}
    assert stored and stored <= built.pseudonyms
    with pytest.raises(SimulatedCrash):
        run_purge(store, as_of_expiring(10), POLICY, fault_at="mid_destroy")
    run_purge(open_store(built.root), as_of_expiring(25), POLICY)
    log = PurgeLog(built.root)
    text = (log.path.read_bytes() + log.head_path.read_bytes()).decode("ascii").lower()
    for secret in built.pseudonyms | built.camera_tokens:
        assert secret.lower() not in text
        assert secret[:16].lower() not in text
    allowed = {
        "as_of",
        "policy",
        "days",
        "day_count",
        "file_count",
        "bytes",
        "derived",
        "key_ids",
        "intent_seq",
        "intent_hash",
        "resumed",
        "files_removed",
        "bytes_removed",
        "keys_destroyed",
    }
    for line in log.path.read_bytes().splitlines():
        assert set(json.loads(line)["payload"]) <= allowed


def test_plan_ignores_days_inside_the_window(built: BuiltStore) -> None:
    store = open_store(built.root)
    as_of = as_of_expiring(15) - timedelta(microseconds=1)
    plan = plan_purge(store, as_of, POLICY)
    assert plan.days == [day(k) for k in range(14)]
    assert plan_purge(store, as_of_expiring(0), POLICY).is_empty


def test_unknown_fault_step_is_rejected(built: BuiltStore) -> None:
    with pytest.raises(ValueError, match="unknown fault step"):
        run_purge(open_store(built.root), as_of_expiring(1), POLICY, fault_at="nowhere")


def test_crash_residue_in_the_log_is_repaired_by_the_next_run(built: BuiltStore) -> None:
    """A head one entry behind, or a torn last line, is crash residue the next purge repairs."""
    log = PurgeLog(built.root)
    with pytest.raises(SimulatedCrash):
        run_purge(open_store(built.root), as_of_expiring(5), POLICY, fault_at="before_commit")
    head_after_intent = log.head_path.read_bytes()
    run_purge(open_store(built.root), as_of_expiring(5), POLICY)
    log.head_path.write_bytes(head_after_intent)  # as if killed before the head's rename
    public = open_store(built.root).signing_key().public_key()
    report = verify_log(built.root, public)
    assert report.ok and report.warnings and report.head_seq == 1 and report.entries == 2
    with log.path.open("ab") as fh:
        fh.write(b'{"payload":{"days":["2024-01-0')  # a torn append
    report = verify_log(built.root, public)
    assert report.ok and any("incomplete last line" in w for w in report.warnings)
    result = run_purge(open_store(built.root), as_of_expiring(5), POLICY)
    assert result.status == "nothing-to-do"
    report = verify_log(built.root, public)
    assert report.ok and not report.warnings and report.head_seq == 2
    _assert_agree(built, {day(k) for k in range(5)})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seconds=st.integers(min_value=2 * 86400, max_value=38 * 86400),
    offset_hours=st.sampled_from([0, 1]),
)
def test_property_purge_keeps_every_read_inside_the_window(
    _template: BuiltStore, seconds: int, offset_hours: int
) -> None:
    """On a real store: after a purge at any instant (given in GMT or BST notation), every read
    at most 365 days old is still there and every fully expired day is gone."""
    instant = as_of_expiring(0) + timedelta(seconds=seconds)
    local = instant.astimezone(timezone(timedelta(hours=offset_hours)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        shutil.copytree(_template.root, root)
        reads = open_store(root).read_reads()["read_at"].to_pylist()
        run_purge(open_store(root), parse_as_of(local.isoformat()), POLICY)
        store = open_store(root)
        kept = set(store.read_reads()["read_at"].to_pylist())
        for r in reads:
            if instant - r <= POLICY.window:
                assert r in kept, (r, instant)
        for d in store.held_days():
            assert not is_day_expired(d, instant, POLICY)


def test_purge_sees_changes_made_while_it_waited_for_the_lock(built: BuiltStore) -> None:
    """A handle opened before another writer's change still purges what that writer added."""
    purger = open_store(built.root)
    other = open_store(built.root)
    other.write_derived("late-cache", pa.table({"x": [1, 2]}), [day(1), day(30)])
    result = run_purge(purger, as_of_expiring(15), POLICY)
    assert "late-cache" in result.plan.derived
    assert any(k.startswith("derived-late-cache-") for k in result.plan.key_ids)
    after = open_store(built.root)
    assert after.keyring.key_ids_for_scope("derived:late-cache") == []
    assert "late-cache" not in {a.name for a in after.derived_artifacts()}
    _assert_agree(built, {day(k) for k in range(15)})
