"""verify-log detects an edited, deleted, reordered or truncated purge log."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.purge_log import (
    GENESIS_HASH,
    PurgeLog,
    PurgeLogError,
    canonical_bytes,
    line_hash,
    verify_log,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _log_with(tmp_path: Path, n: int = 4) -> PurgeLog:
    log = PurgeLog(tmp_path)
    for i in range(n):
        kind = "intent" if i % 2 == 0 else "commit"
        log.append(kind, {"days": [f"2024-01-0{i + 1}"], "files": i}, KEY, "test")
    return log


def _lines(log: PurgeLog) -> list[bytes]:
    return log.path.read_bytes().splitlines()


def _write(log: PurgeLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_intact_log_verifies_and_chains(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    report = verify_log(tmp_path, KEY.public_key())
    assert report.ok, report.problems
    assert report.entries == 4 and report.head_seq == 4
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH
    for prev, cur in itertools.pairwise(entries):
        assert cur.prev_hash == prev.hash
    for line in _lines(log):
        assert canonical_bytes(json.loads(line)) == line


def test_empty_store_has_an_empty_valid_log(tmp_path: Path) -> None:
    report = verify_log(tmp_path, KEY.public_key())
    assert report.ok and report.entries == 0


def test_edited_entry_is_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    lines = _lines(log)
    rec = json.loads(lines[1])
    rec["payload"]["files"] = 999
    lines[1] = canonical_bytes(rec)
    _write(log, lines)
    report = verify_log(tmp_path, KEY.public_key())
    assert not report.ok
    assert any("line 2: bad signature" in p for p in report.problems)
    assert any("line 3: prev_hash" in p for p in report.problems)


def test_edit_resigned_with_another_key_is_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 2)
    lines = _lines(log)
    other = PurgeLog(tmp_path / "other")
    other.append("intent", {"days": ["2024-01-01"], "files": 7}, Ed25519PrivateKey.generate(), "x")
    lines[0] = _lines(other)[0]
    _write(log, lines)
    report = verify_log(tmp_path, KEY.public_key())
    assert any("line 1: bad signature" in p for p in report.problems)


def test_deleted_entry_is_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    report = verify_log(tmp_path, KEY.public_key())
    assert not report.ok
    assert any("seq 3, expected 2" in p for p in report.problems)


def test_reordered_entries_are_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    _write(log, lines)
    report = verify_log(tmp_path, KEY.public_key())
    assert not report.ok
    assert any("deleted or reordered" in p for p in report.problems)
    assert any("chain broken" in p for p in report.problems)


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_truncated_tail_is_detected(tmp_path: Path, keep: int) -> None:
    log = _log_with(tmp_path)
    _write(log, _lines(log)[:keep])
    report = verify_log(tmp_path, KEY.public_key())
    assert not report.ok
    assert any("tail truncated" in p for p in report.problems)


def test_truncated_tail_with_head_deleted_is_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    _write(log, _lines(log)[:2])
    log.head_path.unlink()
    report = verify_log(tmp_path, KEY.public_key())
    assert any("head record missing" in p for p in report.problems)


def test_forged_head_is_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    lines = _lines(log)[:2]
    _write(log, lines)
    head = json.loads(log.head_path.read_bytes())
    head.update(seq=2, hash=line_hash(lines[-1]))
    log.head_path.write_bytes(canonical_bytes(head))
    report = verify_log(tmp_path, KEY.public_key())
    assert any("head record has a bad signature" in p for p in report.problems)


def test_partial_last_line_is_detected(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    log.path.write_bytes(log.path.read_bytes()[:-20])
    report = verify_log(tmp_path, KEY.public_key())
    assert any("incomplete last line" in p for p in report.problems)


def test_head_one_behind_is_a_warning_and_is_repaired(tmp_path: Path) -> None:
    """A crash between appending a line and rewriting the head is not tampering."""
    log = _log_with(tmp_path, 2)
    saved_head = log.head_path.read_bytes()
    log.append("intent", {"days": ["2024-02-01"]}, KEY, "test")
    log.head_path.write_bytes(saved_head)  # as if the process died before the head rename
    report = verify_log(tmp_path, KEY.public_key())
    assert report.ok and report.warnings and report.head_seq == 2
    log.append("commit", {"days": ["2024-02-01"]}, KEY, "test")
    report = verify_log(tmp_path, KEY.public_key())
    assert report.ok and not report.warnings and report.head_seq == 4


def test_append_refuses_a_tampered_log(tmp_path: Path) -> None:
    log = _log_with(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], lines[2], lines[3]])
    with pytest.raises(PurgeLogError, match="does not verify"):
        log.append("intent", {"days": []}, KEY, "test")
