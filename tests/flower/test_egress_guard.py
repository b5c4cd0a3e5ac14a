"""The egress contract and the national server's guard, on real Flower messages."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from federation.contract import CLIENT_ERROR_BY_NAME, EgressContract
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, get_weights, weight_spec
from server_national.egress_guard import EgressGuard
from server_national.ledger_view import LedgerView
from server_national.run_outputs import RunOutputs

VRM = "AB12CDE"
VRM_SPELLINGS = (VRM, "AB12 CDE", "ab12cde", VRM.encode().hex())
NODE = 4242
SETTINGS = FlowerSettings(model_hidden=4, model_conv_layers=1, model_kernel_size=3)


@pytest.fixture
def contract() -> EgressContract:
    return EgressContract.from_model_config(SETTINGS.model_config())


@pytest.fixture
def weights() -> list[np.ndarray]:
    torch.manual_seed(0)
    return get_weights(TrajectoryModel(SETTINGS.model_config()))


@pytest.fixture
def outputs(tmp_path: Path, contract: EgressContract) -> RunOutputs:
    return RunOutputs(tmp_path / "results", tmp_path / "ckpt", contract, LedgerView(8.0), 1, {})


def _instruction(kind: str = MessageType.TRAIN, node: int = NODE, server_round: int = 1) -> Message:
    message = Message(
        RecordDict({"config": ConfigRecord({"server-round": server_round})}),
        dst_node_id=node,
        message_type=kind,
        group_id=str(server_round),
    )
    message.metadata.__dict__["_message_id"] = f"ins-{node}-{server_round}"
    return message


def _train_content(contract: EgressContract, weights: list[np.ndarray]) -> RecordDict:
    return RecordDict(
        {
            "arrays": contract.to_array_record(weights),
            "metrics": MetricRecord(
                {"num-examples": 90, "train-loss": 0.5, "epsilon": 1.25, "delta": 1e-5}
            ),
        }
    )


def _screen(guard: EgressGuard, reply: Message, kind: str = "train") -> list[str]:
    result = guard.screen(
        [reply], kind=kind, server_round=1, sent={NODE: reply.metadata.message_type}
    )
    if result.accepted:
        return []
    return [code for r in result.rejections for code in r.codes]


def _smuggle_metric(record: MetricRecord, key: str, value: object) -> None:
    """Bypass MetricRecord's own type check, as a modified client could."""
    record.__dict__["_data"][key] = value


def _all_output_text(outputs: RunOutputs) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(outputs.results_dir.rglob("*"))
        if p.is_file()
    )


def test_contract_is_built_from_the_model_weight_spec(contract, weights) -> None:
    spec = weight_spec(SETTINGS.model_config())
    assert contract.array_names == tuple(name for name, _, _ in spec)
    assert [a.shape for a in contract.arrays] == [tuple(shape) for _, shape, _ in spec]
    record = contract.to_array_record(weights)
    assert contract.check_arrays(record) == []
    back = contract.from_array_record(record)
    assert all(np.array_equal(a, b) for a, b in zip(back, weights, strict=True))
    with pytest.raises(ValueError, match="expected float32"):
        contract.to_array_record([w.astype(np.float64) for w in weights])


def test_conforming_train_and_evaluate_replies_are_accepted(
    task_identity, contract, weights
) -> None:
    guard = EgressGuard(contract)
    reply = Message(_train_content(contract, weights), reply_to=_instruction())
    assert _screen(guard, reply) == []
    metrics = MetricRecord(
        {
            "num-examples": 40,
            "num-positives": 3,
            "eval-loss": 0.4,
            "pr-auc": 0.3,
            "precision-at-recall-0.5": 0.25,
        }
    )
    evaluation = Message(
        RecordDict({"metrics": metrics}), reply_to=_instruction(MessageType.EVALUATE)
    )
    assert _screen(guard, evaluation, "evaluate") == []
    assert guard.rejections == [] and guard.failures == []


def _vrm_as_config_record(content: RecordDict) -> None:
    content["note"] = ConfigRecord({"vehicle": VRM})


