"""The national ServerApp: guarded FedAvg/FedProx over the forces, with run outputs.

``app`` is what ``flwr run .`` loads (``[tool.flwr.app.components] serverapp``); it reads its
settings from the Flower run config. ``make_server_app(settings)`` builds the same app with
settings given in code, for ``flwr.simulation.run_simulation`` (which passes an empty run
config); keys present in a run config still override them.

One run:

1. build the model from the settings (``seed`` fixes the initial weights) and the egress
   contract from its ``weight_spec``;
2. run ``num-server-rounds`` rounds of the guarded strategy (``server_national.strategy``),
   waiting at most ``round-timeout`` for replies (``first-round-timeout`` in round 1);
3. after each round checkpoint the global arrays; write everything listed in
   ``server_national.run_outputs`` to ``results-dir``; mark the run completed or failed
   (re-raising the failure so Flower reports it too).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from federation.contract import EgressContract
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, get_weights, load_initial_weights
from server_national.egress_guard import EgressGuard
from server_national.ledger_view import LedgerView
from server_national.round_grid import RoundTimeoutGrid
from server_national.run_outputs import RunOutputs
from server_national.strategy import make_strategy

log = logging.getLogger(__name__)


def initial_arrays(settings: FlowerSettings, contract: EgressContract) -> ArrayRecord:
    """The global model's starting arrays: ``TrajectoryModel`` initialised with ``seed``.

    With ``init-weights`` set, the arrays (or only the read encoder's) come from that public
    file instead (``federation.model.load_initial_weights``).
    """
    if settings.init_weights:
        weights = load_initial_weights(
            settings.model_config(),
            settings.init_weights,
            seed=settings.seed,
            encoder_only=settings.init_encoder_only,
        )
        return contract.to_array_record(weights)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(settings.seed)
        model = TrajectoryModel(settings.model_config())
    finally:
        torch.random.set_rng_state(generator_state)
    return contract.to_array_record(get_weights(model))


def results_dir_for(settings: FlowerSettings, run_id: int) -> Path:
    """``results-dir``, or ``./runs/flower/run-<run id>`` when it is empty."""
    if settings.results_dir:
        return Path(settings.results_dir).expanduser().resolve()
    return (Path.cwd() / "runs" / "flower" / f"run-{run_id}").resolve()


def open_outputs(settings: FlowerSettings, contract: EgressContract, run_id: int) -> RunOutputs:
    """The run's output writer (results and checkpoint folders from the settings)."""
    results = results_dir_for(settings, run_id)
    checkpoints = (
        Path(settings.checkpoint_dir).expanduser().resolve()
        if settings.checkpoint_dir
        else results / "checkpoints"
    )
    ledger = LedgerView(settings.dp_target_epsilon, settings.dp_delta)
    return RunOutputs(results, checkpoints, contract, ledger, run_id, settings.to_run_config())


def run_federation(grid: Grid, settings: FlowerSettings, run_id: int) -> RunOutputs:
    """Run the whole federated training described by ``settings`` on ``grid``."""
    contract = EgressContract.from_model_config(settings.model_config())
    outputs = open_outputs(settings, contract, run_id)
    guard = EgressGuard(
        contract, on_rejection=outputs.record_rejection, on_failure=outputs.record_failure
    )
    strategy = make_strategy(settings, guard=guard, outputs=outputs, ledger=outputs.ledger)

    def after_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        # Flower calls this before round 1 (round 0: the initial model) and after every round.
        outputs.checkpoint(server_round, arrays)
        return None

    log.info(
        "national server: %s, %d round(s), results in %s",
        settings.strategy,
        settings.num_server_rounds,
        outputs.results_dir,
    )
    try:
        result = strategy.start(
            grid=RoundTimeoutGrid(grid, settings.timeout_for_round),
            initial_arrays=initial_arrays(settings, contract),
            num_rounds=settings.num_server_rounds,
            timeout=settings.round_timeout,
            train_config=ConfigRecord(),
            evaluate_config=ConfigRecord(),
            evaluate_fn=after_round,
        )
    except BaseException as exc:
        outputs.finish(None, error=exc)
        raise
    outputs.finish(result.arrays)
    return outputs


def make_server_app(settings: FlowerSettings | None = None) -> ServerApp:
    """A ServerApp using ``settings`` (run-config keys override them)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_settings = FlowerSettings.from_run_config(context.run_config, base=settings)
        run_federation(grid, run_settings, context.run_id)

    return app


app = make_server_app()
