"""The force's privacy ledger: persistence, budget refusal, tamper evidence, cross-check."""

from __future__ import annotations

import json

import pytest

from privacy.dp.accountant import epsilon_for
from privacy.dp.config import DEFAULT_ORDERS
from privacy.dp.crosscheck import crosscheck_ledger
from privacy.dp.crosscheck import main as crosscheck_main
from privacy.dp.ledger import (
    DeltaRaisedError,
    LedgerAnchors,
    LedgerError,
    PrivacyBudgetExceeded,
    PrivacyLedger,
    default_ledger_path,
)

MECH = {"noise_multiplier": 1.2, "sample_rate": 0.02, "steps": 100, "max_grad_norm": 1.0}
KEY = bytes(range(32))


def _open(path, budget=None, delta=1e-5, **kw):
    return PrivacyLedger.open(
        path, epsilon_budget=budget, delta=delta if budget is not None else None, **kw
    )


def _reserve(ledger, round_id, delta=None, **kw):
    return ledger.reserve(
        **{**MECH, **kw}, delta=delta, study_id="s1", round_id=round_id, examples=5000
    )


def test_ledger_records_every_mechanism_beside_the_epsilon(tmp_path):
    path = default_ledger_path(tmp_path / "store")
    assert path == tmp_path / "store" / "privacy" / "ledger.json"
    ledger = _open(path, 10.0)
    first = _reserve(ledger, 1)
    ledger.complete(first.seq)
    second = _reserve(ledger, 2)
    data = json.loads(path.read_text())
    assert data["epsilon_budget"] == 10.0 and data["unit_of_privacy"] == "vehicle"
    assert data["delta"] == 1e-5 and data["keyed"] is False
    e0, e1 = data["entries"]
    for key in (
        "noise_multiplier",
        "sample_rate",
        "steps",
        "max_grad_norm",
        "delta",
        "orders",
        "accountant",
    ):
        assert key in e0
    assert (e0["status"], e1["status"]) == ("completed", "reserved")
    assert e0["accountant"] == "rdp" and tuple(e0["orders"]) == DEFAULT_ORDERS
    assert 0 < first.epsilon_after < second.epsilon_after
    reopened = PrivacyLedger.open(path)
    assert reopened.history() == [(1.2, 0.02, 100), (1.2, 0.02, 100)]
    assert reopened.epsilon_spent(1e-5) == pytest.approx(second.epsilon_after)


def test_refuses_past_budget_with_the_spend_so_far(tmp_path):
    ledger = _open(tmp_path / "ledger.json", 1.5)
    with pytest.raises(PrivacyBudgetExceeded) as err:
        for r in range(30):
            _reserve(ledger, r)
    assert len(ledger.entries) >= 2  # some rounds fitted before the refusal
    assert epsilon_for([*ledger.history(), (1.2, 0.02, 100)], 1e-5)[0] > 1.5
    exc = err.value
    message = str(exc)
    assert exc.spent == pytest.approx(ledger.epsilon_spent(1e-5))
    assert exc.planned > 1.5 >= exc.spent
    assert f"epsilon={exc.spent:.4f}" in message and "budget epsilon=1.5000" in message
    assert "Training refused" in message and "deleting data does not give budget back" in message
    # nothing was recorded by the refused call
    assert PrivacyLedger.open(tmp_path / "ledger.json").epsilon_spent(1e-5) == pytest.approx(
        exc.spent
    )


def test_budget_is_set_once(tmp_path):
    path = tmp_path / "ledger.json"
    with pytest.raises(LedgerError, match="give epsilon_budget"):
        PrivacyLedger.open(path)
    _open(path, 3.0)
    _open(path, 3.0)
    with pytest.raises(LedgerError, match="different budget"):
        PrivacyLedger.open(path, epsilon_budget=30.0)
    with pytest.raises(DeltaRaisedError):
        PrivacyLedger.open(path, delta=1e-3)


def test_an_edited_or_removed_entry_is_detected(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = _open(path, 50.0, key=KEY)
    for r in range(3):
        _reserve(ledger, r)
    data = json.loads(path.read_text())
    data["entries"][1]["steps"] = 1  # pretend less was spent
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="hash chain broken at entry 1"):
        PrivacyLedger.open(path, key=KEY)
    data["entries"][1]["steps"] = 100
    del data["entries"][0]
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="hash chain broken at entry 0"):
        PrivacyLedger.open(path, key=KEY)