def _vrm_as_metric_string(content: RecordDict) -> None:
    _smuggle_metric(content["metrics"], "train-loss", VRM)


def _vrm_as_metric_key(content: RecordDict) -> None:
    content["metrics"]["count-" + VRM] = 1


def _vrm_as_extra_array(content: RecordDict) -> None:
    content["arrays"]["extra"] = Array(np.frombuffer(VRM.encode(), dtype=np.uint8).copy())


def _vrm_as_array_name(content: RecordDict) -> None:
    arrays = content["arrays"]
    first = next(iter(arrays))
    arrays[VRM] = arrays[first]
    del arrays[first]


def _vrm_as_record_name(content: RecordDict) -> None:
    content[VRM] = MetricRecord({"x": 1})


def _vrm_after_array_bytes(content: RecordDict) -> None:
    arrays = content["arrays"]
    first = next(iter(arrays))
    a = arrays[first]
    arrays[first] = Array(
        dtype=a.dtype, shape=tuple(a.shape), stype=a.stype, data=a.data + VRM.encode()
    )


def _vrm_in_array_header(content: RecordDict) -> None:
    arrays = content["arrays"]
    first = next(iter(arrays))
    value = arrays[first].numpy()
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": value.shape, "x": VRM}
    )
    data = buffer.getvalue() + value.tobytes()
    arrays[first] = Array(dtype="float32", shape=value.shape, stype="numpy.ndarray", data=data)


@pytest.mark.parametrize(
    ("smuggle", "code"),
    [
        (_vrm_as_config_record, "unexpected-record"),
        (_vrm_as_metric_string, "metric-type"),
        (_vrm_as_metric_key, "metric-unexpected"),
        (_vrm_as_extra_array, "array-unexpected"),
        (_vrm_as_array_name, "array-unexpected"),
        (_vrm_as_record_name, "unexpected-record"),
        (_vrm_after_array_bytes, "array-encoding"),
        (_vrm_in_array_header, "array-encoding"),
    ],
)
def test_a_smuggled_vrm_is_rejected_and_the_log_never_holds_it(
    task_identity, contract, weights, outputs, smuggle, code
) -> None:
    guard = EgressGuard(contract, on_rejection=outputs.record_rejection)
    content = _train_content(contract, weights)
    smuggle(content)
    reply = Message(content, reply_to=_instruction())
    codes = _screen(guard, reply)
    assert code in codes
    [rejection] = guard.rejections
    assert (rejection.node_id, rejection.server_round, rejection.kind) == (NODE, 1, "train")
    text = _all_output_text(outputs)
    assert f'"node_id": {NODE}' in text and code in text  # the rejection was recorded
    for spelling in VRM_SPELLINGS:
        assert spelling not in text


def _wrong_shape(contract, weights):
    bad = list(weights)
    bad[0] = np.zeros((bad[0].shape[0] + 1, *bad[0].shape[1:]), np.float32)
    record = ArrayRecord(
        {name: Array(a) for name, a in zip(contract.array_names, bad, strict=True)}
    )
    return record, "array-shape"


def _wrong_dtype(contract, weights):
    bad = [w.astype(np.float64) for w in weights]
    record = ArrayRecord(
        {name: Array(a) for name, a in zip(contract.array_names, bad, strict=True)}
    )
    return record, "array-dtype"


def _missing_array(contract, weights):
    record = contract.to_array_record(weights)
    del record[contract.array_names[-1]]
    return record, "array-missing"


def _nan_array(contract, weights):
    bad = [w.copy() for w in weights]
    bad[1].reshape(-1)[0] = np.nan
    return contract.to_array_record(bad), "array-non-finite"


def _torch_stype(contract, weights):
    record = contract.to_array_record(weights)
    a = record[contract.array_names[0]]
    record[contract.array_names[0]] = Array(
        dtype=a.dtype, shape=tuple(a.shape), stype="torch.Tensor", data=a.data
    )
    return record, "array-stype"


