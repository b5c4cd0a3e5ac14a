"""A force's Flower ClientApp: DP training and held-out evaluation on its own store.

``app`` is what ``flwr run .`` and a force's SuperNode load (``[tool.flwr.app.components]
clientapp``); it reads the study settings from the Flower run config. ``make_client_app(
settings)`` builds the same app with settings given in code, for
``flwr.simulation.run_simulation`` (which passes an empty run config).

* ``train``: global arrays in, one round of vehicle-level DP-SGD (``flower_round.local_train``),
  reply = ``ArrayRecord`` "arrays" (the model's agreed arrays) + ``MetricRecord`` "metrics"
  (``num-examples`` and ``train-loss`` as a charged DP release, the force's cumulative
  ``epsilon`` rounded up and its ledger's fixed ``delta``). ``proximal-mu`` from the server's
  config (FedProx) adds the proximal term.
* ``evaluate``: global arrays in, ``MetricRecord`` "metrics": a DP release of held-out metrics,
  charged to the force's ledger and capped in number by its policy.

The run config is only a request: the force's privacy policy (``client_force.privacy_policy``)
decides, and a round asking for more is refused (``policy-refused``) before any work.

Before anything leaves, the reply is checked against the same egress contract the national
server enforces. Any refusal or failure becomes a Flower error reply whose code is one of
``federation.contract.CLIENT_ERROR_CODES`` and whose reason is that code's fixed name: no
exception text, path or value ever leaves the force. Details go to this node's own log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client_force.flower_round import (
    RoundRefusedError,
    contract_for,
    local_evaluate,
    local_train,
    node_store,
)
from federation.contract import (
    ARRAY_RECORD_KEY,
    CLIENT_ERROR_BY_NAME,
    CLIENT_ERROR_CODES,
    METRIC_RECORD_KEY,
    format_violations,
)
from federation.flower_settings import FlowerSettings

log = logging.getLogger(__name__)

CONFIG_RECORD_KEY = "config"


def error_reply(message: Message, name: str) -> Message:
    """A Flower error reply carrying only a contract error code and its fixed name."""
    code = CLIENT_ERROR_BY_NAME[name]
    return Message(Error(code=code, reason=CLIENT_ERROR_CODES[code]), reply_to=message)


def _guarded(
    kind: str, settings: FlowerSettings | None
) -> Callable[
    [Callable[[Message, Context, FlowerSettings], Message]], Callable[[Message, Context], Message]
]:
    """Wrap a handler: settings from the run config, every failure as a code-only error."""

    def wrap(
        handler: Callable[[Message, Context, FlowerSettings], Message],
    ) -> Callable[[Message, Context], Message]:
        def run(message: Message, context: Context) -> Message:
            server_round = _server_round(message)
            try:
                run_settings = FlowerSettings.from_run_config(context.run_config, base=settings)
                return handler(message, context, run_settings)
            except RoundRefusedError as exc:
                log.warning("round %s: %s refused (%s): %s", server_round, kind, exc.name, exc)
                return error_reply(message, exc.name)
            except Exception as exc:
                log.exception("round %s: %s failed (%s)", server_round, kind, type(exc).__name__)
                return error_reply(message, "internal-error")

        run.__name__ = handler.__name__
        return run

    return wrap


def _server_round(message: Message) -> int:
    config = (
        message.content.config_records.get(CONFIG_RECORD_KEY) if message.has_content() else None
    )
    value = config.get("server-round") if isinstance(config, ConfigRecord) else None
    return int(value) if isinstance(value, int) else 0


def _global_arrays(message: Message, settings: FlowerSettings) -> list:
    record = message.content.array_records.get(ARRAY_RECORD_KEY)
    if record is None:
        raise RoundRefusedError("invalid-instruction", "instruction has no 'arrays' record")
    try:
        return contract_for(settings).from_array_record(record)
    except ValueError as exc:
        raise RoundRefusedError("invalid-instruction", str(exc)) from None


def train_handler(message: Message, context: Context, settings: FlowerSettings) -> Message:
    """One round of local DP training; reply per the egress contract."""
    config = message.content.config_records.get(CONFIG_RECORD_KEY, ConfigRecord())
    mu = config.get("proximal-mu", 0.0)
    node = node_store(context.node_config, settings)
    outcome = local_train(
        node,
        settings,
        _global_arrays(message, settings),
        server_round=_server_round(message),
        run_id=str(context.run_id),
        proximal_mu=float(mu) if isinstance(mu, int | float) else 0.0,
        node_id=int(context.node_id),
    )
    contract = contract_for(settings)
    content = RecordDict(
        {
            ARRAY_RECORD_KEY: contract.to_array_record(outcome.arrays),
            METRIC_RECORD_KEY: MetricRecord(outcome.metrics),
        }
    )
    problems = contract.check_train_reply(content)
    if problems:
        raise RoundRefusedError("self-check-failed", format_violations(problems))
    return Message(content, reply_to=message)


def evaluate_handler(message: Message, context: Context, settings: FlowerSettings) -> Message:
    """Metrics of the global model on this force's held-out vehicles."""
    node = node_store(context.node_config, settings)
    metrics = local_evaluate(
        node,
        settings,
        _global_arrays(message, settings),
        server_round=_server_round(message),
        run_id=str(context.run_id),
    )
    content = RecordDict({METRIC_RECORD_KEY: MetricRecord(metrics)})
    problems = contract_for(settings).check_evaluate_reply(content)
    if problems:
        raise RoundRefusedError("self-check-failed", format_violations(problems))
    return Message(content, reply_to=message)


def make_client_app(settings: FlowerSettings | None = None) -> ClientApp:
    """A ClientApp using ``settings`` (run-config keys override them)."""
    app = ClientApp()
    app.train()(_guarded("train", settings)(train_handler))
    app.evaluate()(_guarded("evaluate", settings)(evaluate_handler))
    return app


app = make_client_app()
