"""FedAvg and FedProx behind the egress guard, with bounded waits and per-round records.

``GuardedFedAvg`` / ``GuardedFedProx`` are Flower's message-API ``FedAvg`` / ``FedProx`` with:

* **sampling that cannot hang**: forces must connect within ``node-wait-timeout`` seconds or
  the run fails with :class:`NodesUnavailableError` (Flower's own sampler waits forever);
* **instructions tagged with the round** (``group_id``), so replies can be matched to it;
* **screening before aggregation**: every reply passes :class:`EgressGuard`; error replies
  and timeouts (Flower's ``send_and_receive`` timeout = ``round-timeout``) are dropped and
  recorded, contract breaches are rejected and recorded, and only accepted replies are
  averaged. Flower's own error-reason text is never logged (it is free text from a force);
* **a minimum quorum**: a training round proceeds with the accepted replies if there are at
  least ``min-replies`` of them, else it fails with :class:`RoundFailedError` naming the round,
  the counts and the reasons;
* **records**: per-node metrics, each force's reported (epsilon, delta) in the
  :class:`LedgerView`, and aggregated metrics per round in :class:`RunOutputs`.

Aggregated train metrics: ``train-loss`` (example-weighted mean), ``num-examples`` (sum),
``epsilon-max``/``delta-max`` (the largest spend reported), ``num-replies``. Aggregated
evaluate metrics: ``eval-loss`` (example-weighted), ``pr-auc`` and ``precision-at-recall-0.5``
(weighted by each force's held-out positives), ``num-examples`` and ``num-positives`` (sums).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from typing import Any, cast

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from federation.contract import METRIC_RECORD_KEY
from server_national.egress_guard import EVALUATE, TRAIN, EgressGuard, Failure
from server_national.ledger_view import LedgerView
from server_national.run_outputs import RunOutputs

log = logging.getLogger(__name__)

NODE_POLL_SECONDS = 0.5


class RoundFailedError(RuntimeError):
    """Too few forces delivered an acceptable reply for a training round to proceed."""


class NodesUnavailableError(RuntimeError):
    """Not enough forces connected within the node-wait timeout."""


def wait_for_nodes(grid: Grid, minimum: int, timeout: float) -> list[int]:
    """Connected node ids once at least ``minimum`` are connected; raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(int(n) for n in grid.get_node_ids())
        if len(nodes) >= minimum:
            return nodes
        if time.monotonic() >= deadline:
            raise NodesUnavailableError(
                f"only {len(nodes)} force node(s) connected after {timeout:g} s; "
                f"the run needs at least {minimum} (min-available-nodes / min-replies)"
            )
        time.sleep(NODE_POLL_SECONDS)


def _metrics_of(message: Message) -> dict[str, float | int]:
    return dict(cast(MetricRecord, message.content[METRIC_RECORD_KEY]))


def aggregate_train_metrics_rows(rows: list[dict[str, Any]]) -> dict[str, float | int]:
    """Combine accepted train metric rows (see module docstring)."""
    total = sum(int(r["num-examples"]) for r in rows)
    loss = sum(float(r["train-loss"]) * int(r["num-examples"]) for r in rows) / max(total, 1)
    return {
        "train-loss": loss,
        "num-examples": total,
        "epsilon-max": max(float(r["epsilon"]) for r in rows),
        "delta-max": max(float(r["delta"]) for r in rows),
        "num-replies": len(rows),
    }


def aggregate_evaluate_metrics_rows(rows: list[dict[str, Any]]) -> dict[str, float | int]:
    """Combine accepted evaluate metric rows (see module docstring)."""
    total = sum(int(r["num-examples"]) for r in rows)
    positives = sum(int(r["num-positives"]) for r in rows)
    out: dict[str, float | int] = {
        "eval-loss": sum(float(r["eval-loss"]) * int(r["num-examples"]) for r in rows)
        / max(total, 1),
        "num-examples": total,
        "num-positives": positives,
        "num-replies": len(rows),
    }
    for key in ("pr-auc", "precision-at-recall-0.5"):
        out[key] = (
            sum(float(r[key]) * int(r["num-positives"]) for r in rows) / positives
            if positives
            else 0.0
        )
    return out


