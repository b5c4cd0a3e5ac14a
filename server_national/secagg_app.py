"""The national ServerApp with Flower's SecAgg+: the server only ever sees the masked sum.

Flower 1.41 runs SecAgg+ only through its legacy workflow API, so this app is a legacy
``ServerApp(main)`` with a ``LegacyContext`` and ``DefaultWorkflow(fit_workflow=
SecAggPlusWorkflow(...))``; the forces run ``client_force.secagg_client`` (a NumPyClient with
``secaggplus_mod``). Each force quantises its update, adds pairwise and private masks and
sends the masked integer vector; the server sums the vectors, removes the masks with the
secret shares the forces return, and dequantises the *sum*. ``aggregate_fit`` of the strategy
therefore receives the aggregate, never an individual update.

Settings (run config / ``make_secagg_server_app(settings)``): the same as the plain app plus
``secagg-num-shares``, ``secagg-reconstruction-threshold``, ``secagg-clipping-range``,
``secagg-quantization-range``, ``secagg-max-weight``. The server writes the same outputs as
the plain app (``server_national.run_outputs``).

Quantisation error: with K forces, clipping range C, quantisation range Q and max weight W,
each force's weight is quantised to ``q_i = round(n_i Q / W)`` and its scaled update to integer
steps of ``2C/Q``, so the dequantised weighted mean differs from exact FedAvg by at most
``(2 C K + K max|w|) / sum_i q_i`` per coordinate (see ``docs/flower-app.md``). Keep every
weight within ``[-C, C]`` and ``W`` at or above the largest force's example count (a larger W
costs precision).
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import Context
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from federation.contract import EgressContract
from federation.flower_settings import FlowerSettings
from server_national.egress_guard import EVALUATE, TRAIN
from server_national.run_outputs import RunOutputs
from server_national.secagg_guard import GuardedGrid, SecAggRecorder, SecAggReplyGuard
from server_national.server_app import initial_arrays, open_outputs
from server_national.strategy import (
    RoundFailedError,
    aggregate_evaluate_metrics_rows,
    aggregate_train_metrics_rows,
    wait_for_nodes,
)

log = logging.getLogger(__name__)

MODULUS_RANGE = 2**32


class GuardedSecAggFedAvg(LegacyFedAvg):
    """Legacy FedAvg for the SecAgg+ workflow: records, quorum, float32 arrays, checkpoints.

    With a ``recorder``, ``recorder.aggregate_inputs[round][node]`` keeps what ``aggregate_fit``
    received for each force: under SecAgg+ every entry is the already-aggregated vector.
    """

    def __init__(
        self,
        settings: FlowerSettings,
        contract: EgressContract,
        outputs: RunOutputs,
        recorder: SecAggRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.contract = contract
        self.outputs = outputs
        start = initial_arrays(settings, contract)
        self.latest: list[np.ndarray] = contract.from_array_record(start)
        super().__init__(
            fraction_fit=settings.fraction_train,
            fraction_evaluate=settings.fraction_evaluate,
            min_fit_clients=settings.min_replies,
            min_evaluate_clients=1 if settings.fraction_evaluate > 0 else 0,
            min_available_clients=settings.min_available_nodes,
            on_fit_config_fn=self._round_config,
            on_evaluate_config_fn=self._round_config,
            initial_parameters=ndarrays_to_parameters(self.latest),
            accept_failures=True,
        )
        self._aggregated_rounds: set[int] = set()
        self._sampled: dict[tuple[str, int], int] = {}

    @staticmethod
    def _round_config(server_round: int) -> dict[str, Scalar]:
        return {"server-round": server_round}

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Legacy FedAvg sampling; remembers how many forces were asked."""
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self._sampled[(TRAIN, server_round)] = len(instructions)
        return instructions

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Legacy FedAvg sampling; remembers how many forces were asked."""
        instructions = super().configure_evaluate(server_round, parameters, client_manager)
        self._sampled[(EVALUATE, server_round)] = len(instructions)
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Record per-force metrics and spend, enforce the quorum, keep float32 arrays."""
        per_node = {int(proxy.node_id): dict(res.metrics) for proxy, res in results}
        if self.recorder is not None:
            self.recorder.aggregate_inputs[server_round] = {
                int(proxy.node_id): parameters_to_ndarrays(res.parameters) for proxy, res in results
            }
        for node, metrics in per_node.items():
            self.outputs.ledger.record(
                server_round,
                node,
                float(metrics["epsilon"]),
                float(metrics["delta"]),
                int(metrics["num-examples"]),
            )
        if len(results) < self.settings.min_replies:
            self.outputs.record_phase(
                server_round,
                TRAIN,
                sampled=self._sampled.get((TRAIN, server_round), len(results)),
                per_node=per_node,
                aggregated=None,
            )
            raise RoundFailedError(
                f"round {server_round}: {len(results)} force(s) completed secure aggregation, "
                f"the round needs at least {self.settings.min_replies} (min-replies); "
                f"{len(failures)} failed or dropped out"
            )
        parameters, _ = super().aggregate_fit(server_round, results, failures)
        if parameters is None:
            raise RoundFailedError(f"round {server_round}: secure aggregation produced no model")
        arrays = [
            np.asarray(a, dtype=np.dtype(spec.dtype)).reshape(spec.shape)
            for a, spec in zip(
                parameters_to_ndarrays(parameters), self.contract.arrays, strict=True
            )
        ]
        self.latest = arrays
        self._aggregated_rounds.add(server_round)
        aggregated = aggregate_train_metrics_rows(list(per_node.values()))
        self.outputs.record_phase(
            server_round,
            TRAIN,
            sampled=self._sampled.get((TRAIN, server_round), len(results)),
            per_node=per_node,
            aggregated=aggregated,
        )
        return ndarrays_to_parameters(arrays), aggregated

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Record per-force evaluation metrics and their aggregate."""
        per_node = {int(proxy.node_id): dict(res.metrics) for proxy, res in results}
        aggregated = aggregate_evaluate_metrics_rows(list(per_node.values())) if results else None
        self.outputs.record_phase(
            server_round,
            EVALUATE,
            sampled=self._sampled.get((EVALUATE, server_round), len(results)),
            per_node=per_node,
            aggregated=aggregated,
        )
        if aggregated is None:
            return None, {}
        return float(aggregated["eval-loss"]), aggregated

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Called before round 1 and after every fit: checkpoint, and catch a halted round."""
        if server_round > 0 and server_round not in self._aggregated_rounds:
            raise RoundFailedError(
                f"round {server_round}: secure aggregation halted before producing a model "
                "(too few forces completed a protocol stage for the reconstruction threshold)"
            )
        arrays = [
            np.asarray(a, dtype=np.dtype(spec.dtype)).reshape(spec.shape)
            for a, spec in zip(
                parameters_to_ndarrays(parameters), self.contract.arrays, strict=True
            )
        ]
        self.outputs.checkpoint(server_round, self.contract.to_array_record(arrays))
        return None


