"""The Flower run configuration as a typed settings object.

Flower hands a ServerApp and every ClientApp the same *run config*: a flat mapping of
kebab-case keys to ``bool | int | float | str`` whose defaults live in ``pyproject.toml``
under ``[tool.flwr.app.config]`` and which ``flwr run --run-config`` overrides. This module
turns that mapping into :class:`FlowerSettings` (one field per key, ``num_server_rounds`` <->
``num-server-rounds``) and back, checking names, types and ranges so a typo fails at start-up
with the key named, not mid-study.

``flwr.simulation.run_simulation`` (the in-process Simulation Engine) passes an *empty* run
config, so the apps also accept settings from their factories (``make_server_app(settings)``,
``make_client_app(settings)``); keys present in the run config override those.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

RunConfigValue = bool | int | float | str

STRATEGIES = ("fedavg", "fedprox")
OPTIMIZERS = ("adam", "sgd")


class FlowerSettingsError(ValueError):
    """A run-config key is unknown, has the wrong type, or is out of range (names the key)."""


def _key(name: str) -> str:
    return name.replace("_", "-")


TRAIN_LAYERS = ("all", "head")
"""``train-layers``: train every weight, or only the head over a fixed read encoder."""


@dataclass(frozen=True)
class FlowerSettings:
    """Every setting a Flower run of anprfed reads, with its run-config key in the comment.

    Server side: rounds, sampling, strategy, timeouts, output folders, SecAgg+ parameters.
    Client side (the study settings every force applies identically): the study window and
    label date, the local DP-SGD hyper-parameters, the feature cap and the split seed.
    """

    # --- server: rounds, sampling and failure handling -----------------------------------
    num_server_rounds: int = 3  # num-server-rounds
    strategy: str = "fedavg"  # strategy: fedavg | fedprox
    proximal_mu: float = 0.0  # proximal-mu (FedProx only)
    fraction_train: float = 1.0  # fraction-train
    fraction_evaluate: float = 0.0  # fraction-evaluate: forces asked to evaluate each round;
    # off by default: every federated evaluation is a DP release charged to each force's ledger
    # and capped by its policy (the study evaluates force-side instead)
    min_available_nodes: int = 2  # min-available-nodes: forces that must be connected
    min_replies: int = 2  # min-replies: accepted replies a round needs to proceed
    round_timeout: float = 600.0  # round-timeout: seconds to wait for replies per round
    first_round_timeout: float = 0.0  # first-round-timeout: round 1's wait (0 = round-timeout);
    # round 1 includes process start-up and feature building at every force
    node_wait_timeout: float = 120.0  # node-wait-timeout: seconds to wait for forces to join
    results_dir: str = ""  # results-dir: server outputs ("" = ./runs/flower/run-<id>)
    checkpoint_dir: str = ""  # checkpoint-dir ("" = <results-dir>/checkpoints)
    # --- server: SecAgg+ (server_national.secagg_app only) --------------------------------
    secagg_num_shares: float = 1.0  # secagg-num-shares: <= 1 share of sampled forces, else count
    secagg_reconstruction_threshold: float = 0.67  # secagg-reconstruction-threshold: same rule
    secagg_clipping_range: float = 8.0  # secagg-clipping-range
    secagg_quantization_range: int = 2**22  # secagg-quantization-range
    secagg_max_weight: float = 100000.0  # secagg-max-weight (>= any force's example count)
    # --- client: where a simulated node finds its store -----------------------------------
    node_config_dir: str = ""  # node-config-dir: <dir>/node-<partition-id>.toml
    # --- client: the study ----------------------------------------------------------------
    window_start: str = "2024-01-01"  # window-start (inclusive, UTC day)
    window_end: str = "2024-03-01"  # window-end (exclusive, UTC day)
    as_of: str = "2024-12-31"  # as-of: convictions dated on or before count as positives
    max_reads: int = 64  # max-reads: per-vehicle sequence cap
    test_fraction: float = 0.2  # test-fraction: held-out share of each force's vehicles
    seed: int = 0  # seed: split hash, model init and DP noise
    feature_cache: bool = True  # feature-cache: keep an encrypted derived feature cache
    # --- client: local DP training ---------------------------------------------------------
    study_id: str = "flower-study"  # study-id: recorded with every round in each force ledger
    ledger_scope: str = ""  # ledger-scope (SIMULATION ONLY): "" = the force's lifetime ledger; a
    # name = a separate ledger under STORE/privacy/scopes/<name>/ whose budget is
    # dp-target-epsilon (each sweep point is its own hypothetical deployment). A force whose
    # privacy policy does not allow simulation settings refuses any round that sets it.
    local_epochs: int = 1  # local-epochs
    optimizer: str = "adam"  # optimizer: adam | sgd
    learning_rate: float = 3e-3  # learning-rate
    batch_size: int = 64  # batch-size: expected Poisson batch (sample rate = batch / vehicles)
    dp_enabled: bool = True  # dp-enabled: false = NON-PRIVATE reference round (simulation only:
    # epsilon = inf in the reply, no ledger entry; refused by a deployed force's policy)
    dp_target_epsilon: float = 8.0  # dp-target-epsilon: a *request*: the epsilon this study's
    # noise is calibrated to; the force's ledger budget is the force's own policy
    dp_delta: float = 0.0  # dp-delta (0 = 1 / (10 x the force's training vehicles))
    dp_max_grad_norm: float = 1.0  # dp-max-grad-norm
    dp_noise_multiplier: float = 0.0  # dp-noise-multiplier (0 = calibrated to the study plan)
    dp_recipe: str = ""  # dp-recipe: "" = the explicit values above; "anprfed-dp/2" = the
    # force derives batch, epochs, optimiser, learning rate and clipping from that fixed public
    # rule and its own training-vehicle count (client_force.dp_recipe)
    training_seed: int = -1  # training-seed (SIMULATION ONLY): -1 = OS CSPRNG; >= 0 fixes DP
    # noise, which the server then knows (epsilon = inf); refused by a deployed force's policy
    # --- model ---------------------------------------------------------------------------
    model_hidden: int = 32  # model-hidden: hidden width of the trajectory model
    model_kernel_size: int = 5  # model-kernel-size: odd convolution width over reads
    model_conv_layers: int = 2  # model-conv-layers: residual convolution blocks
    model_use_summary: bool = True  # model-use-summary: feed per-vehicle summary features
    model_standardise: bool = True  # model-standardise: fixed reference input scaling
    model_prior_prevalence: float = 0.01  # model-prior-prevalence: initial output bias
    init_weights: str = ""  # init-weights: "" = seeded initialisation; a path = a PUBLIC .npz
    # (arrays by contract name, e.g. pre-trained on a public synthetic world) to start from
    init_encoder_only: bool = True  # init-encoder-only: take only the read encoder from it
    train_layers: str = "all"  # train-layers: "all" | "head" = keep the read encoder fixed (a
    # public pre-trained one) and train only the head: far fewer noised weights under DP
    extra: Mapping[str, RunConfigValue] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self._check()

    # ------------------------------------------------------------------ conversion
    @classmethod
    def keys(cls) -> list[str]:
        """All run-config keys, in declaration order."""
        return [_key(f.name) for f in fields(cls) if f.name != "extra"]

    @classmethod
    def from_run_config(
        cls,
        run_config: Mapping[str, Any],
        base: FlowerSettings | None = None,
        *,
        allow_unknown: bool = False,
    ) -> FlowerSettings:
        """Settings from a Flower run config, overriding ``base`` (or the defaults).

        Unknown keys raise :class:`FlowerSettingsError` unless ``allow_unknown``, in which case
        they are kept in ``extra`` (for keys another component owns).
        """
        base = base if base is not None else cls()
        by_key = {_key(f.name): f for f in fields(cls) if f.name != "extra"}
        updates: dict[str, Any] = {}
        extra = dict(base.extra)
        for key, value in run_config.items():
            spec = by_key.get(key)
            if spec is None:
                if allow_unknown:
                    extra[key] = value
                    continue
                raise FlowerSettingsError(
                    f"unknown run-config key {key!r}; known keys: {', '.join(cls.keys())}"
                )
            updates[spec.name] = _coerce(key, value, type(getattr(base, spec.name)))
        return dataclasses.replace(base, **updates, extra=extra)

    def simulation_only(self) -> dict[str, RunConfigValue]:
        """The simulation-only settings in use (for run manifests): seed, scope, no DP."""
        used: dict[str, RunConfigValue] = {}
        if self.training_seed >= 0:
            used["training-seed"] = self.training_seed
        if self.ledger_scope:
            used["ledger-scope"] = self.ledger_scope
        if not self.dp_enabled:
            used["dp-enabled"] = False
        return used

    def to_run_config(self) -> dict[str, RunConfigValue]:
        """The run-config mapping (``flwr run --run-config`` / pyproject defaults)."""
        return {_key(f.name): getattr(self, f.name) for f in fields(self) if f.name != "extra"}

    def replace(self, **changes: Any) -> FlowerSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ derived values
    @property
    def window_start_date(self) -> date:
        """``window-start`` as a date."""
        return _parse_date("window-start", self.window_start)

    @property
    def window_end_date(self) -> date:
        """``window-end`` as a date (exclusive)."""
        return _parse_date("window-end", self.window_end)

    def timeout_for_round(self, server_round: int) -> float:
        """Seconds to wait for replies in ``server_round`` (round 1 may have its own)."""
        if server_round <= 1 and self.first_round_timeout > 0:
            return max(self.first_round_timeout, self.round_timeout)
        return self.round_timeout

    @property
    def as_of_date(self) -> date:
        """``as-of`` as a date."""
        return _parse_date("as-of", self.as_of)

    def model_config(self) -> Any:
        """The ``federation.model.ModelConfig`` these settings describe (same on both sides)."""
        from federation.model import ModelConfig  # local: torch is heavy to import

        return ModelConfig(
            hidden=self.model_hidden,
            kernel_size=self.model_kernel_size,
            n_conv_layers=self.model_conv_layers,
            use_summary=self.model_use_summary,
            standardise=self.model_standardise,
            prior_prevalence=self.model_prior_prevalence,
        )

    # ------------------------------------------------------------------ validation
    def _check(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise FlowerSettingsError(f"run-config {key}: {what}")

        need(self.num_server_rounds >= 1, "num-server-rounds", "must be >= 1")
        need(self.strategy in STRATEGIES, "strategy", f"must be one of {STRATEGIES}")
        need(self.proximal_mu >= 0.0, "proximal-mu", "must be >= 0")
        need(0.0 < self.fraction_train <= 1.0, "fraction-train", "must be in (0, 1]")
        need(0.0 <= self.fraction_evaluate <= 1.0, "fraction-evaluate", "must be in [0, 1]")
        need(self.min_available_nodes >= 1, "min-available-nodes", "must be >= 1")
        need(self.min_replies >= 1, "min-replies", "must be >= 1")
        need(
            self.min_replies <= self.min_available_nodes,
            "min-replies",
            "must not exceed min-available-nodes",
        )
        need(self.round_timeout > 0.0, "round-timeout", "must be > 0 seconds")
        need(self.node_wait_timeout > 0.0, "node-wait-timeout", "must be > 0 seconds")
        need(
            self.first_round_timeout >= 0.0,
            "first-round-timeout",
            "must be >= 0 seconds (0 = round-timeout)",
        )
        need(
            0.0 < self.secagg_num_shares <= 1.0
            or (float(self.secagg_num_shares).is_integer() and self.secagg_num_shares >= 3),
            "secagg-num-shares",
            "must be a share in (0, 1] or a whole count >= 3",
        )
        need(
            0.0 < self.secagg_reconstruction_threshold <= 1.0
            or (
                float(self.secagg_reconstruction_threshold).is_integer()
                and 2 <= self.secagg_reconstruction_threshold < max(self.secagg_num_shares, 3)
            ),
            "secagg-reconstruction-threshold",
            "must be a share in (0, 1] or a whole count in [2, secagg-num-shares)",
        )
        need(self.secagg_clipping_range > 0.0, "secagg-clipping-range", "must be > 0")
        need(self.secagg_quantization_range > 1, "secagg-quantization-range", "must be > 1")
        need(self.secagg_max_weight > 0.0, "secagg-max-weight", "must be > 0")
        start = _parse_date("window-start", self.window_start)
        end = _parse_date("window-end", self.window_end)
        _parse_date("as-of", self.as_of)
        need(end > start, "window-end", "must be after window-start")
        need(self.max_reads >= 1, "max-reads", "must be >= 1")
        need(0.0 < self.test_fraction < 1.0, "test-fraction", "must be in (0, 1)")
        need(self.seed >= 0, "seed", "must be >= 0")
        need(self.local_epochs >= 1, "local-epochs", "must be >= 1")
        need(self.learning_rate > 0.0, "learning-rate", "must be > 0")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}")
        need(bool(self.study_id), "study-id", "must not be empty")
        need(
            all(c.isalnum() or c in "-_." for c in self.ledger_scope)
            and not self.ledger_scope.startswith("."),
            "ledger-scope",
            "may hold only letters, digits, '-', '_' and '.'",
        )
        need(self.training_seed >= -1, "training-seed", "must be -1 (OS entropy) or >= 0")
        need(self.batch_size >= 1, "batch-size", "must be >= 1")
        need(
            self.dp_target_epsilon > 0.0 and math.isfinite(self.dp_target_epsilon),
            "dp-target-epsilon",
            "must be positive and finite",
        )
        need(0.0 <= self.dp_delta < 1.0, "dp-delta", "must be in [0, 1) (0 = automatic)")
        need(self.dp_max_grad_norm > 0.0, "dp-max-grad-norm", "must be > 0")
        need(
            self.dp_noise_multiplier >= 0.0,
            "dp-noise-multiplier",
            "must be >= 0 (0 = calibrated)",
        )
        need(self.model_hidden >= 1, "model-hidden", "must be >= 1")
        need(
            self.model_kernel_size >= 1 and self.model_kernel_size % 2 == 1,
            "model-kernel-size",
            "must be a positive odd number",
        )
        need(self.model_conv_layers >= 0, "model-conv-layers", "must be >= 0")
        need(
            self.train_layers in TRAIN_LAYERS,
            "train-layers",
            f"must be one of {', '.join(TRAIN_LAYERS)}",
        )
        need(
            0.0 < self.model_prior_prevalence < 1.0,
            "model-prior-prevalence",
            "must be in (0, 1)",
        )
        for name in ("proximal_mu", "round_timeout", "learning_rate", "dp_delta"):
            need(math.isfinite(getattr(self, name)), _key(name), "must be finite")


def _parse_date(key: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise FlowerSettingsError(f"run-config {key}: expected a YYYY-MM-DD date") from None


def _coerce(key: str, value: Any, target: type) -> Any:
    """Check ``value`` fits the field type; ints are accepted for float fields."""
    if target is bool:
        if isinstance(value, bool):
            return value
    elif target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif target is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif target is str and isinstance(value, str):
        return value
    raise FlowerSettingsError(
        f"run-config {key}: expected {target.__name__}, got {type(value).__name__}"
    )


def frozen_prefixes(settings: FlowerSettings) -> tuple[str, ...]:
    """Parameter-name prefixes a force keeps fixed for these settings (``train-layers``)."""
    from federation.model import ENCODER_PREFIXES

    return ENCODER_PREFIXES if settings.train_layers == "head" else ()