def test_the_chain_is_keyed_and_covers_the_budget(tmp_path):
    """Issue 14: the budget was outside the chain and the chain was an unkeyed SHA-256."""
    path = tmp_path / "ledger.json"
    ledger = _open(path, 2.0, key=KEY)
    _reserve(ledger, 1)
    data = json.loads(path.read_text())
    data["epsilon_budget"] = 1e9
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="header authentication failed"):
        PrivacyLedger.open(path, key=KEY)
    # Recomputing an unkeyed chain does not help without the key: rebuild as if unkeyed.
    data["epsilon_budget"] = 2.0
    path.write_text(json.dumps(data))
    assert PrivacyLedger.open(path, key=KEY).epsilon_budget == 2.0
    with pytest.raises(LedgerError, match="header authentication failed"):
        PrivacyLedger.open(path, key=bytes(32))  # another force's key
    data["keyed"] = False  # downgrade to an unkeyed ledger
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="not keyed"):
        PrivacyLedger.open(path, key=KEY)


def test_the_delta_trick_is_refused(tmp_path):
    """Issue 14: a history spending 8.0 at delta=2e-5 counted as 4.9 at delta=2e-3."""
    path = tmp_path / "ledger.json"
    mech = {"noise_multiplier": 0.9, "sample_rate": 0.01, "max_grad_norm": 1.0}
    steps = 9800
    history_eps = epsilon_for([(0.9, 0.01, steps)], 2e-5)[0]
    ledger = _open(path, history_eps + 1e-6, delta=2e-5)
    ledger.reserve(**mech, steps=steps, study_id="s", round_id=1)
    spent = ledger.epsilon_spent()
    assert spent == pytest.approx(8.0, abs=0.1)
    # the same history looks much cheaper at a larger delta: the trick the old check allowed
    assert ledger.epsilon_spent(2e-3) < spent - 2.0
    with pytest.raises(DeltaRaisedError):
        ledger.reserve(**mech, steps=10, delta=2e-3, study_id="s", round_id=2)
    with pytest.raises(PrivacyBudgetExceeded) as err:
        ledger.reserve(**mech, steps=10, study_id="s", round_id=2)
    assert err.value.delta == 2e-5
    assert len(PrivacyLedger.open(path).entries) == 1


def test_the_anchor_detects_truncation_rollback_and_deletion(tmp_path):
    path = tmp_path / "ledger.json"
    anchors = LedgerAnchors(tmp_path / "anchors.json", KEY)
    ledger = _open(path, 50.0, key=KEY, anchors=anchors)
    _reserve(ledger, 1)
    old = path.read_text()
    _reserve(ledger, 2)
    assert anchors.get("")["entries"] == 2
    path.write_text(old)  # roll back to the one-entry ledger (a valid chain on its own)
    assert len(PrivacyLedger.open(path, key=KEY).entries) == 1  # without the anchor: loads
    with pytest.raises(LedgerError, match="truncated or rolled back"):
        PrivacyLedger.open(path, key=KEY, anchors=anchors)
    path.unlink()  # delete it to start afresh
    with pytest.raises(LedgerError, match="has been deleted"):
        _open(path, 50.0, key=KEY, anchors=anchors)
    raw = json.loads((tmp_path / "anchors.json").read_text())
    raw["anchors"][""]["entries"] = 0
    (tmp_path / "anchors.json").write_text(json.dumps(raw))
    with pytest.raises(LedgerError, match="fail authentication"):
        _open(path, 50.0, key=KEY, anchors=anchors)


def test_smaller_delta_reports_a_larger_epsilon_for_the_same_history(tmp_path):
    ledger = _open(tmp_path / "ledger.json", 50.0)
    _reserve(ledger, 1, delta=1e-5)
    assert ledger.epsilon_spent(1e-7) > ledger.epsilon_spent(1e-5) == ledger.epsilon_spent()


def test_crosscheck_over_mixed_mechanisms_and_the_command_line(tmp_path, capsys):
    path = tmp_path / "ledger.json"
    ledger = _open(path, 50.0, delta=1e-6, key=KEY)
    _reserve(ledger, 1)
    _reserve(ledger, 2, noise_multiplier=0.8, sample_rate=1 / 93, steps=93, delta=1e-6)
    _reserve(ledger, 1, noise_multiplier=3.0, sample_rate=0.1, steps=30)
    _reserve(ledger, 3, noise_multiplier=10.0, sample_rate=1.0, steps=1, kind="evaluate")
    report = crosscheck_ledger(ledger)
    assert len(report.rows) == 4 and report.ok
    assert report.max_relative_difference < 0.01
    assert crosscheck_main([str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    # a recorded epsilon that understates the spend fails the check
    data = json.loads(path.read_text())
    data["entries"][2]["epsilon_after"] *= 0.9  # caught here too (no key needed to read it)
    path.write_text(json.dumps(data))
    assert crosscheck_main([str(path)]) == 1
