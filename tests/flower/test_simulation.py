"""The real apps in Flower's Simulation Engine: a clean run, faulty forces, a hanging force."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import ray.cloudpickle
from flower_world import BACKEND_CONFIG, FedAvgRun, FlowerWorld
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from client_force.client_app import make_client_app
from federation.contract import EgressContract
from federation.flower_settings import FlowerSettings
from privacy.keys import MasterSecretSource
from retention.store import ForceStore
from server_national.checkpoint import load_checkpoint
from server_national.server_app import make_server_app
from server_national.strategy import RoundFailedError

# The faulty app below is defined in this module: ship it to the Ray workers by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

VRM = "AB12CDE"


def _json(results: Path, name: str):
    return json.loads((results / name).read_text())


def test_fedavg_run_completes_and_writes_the_server_outputs(fedavg_run: FedAvgRun) -> None:
    results, settings = fedavg_run.results, fedavg_run.settings
    status = _json(results, "status.json")
    assert (status["status"], status["rounds_completed"], status["error"]) == ("completed", 2, None)
    rounds = _json(results, "metrics.json")["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for r in rounds[1:]:
        assert r["train"]["sampled"] == r["train"]["accepted"] == 3
        assert r["train"]["aggregated"]["num-replies"] == 3
        assert r["evaluate"]["accepted"] == 3
        assert 0.0 <= r["evaluate"]["aggregated"]["pr-auc"] <= 1.0
    assert _json(results, "rejections.json") == [] and _json(results, "failures.json") == []
    # Each force's reported spend composes over the rounds and stays within the study budget.
    ledger = _json(results, "ledger.json")
    by_node: dict[int, list[float]] = {}
    for entry in ledger["entries"]:
        by_node.setdefault(entry["node_id"], []).append(entry["epsilon"])
        assert not entry["over_budget"] and not entry["epsilon_decreased"]
    assert len(by_node) == 3
    assert all(
        len(e) == 2 and 0 < e[0] < e[1] <= settings.dp_target_epsilon for e in by_node.values()
    )
    contract = EgressContract.from_model_config(settings.model_config())
    checkpoints = results / status["checkpoint_dir"]  # relative to the results folder
    names = sorted(p.name for p in checkpoints.glob("*.npz"))
    assert names == ["final.npz", "round-0000.npz", "round-0001.npz", "round-0002.npz"]
    final = load_checkpoint(checkpoints / "final.npz")
    assert list(final) == list(contract.array_names)
    assert all(np.isfinite(a).all() for a in final.values())
    start = load_checkpoint(checkpoints / "round-0000.npz")
    assert any(not np.array_equal(start[k], final[k]) for k in final)


def test_no_vrm_pseudonym_or_camera_reaches_the_server(fedavg_run: FedAvgRun) -> None:
    canaries: set[bytes] = set()
    for force in fedavg_run.world.forces:
        store = ForceStore.open(force.store, MasterSecretSource.from_key_file(force.key_file))
        pseudonyms = store.pseudonymiser().pseudonymise(pa.array(force.vrms)).to_pylist()
        tokens = store.read_cameras()["token"].to_pylist()
        for vrm in force.vrms:
            canaries |= {vrm.encode(), f"{vrm[:-3]} {vrm[-3:]}".encode()}
        canaries |= {p.encode() for p in pseudonyms} | {t.encode() for t in tokens}
        canaries.add(f"{force.name.upper()}-CAM-000".encode())
    assert len(canaries) > 1000
    server_bytes = [p.read_bytes() for p in fedavg_run.results.rglob("*") if p.is_file()]
    assert server_bytes
    for blob in server_bytes:
        assert not [c for c in canaries if c in blob]


def _faulty_app(
    settings: FlowerSettings, behaviour: dict[tuple[int, int], str], hang_seconds: float
) -> ClientApp:
    """The real ClientApp, except that chosen (partition, round) pairs misbehave in training."""
    real = make_client_app(settings)
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        server_round = int(message.content["config"]["server-round"])
        key = (int(context.node_config["partition-id"]), server_round)
        what = behaviour.get(key, "honest")
        if what == "raise":
            raise RuntimeError(f"crashed while reading {VRM}")
        if what == "hang":
            time.sleep(hang_seconds)
        reply = real(message, context)
        if what == "smuggle" and reply.has_content():
            reply.content["note"] = ConfigRecord({"vehicle": VRM})
        return reply

    return app


def test_faulty_forces_are_dropped_then_the_run_fails_clearly_below_quorum(
    world: FlowerWorld,
) -> None:
    """Round 1: a force crashes (its error text names a VRM) and is dropped; the round proceeds
    with the other two. Round 2: one force smuggles a VRM (rejected) and one hangs (timed out),
    leaving one acceptable update where two are required: the run fails, in bounded time, with
    a message that says why."""
    hang, timeout = 16.0, 10.0
    settings = world.settings(
        num_server_rounds=2,
        min_available_nodes=3,
        min_replies=2,
        first_round_timeout=180.0,  # round 1 includes starting every simulated force
        round_timeout=timeout,
        fraction_evaluate=0.0,
    )
    behaviour = {(2, 1): "raise", (1, 2): "smuggle", (2, 2): "hang"}
    app = _faulty_app(settings, behaviour, hang)
    started = time.monotonic()
    with pytest.raises(RoundFailedError) as failed:
        run_simulation(make_server_app(settings), app, 3, backend_config=BACKEND_CONFIG)
    elapsed = time.monotonic() - started
    message = (
        "round 2: 1 of 3 force(s) delivered an acceptable update, the round needs at least 2 "
        "(min-replies); 1 timed out, 1 rejected by the egress guard, 0 error replies"
    )
    assert str(failed.value) == message
    results = Path(settings.results_dir)
    status = _json(results, "status.json")
    assert (status["status"], status["error"]) == ("failed", f"RoundFailedError: {message}")
    assert status["rounds_completed"] == 1  # round 1 proceeded without the crashed force
    first = _json(results, "metrics.json")["rounds"][1]["train"]
    assert (first["sampled"], first["accepted"]) == (3, 2)
    failures = _json(results, "failures.json")
    assert [(f["round"], f["reason"], f["error_code"]) for f in failures] == [
        (1, "error-reply", 2),
        (2, "timeout", None),
    ]
    crashed = failures[0]["node_id"]
    assert crashed == failures[1]["node_id"] and crashed not in first["nodes"]
    [rejection] = _json(results, "rejections.json")
    assert (rejection["round"], rejection["codes"]) == (2, ["unexpected-record"])
    text = "\n".join(p.read_text(errors="replace") for p in results.glob("*.json"))
    assert VRM not in text
    assert elapsed < 180 + timeout + hang + 60  # bounded: nothing waits for the hung force