def aggregate_train_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Flower ``train_metrics_aggr_fn``: :func:`aggregate_train_metrics_rows` of the replies."""
    rows = [dict(cast(MetricRecord, c[METRIC_RECORD_KEY])) for c in contents]
    return MetricRecord(aggregate_train_metrics_rows(rows))


def aggregate_evaluate_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Flower ``evaluate_metrics_aggr_fn``: :func:`aggregate_evaluate_metrics_rows`."""
    rows = [dict(cast(MetricRecord, c[METRIC_RECORD_KEY])) for c in contents]
    return MetricRecord(aggregate_evaluate_metrics_rows(rows))


class _GuardedMixin:
    """Guarded sampling, screening and recording shared by the FedAvg and FedProx variants."""

    # Provided by FedAvg:
    fraction_train: float
    fraction_evaluate: float
    min_available_nodes: int
    weighted_by_key: str
    arrayrecord_key: str
    configrecord_key: str

    def _init_guard(
        self,
        *,
        guard: EgressGuard,
        outputs: RunOutputs,
        ledger: LedgerView,
        min_replies: int,
        node_wait_timeout: float,
        seed: int,
    ) -> None:
        self.guard = guard
        self.outputs = outputs
        self.ledger = ledger
        self.min_replies = int(min_replies)
        self.node_wait_timeout = float(node_wait_timeout)
        self._rng = random.Random(seed)
        self._sent: dict[tuple[str, int], dict[int, str]] = {}

    # ------------------------------------------------------------------ sampling
    def _sample(self, grid: Grid, fraction: float, minimum: int) -> list[int]:
        need = max(self.min_available_nodes, minimum)
        nodes = wait_for_nodes(grid, need, self.node_wait_timeout)
        size = min(len(nodes), max(int(len(nodes) * fraction), minimum))
        return sorted(self._rng.sample(nodes, size))

    def _instructions(
        self, server_round: int, kind: str, message_type: str, record: RecordDict, nodes: list[int]
    ) -> list[Message]:
        self._sent[(kind, server_round)] = {node: message_type for node in nodes}
        log.info("round %d: %s sent to %d force node(s)", server_round, kind, len(nodes))
        return [
            Message(
                content=record,
                dst_node_id=node,
                message_type=message_type,
                group_id=str(server_round),
            )
            for node in nodes
        ]

    def _train_config(self, config: ConfigRecord, server_round: int) -> ConfigRecord:
        config["server-round"] = server_round
        return config

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample forces (bounded wait) and send them the global arrays and round config."""
        nodes = self._sample(grid, self.fraction_train, self.min_replies)
        record = RecordDict(
            {
                self.arrayrecord_key: arrays,
                self.configrecord_key: self._train_config(config, server_round),
            }
        )
        return self._instructions(server_round, TRAIN, MessageType.TRAIN, record, nodes)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample forces for federated evaluation (none if ``fraction-evaluate`` is 0)."""
        if self.fraction_evaluate == 0.0:
            self._sent[(EVALUATE, server_round)] = {}
            return []
        nodes = self._sample(grid, self.fraction_evaluate, 1)
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._instructions(server_round, EVALUATE, MessageType.EVALUATE, record, nodes)

    # ------------------------------------------------------------------ aggregation
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Screen replies, enforce the quorum, record per-node metrics, then FedAvg."""
        sent = self._sent.pop((TRAIN, server_round), {})
        screened = self.guard.screen(replies, kind=TRAIN, server_round=server_round, sent=sent)
        per_node = {int(m.metadata.src_node_id): _metrics_of(m) for m in screened.accepted}
        for node, metrics in per_node.items():
            self.ledger.record(
                server_round,
                node,
                float(metrics["epsilon"]),
                float(metrics["delta"]),
                int(metrics["num-examples"]),
            )
        if len(screened.accepted) < self.min_replies:
            self.outputs.record_phase(
                server_round, TRAIN, sampled=len(sent), per_node=per_node, aggregated=None
            )
            raise RoundFailedError(
                f"round {server_round}: {len(screened.accepted)} of {len(sent)} force(s) "
                f"delivered an acceptable update, the round needs at least {self.min_replies} "
                f"(min-replies); {_summarise(screened.failures, len(screened.rejections))}"
            )
        arrays, metrics = super().aggregate_train(server_round, screened.accepted)  # type: ignore[misc]
        self.outputs.record_phase(
            server_round,
            TRAIN,
            sampled=len(sent),
            per_node=per_node,
            aggregated=dict(metrics) if metrics is not None else None,
        )
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Screen replies and aggregate evaluation metrics (no quorum: evaluation is advisory)."""
        sent = self._sent.pop((EVALUATE, server_round), {})
        screened = self.guard.screen(replies, kind=EVALUATE, server_round=server_round, sent=sent)
        per_node = {int(m.metadata.src_node_id): _metrics_of(m) for m in screened.accepted}
        metrics = None
        if screened.accepted:
            metrics = super().aggregate_evaluate(server_round, screened.accepted)  # type: ignore[misc]
        self.outputs.record_phase(
            server_round,
            EVALUATE,
            sampled=len(sent),
            per_node=per_node,
            aggregated=dict(metrics) if metrics is not None else None,
        )
        return metrics


