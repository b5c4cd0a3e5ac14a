"""A force's round in process: DP training with its ledger, FedProx, code-only refusals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from flower_world import FlowerWorld
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from client_force.client_app import make_client_app
from client_force.flower_round import RoundRefusedError, contract_for, local_train, node_store
from client_force.privacy_policy import SIMULATION_POLICY
from client_force.private_training import install_policy
from federation.contract import CLIENT_ERROR_BY_NAME
from federation.model import TrajectoryModel, get_weights
from privacy.dp.ledger import PrivacyLedger, default_ledger_path
from privacy.keys import MasterSecretSource
from retention.store import ForceStore


def _set_budget(node, budget: float) -> None:
    """The force's own lifetime budget (its policy), here equal to the study's request."""
    store = ForceStore.open(node.store, MasterSecretSource.from_key_file(node.key_file))
    install_policy(store, dataclasses.replace(SIMULATION_POLICY, epsilon_budget=budget))


def _train_entries(node) -> list:
    return [
        e for e in PrivacyLedger.open(default_ledger_path(node.store)).entries if e.kind == "train"
    ]


def _global(settings) -> list[np.ndarray]:
    torch.manual_seed(settings.seed)
    return get_weights(TrajectoryModel(settings.model_config()))


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b, strict=True))))


def test_rounds_compose_in_the_ledger_and_refuse_past_the_budget(world: FlowerWorld) -> None:
    settings = world.settings(num_server_rounds=2, training_seed=11, dp_noise_multiplier=0.0)
    node = node_store({"partition-id": 0}, settings)
    _set_budget(node, settings.dp_target_epsilon)
    start = _global(settings)
    first = local_train(node, settings, start, server_round=1, run_id="r1")
    second = local_train(node, settings, first.arrays, server_round=2, run_id="r1")
    assert 0 < first.metrics["epsilon"] < second.metrics["epsilon"] <= settings.dp_target_epsilon
    ledger = PrivacyLedger.open(default_ledger_path(node.store))
    # each round: its DP-SGD steps, then the release of its scalars
    assert [(e.kind, e.status) for e in ledger.entries] == [
        ("train", "completed"),
        ("release", "completed"),
    ] * 2
    assert ledger.delta == second.metrics["delta"]
    assert ledger.epsilon_spent() == pytest.approx(second.metrics["epsilon"], abs=0.01)
    assert second.metrics["epsilon"] >= ledger.epsilon_spent()  # rounded up, never down
    # A new run on the same data starts from the ledger, not from zero: no budget is left.
    with pytest.raises(RoundRefusedError) as refused:
        local_train(node, settings, second.arrays, server_round=1, run_id="r2")
    assert refused.value.name == "privacy-budget-exhausted"
    assert len(PrivacyLedger.open(default_ledger_path(node.store)).entries) == 4


def test_fedprox_term_keeps_the_update_near_the_global_model(world: FlowerWorld) -> None:
    settings = world.settings(num_server_rounds=2, training_seed=11, learning_rate=0.02)
    node = node_store({"partition-id": 1}, settings)
    start = _global(settings)
    # Same force, round number and seed: identical Poisson batches and noise; only mu differs.
    plain = local_train(node, settings, start, server_round=1, run_id="a")
    prox = local_train(node, settings, start, server_round=1, run_id="b", proximal_mu=50.0)
    assert _distance(prox.arrays, start) < 0.5 * _distance(plain.arrays, start)
    # The proximal gradient is post-processing: the ledger records the same mechanism twice.
    first, second = _train_entries(node)
    assert first.mechanism == second.mechanism
    assert prox.metrics["epsilon"] > plain.metrics["epsilon"]  # and the spend composes


def _instruction(settings, server_round: int = 1) -> Message:
    content = RecordDict(
        {
            "arrays": contract_for(settings).to_array_record(_global(settings)),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    message = Message(content, dst_node_id=5, message_type=MessageType.TRAIN, group_id="1")
    message.metadata.__dict__["_message_id"] = "ins-1"
    return message


def _context(partition: int) -> Context:
    return Context(
        run_id=77,
        node_id=5,
        node_config={"partition-id": partition, "num-partitions": 3},
        state=RecordDict(),
        run_config={},
    )


def test_client_app_replies_within_the_contract_or_with_a_code_only(
    world: FlowerWorld, task_identity
) -> None:
    # The same calibrated two-round plan as above (the calibration is cached per process).
    settings = world.settings(num_server_rounds=2, training_seed=3, dp_noise_multiplier=0.0)
    _set_budget(node_store({"partition-id": 0}, settings), settings.dp_target_epsilon)
    app = make_client_app(settings)
    for server_round in (1, 2):
        reply = app(_instruction(settings, server_round), _context(0))
        assert not reply.has_error()
        assert contract_for(settings).check_train_reply(reply.content) == []
        assert reply.content["metrics"]["num-examples"] > 0
    log = node_store({"partition-id": 0}, settings).store / "logs" / "flower-rounds.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["run_id"], r["node_id"], r["round"]) for r in rows] == [("77", 5, 1), ("77", 5, 2)]
    # The plan's two rounds used the whole budget: a third instruction is refused.
    refused = app(_instruction(settings, 3), _context(0))
    assert refused.has_error()
    assert refused.error.code == CLIENT_ERROR_BY_NAME["privacy-budget-exhausted"]
    assert refused.error.reason == "privacy-budget-exhausted"
    # A node whose store cannot be found says so by code only (no path in the reason).
    lost = app(_instruction(settings), _context(9))
    assert (lost.error.code, lost.error.reason) == (
        CLIENT_ERROR_BY_NAME["store-unavailable"],
        "store-unavailable",
    )


def test_a_simulated_non_private_reference_says_so_and_spends_nothing(world: FlowerWorld) -> None:
    """Issue 12: local-only/federated without DP (epsilon = inf), simulation only."""
    settings = world.settings(dp_enabled=False, training_seed=4)
    node = node_store({"partition-id": 2}, settings)
    outcome = local_train(node, settings, _global(settings), server_round=1, run_id="ref")
    assert outcome.metrics["epsilon"] == float("inf") and outcome.metrics["delta"] == 1.0
    record = contract_for(settings).to_array_record(outcome.arrays)
    content = RecordDict({"arrays": record, "metrics": MetricRecord(outcome.metrics)})
    assert contract_for(settings).check_train_reply(content) == []
    assert not default_ledger_path(node.store).exists()  # no ledger spend
