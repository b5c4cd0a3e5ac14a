"""Rewinding a force's ledger (restoring an older copy, deleting it) is detected (issue 14).

The attacker here is whoever can replace files in the store (a local user, a restored backup):
the keyed chain and the anchor outside the ledger file make the force refuse to train on a
rewound ledger, and ``anprfed force status`` reports it and exits non-zero.
"""

from __future__ import annotations

import json

import pytest
from deployed_force import DeployedForce
from hostile import ask
from typer.testing import CliRunner

from client_force.cli import app as force_cli
from federation.contract import CLIENT_ERROR_BY_NAME
from privacy.dp.ledger import default_ledger_path

pytestmark = pytest.mark.usefixtures("task_identity")


def _status(force: DeployedForce) -> tuple[int, dict]:
    result = CliRunner().invoke(
        force_cli, ["status", str(force.store), "--key-file", str(force.key_file), "--json"]
    )
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_a_rolled_back_or_deleted_ledger_is_detected(force: DeployedForce) -> None:
    path = default_ledger_path(force.store)
    assert not ask(force.node_config, force.settings, {}, "train", 1).has_error()
    older = path.read_text()
    assert not ask(force.node_config, force.settings, {}, "train", 2).has_error()
    code, status = _status(force)
    assert code == 0 and [row["state"] for row in status["privacy_ledgers"]] == ["ok"]

    path.write_text(older)  # a valid, shorter chain: what a restored backup looks like
    code, status = _status(force)
    assert code == 2 and status["privacy_ledgers"][0]["state"] == "tampered"
    reply = ask(force.node_config, force.settings, {}, "train", 3)
    assert reply.has_error() and reply.error.code != 0

    path.unlink()  # delete it to start afresh with a full budget
    code, status = _status(force)
    assert code == 2 and status["privacy_ledgers"][0]["state"] == "missing"
    reply = ask(force.node_config, force.settings, {}, "train", 4)
    assert reply.has_error()
    assert reply.error.code in CLIENT_ERROR_BY_NAME.values()
    assert not path.exists()


def test_an_edited_budget_is_detected(force: DeployedForce) -> None:
    assert not ask(force.node_config, force.settings, {}, "train", 1).has_error()
    path = default_ledger_path(force.store)
    data = json.loads(path.read_text())
    data["epsilon_budget"] = 1e9
    path.write_text(json.dumps(data))
    code, status = _status(force)
    assert code == 2 and "header authentication" in status["privacy_ledgers"][0]["detail"]
    assert ask(force.node_config, force.settings, {}, "train", 2).has_error()


def test_the_operator_sets_the_policy_with_the_key(force: DeployedForce, tmp_path) -> None:
    """``anprfed force privacy-policy --install`` writes an authenticated policy."""
    policy = tmp_path / "policy.toml"
    policy.write_text("epsilon-budget = 5.0\nmax-sample-rate = 0.5\n")
    result = CliRunner().invoke(
        force_cli,
        [
            "privacy-policy",
            str(force.store),
            "--key-file",
            str(force.key_file),
            "--install",
            str(policy),
            "--json",
        ],
    )
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == 0 and shown["epsilon-budget"] == 5.0
    assert shown["allow-simulation-settings"] is False
    assert not ask(force.node_config, force.settings, {}, "train", 1).has_error()
    code, status = _status(force)
    assert code == 0 and status["privacy_ledgers"][0]["epsilon_budget"] == 5.0