def secagg_workflow(settings: FlowerSettings) -> SecAggPlusWorkflow:
    """Flower's SecAgg+ fit workflow from the settings (share counts <= 1 are proportions)."""

    def count_or_share(value: float) -> int | float:
        return float(value) if value <= 1.0 else int(value)

    return SecAggPlusWorkflow(
        num_shares=count_or_share(settings.secagg_num_shares),
        reconstruction_threshold=count_or_share(settings.secagg_reconstruction_threshold),
        max_weight=settings.secagg_max_weight,
        clipping_range=settings.secagg_clipping_range,
        quantization_range=settings.secagg_quantization_range,
        modulus_range=MODULUS_RANGE,
        timeout=settings.round_timeout,
    )


def run_secagg_federation(
    grid: Grid,
    context: Context,
    settings: FlowerSettings,
    recorder: SecAggRecorder | None = None,
) -> tuple[RunOutputs, GuardedSecAggFedAvg]:
    """Run ``num-server-rounds`` rounds of FedAvg with SecAgg+ behind the guard."""
    contract = EgressContract.from_model_config(settings.model_config())
    outputs = open_outputs(settings, contract, context.run_id)
    guard = SecAggReplyGuard(
        contract,
        MODULUS_RANGE,
        on_rejection=outputs.record_rejection,
        on_failure=outputs.record_failure,
        recorder=recorder,
    )
    strategy = GuardedSecAggFedAvg(settings, contract, outputs, recorder)
    guarded = GuardedGrid(grid, guard, settings.timeout_for_round)
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(
            num_rounds=settings.num_server_rounds, round_timeout=settings.round_timeout
        ),
        strategy=strategy,
    )
    workflow = DefaultWorkflow(fit_workflow=secagg_workflow(settings))
    log.info("national server (SecAgg+): %d round(s)", settings.num_server_rounds)
    try:
        wait_for_nodes(grid, settings.min_available_nodes, settings.node_wait_timeout)
        workflow(guarded, legacy)
    except BaseException as exc:
        outputs.finish(None, error=exc)
        raise
    outputs.finish(contract.to_array_record(strategy.latest))
    return outputs, strategy


def make_secagg_server_app(
    settings: FlowerSettings | None = None, recorder: SecAggRecorder | None = None
) -> ServerApp:
    """A SecAgg+ ServerApp using ``settings`` (run-config keys override them).

    ``recorder`` (tests, audits) receives every masked vector the server was sent.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_settings = FlowerSettings.from_run_config(context.run_config, base=settings)
        run_secagg_federation(grid, context, run_settings, recorder)

    return app


app = make_secagg_server_app()
