"""The egress guard for the SecAgg+ path (Flower's legacy workflow API).

Under SecAgg+ a force's reply is not an ``ArrayRecord`` of model arrays but one step of the
protocol. Each step's reply has a fixed shape, and :class:`SecAggReplyGuard` checks it:

==========================  ==========================================================
stage                       the only content a force may send
==========================  ==========================================================
``setup``                   two PEM public keys (canonical encoding)
``share_keys``              destination node ids (instructed nodes) + equal-length
                            ciphertexts of Shamir shares (opaque to the server)
``collect_masked_vectors``  the masked, quantised model vector (one ``[1]`` weight factor
                            then one integer array per agreed model array, each in
                            ``[0, modulus)``, canonically encoded); the legacy FitRes
                            envelope with an *empty* parameters record, ``num_examples``,
                            status ``0``/``"Success"`` and the train metric allowlist
``unmask``                  node ids (instructed nodes) + equal-length key shares
evaluate                    the legacy EvaluateRes envelope: loss, ``num_examples``,
                            status ``0``/``"Success"`` and the evaluate metric allowlist
==========================  ==========================================================

Anything else (an extra record or key, a free-text string, an unexpected array) is rejected
and recorded like the Message-API guard does (node id, round, reason codes, never content),
and dropped, which the SecAgg+ protocol then handles as that force dropping out.

:class:`GuardedGrid` wraps the ServerApp's ``Grid`` so every ``send_and_receive`` of the legacy
workflows passes through the guard, with the round's timeout (the legacy evaluate workflow
would otherwise wait forever).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.serverapp import Grid
from flwr.supercore.primitives.asymmetric import bytes_to_public_key, public_key_to_bytes

from federation.contract import (
    EgressContract,
    MetricRule,
    Violation,
    check_metric_values,
    client_error_name,
)
from server_national.egress_guard import EVALUATE, TRAIN, Failure, Rejection
from server_national.round_grid import RoundTimeoutGrid

log = logging.getLogger(__name__)

OK_STATUS = "Success"
FITRES_KEYS = ("fitres.metrics", "fitres.num_examples", "fitres.parameters", "fitres.status")
EVALRES_KEYS = (
    "evaluateres.loss",
    "evaluateres.num_examples",
    "evaluateres.metrics",
    "evaluateres.status",
)


@dataclass
class SentInstruction:
    """What a node was asked in one ``send_and_receive`` call."""

    message_type: str
    group_id: str
    stage: str | None  # SecAgg+ stage for train messages, None for evaluate


@dataclass
class SecAggRecorder:
    """What the server handled, for tests and audits, by round and node: the masked vectors
    forces sent, and what the strategy's aggregation step received."""

    masked_vectors: dict[int, dict[int, list[np.ndarray]]] = field(default_factory=dict)
    aggregate_inputs: dict[int, dict[int, list[np.ndarray]]] = field(default_factory=dict)


