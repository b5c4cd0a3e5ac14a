"""Dirac gradient canaries in the force's own DP-SGD step: injection, gating, and power.

Real Opacus, real force stores (``tests/fixtures``), the force's own ``local_train``; the broken
DP implementations come from ``research.audit.broken_dp`` (tests and benchmarks only).
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from flower_world import FlowerWorld, build_force

from client_force.dp_trainer import make_generator, run_dp_sgd
from client_force.flower_round import RoundRefusedError, local_train
from client_force.force_dataset import load_force_dataset
from client_force.gradient_canaries import (
    PROBE_ARTIFACT,
    GradientCanaries,
    attach,
    write_probes,
)
from client_force.privacy_policy import (
    DEFAULT_POLICY,
    SIMULATION_POLICY,
    PolicyError,
    PolicyRefusedError,
    PrivacyPolicy,
    store_policy_path,
)
from client_force.private_training import ForcePrivacyEngine, install_policy
from client_force.simulated_force import SimulatedForce
from client_force.training import TrainingConfig, tensor_dataset
from federation.flower_settings import FlowerSettings, FlowerSettingsError
from federation.model import ModelConfig, TrajectoryModel, get_weights, weight_spec
from research.audit import broken_dp, dirac
from research.audit.canaries import make_canaries
from research.audit.canary_audit import CanaryAuditConfig, run_canary_audit
from research.audit.canary_run import initial_weights, scratch_dir, scratch_force, train_in_process


@pytest.fixture(scope="module")
def force(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("gradient-canary-force")
    fixture = build_force(root, "force0", 200, seed=0)
    settings = FlowerWorld(root=root, forces=[fixture]).settings(
        model_hidden=16,
        model_conv_layers=1,
        batch_size=32,
        num_server_rounds=2,
        local_epochs=3,
        dp_target_epsilon=2.0,
        dp_noise_multiplier=0.0,  # calibrated to the plan, as in a study
    )
    return SimulatedForce(fixture.name, fixture.store, fixture.key_file), settings


def test_a_sampled_canary_moves_exactly_its_coordinate_when_noise_is_zero() -> None:
    """One full-batch DP step with and without probes: they differ only at the probes."""
    data = make_canaries(40, max_reads=8, seed=1)
    dataset = tensor_dataset(data.examples, data.labels)
    config = ModelConfig(hidden=16, n_conv_layers=1)
    torch.manual_seed(0)
    model = TrajectoryModel(config)
    probes = dirac.draw_dirac(300, config, seed=4).probes
    lr, clip = 0.1, 1.0

    def one_step(with_probes: bool) -> np.ndarray:
        result = run_dp_sgd(
            model,
            dataset,
            prior_history=[],
            noise_multiplier=0.0,
            sample_rate=1.0,  # every vehicle and every canary is in the one step
            max_grad_norm=clip,
            epochs=1,
            make_optimizer=TrainingConfig(learning_rate=lr).make_optimizer,
            loss_fn=torch.nn.BCEWithLogitsLoss(),
            generator=make_generator(7),
            probes=probes if with_probes else None,
            probe_generator=make_generator(8) if with_probes else None,
        )
        return np.concatenate([v.numpy().ravel() for v in result.state_dict.values()])

    diff = one_step(False) - one_step(True)
    moved = np.flatnonzero(np.abs(diff) > 1e-7)
    assert np.array_equal(moved, np.sort(probes.coordinates))
    # Each probe added C to the clipped sum; Opacus divides by the expected batch (40).
    assert np.allclose(diff[moved], lr * clip / 40, rtol=1e-4)


def test_a_deployed_force_refuses_probes_in_its_store(force, tmp_path) -> None:
    node, settings = force
    copy = node.copy_to(tmp_path / "store", tmp_path / "key")  # keeps the simulation policy
    write_probes(copy.store, GradientCanaries(np.array([3, 5], np.int64)))
    plan = settings.replace(ledger_scope="probe-attack", training_seed=1)
    with pytest.raises(RoundRefusedError, match="holds audit probes") as caught:
        local_train(copy.node_store, plan, initial_weights(plan), server_round=1, run_id="x")
    assert caught.value.name == "policy-refused"
    # A deployed force's own (default) policy, on its lifetime ledger: refused the same way.
    install_policy(copy.store, DEFAULT_POLICY)
    lifetime = settings.replace(training_seed=-1)
    with pytest.raises(RoundRefusedError, match="holds audit probes") as caught:
        local_train(
            copy.node_store, lifetime, initial_weights(lifetime), server_round=1, run_id="x"
        )
    assert caught.value.name == "policy-refused"


def test_the_engine_itself_refuses_probes_its_policy_does_not_allow(force, tmp_path) -> None:
    """Second gate: ``ForcePrivacyEngine.train`` checks the policy again, whoever calls it."""
    node, settings = force
    plan = settings.replace(ledger_scope="probe-attack", training_seed=1)
    probes = GradientCanaries(np.array([3, 5], np.int64))
    for name, policy, round_settings in (
        ("simulation policy", SIMULATION_POLICY, plan),
        ("deployed policy", DEFAULT_POLICY, settings.replace(training_seed=-1)),
        (  # probes allowed, but not on the force's lifetime ledger
            "lifetime ledger",
            dataclasses.replace(SIMULATION_POLICY, allow_audit_probes=True),
            settings.replace(training_seed=-1),
        ),
    ):
        copy = node.copy_to(tmp_path / name / "store", tmp_path / name / "key")
        install_policy(copy.store, policy)
        engine = ForcePrivacyEngine.for_store(copy.store)
        data = load_force_dataset(copy.store, round_settings)
        model = TrajectoryModel(round_settings.model_config())
        before = [w.copy() for w in get_weights(model)]
        with pytest.raises(PolicyRefusedError, match="does not allow audit probes"):
            engine.train(
                model,
                data.train,
                data.train_labels,
                round_settings,
                server_round=1,
                run_id="x",
                force=copy.name,
                training=TrainingConfig(),
                probes=probes,
            )
        assert all(np.array_equal(a, b) for a, b in zip(before, get_weights(model), strict=True))
        assert engine.open_existing(round_settings) is None, name  # nothing was spent


def test_a_step_opacus_skips_adds_no_canary() -> None:
    """With virtual batches Opacus clips on every physical batch but adds noise once per
    logical step; a canary must be added once per noised step (one vehicle's norm), never
    once per physical batch."""
    from opacus.optimizers import DPOptimizer

    weight = torch.nn.Parameter(torch.zeros(8))
    optimizer = DPOptimizer(
        torch.optim.SGD([weight], lr=1.0),
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        expected_batch_size=1,
        loss_reduction="sum",
    )
    added = attach(
        optimizer, GradientCanaries(np.array([3])), sample_rate=1.0, generator=make_generator(0)
    )
    for skip in (True, True, False):  # three physical batches, one logical step
        weight.grad_sample = torch.zeros(1, 8)
        optimizer.signal_skip_step(do_skip=skip)
        optimizer.step()
    assert added() == 1
    assert weight.detach()[3].item() == pytest.approx(-1.0)  # lr x C, not 3 x C
    assert np.count_nonzero(weight.detach().numpy()) == 1


def test_the_policy_cannot_allow_probes_outside_a_simulation() -> None:
    with pytest.raises(PolicyError, match="allow-audit-probes"):
        PrivacyPolicy(allow_audit_probes=True)
    assert not SIMULATION_POLICY.allow_audit_probes


def test_a_run_config_cannot_switch_probes_on() -> None:
    for key in ("allow-audit-probes", "audit-probes", "gradient-canaries"):
        with pytest.raises(FlowerSettingsError, match=key):
            FlowerSettings.from_run_config({key: True})
    assert not any(
        "probe" in f.name or "canar" in f.name for f in dataclasses.fields(FlowerSettings)
    )


def test_a_planted_policy_or_probe_file_is_refused(force, tmp_path) -> None:
    node, settings = force
    plan = settings.replace(ledger_scope="probe-attack", training_seed=1)
    # A local user without the key plants a policy that allows probes: authentication fails.
    victim = node.copy_to(tmp_path / "victim", tmp_path / "victim.key")
    path = store_policy_path(victim.store.root)
    path.write_text(
        dataclasses.replace(SIMULATION_POLICY, allow_audit_probes=True).to_toml(), "utf-8"
    )
    with pytest.raises(RoundRefusedError, match="fails authentication"):
        local_train(victim.node_store, plan, initial_weights(plan), server_round=1, run_id="x")
    # A probe artifact copied from another store (sealed under other keys) into a store whose
    # policy allows probes: the store's authentication refuses it and nothing trains.
    audit = scratch_force(node, tmp_path / "audit")
    other = scratch_force(node, tmp_path / "other")
    write_probes(other.store, GradientCanaries(np.array([3, 5], np.int64)))
    shutil.copytree(
        Path(other.store.root) / "derived" / PROBE_ARTIFACT,
        Path(audit.store.root) / "derived" / PROBE_ARTIFACT,
    )
    with pytest.raises(RoundRefusedError) as caught:
        local_train(audit.node_store, plan, initial_weights(plan), server_round=1, run_id="x")
    assert caught.value.name == "store-unavailable"
    # Probes never run on the force's lifetime ledger, even where the policy allows them.
    write_probes(audit.store, GradientCanaries(np.array([3, 5], np.int64)))
    lifetime = settings.replace(training_seed=-1)
    with pytest.raises(RoundRefusedError, match="simulation ledger scope"):
        local_train(
            audit.node_store, lifetime, initial_weights(lifetime), server_round=1, run_id="x"
        )


def _trainer(force: SimulatedForce, settings: FlowerSettings, run_id: str):
    if "broken-noise" in run_id:
        with broken_dp.broken_noise(1e-3):
            return train_in_process(force, settings, run_id)
    if "replayed-noise" in run_id:
        with broken_dp.replayed_noise(settings.seed):
            run = train_in_process(force, settings, run_id)
        rows = [r for r in force.ledger_rows(settings) if r["steps"]]
        shapes = [shape for _, shape, _ in weight_spec(settings.model_config())]
        effects = broken_dp.replay_noise_effects(
            shapes,
            rows,
            server_seed=settings.seed,
            learning_rate=settings.learning_rate,
            momentum=TrainingConfig().momentum,
        )
        return dataclasses.replace(run, noise_effects=effects)
    return train_in_process(force, settings, run_id)


def test_broken_runs_are_flagged_and_an_honest_dp_run_is_not(force) -> None:
    node, settings = force
    scratch = scratch_dir()
    try:
        result = run_canary_audit(
            node,
            settings,
            design="federated",
            epsilon=2.0,
            retention_days=28,
            scratch=scratch,
            config=CanaryAuditConfig(canaries=1500, engine="in-process", training_seed=3),
            extra_variants={"broken-noise": lambda s: s, "replayed-noise": lambda s: s},
            trainer=_trainer,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by = {(r["variant"], r["view"]): r for r in result.rows()}
    shown = "\n".join(
        f"{v} {w}: ledger {r['ledger_epsilon']:.3g} correct {r['correct']}/{r['guesses']} "
        f"bound {r['eps_lower_bound']:.2f} (max {r['eps_max_testable']:.2f})"
        for (v, w), r in by.items()
    )
    print(shown)
    assert result.claimed_epsilon == pytest.approx(2.0, abs=0.05)
    assert result.config["trained_with"]["optimizer"] == "sgd"
    # Both lying runs record the claimed epsilon in their ledgers, and both are caught.
    for variant in ("broken-noise", "replayed-noise"):
        assert by[variant, "final-model"]["ledger_epsilon"] == pytest.approx(result.claimed_epsilon)
        assert result.other_flags[variant], shown
    assert result.tested_with_power, shown
    assert "could have caught a failure" in result.verdict
    assert not result.flagged, shown
    for view in ("white-box", "final-model"):
        assert by["claimed", view]["eps_lower_bound"] <= result.claimed_epsilon
        assert by["reference", view]["canary_kind"] == "gradient"
    assert {"design", "epsilon", "retention_days", "force"} <= set(result.rows()[0])


def test_the_cli_path_never_imports_the_broken_variants() -> None:
    import research.audit.canary_audit as audit_module
    import research.audit.canary_report as report_module
    import research.audit.cli as cli_module

    for module in (audit_module, report_module, cli_module):
        assert "broken_dp" not in inspect.getsource(module)
    assert get_weights  # the probes address get_weights' flat order (see dirac.flat)


@pytest.mark.slow
def test_the_probes_reach_the_client_app_in_a_real_flower_simulation(force) -> None:
    """engine="flower": the ClientApp in its Ray actor reads the probes from its own store."""
    node, settings = force
    scratch = scratch_dir()
    try:
        result = run_canary_audit(
            node,
            settings,
            design="federated",
            epsilon=2.0,
            retention_days=28,
            scratch=scratch,
            config=CanaryAuditConfig(canaries=1500, engine="flower", training_seed=3),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert result.tested_with_power, result.verdict
    assert not result.flagged, result.verdict


def test_the_best_of_the_two_views_is_valid_at_the_stated_confidence() -> None:
    """The verdict takes the best of the white-box and final-model bounds, so each view's
    bound must carry the Bonferroni share of both (not only of its abstention grid)."""
    from research.audit.canary_audit import judge_gradient
    from research.audit.canary_run import TrainedRun
    from research.audit.one_run import DEFAULT_GUESS_FRACTIONS, max_lower_bound

    m, delta, confidence = 400, 1e-5, 0.95
    included = np.random.default_rng(2).permutation(m) < m // 2
    canaries = dirac.DiracCanaries(np.arange(m, dtype=np.int64), included, seed=2)
    w0 = np.zeros(m, np.float32)
    w1 = w0 - included.astype(np.float32)  # every included coordinate fell: perfect guesses
    w2 = w1 - 0.5 * included.astype(np.float32)
    run = TrainedRun(
        [[w0], [w1], [w2]], ledger_epsilon=1.0, delta=delta, noise_multiplier=1.0, seconds=0.0
    )
    bounds, _ = judge_gradient(run, canaries, confidence, delta)
    beta = (1 - confidence) / (len(bounds) * len(DEFAULT_GUESS_FRACTIONS))
    for view, bound in bounds.items():
        assert bound.correct == bound.guesses == m, view
        assert bound.epsilon_lower == pytest.approx(max_lower_bound(m, delta, beta), abs=1e-5)
        assert bound.grid_size == len(bounds) * len(DEFAULT_GUESS_FRACTIONS)
