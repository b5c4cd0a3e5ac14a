"""A force's Flower client for the SecAgg+ path (Flower's legacy API).

Flower 1.41 runs SecAgg+ only with a legacy ``NumPyClient`` behind ``secaggplus_mod``: the mod
takes the client's ``fit`` result, quantises it, adds the pairwise and private masks and sends
only the masked vector (the plain parameters record is cleared before anything leaves).

``ForceNumPyClient.fit`` is the same DP training round as the Message-API ClientApp
(``flower_round.local_train``: the force's ledger, the study's calibrated noise) and
``evaluate`` the same held-out evaluation. Before the reply is masked it is checked against the
egress contract (arrays and metric allowlist). ``code_only_errors_mod`` sits outside
``secaggplus_mod`` and turns any failure into a Flower error reply carrying one of the
contract's error codes and nothing else.

``app`` is the module-level ClientApp (settings from the run config); ``make_secagg_client_app(
settings)`` gives settings in code for ``run_simulation``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import Context, Message, MetricRecord
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from client_force.client_app import error_reply
from client_force.flower_round import (
    RoundRefusedError,
    contract_for,
    local_evaluate,
    local_train,
    node_store,
)
from federation.contract import format_violations
from federation.flower_settings import FlowerSettings

log = logging.getLogger(__name__)


class ForceNumPyClient(NumPyClient):
    """Legacy NumPyClient running the force's DP round and held-out evaluation."""

    def __init__(self, context: Context, settings: FlowerSettings) -> None:
        self.context = context
        self.settings = settings
        self.contract = contract_for(settings)

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        """Never used: the server provides the initial model."""
        raise RoundRefusedError("invalid-instruction", "the server provides initial parameters")

    def _arrays(self, parameters: list[np.ndarray]) -> list[np.ndarray]:
        arrays = [np.asarray(p) for p in parameters]
        try:
            record = self.contract.to_array_record(arrays)
        except ValueError as exc:
            raise RoundRefusedError("invalid-instruction", str(exc)) from None
        return self.contract.from_array_record(record)

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        """One DP round; returns the new arrays, the example count and the allowlisted metrics."""
        server_round = int(config.get("server-round", 0))
        mu = config.get("proximal-mu", 0.0)
        outcome = local_train(
            node_store(self.context.node_config, self.settings),
            self.settings,
            self._arrays(parameters),
            server_round=server_round,
            run_id=str(self.context.run_id),
            proximal_mu=float(mu) if isinstance(mu, int | float) else 0.0,
            node_id=int(self.context.node_id),
        )
        problems = self.contract.check_arrays(self.contract.to_array_record(outcome.arrays))
        problems += self.contract.check_metrics(_metric_record(outcome.metrics), "train")
        if problems:
            raise RoundRefusedError("self-check-failed", format_violations(problems))
        return outcome.arrays, int(outcome.metrics["num-examples"]), dict(outcome.metrics)

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        """Held-out loss, example count and the allowlisted evaluate metrics."""
        metrics = local_evaluate(
            node_store(self.context.node_config, self.settings),
            self.settings,
            self._arrays(parameters),
            server_round=int(config.get("server-round", 0)),
            run_id=str(self.context.run_id),
        )
        problems = self.contract.check_metrics(_metric_record(metrics), "evaluate")
        if problems:
            raise RoundRefusedError("self-check-failed", format_violations(problems))
        return float(metrics["eval-loss"]), int(metrics["num-examples"]), dict(metrics)


def _metric_record(metrics: dict[str, int | float]) -> MetricRecord:
    return MetricRecord(dict(metrics))


def code_only_errors_mod(
    message: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Outermost mod: any failure becomes an error reply with a contract code only."""
    try:
        return call_next(message, context)
    except RoundRefusedError as exc:
        log.warning("SecAgg+ round refused (%s): %s", exc.name, exc)
        return error_reply(message, exc.name)
    except Exception as exc:
        log.exception("SecAgg+ step failed (%s)", type(exc).__name__)
        return error_reply(message, "internal-error")


def make_secagg_client_app(
    settings: FlowerSettings | None = None, inner_mods: Sequence[Mod] = ()
) -> ClientApp:
    """The legacy SecAgg+ ClientApp using ``settings`` (run-config keys override them).

    ``inner_mods`` run inside ``secaggplus_mod``, next to the client: they see the cleartext
    fit result before it is masked (tests and audits of what masking hides).
    """

    def client_fn(context: Context) -> Any:
        run_settings = FlowerSettings.from_run_config(context.run_config, base=settings)
        return ForceNumPyClient(context, run_settings).to_client()

    return ClientApp(client_fn=client_fn, mods=[code_only_errors_mod, secaggplus_mod, *inner_mods])


app = make_secagg_client_app()
