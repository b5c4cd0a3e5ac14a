"""The server's run outputs name forces, not Flower node ids, and hold no absolute path."""

from __future__ import annotations

import json
from pathlib import Path

from flwr.app import ArrayRecord

from federation.contract import EgressContract
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, get_weights
from server_national.egress_guard import Failure, Rejection
from server_national.ledger_view import LedgerView
from server_national.node_names import name_forces
from server_national.run_outputs import RunOutputs

NODE_A, NODE_B, STRANGER = 8_812_345_678_901, 4_411_223_344_556, 77


def _outputs(tmp_path: Path) -> tuple[RunOutputs, Path, EgressContract]:
    settings = FlowerSettings(results_dir=str(tmp_path / "results"))
    contract = EgressContract.from_model_config(settings.model_config())
    ledger = LedgerView(4.0)
    results = tmp_path / "results"
    outputs = RunOutputs(
        results, results / "checkpoints", contract, ledger, 9, settings.to_run_config()
    )
    for node, eps in ((NODE_A, 1.5), (NODE_B, 2.0)):
        ledger.record(1, node, eps, 1e-5, 100)
    outputs.record_phase(
        1,
        "train",
        sampled=3,
        per_node={NODE_A: {"train-loss": 0.3}, NODE_B: {"train-loss": 0.4}},
        aggregated={"train-loss": 0.35},
    )
    outputs.record_rejection(Rejection(1, STRANGER, "train", ("metric-unexpected",), ("x",)))
    outputs.record_failure(Failure(1, NODE_B, "evaluate", "timeout"))
    weights = get_weights(TrajectoryModel(settings.model_config()))
    arrays = contract.to_array_record(weights)
    assert isinstance(arrays, ArrayRecord)
    outputs.checkpoint(1, arrays)
    outputs.finish(arrays)
    return outputs, results, contract


def test_outputs_name_forces_after_the_run(tmp_path: Path) -> None:
    _, results, _ = _outputs(tmp_path)
    before = (results / "metrics.json").read_text()
    assert str(NODE_A) in before  # the server only knows node ids while it runs
    name_forces(results, {NODE_A: "cheshire", NODE_B: "cumbria"})
    for name in ("metrics.json", "ledger.json", "rejections.json", "failures.json"):
        text = (results / name).read_text()
        assert str(NODE_A) not in text and str(NODE_B) not in text, name
    rounds = json.loads((results / "metrics.json").read_text())["rounds"]
    train = next(r["train"] for r in rounds if r["train"])
    assert train["nodes"] == {"cheshire": {"train-loss": 0.3}, "cumbria": {"train-loss": 0.4}}
    assert train["aggregated"] == {"train-loss": 0.35}  # figures unchanged
    ledger = json.loads((results / "ledger.json").read_text())
    assert [e["force"] for e in ledger["entries"]] == ["cheshire", "cumbria"]
    assert set(ledger["latest"]) == {"cheshire", "cumbria"}
    failures = json.loads((results / "failures.json").read_text())
    assert failures[0]["force"] == "cumbria"
    # a node nobody can name is not guessed at
    rejections = json.loads((results / "rejections.json").read_text())
    assert rejections[0]["force"] == f"node {STRANGER}"


def test_status_holds_paths_relative_to_the_results_folder(tmp_path: Path) -> None:
    _, results, _ = _outputs(tmp_path)
    for name in ("status.json", "metrics.json"):
        assert str(tmp_path) not in (results / name).read_text(), name
    status = json.loads((results / "status.json").read_text())
    assert status["final_checkpoint"] == "checkpoints/final.npz"
    assert (results / status["final_checkpoint"]).is_file()
    assert status["settings"]["results-dir"] == "."
