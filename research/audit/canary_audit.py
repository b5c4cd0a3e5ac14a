"""The canary audit of a force's DP training: claimed run, noise-free reference, verdict.

Two kinds of canary (``CanaryAuditConfig.kind``):

* ``gradient`` (the default): Dirac gradient canaries added inside the force's own DP-SGD step
  (:mod:`client_force.gradient_canaries`, :mod:`research.audit.dirac`): the literature's
  white-box audit of DP-SGD, the most observable test of the clip + noise + accounting code.
  They are scored on the weights the server received: white-box (round by round) and the
  final model. By default the audit trains with plain SGD (momentum 0.9) instead of the study
  recipe's Adam, keeping the recipe's batch, epochs, rounds and clipping (so the same
  accounting): the privacy claim covers the noisy gradient sequence and the optimiser is
  post-processing, but Adam's per-coordinate normalisation moves an included and an excluded
  coordinate by about the learning rate each and destroys the audit's power
  (``optimizer="study"`` keeps the recipe and reports that power honestly);
* ``input``: canary *vehicles* with rare feature patterns (:mod:`research.audit.canaries`),
  scored white-box and black-box from the model's outputs.

For one sweep point of a study (design, epsilon, retention window) and one force:

* draw ``m`` canaries and their inclusion coins, plant the included ones in a scratch copy of
  the force's store (:mod:`research.audit.canary_run`);
* **claimed**: train with the sweep point's own settings through the force's round code; the
  ledger says which epsilon this run claims;
* **reference**: the same canaries, data, model and rounds with the noise taken out honestly
  (noise multiplier :data:`REFERENCE_NOISE`; its ledger records the epsilon that implies,
  millions): if the audit cannot flag *this* run, it could not flag a broken one either;
* score every canary white-box (the server's round-by-round view) and black-box (the final
  model) and bound epsilon with the one-run method (:mod:`research.audit.one_run`).

The verdict is in plain words (:func:`power_sentence`): a claim is *tested with power* when the
reference's lower bound exceeds it (the audit could have caught a failure); a claimed run is
*flagged* when its own lower bound exceeds its claim.

The reference is honest about itself (the ledger records its real epsilon), so it may run from
the CLI; variants that lie to the ledger exist only in tests and benchmarks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client_force.dp_recipe import resolve as resolve_recipe
from client_force.force_dataset import clear_memory_cache, load_force_dataset
from client_force.gradient_canaries import write_probes
from client_force.simulated_force import SimulatedForce
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel
from research.audit import dirac
from research.audit.canaries import DEFAULT_AMPLITUDE, CanarySet
from research.audit.canary_run import (
    TrainedRun,
    draw_canaries,
    plant,
    scratch_force,
    train,
)
from research.audit.canary_scores import (
    black_box_scores,
    standardise_by_label,
    white_box_scores,
)
from research.audit.one_run import OneRunBound, one_run_audit

REFERENCE_NOISE = 1e-3
"""Noise multiplier of the reference run: DP-SGD's clipping and sampling with (almost) no noise."""
REFERENCE_BUDGET = 1e12
"""Ledger budget of the reference's own scope (its real epsilon is millions, and recorded)."""
VIEWS = ("white-box", "black-box")
GRADIENT_VIEWS = ("white-box", "final-model")
KINDS = ("gradient", "input")
AUDIT_OPTIMIZERS = ("sgd", "study")

Trainer = Callable[[SimulatedForce, FlowerSettings, str], TrainedRun]


AUTO_GRADIENT = 4000
"""Default gradient canaries (capped by what the model holds): the one-run bound's ceiling
grows with their number (about 5.1 at 1,000 and 5.7 at 4,000 canaries, delta 1e-5, 95 %, two
views)."""
AUTO_INPUT = 1000
"""Default canary vehicles."""


@dataclass(frozen=True)
class CanaryAuditConfig:
    """Which canaries, how many, at what confidence, with which engine and optimiser."""

    canaries: int = 0  # 0 = auto: gradient, as many as the model holds up to AUTO_GRADIENT;
    # input, AUTO_INPUT
    amplitude: float = DEFAULT_AMPLITUDE  # input canaries only
    confidence: float = 0.95
    seed: int = 0
    engine: str = "flower"
    training_seed: int = -1  # -1: the force's OS entropy, as in a study; >= 0 for benchmarks
    kind: str = "gradient"
    optimizer: str = "sgd"  # gradient canaries: "sgd" (default) or "study" (the recipe's)
    learning_rate: float = 0.1  # of the audit's SGD
    drift_pilot: bool = True  # gradient canaries: subtract a canary-free noise-free run's steps

    def __post_init__(self) -> None:
        if self.canaries != 0 and self.canaries < 20:
            raise ValueError(f"use at least 20 canaries (or 0 for auto); got {self.canaries}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.optimizer not in AUDIT_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {AUDIT_OPTIMIZERS}")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be positive")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1); got {self.confidence}")
        if self.amplitude <= 0:
            raise ValueError("amplitude must be positive")