@pytest.mark.parametrize(
    "make", [_wrong_shape, _wrong_dtype, _missing_array, _nan_array, _torch_stype]
)
def test_arrays_outside_the_contract_are_rejected(task_identity, contract, weights, make) -> None:
    record, code = make(contract, weights)
    content = _train_content(contract, weights)
    content["arrays"] = record
    guard = EgressGuard(contract)
    assert code in _screen(guard, Message(content, reply_to=_instruction()))


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        # inf is only the explicit non-private pair (epsilon = inf, delta = 1)
        ("epsilon", float("inf"), "metric-range"),
        ("epsilon", float("nan"), "metric-non-finite"),
        ("delta", 1.0, "metric-range"),
        ("train-loss", float("nan"), "metric-non-finite"),
        ("epsilon", -0.5, "metric-range"),
        ("delta", 1.5, "metric-range"),
        ("num-examples", 0, "metric-range"),
        ("num-examples", 90.0, "metric-type"),
        ("num-examples", True, "metric-type"),
        ("epsilon", [1.0, 2.0], "metric-type"),
    ],
)
def test_metric_values_outside_the_contract_are_rejected(
    task_identity, contract, weights, key, value, code
) -> None:
    content = _train_content(contract, weights)
    _smuggle_metric(content["metrics"], key, value)
    assert code in _screen(EgressGuard(contract), Message(content, reply_to=_instruction()))


def test_a_non_private_reference_says_so_explicitly(task_identity, contract, weights) -> None:
    """A non-private (simulation-only) round reports epsilon = inf with delta = 1: accepted."""
    content = _train_content(contract, weights)
    _smuggle_metric(content["metrics"], "epsilon", float("inf"))
    _smuggle_metric(content["metrics"], "delta", 1.0)
    assert _screen(EgressGuard(contract), Message(content, reply_to=_instruction())) == []


def test_missing_records_and_metrics_are_rejected(task_identity, contract, weights) -> None:
    content = _train_content(contract, weights)
    del content["metrics"]["delta"]
    assert "metric-missing" in _screen(
        EgressGuard(contract), Message(content, reply_to=_instruction())
    )
    content = _train_content(contract, weights)
    del content["arrays"]
    assert "missing-record" in _screen(
        EgressGuard(contract), Message(content, reply_to=_instruction())
    )


def test_replies_that_do_not_answer_this_round_are_rejected(
    task_identity, contract, weights
) -> None:
    guard = EgressGuard(contract)
    stale = Message(_train_content(contract, weights), reply_to=_instruction(server_round=1))
    stale.metadata.group_id = "0"
    assert "wrong-round" in _screen(guard, stale)
    stranger = Message(_train_content(contract, weights), reply_to=_instruction(node=99))
    result = guard.screen([stranger], kind="train", server_round=1, sent={NODE: MessageType.TRAIN})
    assert result.accepted == []
    assert result.rejections[0].codes == ("unknown-node",)
    assert [(f.node_id, f.reason) for f in result.failures] == [(NODE, "timeout")]


def test_error_replies_and_timeouts_are_recorded_by_code_only(
    task_identity, contract, weights, outputs
) -> None:
    guard = EgressGuard(
        contract, on_rejection=outputs.record_rejection, on_failure=outputs.record_failure
    )
    refusal = Message(
        Error(code=CLIENT_ERROR_BY_NAME["privacy-budget-exhausted"], reason=f"spent on {VRM}"),
        reply_to=_instruction(),
    )
    crash = Message(Error(code=2, reason=f"Traceback ... {VRM}"), reply_to=_instruction(node=7))
    result = guard.screen(
        [refusal, crash],
        kind="train",
        server_round=1,
        sent={NODE: MessageType.TRAIN, 7: MessageType.TRAIN, 8: MessageType.TRAIN},
    )
    assert result.accepted == [] and result.rejections == []
    assert sorted((f.node_id, f.reason, f.error_name) for f in result.failures) == [
        (7, "error-reply", "flower-2"),
        (8, "timeout", None),
        (NODE, "error-reply", "privacy-budget-exhausted"),
    ]
    text = _all_output_text(outputs)
    assert "privacy-budget-exhausted" in text and "timeout" in text
    for spelling in VRM_SPELLINGS:
        assert spelling not in text