def _summarise(failures: list[Failure], n_rejected: int) -> str:
    timeouts = sum(1 for f in failures if f.reason == "timeout")
    errors = [f.error_name or "error" for f in failures if f.reason == "error-reply"]
    parts = [f"{timeouts} timed out", f"{n_rejected} rejected by the egress guard"]
    parts.append(f"{len(errors)} error repl{'y' if len(errors) == 1 else 'ies'}")
    if errors:
        parts[-1] += f" ({', '.join(sorted(set(errors)))})"
    return ", ".join(parts)


def _strategy_kwargs(settings: Any) -> dict[str, Any]:
    return {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": settings.min_replies,
        "min_evaluate_nodes": 1 if settings.fraction_evaluate > 0 else 0,
        "min_available_nodes": settings.min_available_nodes,
        "train_metrics_aggr_fn": aggregate_train_metrics,
        "evaluate_metrics_aggr_fn": aggregate_evaluate_metrics,
    }


class GuardedFedAvg(_GuardedMixin, FedAvg):
    """Flower FedAvg behind the egress guard (see module docstring)."""

    def __init__(self, settings: Any, **guard: Any) -> None:
        FedAvg.__init__(self, **_strategy_kwargs(settings))
        self._init_guard(
            min_replies=settings.min_replies,
            node_wait_timeout=settings.node_wait_timeout,
            seed=settings.seed,
            **guard,
        )


class GuardedFedProx(_GuardedMixin, FedProx):
    """Flower FedProx behind the egress guard; sends ``proximal-mu`` to the forces."""

    def __init__(self, settings: Any, **guard: Any) -> None:
        FedProx.__init__(self, proximal_mu=settings.proximal_mu, **_strategy_kwargs(settings))
        self._init_guard(
            min_replies=settings.min_replies,
            node_wait_timeout=settings.node_wait_timeout,
            seed=settings.seed,
            **guard,
        )

    def _train_config(self, config: ConfigRecord, server_round: int) -> ConfigRecord:
        config["proximal-mu"] = self.proximal_mu
        return super()._train_config(config, server_round)


def make_strategy(
    settings: Any, *, guard: EgressGuard, outputs: RunOutputs, ledger: LedgerView
) -> GuardedFedAvg:
    """The guarded strategy named by ``settings.strategy`` (``fedavg`` or ``fedprox``)."""
    cls = GuardedFedProx if settings.strategy == "fedprox" else GuardedFedAvg
    return cls(settings, guard=guard, outputs=outputs, ledger=ledger)