@dataclass(frozen=True)
class VariantResult:
    """One training run of the audit, judged from both views."""

    variant: str  # "claimed", "reference" (or a test-only variant)
    run: TrainedRun
    bounds: dict[str, OneRunBound]  # by view
    kind: str = "input"
    separation: dict[str, float] = field(default_factory=dict)  # by view (gradient canaries)

    def row(self, claimed_epsilon: float) -> list[dict[str, Any]]:
        """One row per view (counts and bounds only, no canary's score)."""
        out = []
        for view, b in self.bounds.items():
            out.append(
                {
                    "canary_kind": self.kind,
                    "variant": self.variant,
                    "view": view,
                    "ledger_epsilon": self.run.ledger_epsilon,
                    "noise_multiplier": self.run.noise_multiplier,
                    "delta": b.delta,
                    "canaries": b.canaries,
                    "guesses": b.guesses,
                    "correct": b.correct,
                    "accuracy": b.accuracy,
                    "eps_lower_bound": b.epsilon_lower,
                    "eps_max_testable": b.max_possible,
                    "confidence": b.confidence,
                    # above this run's own ledger claim: the run breaks its promise
                    "flagged": bool(b.epsilon_lower > self.run.ledger_epsilon),
                    # above the audited run's claim: the audit could catch a failure there
                    "exceeds_audited_claim": bool(b.epsilon_lower > claimed_epsilon),
                    "train_seconds": round(self.run.seconds, 1),
                    "separation": self.separation.get(view, math.nan),
                }
            )
        return out


def judge(
    run: TrainedRun, canaries: CanarySet, settings: FlowerSettings, confidence: float, delta: float
) -> dict[str, OneRunBound]:
    """White-box and black-box one-run bounds of one training run (the best of the two is
    valid at ``confidence``: each view's bound is Bonferroni-corrected for both)."""

    def make_model() -> TrajectoryModel:
        return TrajectoryModel(settings.model_config())

    scores = {
        "white-box": white_box_scores(make_model, run.rounds, canaries),
        "black-box": black_box_scores(make_model, run.rounds[0], run.rounds[-1], canaries),
    }
    scores = {view: standardise_by_label(s, canaries.labels) for view, s in scores.items()}
    return {
        view: one_run_audit(
            s, canaries.included, delta=delta, confidence=confidence, views=len(scores)
        )
        for view, s in scores.items()
    }


def judge_gradient(
    run: TrainedRun,
    canaries: dirac.DiracCanaries,
    confidence: float,
    delta: float,
    baseline: TrainedRun | None = None,
) -> tuple[dict[str, OneRunBound], dict[str, float]]:
    """White-box and final-model one-run bounds of one run with gradient canaries, and how
    far each view's scores separate included from excluded canaries (``baseline``: the drift
    pilot's rounds, subtracted; see :mod:`research.audit.dirac`). The best of the two bounds
    is valid at ``confidence`` (each view's bound is Bonferroni-corrected for both)."""
    base = None if baseline is None else baseline.rounds
    scores = {
        "white-box": dirac.white_box_scores(run.rounds, canaries, run.noise_effects, base),
        "final-model": dirac.final_model_scores(run.rounds, canaries, run.noise_effects, base),
    }
    bounds = {
        view: one_run_audit(
            s, canaries.included, delta=delta, confidence=confidence, views=len(scores)
        )
        for view, s in scores.items()
    }
    separation = {
        view: dirac.drift_summary(s, canaries)["separation"] for view, s in scores.items()
    }
    return bounds, separation


