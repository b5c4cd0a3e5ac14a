"""The force's privacy ledger: persistence, budget refusal, tamper evidence, cross-check."""

from __future__ import annotations

import json

import pytest

from privacy.dp.accountant import epsilon_for
from privacy.dp.config import DEFAULT_ORDERS
from privacy.dp.crosscheck import crosscheck_ledger
from privacy.dp.crosscheck import main as crosscheck_main
from privacy.dp.ledger import (
    LedgerError,
    PrivacyBudgetExceeded,
    PrivacyLedger,
    default_ledger_path,
)

MECH = {"noise_multiplier": 1.2, "sample_rate": 0.02, "steps": 100, "max_grad_norm": 1.0}


def _reserve(ledger, round_id, delta=1e-5, **kw):
    return ledger.reserve(
        **{**MECH, **kw}, delta=delta, study_id="s1", round_id=round_id, examples=5000
    )


def test_ledger_records_every_mechanism_beside_the_epsilon(tmp_path):
    path = default_ledger_path(tmp_path / "store")
    assert path == tmp_path / "store" / "privacy" / "ledger.json"
    ledger = PrivacyLedger.open(path, epsilon_budget=10.0)
    first = _reserve(ledger, 1)
    ledger.complete(first.seq)
    second = _reserve(ledger, 2)
    data = json.loads(path.read_text())
    assert data["epsilon_budget"] == 10.0 and data["unit_of_privacy"] == "vehicle"
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
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=1.5)
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
    PrivacyLedger.open(path, epsilon_budget=3.0)
    PrivacyLedger.open(path, epsilon_budget=3.0)
    with pytest.raises(LedgerError, match="different budget"):
        PrivacyLedger.open(path, epsilon_budget=30.0)


def test_an_edited_or_removed_entry_is_detected(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger.open(path, epsilon_budget=50.0)
    for r in range(3):
        _reserve(ledger, r)
    data = json.loads(path.read_text())
    data["entries"][1]["steps"] = 1  # pretend less was spent
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="hash chain broken at entry 1"):
        PrivacyLedger.open(path)
    data["entries"][1]["steps"] = 100
    del data["entries"][0]
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="hash chain broken at entry 0"):
        PrivacyLedger.open(path)


def test_smaller_delta_reports_a_larger_epsilon_for_the_same_history(tmp_path):
    ledger = PrivacyLedger.open(tmp_path / "ledger.json", epsilon_budget=50.0)
    _reserve(ledger, 1, delta=1e-5)
    assert ledger.epsilon_spent(1e-7) > ledger.epsilon_spent(1e-5)


def test_crosscheck_over_mixed_mechanisms_and_the_command_line(tmp_path, capsys):
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger.open(path, epsilon_budget=50.0)
    _reserve(ledger, 1)
    _reserve(ledger, 2, noise_multiplier=0.8, sample_rate=1 / 93, steps=93, delta=1e-6)
    _reserve(ledger, 1, noise_multiplier=3.0, sample_rate=0.1, steps=30)
    report = crosscheck_ledger(ledger)
    assert len(report.rows) == 3 and report.ok
    assert report.max_relative_difference < 0.01
    assert crosscheck_main([str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    # a recorded epsilon that understates the spend fails the check
    data = json.loads(path.read_text())
    data["entries"][2]["epsilon_after"] *= 0.9  # not covered by the hash chain: caught here
    path.write_text(json.dumps(data))
    assert crosscheck_main([str(path)]) == 1
