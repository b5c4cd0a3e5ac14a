"""The national server's egress guard: nothing outside the contract reaches aggregation.

Every reply a round collects is screened before the strategy sees it:

* a Flower **error reply** (a force refused or crashed) is dropped and recorded as a
  :class:`Failure` holding the error *code* only, never Flower's free-text reason;
* a node that sent no reply before the round timeout is recorded as a ``timeout`` failure;
* a reply that breaks :class:`federation.contract.EgressContract` (wrong record, array name,
  shape or dtype, non-canonical bytes, non-finite values, a metric outside the allowlist, any
  ``ConfigRecord``), or that does not answer this round's instruction, is **rejected** and
  recorded as a :class:`Rejection`: node id, round, reason codes and contract-only details.
  Its contents are never logged, stored or passed on.

The guard is deliberately independent of how replies arrive (Message API strategies here;
the SecAgg+ workflow uses :class:`SecAggReplyGuard` in ``secagg_guard``).

What the guard admits is what a force may send (``federation.contract``): DP model updates and
scalars that are themselves DP releases charged to the force's ledger, or the force's own
(epsilon, delta); ``epsilon = inf`` only paired with ``delta = 1`` (a simulation's non-private
reference, which a deployed force refuses). A force that refuses a round because the run
config asks for more than its privacy policy allows answers with ``policy-refused`` (107),
recorded here as a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message

from federation.contract import EgressContract, Violation, client_error_name

log = logging.getLogger(__name__)

TRAIN = "train"
EVALUATE = "evaluate"


@dataclass(frozen=True)
class Rejection:
    """A reply the guard refused: who, when, why (codes and contract-only details)."""

    server_round: int
    node_id: int
    kind: str
    codes: tuple[str, ...]
    details: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (no reply content)."""
        return {
            "round": self.server_round,
            "node_id": self.node_id,
            "kind": self.kind,
            "codes": list(self.codes),
            "details": list(self.details),
        }


@dataclass(frozen=True)
class Failure:
    """A node that did not deliver a usable reply: an error reply or a timeout."""

    server_round: int
    node_id: int
    kind: str
    reason: str  # "timeout" | "error-reply"
    error_code: int | None = None
    error_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the error code and its fixed name only)."""
        return {
            "round": self.server_round,
            "node_id": self.node_id,
            "kind": self.kind,
            "reason": self.reason,
            "error_code": self.error_code,
            "error_name": self.error_name,
        }


@dataclass
class ScreenResult:
    """Outcome of screening one round's replies."""

    accepted: list[Message] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class EgressGuard:
    """Screens replies against an :class:`EgressContract` and reports what it refused.

    ``on_rejection`` and ``on_failure`` receive every record as it is made (the server's run
    outputs persist them); the guard also keeps them in ``rejections`` / ``failures``.
    """

    def __init__(
        self,
        contract: EgressContract,
        on_rejection: Callable[[Rejection], None] | None = None,
        on_failure: Callable[[Failure], None] | None = None,
    ) -> None:
        self.contract = contract
        self.rejections: list[Rejection] = []
        self.failures: list[Failure] = []
        self._on_rejection = on_rejection
        self._on_failure = on_failure

    def check_content(self, message: Message, kind: str) -> list[Violation]:
        """Contract violations of one reply's content (empty if it conforms)."""
        if kind == TRAIN:
            return self.contract.check_train_reply(message.content)
        if kind == EVALUATE:
            return self.contract.check_evaluate_reply(message.content)
        raise ValueError(f"unknown reply kind {kind!r}")

    def screen(
        self,
        replies: Iterable[Message],
        *,
        kind: str,
        server_round: int,
        sent: Mapping[int, str],
    ) -> ScreenResult:
        """Screen a round's replies.

        ``sent`` maps each node the round instructed to the instruction's message type;
        nodes in ``sent`` without a reply are recorded as timeouts.
        """
        result = ScreenResult()
        seen: set[int] = set()
        group = str(server_round)
        for message in replies:
            meta = message.metadata
            node = int(meta.src_node_id)
            violations: list[Violation] = []
            if node not in sent:
                violations.append(Violation("unknown-node"))
            elif node in seen:
                violations.append(Violation("duplicate-reply"))
            else:
                seen.add(node)
                if message.has_error():
                    code = int(message.error.code)
                    self._fail(
                        result,
                        Failure(
                            server_round, node, kind, "error-reply", code, client_error_name(code)
                        ),
                    )
                    continue
                if meta.message_type != sent[node]:
                    violations.append(Violation("wrong-message-type"))
                if meta.group_id != group:
                    violations.append(Violation("wrong-round"))
                if not violations:
                    violations = self.check_content(message, kind)
            if violations:
                self._reject(result, server_round, node, kind, violations)
            else:
                result.accepted.append(message)
        for node in sorted(set(sent) - seen):
            self._fail(result, Failure(server_round, node, kind, "timeout"))
        return result

    def _reject(
        self,
        result: ScreenResult,
        server_round: int,
        node: int,
        kind: str,
        violations: list[Violation],
    ) -> None:
        rejection = Rejection(
            server_round=server_round,
            node_id=node,
            kind=kind,
            codes=tuple(v.code for v in violations),
            details=tuple(v.detail for v in violations),
        )
        log.warning(
            "round %d: rejected %s reply from node %d (%s)",
            server_round,
            kind,
            node,
            ", ".join(rejection.codes),
        )
        result.rejections.append(rejection)
        self.rejections.append(rejection)
        if self._on_rejection is not None:
            self._on_rejection(rejection)

    def _fail(self, result: ScreenResult, failure: Failure) -> None:
        log.warning(
            "round %d: node %d gave no usable %s reply (%s%s)",
            failure.server_round,
            failure.node_id,
            failure.kind,
            failure.reason,
            f": {failure.error_name}" if failure.error_name else "",
        )
        result.failures.append(failure)
        self.failures.append(failure)
        if self._on_failure is not None:
            self._on_failure(failure)