def audit_training(
    settings: FlowerSettings, n_train: int, config: CanaryAuditConfig
) -> FlowerSettings:
    """The settings the gradient audit trains with (module docstring).

    ``optimizer="sgd"``: the sweep point's batch, local epochs and clipping (resolved from its
    recipe for this force's ``n_train`` vehicles when it names one), so the same accounting,
    with plain SGD (momentum 0.9) at ``config.learning_rate``. ``"study"``: unchanged.
    """
    if config.kind != "gradient" or config.optimizer == "study":
        return settings
    batch, epochs, clip = settings.batch_size, settings.local_epochs, settings.dp_max_grad_norm
    if settings.dp_recipe:
        recipe = resolve_recipe(settings.dp_recipe, n_train, settings.num_server_rounds)
        batch, epochs, clip = (
            recipe.expected_batch_size,
            recipe.local_epochs,
            recipe.max_grad_norm,
        )
    return settings.replace(
        dp_recipe="",
        optimizer="sgd",
        learning_rate=config.learning_rate,
        batch_size=batch,
        local_epochs=epochs,
        dp_max_grad_norm=clip,
    )


def power_sentence(
    claimed: float, reference: dict[str, OneRunBound], claimed_bounds: dict[str, OneRunBound]
) -> str:
    """The verdict in plain words, for the report and the DPIA pack."""
    best_ref = max(reference.values(), key=lambda b: b.epsilon_lower)
    best_claim = max(claimed_bounds.values(), key=lambda b: b.epsilon_lower)
    m = best_ref.canaries
    if best_claim.epsilon_lower > claimed:
        return (
            f"FLAGGED: the canary audit shows epsilon >= {best_claim.epsilon_lower:.2f} "
            f"({best_claim.confidence:.0%} confidence), above the claimed {claimed:g}: the "
            "training does not give the privacy its ledger claims."
        )
    if best_ref.epsilon_lower > claimed:
        return (
            f"Tested with power: the noise-free reference was flagged (epsilon >= "
            f"{best_ref.epsilon_lower:.2f} > {claimed:g}), so the audit could have caught a "
            f"failure; the claimed run's lower bound is {best_claim.epsilon_lower:.2f}, within "
            f"its claim of {claimed:g}."
        )
    if best_ref.max_possible <= claimed:
        return (
            f"Not tested with power: {m} canaries can show at most epsilon "
            f"{best_ref.max_possible:.2f} at this confidence, not above the claim of {claimed:g}; "
            "a pass says nothing about this claim."
        )
    return (
        f"Not tested with power: even the noise-free reference was not flagged (epsilon >= "
        f"{best_ref.epsilon_lower:.2f}, claim {claimed:g}), so this audit could not have caught "
        "a failure; its pass says nothing."
    )


