"""The canary audit on a real force store: planting, power, and a DP run that keeps its claim.

One force of the test world is built through the real ingest path (``tests/fixtures``); the
audit plants canary vehicles in a scratch copy of its store and trains through the force's own
round code (``local_train`` -> ``train_round`` -> Opacus, with its ledger). A DP implementation
that lies to its ledger is simulated here only, by swapping the noise multiplier under
``train_round`` while the ledger reserves the calibrated one.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from flower_world import FlowerWorld, build_force
from typer.testing import CliRunner

from client_force.force_dataset import clear_memory_cache, load_force_dataset
from client_force.simulated_force import SimulatedForce
from research.audit.broken_dp import broken_noise
from research.audit.canary_audit import CanaryAuditConfig, run_canary_audit
from research.audit.canary_report import canary_audit_run
from research.audit.canary_run import (
    draw_canaries,
    plant,
    scratch_dir,
    scratch_force,
    train_in_process,
)
from research.audit.cli import app


@pytest.fixture(scope="module")
def force(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("canary-force")
    fixture = build_force(root, "force0", 200, seed=0)
    settings = FlowerWorld(root=root, forces=[fixture]).settings(
        model_hidden=32,
        model_conv_layers=2,
        model_kernel_size=5,
        batch_size=32,
        optimizer="sgd",
        learning_rate=0.5,
        num_server_rounds=2,
        local_epochs=10,
        dp_target_epsilon=1.0,
        dp_noise_multiplier=0.0,  # calibrated to the plan, as in a study
    )
    return SimulatedForce(fixture.name, fixture.store, fixture.key_file), settings, root


def test_planting_adds_exactly_the_included_canaries(force, tmp_path) -> None:
    node, settings, _ = force
    copy = scratch_force(node, tmp_path)
    settings = settings.replace(feature_cache=True)
    canaries = draw_canaries(40, settings, seed=3)
    clear_memory_cache()
    before = load_force_dataset(copy.store, settings)
    n = plant(copy.store, settings, canaries)
    clear_memory_cache()
    after = load_force_dataset(copy.store, settings)
    planted = set(canaries.planted.vehicles.tolist())
    assert n == len(before.train) + len(planted) == len(after.train)
    assert planted <= set(after.train.vehicles.tolist())
    assert not set(canaries.examples.vehicles[~canaries.included]) & set(after.train.vehicles)
    assert not set(canaries.examples.vehicles) & set(after.test.vehicles)
    labels = dict(zip(after.train.vehicles, after.train_labels, strict=True))
    assert [labels[v] for v in canaries.planted.vehicles] == canaries.planted_labels.tolist()
    # The force's real store is untouched: its loader still yields the real vehicles only.
    clear_memory_cache()
    real = load_force_dataset(node.store, settings)
    assert not planted & set(real.train.vehicles.tolist())


def _trainer(force: SimulatedForce, settings, run_id: str):
    if "broken" in run_id:
        with broken_noise(1e-3):
            return train_in_process(force, settings, run_id)
    return train_in_process(force, settings, run_id)


@pytest.mark.slow
def test_noise_free_and_broken_runs_are_flagged_and_dp_at_eps1_is_not(force) -> None:
    node, settings, _ = force
    scratch = scratch_dir()
    result = run_canary_audit(
        node,
        settings,
        design="federated",
        epsilon=1.0,
        retention_days=28,
        scratch=scratch,
        config=CanaryAuditConfig(canaries=300, engine="in-process", training_seed=2, kind="input"),
        extra_variants={"broken-eps1": lambda s: s},
        trainer=_trainer,
    )
    by = {(r["variant"], r["view"]): r for r in result.rows()}
    shown = "\n".join(
        f"{v} {w}: ledger {r['ledger_epsilon']:.3g} correct {r['correct']}/{r['guesses']} "
        f"bound {r['eps_lower_bound']:.2f} (max {r['eps_max_testable']:.2f})"
        for (v, w), r in by.items()
    )
    print(shown)  # visible with -s: the figures behind the assertions
    assert result.claimed_epsilon == pytest.approx(1.0, abs=0.05)
    # The lying run claims the same epsilon in its ledger...
    assert by["broken-eps1", "black-box"]["ledger_epsilon"] == pytest.approx(result.claimed_epsilon)
    # ...but the audit sees through it, as it sees the honest noise-free reference.
    assert result.other_flags["broken-eps1"], shown
    assert result.tested_with_power, shown
    assert "could have caught a failure" in result.verdict
    # The honest DP run stays within its claim from both views.
    assert not result.flagged, shown
    for view in ("white-box", "black-box"):
        assert by["claimed", view]["eps_lower_bound"] <= result.claimed_epsilon
    # Rows name design, epsilon, retention window and force.
    assert {"design", "epsilon", "retention_days", "force"} <= set(result.rows()[0])
    assert np.isfinite([r["eps_lower_bound"] for r in result.rows()]).all()


def test_the_cli_path_cannot_reach_a_broken_variant() -> None:
    """No CLI option and no parameter of the run-folder audit injects a trainer or variant."""
    params = set(inspect.signature(canary_audit_run).parameters)
    assert params == {"run_dir", "config", "designs", "epsilons", "forces", "log"}
    command = next(c for c in app.registered_commands if c.name == "canary-audit")
    options = set(inspect.signature(command.callback).parameters)
    assert options == {
        "run_dir",
        "canaries",
        "design",
        "epsilon",
        "force",
        "confidence",
        "seed",
        "engine",
        "kind",
        "optimizer",
        "as_json",
    }
    runner = CliRunner()
    result = runner.invoke(app, ["canary-audit", ".", "--noise-multiplier", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["canary-audit", ".", "--engine", "broken"])
    assert result.exit_code == 2