class SecAggReplyGuard:
    """Checks SecAgg+ protocol replies against the per-stage contract (module docstring)."""

    def __init__(
        self,
        contract: EgressContract,
        modulus_range: int,
        on_rejection: Callable[[Rejection], None] | None = None,
        on_failure: Callable[[Failure], None] | None = None,
        recorder: SecAggRecorder | None = None,
    ) -> None:
        self.contract = contract
        self.modulus_range = int(modulus_range)
        self.on_rejection = on_rejection
        self.on_failure = on_failure
        self.recorder = recorder
        self.rejections: list[Rejection] = []
        self.failures: list[Failure] = []

    # ------------------------------------------------------------------ screening
    def screen(
        self, replies: Iterable[Message], sent: Mapping[int, SentInstruction]
    ) -> list[Message]:
        """Accepted replies; error replies, timeouts and breaches are recorded and dropped."""
        accepted: list[Message] = []
        seen: set[int] = set()
        for message in replies:
            node = int(message.metadata.src_node_id)
            instruction = sent.get(node)
            server_round = _round_of(
                instruction.group_id if instruction else message.metadata.group_id
            )
            kind = EVALUATE if instruction and instruction.stage is None else TRAIN
            if instruction is None:
                self._reject(server_round, node, kind, [Violation("unknown-node")])
                continue
            if node in seen:
                self._reject(server_round, node, kind, [Violation("duplicate-reply")])
                continue
            seen.add(node)
            if message.has_error():
                code = int(message.error.code)
                self._fail(
                    Failure(server_round, node, kind, "error-reply", code, client_error_name(code))
                )
                continue
            violations: list[Violation] = []
            if message.metadata.message_type != instruction.message_type:
                violations.append(Violation("wrong-message-type"))
            if message.metadata.group_id != instruction.group_id:
                violations.append(Violation("wrong-round"))
            if not violations:
                violations = self.check(message.content, instruction, set(sent))
            if violations:
                self._reject(server_round, node, kind, violations)
                continue
            if self.recorder is not None and instruction.stage == Stage.COLLECT_MASKED_VECTORS:
                vectors = _masked_vectors(message.content)
                self.recorder.masked_vectors.setdefault(server_round, {})[node] = vectors
            accepted.append(message)
        for node in sorted(set(sent) - seen):
            instruction = sent[node]
            kind = EVALUATE if instruction.stage is None else TRAIN
            self._fail(Failure(_round_of(instruction.group_id), node, kind, "timeout"))
        return accepted

    def check(self, content: Any, instruction: SentInstruction, nodes: set[int]) -> list[Violation]:
        """Contract violations of one reply (empty if it conforms)."""
        if not isinstance(content, RecordDict):
            return [Violation("missing-record", "reply has no RecordDict content")]
        if instruction.stage is None:
            return self._check_evaluate(content)
        if instruction.stage == Stage.SETUP:
            return self._check_protocol(
                content, {Key.PUBLIC_KEY_1: bytes, Key.PUBLIC_KEY_2: bytes}, nodes
            )
        if instruction.stage == Stage.SHARE_KEYS:
            return self._check_protocol(
                content, {Key.DESTINATION_LIST: list, Key.CIPHERTEXT_LIST: list}, nodes
            )
        if instruction.stage == Stage.COLLECT_MASKED_VECTORS:
            return self._check_masked(content)
        if instruction.stage == Stage.UNMASK:
            return self._check_protocol(
                content, {Key.NODE_ID_LIST: list, Key.SHARE_LIST: list}, nodes
            )
        return [Violation("wrong-message-type", "unknown SecAgg+ stage")]

    # ------------------------------------------------------------------ per stage
    def _check_protocol(
        self, content: RecordDict, expected: Mapping[str, type], nodes: set[int]
    ) -> list[Violation]:
        out = _exact_records(content, {RECORD_KEY_CONFIGS: ConfigRecord})
        if out:
            return out
        return _check_protocol_record(content[RECORD_KEY_CONFIGS], expected, nodes)

    def _check_masked(self, content: RecordDict) -> list[Violation]:
        expected = {key: ConfigRecord for key in FITRES_KEYS}
        expected["fitres.num_examples"] = MetricRecord
        expected["fitres.parameters"] = ArrayRecord
        expected[RECORD_KEY_CONFIGS] = ConfigRecord
        out = _exact_records(content, expected)
        if out:
            return out
        if len(content["fitres.parameters"]) != 0:
            out.append(
                Violation("array-unexpected", "fitres.parameters must be empty under SecAgg+")
            )
        out.extend(_check_status(content["fitres.status"]))
        out.extend(
            _check_scalar_record(
                content["fitres.num_examples"], {"num_examples": MetricRule(int, 1)}
            )
        )
        out.extend(_check_scalar_record(content["fitres.metrics"], self.contract.train_metrics))
        configs = content[RECORD_KEY_CONFIGS]
        if set(configs) != {Key.MASKED_PARAMETERS}:
            return [*out, Violation("unexpected-record", "SecAgg+ record holds other keys")]
        out.extend(self._check_vector(configs[Key.MASKED_PARAMETERS]))
        return out

    def _check_vector(self, blobs: Any) -> list[Violation]:
        shapes = [(1,), *(a.shape for a in self.contract.arrays)]
        if not isinstance(blobs, list) or len(blobs) != len(shapes):
            return [Violation("array-shape", f"masked vector must hold {len(shapes)} arrays")]
        for spec_name, shape, blob in zip(
            ["weight-factor", *self.contract.array_names], shapes, blobs, strict=True
        ):
            if not isinstance(blob, bytes):
                return [Violation("array-encoding", spec_name)]
            try:
                value = bytes_to_ndarray(blob)
            except Exception:  # undecodable bytes are a breach, never a crash
                return [Violation("array-encoding", spec_name)]
            if value.dtype.kind not in "iu":
                return [Violation("array-dtype", f"{spec_name}: expected integers")]
            if tuple(value.shape) != tuple(shape):
                return [Violation("array-shape", f"{spec_name}: expected {list(shape)}")]
            if ndarray_to_bytes(value) != blob:
                return [Violation("array-encoding", f"{spec_name}: not the canonical encoding")]
            if value.size and (value.min() < 0 or value.max() >= self.modulus_range):
                return [Violation("array-non-finite", f"{spec_name}: outside [0, modulus)")]
        return []

    def _check_evaluate(self, content: RecordDict) -> list[Violation]:
        expected = {key: MetricRecord for key in EVALRES_KEYS}
        expected["evaluateres.metrics"] = ConfigRecord
        expected["evaluateres.status"] = ConfigRecord
        out = _exact_records(content, expected)
        if out:
            return out
        out.extend(_check_status(content["evaluateres.status"]))
        out.extend(
            _check_scalar_record(content["evaluateres.loss"], {"loss": MetricRule(float, 0.0)})
        )
        out.extend(
            _check_scalar_record(
                content["evaluateres.num_examples"], {"num_examples": MetricRule(int, 1)}
            )
        )
        out.extend(
            _check_scalar_record(content["evaluateres.metrics"], self.contract.evaluate_metrics)
        )
        return out

    # ------------------------------------------------------------------ recording
    def _reject(self, server_round: int, node: int, kind: str, violations: list[Violation]) -> None:
        rejection = Rejection(
            server_round,
            node,
            kind,
            tuple(v.code for v in violations),
            tuple(v.detail for v in violations),
        )
        log.warning(
            "round %d: rejected SecAgg+ %s reply from node %d (%s)",
            server_round,
            kind,
            node,
            ", ".join(rejection.codes),
        )
        self.rejections.append(rejection)
        if self.on_rejection is not None:
            self.on_rejection(rejection)

    def _fail(self, failure: Failure) -> None:
        log.warning(
            "round %d: node %d gave no usable SecAgg+ %s reply (%s%s)",
            failure.server_round,
            failure.node_id,
            failure.kind,
            failure.reason,
            f": {failure.error_name}" if failure.error_name else "",
        )
        self.failures.append(failure)
        if self.on_failure is not None:
            self.on_failure(failure)