@dataclass
class CanaryAuditResult:
    """Everything one force's canary audit found at one sweep point."""

    design: str
    epsilon: float  # the sweep point's target
    retention_days: int
    force: str
    claimed_epsilon: float  # from the claimed run's ledger
    variants: list[VariantResult] = field(default_factory=list)
    verdict: str = ""
    tested_with_power: bool = False
    flagged: bool = False
    other_flags: dict[str, bool] = field(default_factory=dict)  # test/benchmark variants
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows naming design, epsilon, retention window and force."""
        base = {
            "design": self.design,
            "epsilon": self.epsilon,
            "retention_days": self.retention_days,
            "force": self.force,
            "claimed_epsilon": self.claimed_epsilon,
        }
        return [{**base, **r} for v in self.variants for r in v.row(self.claimed_epsilon)]


def run_canary_audit(
    force: SimulatedForce,
    settings: FlowerSettings,
    *,
    design: str,
    epsilon: float,
    retention_days: int,
    scratch: Path,
    config: CanaryAuditConfig | None = None,
    extra_variants: dict[str, Callable[[FlowerSettings], FlowerSettings]] | None = None,
    trainer: Trainer | None = None,
    log: Callable[[str], None] | None = None,
) -> CanaryAuditResult:
    """Plant canaries in a scratch copy of ``force``, train claimed and reference, judge both.

    ``extra_variants`` (name -> settings change) and ``trainer`` are for tests and benchmarks
    (e.g. a trainer that breaks the noise while the ledger claims the calibrated epsilon);
    the CLI passes neither.
    """
    config = config or CanaryAuditConfig()
    started = time.perf_counter()
    copy = scratch_force(force, Path(scratch))
    settings = settings.replace(
        results_dir=str(Path(scratch) / "server"),
        training_seed=config.training_seed,
        feature_cache=True,
        min_available_nodes=1,
        min_replies=1,
    )
    canaries: CanarySet | dirac.DiracCanaries
    pilot: TrainedRun | None = None
    if config.kind == "gradient":
        clear_memory_cache()
        n_train = len(load_force_dataset(copy.store, settings, use_store_cache=True).train)
        settings = audit_training(settings, n_train, config)
        m = config.canaries or min(AUTO_GRADIENT, dirac.max_canaries(settings.model_config()))
        canaries = dirac.draw_dirac(m, settings.model_config(), config.seed)
        if config.drift_pilot:
            # Before the probes exist: a noise-free run without canaries, its own seed.
            pilot_plan = settings.replace(
                dp_noise_multiplier=REFERENCE_NOISE,
                dp_target_epsilon=REFERENCE_BUDGET,
                training_seed=-1 if settings.training_seed < 0 else settings.training_seed + 7919,
                ledger_scope="canary-audit-drift-pilot",
                study_id=f"canary-audit/{design}/{epsilon:g}/{retention_days}d/drift-pilot",
                results_dir=str(Path(scratch) / "server" / "drift-pilot"),
            )
            if log:
                log(f"{force.name}: training the drift pilot (no canaries, {config.engine})")
            if trainer is not None:
                pilot = trainer(copy, pilot_plan, "canary-drift-pilot")
            else:
                pilot = train(copy, pilot_plan, engine=config.engine, run_id="canary-drift-pilot")
        write_probes(copy.store, canaries.probes)
        if log:
            log(
                f"{force.name}: {int(canaries.included.sum())} of {len(canaries)} gradient "
                f"canaries given to the force's DP step ({n_train} training vehicles; "
                f"{settings.optimizer} at {settings.learning_rate:g}, expected batch "
                f"{settings.batch_size}, {settings.local_epochs} local epoch(s))"
            )
    else:
        canaries = draw_canaries(
            config.canaries or AUTO_INPUT, settings, config.seed, amplitude=config.amplitude
        )
        n_train = plant(copy.store, settings, canaries)
        if log:
            log(
                f"{force.name}: {int(canaries.included.sum())} of {len(canaries)} canaries "
                f"planted among {n_train} training vehicles"
            )
    plans: dict[str, FlowerSettings] = {
        "claimed": settings,
        "reference": settings.replace(
            dp_noise_multiplier=REFERENCE_NOISE, dp_target_epsilon=REFERENCE_BUDGET
        ),
    }
    for name, change in (extra_variants or {}).items():
        plans[name] = change(settings)
    runs: dict[str, TrainedRun] = {}
    for name, plan in plans.items():
        plan = plan.replace(
            ledger_scope=f"canary-audit-{name}",
            study_id=f"canary-audit/{design}/{epsilon:g}/{retention_days}d/{name}",
            results_dir=str(Path(scratch) / "server" / name),
        )
        if log:
            log(f"{force.name}: training the {name} run ({config.engine})")
        if trainer is not None:
            runs[name] = trainer(copy, plan, f"canary-{name}")
        else:
            runs[name] = train(copy, plan, engine=config.engine, run_id=f"canary-{name}")
    claimed = runs["claimed"]
    result = CanaryAuditResult(
        design=design,
        epsilon=epsilon,
        retention_days=retention_days,
        force=force.name,
        claimed_epsilon=claimed.ledger_epsilon,
        config={
            **asdict(config),
            "trained_with": {
                "optimizer": settings.optimizer,
                "learning_rate": settings.learning_rate,
                "batch_size": settings.batch_size,
                "local_epochs": settings.local_epochs,
                "rounds": settings.num_server_rounds,
                "max_grad_norm": settings.dp_max_grad_norm,
                "dp_recipe": settings.dp_recipe,
            },
        },
    )
    for name, run in runs.items():
        if isinstance(canaries, dirac.DiracCanaries):
            bounds, separation = judge_gradient(
                run, canaries, config.confidence, claimed.delta, pilot
            )
            result.variants.append(VariantResult(name, run, bounds, "gradient", separation))
        else:
            bounds = judge(run, canaries, settings, config.confidence, claimed.delta)
            result.variants.append(VariantResult(name, run, bounds, "input"))
    by_name = {v.variant: v.bounds for v in result.variants}
    result.verdict = power_sentence(
        claimed.ledger_epsilon, by_name["reference"], by_name["claimed"]
    )
    result.tested_with_power = any(
        b.epsilon_lower > claimed.ledger_epsilon for b in by_name["reference"].values()
    )
    result.flagged = any(
        b.epsilon_lower > claimed.ledger_epsilon for b in by_name["claimed"].values()
    )
    result.other_flags = {
        v.variant: any(b.epsilon_lower > v.run.ledger_epsilon for b in v.bounds.values())
        for v in result.variants
        if v.variant not in ("claimed", "reference")
    }
    result.seconds = time.perf_counter() - started
    return result
