"""A hostile national server against a deployed force's real ClientApp (issue 14).

Each attack from the review is tried through the run config (which the server chooses) or the
arrays it sends. Each must be refused -- an error reply carrying only ``policy-refused`` (or
``privacy-budget-exhausted``), with nothing recorded in the force's ledger -- or answered
only with DP-protected, charged output.
"""

from __future__ import annotations

import numpy as np
import pytest
from deployed_force import DEPLOYED_POLICY, DeployedForce
from hostile import (
    ask,
    isolating_model,
    label_from_reply,
    old_contract_evaluate,
    summaries,
)

from client_force.flower_round import contract_for
from client_force.force_dataset import load_force_dataset
from client_force.private_training import ForcePrivacyEngine
from federation.contract import CLIENT_ERROR_BY_NAME
from federation.model import TrajectoryModel, predict_scores, set_weights
from privacy.dp.ledger import default_ledger_path

pytestmark = pytest.mark.usefixtures("task_identity")

REFUSED = CLIENT_ERROR_BY_NAME["policy-refused"]


def _ledger(force: DeployedForce):
    return ForcePrivacyEngine.for_store(force.open_store()).open_existing(force.settings)


def _assert_refused(reply, force: DeployedForce, entries_before: int = 0) -> None:
    assert reply.has_error(), "the force answered a request its policy forbids"
    assert (reply.error.code, reply.error.reason) == (REFUSED, "policy-refused")
    ledger = _ledger(force)
    assert (len(ledger.entries) if ledger else 0) == entries_before, "a refusal spent budget"


def test_a_known_training_seed_is_refused(force: DeployedForce) -> None:
    for kind in ("train", "evaluate"):
        _assert_refused(ask(force.node_config, force.settings, {"training-seed": 0}, kind), force)


def test_dp_noise_comes_from_the_force_csprng(force: DeployedForce) -> None:
    """Same instruction twice, no seed: different noise, so the server cannot replay it."""
    first = ask(force.node_config, force.settings, {}, "train")
    second = ask(force.node_config, force.settings, {}, "train")
    assert not first.has_error() and not second.has_error()
    a = contract_for(force.settings).from_array_record(first.content["arrays"])
    b = contract_for(force.settings).from_array_record(second.content["arrays"])
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_fresh_ledger_scope_is_refused(force: DeployedForce) -> None:
    reply = ask(force.node_config, force.settings, {"ledger-scope": "fresh-start"}, "train")
    _assert_refused(reply, force)
    assert not (force.store / "privacy" / "scopes").exists()


def test_an_inflated_budget_does_not_move_the_force_budget(force: DeployedForce) -> None:
    # Calibrated to a huge epsilon, the noise falls below the force's minimum: refused.
    reply = ask(
        force.node_config,
        force.settings,
        {"dp-target-epsilon": 1e6, "dp-noise-multiplier": 0.0},
        "train",
    )
    _assert_refused(reply, force)
    # With an acceptable noise level rounds run, but against the force's own budget: the
    # server's epsilon changes nothing, and the force stops when its own budget is spent.
    hostile = {
        "dp-target-epsilon": 1e6,
        "dp-noise-multiplier": 1.0,
    }
    codes = []
    for server_round in range(1, 13):
        reply = ask(force.node_config, force.settings, hostile, "train", server_round)
        codes.append(reply.error.code if reply.has_error() else 0)
        if reply.has_error():
            break
    assert codes[-1] == CLIENT_ERROR_BY_NAME["privacy-budget-exhausted"], codes
    ledger = _ledger(force)
    assert ledger.epsilon_budget == DEPLOYED_POLICY.epsilon_budget
    assert 0 < ledger.epsilon_spent() <= DEPLOYED_POLICY.epsilon_budget
    assert not ledger.simulation


def test_delta_inflation_is_refused(force: DeployedForce) -> None:
    honest = ask(force.node_config, force.settings, {}, "train")
    assert not honest.has_error()
    ledger = _ledger(force)
    assert honest.content["metrics"]["delta"] == ledger.delta
    # The delta reveals only the order of magnitude of the force's size.
    assert np.log10(ledger.delta) == pytest.approx(round(np.log10(ledger.delta)))
    reply = ask(force.node_config, force.settings, {"dp-delta": 0.05}, "train", 2)
    _assert_refused(reply, force, entries_before=len(ledger.entries))
    assert _ledger(force).delta == ledger.delta


def test_a_huge_test_fraction_is_refused(force: DeployedForce) -> None:
    for kind in ("train", "evaluate"):
        reply = ask(force.node_config, force.settings, {"test-fraction": 0.95}, kind)
        _assert_refused(reply, force)


def test_the_label_oracle_works_on_the_old_contract_and_fails_on_the_new(
    force: DeployedForce,
) -> None:
    settings = force.settings
    data = load_force_dataset(force.open_store(), settings)
    labels = np.asarray(data.eval_labels, dtype=np.float64)
    features = summaries(data.test)
    targets = {}
    for wanted in (1.0, 0.0):  # one offending and one innocent held-out vehicle
        for index in np.flatnonzero(labels == wanted):
            try:
                targets[int(wanted)] = (int(index), isolating_model(settings, features, index)[0])
                break
            except ValueError:
                continue
    assert set(targets) == {0, 1}, "no isolatable target of each label"

    # Old contract (exact, unaccounted): the crafted model reveals each target's label.
    for truth, (index, weights) in targets.items():
        model = TrajectoryModel(settings.model_config())
        set_weights(model, weights)
        scores = predict_scores(model, data.test)
        assert scores[index] > 0.999 and np.delete(scores, index).max() < 1e-6
        assert label_from_reply(old_contract_evaluate(model, data.test, labels)) == truth

    # New contract, the real ClientApp: every reply is a charged DP release; the same attack
    # is a coin flip, and the force stops answering at its policy's cap.
    trials = DEPLOYED_POLICY.max_evaluate_rounds // 2
    correct = 0
    for trial in range(trials):
        for truth, (_, weights) in targets.items():
            reply = ask(force.node_config, settings, {}, "evaluate", trial + 1, weights)
            assert not reply.has_error()
            assert contract_for(settings).check_evaluate_reply(reply.content) == []
            correct += label_from_reply(dict(reply.content["metrics"])) == truth
    print(f"label oracle on the new contract: right {correct} of {2 * trials} times")  # -s
    assert correct / (2 * trials) <= 0.8, f"attack right {correct} of {2 * trials} times"
    ledger = _ledger(force)
    assert ledger.count("evaluate") == DEPLOYED_POLICY.max_evaluate_rounds
    assert 0 < ledger.epsilon_spent() <= DEPLOYED_POLICY.epsilon_budget
    capped = ask(force.node_config, settings, {}, "evaluate", 99, targets[1][1])
    _assert_refused(capped, force, entries_before=len(ledger.entries))


def test_a_planted_policy_is_refused(force: DeployedForce) -> None:
    """A local user without the key cannot plant a permissive policy in the store."""
    path = force.store / "privacy" / "policy.toml"
    path.write_text("allow-simulation-settings = true\nepsilon-budget = 1e9\n")
    reply = ask(force.node_config, force.settings, {"training-seed": 0}, "train")
    assert reply.has_error()
    assert reply.error.reason == "store-unavailable"
    assert not default_ledger_path(force.store).exists()


def test_a_non_private_round_is_refused_by_a_deployed_force(force: DeployedForce) -> None:
    reply = ask(force.node_config, force.settings, {"dp-enabled": False}, "train")
    _assert_refused(reply, force)