def _round_of(group_id: str) -> int:
    return int(group_id) if str(group_id).isdigit() else 0


def _exact_records(content: RecordDict, expected: Mapping[str, type]) -> list[Violation]:
    out: list[Violation] = []
    extra = [key for key in content if key not in expected]
    if extra:
        out.append(Violation("unexpected-record", f"{len(extra)} record(s) outside the contract"))
    for key, kind in expected.items():
        if key not in content:
            out.append(Violation("missing-record", key))
        elif not isinstance(content[key], kind):
            out.append(Violation("unexpected-record", f"{key}: expected a {kind.__name__}"))
    return out


def _check_status(record: Any) -> list[Violation]:
    if set(record) != {"code", "message"}:
        return [Violation("unexpected-record", "status must hold exactly code and message")]
    if record["code"] != 0 or isinstance(record["code"], bool):
        return [Violation("metric-range", "status code must be 0")]
    if record["message"] != OK_STATUS:
        return [Violation("metric-type", f"status message must be {OK_STATUS!r}")]
    return []


def _check_scalar_record(record: Any, rules: Mapping[str, MetricRule]) -> list[Violation]:
    """The contract's metric checks (allowlist, kinds, ranges, the non-private pair)."""
    return check_metric_values(record, rules)


def _check_protocol_record(
    record: Any, expected: Mapping[str, type], nodes: set[int]
) -> list[Violation]:
    if set(record) != set(expected):
        return [Violation("unexpected-record", "SecAgg+ record holds other keys")]
    if Key.PUBLIC_KEY_1 in expected:
        for key in (Key.PUBLIC_KEY_1, Key.PUBLIC_KEY_2):
            value = record[key]
            try:
                canonical = (
                    isinstance(value, bytes)
                    and public_key_to_bytes(bytes_to_public_key(value)) == value
                )
            except Exception:  # not a public key at all
                canonical = False
            if not canonical:
                return [Violation("array-encoding", f"{key}: not a canonical public key")]
        return []
    ids_key, blobs_key = (
        (Key.DESTINATION_LIST, Key.CIPHERTEXT_LIST)
        if Key.DESTINATION_LIST in expected
        else (Key.NODE_ID_LIST, Key.SHARE_LIST)
    )
    ids, blobs = record[ids_key], record[blobs_key]
    if not isinstance(ids, list) or not isinstance(blobs, list) or len(ids) != len(blobs):
        return [Violation("array-shape", f"{ids_key}/{blobs_key}: lists of equal length")]
    if any(not isinstance(i, int) or isinstance(i, bool) or i not in nodes for i in ids):
        return [Violation("unknown-node", f"{ids_key}: names a node that was not instructed")]
    if any(not isinstance(b, bytes) for b in blobs) or len({len(b) for b in blobs}) > 1:
        return [Violation("array-encoding", f"{blobs_key}: bytes of one common length")]
    return []


def _masked_vectors(content: RecordDict) -> list[np.ndarray]:
    return [bytes_to_ndarray(b) for b in content[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]]


class GuardedGrid(RoundTimeoutGrid):
    """A :class:`RoundTimeoutGrid` whose ``send_and_receive`` screens every reply."""

    def __init__(
        self, inner: Grid, guard: SecAggReplyGuard, timeout_for_round: Callable[[int], float]
    ) -> None:
        super().__init__(inner, timeout_for_round)
        self.guard = guard

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send, wait at most the round's timeout, and return only the accepted replies."""
        batch = list(messages)
        sent: dict[int, SentInstruction] = {}
        for message in batch:
            stage = None
            if message.metadata.message_type == MessageType.TRAIN:
                configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
                stage = (
                    str(configs[Key.STAGE]) if configs is not None and Key.STAGE in configs else ""
                )
            sent[int(message.metadata.dst_node_id)] = SentInstruction(
                message.metadata.message_type, message.metadata.group_id, stage
            )
        replies = self._inner.send_and_receive(batch, timeout=self.timeout_for(batch))
        return self.guard.screen(replies, sent)
