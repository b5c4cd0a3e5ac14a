"""The guarded strategies on Flower's real in-memory Grid (no simulation engine needed)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.constant import HEARTBEAT_INTERVAL_INF, NOOP_ACCOUNT_NAME, NOOP_FLWR_AID
from flwr.proto.task_pb2 import Task
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from federation.contract import EgressContract
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, get_weights
from server_national.egress_guard import EgressGuard
from server_national.ledger_view import LedgerView
from server_national.run_outputs import RunOutputs
from server_national.strategy import (
    NodesUnavailableError,
    RoundFailedError,
    aggregate_evaluate_metrics_rows,
    make_strategy,
    wait_for_nodes,
)

SETTINGS = FlowerSettings(
    model_hidden=4, model_conv_layers=1, model_kernel_size=3, min_available_nodes=3, min_replies=2
)


def _grid(n_nodes: int) -> tuple[InMemoryGrid, list[int]]:
    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    state = factory.state()
    # Register a run as flwr.simulation's in-process runtime does.
    run = Run.create_empty(run_id=1234)
    run.primary_task_id = 99
    run.federation_id = NOOP_FEDERATION_ID
    state.run_ids[run.run_id] = RunRecord(run=run)
    state.task_store[99] = Task(task_id=99, run_id=run.run_id)
    nodes = []
    for _ in range(n_nodes):
        node = state.create_node(
            NOOP_FLWR_AID, NOOP_ACCOUNT_NAME, secrets.token_bytes(32), HEARTBEAT_INTERVAL_INF
        )
        state.acknowledge_node_heartbeat(node_id=node, heartbeat_interval=HEARTBEAT_INTERVAL_INF)
        nodes.append(int(node))
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    return grid, sorted(nodes)


def _strategy(tmp_path: Path, settings: FlowerSettings):
    contract = EgressContract.from_model_config(settings.model_config())
    ledger = LedgerView(settings.dp_target_epsilon)
    outputs = RunOutputs(tmp_path / "r", tmp_path / "c", contract, ledger, 1, {})
    guard = EgressGuard(contract, outputs.record_rejection, outputs.record_failure)
    return make_strategy(settings, guard=guard, outputs=outputs, ledger=ledger), contract, outputs


def test_waiting_for_forces_is_bounded_and_says_why() -> None:
    grid, nodes = _grid(2)
    assert wait_for_nodes(grid, 2, timeout=1.0) == nodes
    start = time.monotonic()
    with pytest.raises(NodesUnavailableError, match="only 2 force node\\(s\\) connected after 1 s"):
        wait_for_nodes(grid, 3, timeout=1.0)
    assert time.monotonic() - start < 5


def test_fedprox_instructions_carry_round_and_proximal_mu(tmp_path: Path, task_identity) -> None:
    grid, nodes = _grid(3)
    strategy, contract, _ = _strategy(
        tmp_path, SETTINGS.replace(strategy="fedprox", proximal_mu=0.3)
    )
    torch.manual_seed(0)
    arrays = contract.to_array_record(get_weights(TrajectoryModel(SETTINGS.model_config())))
    messages = list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == nodes
    for m in messages:
        assert m.metadata.group_id == "2" and m.metadata.message_type == MessageType.TRAIN
        assert m.content["config"]["proximal-mu"] == 0.3
        assert m.content["config"]["server-round"] == 2


def _reply(
    instruction: Message, contract: EgressContract, scale: float, n: int, eps: float
) -> Message:
    instruction.metadata.__dict__["_message_id"] = f"m{instruction.metadata.dst_node_id}"
    arrays = contract.from_array_record(instruction.content["arrays"])
    content = RecordDict(
        {
            "arrays": contract.to_array_record([a * 0 + scale for a in arrays]),
            "metrics": MetricRecord(
                {"num-examples": n, "train-loss": 0.5, "epsilon": eps, "delta": 1e-5}
            ),
        }
    )
    return Message(content, reply_to=instruction)


def test_rounds_average_accepted_replies_and_fail_below_quorum(
    tmp_path: Path, task_identity
) -> None:
    grid, _ = _grid(3)
    strategy, contract, outputs = _strategy(tmp_path, SETTINGS)
    torch.manual_seed(0)
    arrays = contract.to_array_record(get_weights(TrajectoryModel(SETTINGS.model_config())))
    ins = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    replies = [_reply(ins[0], contract, 1.0, 30, 1.0), _reply(ins[1], contract, 4.0, 10, 2.0)]
    # the third force never answers: a timeout
    agg, metrics = strategy.aggregate_train(1, replies)
    merged = contract.from_array_record(agg)
    assert all(np.allclose(a, (1.0 * 30 + 4.0 * 10) / 40) for a in merged)
    assert metrics["num-examples"] == 40 and metrics["epsilon-max"] == 2.0
    assert [f.reason for f in outputs.failures] == ["timeout"]
    assert [e.epsilon for e in outputs.ledger.entries] == [1.0, 2.0]

    ins = list(strategy.configure_train(2, agg, ConfigRecord(), grid))
    bad = _reply(ins[1], contract, 1.0, 10, 2.5)
    bad.content["note"] = ConfigRecord({"x": "y"})
    with pytest.raises(RoundFailedError) as failed:
        strategy.aggregate_train(2, [_reply(ins[0], contract, 1.0, 30, 1.5), bad])
    assert str(failed.value) == (
        "round 2: 1 of 3 force(s) delivered an acceptable update, the round needs at least 2 "
        "(min-replies); 1 timed out, 1 rejected by the egress guard, 0 error replies"
    )


def test_evaluation_metrics_weight_pr_auc_by_positives() -> None:
    rows = [
        {
            "num-examples": 10,
            "num-positives": 0,
            "eval-loss": 1.0,
            "pr-auc": 0.0,
            "precision-at-recall-0.5": 0.0,
        },
        {
            "num-examples": 30,
            "num-positives": 3,
            "eval-loss": 0.2,
            "pr-auc": 0.6,
            "precision-at-recall-0.5": 0.5,
        },
        {
            "num-examples": 20,
            "num-positives": 1,
            "eval-loss": 0.5,
            "pr-auc": 0.2,
            "precision-at-recall-0.5": 0.1,
        },
    ]
    out = aggregate_evaluate_metrics_rows(rows)
    assert out["pr-auc"] == pytest.approx((0.6 * 3 + 0.2 * 1) / 4)
    assert out["eval-loss"] == pytest.approx((10 * 1.0 + 30 * 0.2 + 20 * 0.5) / 60)
    assert (out["num-examples"], out["num-positives"], out["num-replies"]) == (60, 4, 3)
