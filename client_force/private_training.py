"""One DP facade for a force: :class:`ForcePrivacyEngine` (in the spirit of Opacus's PrivacyEngine).

It owns everything that decides or spends a force's privacy, so callers (the Flower round, the
simulated force) never assemble ledgers, accountants or DP configs themselves:

* the force's **policy** (``client_force.privacy_policy``) and the check of what the server's
  run config requests (simulation-only settings, test fraction, noise, sample rate, delta,
  evaluate rounds) -- a refusal is raised before anything is trained or spent;
* the **ledger**: opened with an HMAC key derived from the force's master secret and with its
  anchor outside the ledger file (``STORE/keys/ledger-anchors.json``); created with the
  policy's budget and a delta fixed once (a scoped simulation ledger takes the run config's
  ``dp-target-epsilon`` as its budget, and only when the policy allows simulation settings);
* the **noise**: DP-SGD's sampling and noise generator seeded from the OS CSPRNG
  (``os.urandom``), unless the policy allows ``training-seed`` (simulation only);
* **training** (``client_force.training.train_round``: reserve, Opacus DP-SGD, complete) with
  noise calibrated so the whole study plan, releases included, fits ``dp-target-epsilon``;
* **audit probes** (:meth:`ForcePrivacyEngine.audit_probes`): the Dirac gradient canaries of a
  canary audit, read from the force's own store and used only when its policy allows them
  (``client_force.gradient_canaries``);
* the **release** of every scalar that leaves: a round's example count and loss, and held-out
  evaluation metrics, are post-processing of one Gaussian release per round, charged to the
  ledger (kind ``release`` / ``evaluate``); evaluate rounds are counted and capped.

A Gaussian release of a vector whose L2 sensitivity (one vehicle added or removed) is ``s``
adds N(0, (sigma x s)^2) to each coordinate: an RDP Gaussian mechanism with noise multiplier
``sigma``, recorded as the mechanism ``(sigma, 1.0, 1)`` beside the DP-SGD rounds.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from client_force.gradient_canaries import GradientCanaries, has_probes, read_probes
from client_force.privacy_policy import (
    DEFAULT_POLICY as DEFAULT_POLICY_FOR_STATUS,
)
from client_force.privacy_policy import (
    PolicyRefusedError,
    PrivacyPolicy,
    load_policy,
    write_store_policy,
)
from client_force.training import TrainingConfig, train_round
from federation.features import ExampleSet
from federation.flower_settings import FlowerSettings
from federation.model import predict_scores
from privacy.dp.accountant import epsilon_for, study_noise_multiplier
from privacy.dp.config import DPConfig
from privacy.dp.ledger import LedgerAnchors, LedgerError, PrivacyLedger, default_ledger_path

LEDGER_KEY_LABEL = b"anprfed/v1/privacy-ledger"
ANCHORS_FILE = Path("keys") / "ledger-anchors.json"
RELEASE_SENSITIVITY = math.sqrt(2.0)  # one count (+-1) and one clipped loss (<= 1 after scaling)
SCORE_BIN_LOGITS = np.linspace(-8.0, 8.0, 31)  # fixed, data-independent score-bin edges (logits)
EPSILON_REPORT_STEP = 0.01  # the epsilon a force reports is rounded *up* to this step
CALIBRATION_ITERATIONS = 8


@dataclass(frozen=True)
class PrivateRound:
    """What a DP round produced: the trained model is in place; ``metrics`` may leave."""

    metrics: dict[str, int | float]
    ledger_seq: int
    noise_multiplier: float
    sample_rate: float


def ledger_key(master: Any) -> bytes:
    """The ledger's HMAC key, derived from the force's master key (``MasterKey.derive``)."""
    return bytes(master.derive(LEDGER_KEY_LABEL))


def install_policy(store: Any, policy: PrivacyPolicy) -> Path:
    """Write ``policy`` as the store's authenticated ``STORE/privacy/policy.toml``."""
    return write_store_policy(store.root, policy, ledger_key(store.master))


def ledger_path_for(store_root: Path, settings: FlowerSettings) -> Path:
    """The ledger these settings train under: the lifetime ledger, or a simulation scope's."""
    if not settings.ledger_scope:
        return default_ledger_path(store_root)
    return Path(store_root) / "privacy" / "scopes" / settings.ledger_scope / "ledger.json"


def simulation_settings_requested(settings: FlowerSettings) -> list[str]:
    """The simulation-only run-config keys these settings use."""
    used = []
    if settings.training_seed >= 0:
        used.append("training-seed")
    if settings.ledger_scope:
        used.append("ledger-scope")
    return used


def _round_up(value: float, step: float = EPSILON_REPORT_STEP) -> float:
    return math.ceil(value / step - 1e-9) * step


def _bce(scores: np.ndarray, labels: np.ndarray, clip: float) -> np.ndarray:
    p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, np.float64)
    return np.minimum(-(y * np.log(p) + (1 - y) * np.log(1 - p)), clip)


def _pr_from_histograms(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(average precision, precision at recall 0.5) from score histograms (highest bin first)."""
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    total = tp[-1] if len(tp) else 0.0
    if total <= 0:
        return 0.0, 0.0
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / total
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    reached = np.nonzero(recall >= 0.5)[0]
    at_half = float(precision[reached[0]]) if len(reached) else 0.0
    return min(max(ap, 0.0), 1.0), min(max(at_half, 0.0), 1.0)


def train_shadow_dp(
    model: nn.Module,
    examples: ExampleSet,
    labels: np.ndarray,
    *,
    noise_multiplier: float,
    batch_size: int,
    max_grad_norm: float,
    epochs: int,
    training: TrainingConfig,
) -> None:
    """Train ``model`` in place with a design's DP-SGD recipe, OUTSIDE any ledger (audits only).

    For membership audits, which retrain shadow models with the recipe of a model already
    trained (and accounted) at a force. Nothing here is released, so nothing is charged; it
    must never produce anything that leaves a force. ``training.seed`` fixes the noise.
    """
    from client_force.dp_trainer import make_generator, run_dp_sgd
    from client_force.training import tensor_dataset

    plan = DPConfig.plan(
        n_vehicles=len(examples),
        target_epsilon=1.0,  # unused: the noise multiplier is given
        expected_batch_size=batch_size,
        max_grad_norm=max_grad_norm,
    )
    result = run_dp_sgd(
        model,
        tensor_dataset(examples, np.asarray(labels, np.float32)),
        prior_history=[],
        noise_multiplier=float(noise_multiplier),
        sample_rate=plan.sample_rate,
        max_grad_norm=max_grad_norm,
        epochs=epochs,
        make_optimizer=training.make_optimizer,
        loss_fn=training.make_loss(),
        generator=make_generator(training.seed),
    )
    model.load_state_dict(result.state_dict)


def ledger_health(store: Any) -> list[dict[str, Any]]:
    """Every ledger of an open store checked against its key and its anchor (for ``status``).

    One row per ledger (the lifetime ledger ``""`` and each simulation scope), and one per
    anchor whose ledger file is gone: ``state`` is ``ok``, ``tampered`` (a MAC fails, or it
    ends before its anchor: truncated or rolled back) or ``missing`` (deleted).
    """
    engine = ForcePrivacyEngine(store.root, ledger_key(store.master), DEFAULT_POLICY_FOR_STATUS)
    paths = {"": default_ledger_path(store.root)}
    scopes = Path(store.root) / "privacy" / "scopes"
    if scopes.is_dir():
        paths.update({d.name: d / "ledger.json" for d in sorted(scopes.iterdir()) if d.is_dir()})
    try:
        anchors = engine.anchors.read()
    except LedgerError as exc:
        return [{"scope": "*", "state": "tampered", "detail": str(exc)}]
    rows = []
    for scope, path in paths.items():
        if not path.exists():
            if scope in anchors and int(anchors[scope].get("entries", 0)) > 0:
                rows.append({"scope": scope, "state": "missing", "detail": "ledger deleted"})
            continue
        try:
            ledger = PrivacyLedger.open(path, key=engine.key, anchors=engine.anchors, scope=scope)
        except LedgerError as exc:
            rows.append({"scope": scope, "state": "tampered", "detail": str(exc)})
            continue
        rows.append(
            {
                "scope": scope,
                "state": "ok",
                "simulation": ledger.simulation,
                "entries": len(ledger.entries),
                "evaluate_rounds": ledger.count("evaluate"),
                "epsilon_spent": ledger.epsilon_spent(),
                "epsilon_budget": ledger.epsilon_budget,
                "delta": ledger.header["delta"],
            }
        )
    for scope in sorted(set(anchors) - set(paths)):
        if int(anchors[scope].get("entries", 0)) > 0:
            rows.append({"scope": scope, "state": "missing", "detail": "ledger deleted"})
    return rows


class ForcePrivacyEngine:
    """A force's policy, ledger, noise source and releases (module docstring)."""

    def __init__(self, store_root: Path, key: bytes, policy: PrivacyPolicy) -> None:
        self.store_root = Path(store_root)
        self.key = key
        self.policy = policy
        self.anchors = LedgerAnchors(self.store_root / ANCHORS_FILE, key)

    @classmethod
    def for_store(cls, store: Any, policy_file: Path | None = None) -> ForcePrivacyEngine:
        """The engine of an open ``ForceStore`` (its master key and its policy)."""
        key = ledger_key(store.master)
        return cls(store.root, key, load_policy(store.root, policy_file, key))

    # ------------------------------------------------------------------ requests
    def check_request(self, settings: FlowerSettings) -> None:
        """Refuse (``PolicyRefusedError``) what the policy does not allow, before any work."""
        used = simulation_settings_requested(settings)
        if used and not self.policy.allow_simulation_settings:
            raise PolicyRefusedError(
                f"run config sets simulation-only {', '.join(used)}; this force's policy "
                "does not allow simulation settings"
            )
        low, high = self.policy.min_test_fraction, self.policy.max_test_fraction
        if not low <= settings.test_fraction <= high:
            raise PolicyRefusedError(
                f"run config test-fraction {settings.test_fraction:g} is outside the force's "
                f"allowed range [{low:g}, {high:g}]"
            )

    def _simulated(self, settings: FlowerSettings) -> bool:
        return bool(settings.ledger_scope) and self.policy.allow_simulation_settings

    def ledger(self, settings: FlowerSettings, n_vehicles: int) -> PrivacyLedger:
        """The ledger for these settings, created (budget, fixed delta) if it does not exist."""
        self.check_request(settings)
        scoped = self._simulated(settings)
        budget = settings.dp_target_epsilon if scoped else self.policy.epsilon_budget
        delta = self.policy.ledger_delta(n_vehicles)
        if scoped and settings.dp_delta > 0:
            delta = settings.dp_delta
        path = ledger_path_for(self.store_root, settings)
        exists = path.exists()
        return PrivacyLedger.open(
            path,
            epsilon_budget=None if exists else budget,
            delta=None if exists else delta,
            key=self.key,
            anchors=self.anchors,
            scope=settings.ledger_scope,
            simulation=scoped,
        )

    def open_existing(self, settings: FlowerSettings) -> PrivacyLedger | None:
        """The ledger for these settings if it exists (verified), else None."""
        path = ledger_path_for(self.store_root, settings)
        if not path.exists():
            return None
        return PrivacyLedger.open(
            path, key=self.key, anchors=self.anchors, scope=settings.ledger_scope
        )

    def seed(self, settings: FlowerSettings, force: str, server_round: int, salt: str) -> int:
        """A 63-bit seed: from the OS CSPRNG, or from ``training-seed`` (simulation only)."""
        if settings.training_seed >= 0 and self.policy.allow_simulation_settings:
            import hashlib

            text = f"{settings.training_seed}|{force}|{server_round}|{salt}"
            return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
        return int.from_bytes(os.urandom(8), "little") >> 1

    def audit_probes(self, store: Any, settings: FlowerSettings) -> GradientCanaries | None:
        """The store's audit probes if its policy allows them, None if it holds none.

        Refuses (``PolicyRefusedError``) a store that holds probes while the policy does not
        allow them, or a round outside a simulation ledger scope; a probe artifact that fails
        the store's authentication raises the store's integrity error.
        """
        if not has_probes(store):
            return None
        if not self.policy.allow_audit_probes:
            raise PolicyRefusedError(
                "this store holds audit probes (gradient canaries) but the force's privacy "
                "policy does not allow audit probes; refusing to train"
            )
        if not self._simulated(settings):
            raise PolicyRefusedError(
                "audit probes run only under a simulation ledger scope (ledger-scope)"
            )
        return read_probes(store)

    # ------------------------------------------------------------------ planning
    def plan(
        self,
        settings: FlowerSettings,
        n_vehicles: int,
        ledger: PrivacyLedger,
        dp_request: DPConfig | None = None,
    ) -> DPConfig:
        """This round's DP-SGD settings, checked against the policy.

        Noise is calibrated so the whole plan -- every round's DP-SGD steps *and* its release
        -- spends at most ``dp-target-epsilon`` at the ledger's delta (on a fresh ledger).
        """
        requested_delta = settings.dp_delta if settings.dp_delta > 0 else ledger.delta
        if requested_delta > ledger.delta * (1 + 1e-12):
            raise PolicyRefusedError(
                f"run config dp-delta {requested_delta:.3g} exceeds the ledger's fixed delta "
                f"{ledger.delta:.3g}"
            )
        delta = min(requested_delta, ledger.delta)
        if dp_request is None:
            dp = DPConfig.plan(
                n_vehicles=n_vehicles,
                target_epsilon=settings.dp_target_epsilon,
                expected_batch_size=settings.batch_size,
                total_rounds=settings.num_server_rounds,
                local_epochs=settings.local_epochs,
                max_grad_norm=settings.dp_max_grad_norm,
                target_delta=delta,
            )
        else:  # e.g. a public recipe's batch, epochs and clipping (client_force.dp_recipe)
            dp = replace(dp_request, target_delta=delta, noise_multiplier=None)
        if dp.sample_rate > self.policy.max_sample_rate + 1e-12:
            raise PolicyRefusedError(
                f"batch-size {settings.batch_size} gives sample rate {dp.sample_rate:.3g}, above "
                f"the force's maximum {self.policy.max_sample_rate:g}"
            )
        if dp_request is not None and dp_request.noise_multiplier is not None:
            sigma = dp_request.noise_multiplier
        elif settings.dp_noise_multiplier > 0:
            sigma = settings.dp_noise_multiplier
        else:
            sigma = self._calibrate(dp)
        if sigma < self.policy.min_noise_multiplier:
            raise PolicyRefusedError(
                f"noise multiplier {sigma:.3g} is below the force's minimum "
                f"{self.policy.min_noise_multiplier:g}"
            )
        return replace(dp, noise_multiplier=sigma)

    def _calibrate(self, dp: DPConfig) -> float:
        """sigma for the plan with one release per round, at most ``dp.target_epsilon``."""
        release = (self.policy.metric_noise_multiplier, 1.0, 1)
        target = dp.target_epsilon
        for _ in range(CALIBRATION_ITERATIONS):
            sigma = study_noise_multiplier(replace(dp, target_epsilon=target))
            plan = [(sigma, dp.sample_rate, dp.planned_steps)] + [release] * dp.total_rounds
            total = epsilon_for(plan, dp.target_delta, dp.orders)[0]
            if total <= dp.target_epsilon:
                return sigma
            target *= 0.98 * dp.target_epsilon / total
        raise PolicyRefusedError(
            "cannot fit the study plan and its releases into dp-target-epsilon"
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        model: nn.Module,
        examples: ExampleSet,
        labels: np.ndarray,
        settings: FlowerSettings,
        *,
        server_round: int,
        run_id: str,
        force: str,
        training: TrainingConfig,
        dp_request: DPConfig | None = None,
        recipe: dict[str, Any] | None = None,
        probes: GradientCanaries | None = None,
    ) -> PrivateRound:
        """One DP-SGD round on ``model`` (in place) and the DP release of its scalars.

        ``dp_request`` is the plan the run config (or its public recipe) asks for; the
        force's policy decides its delta and noise and may refuse it. ``probes`` come only
        from :meth:`audit_probes` (checked again here against the policy).
        """
        if probes is not None and not (
            self.policy.allow_audit_probes and self._simulated(settings)
        ):
            raise PolicyRefusedError("this force's privacy policy does not allow audit probes")
        n = len(examples)
        ledger = self.ledger(settings, n)
        dp = self.plan(settings, n, ledger, dp_request)
        seed = self.seed(settings, force, server_round, "train")
        result = train_round(
            model,
            examples,
            labels,
            dp,
            ledger,
            dp.local_epochs,
            int(server_round),
            study_id=settings.study_id,
            run_id=run_id,
            training=replace(training, seed=seed),
            recipe=recipe,
            probes=probes,
            probe_seed=None
            if probes is None
            else self.seed(settings, force, server_round, "probes"),
        )
        losses = _bce(predict_scores(model, examples), np.asarray(labels), self.policy.loss_clip)
        noisy = self._release(
            ledger,
            np.array([float(n), float(losses.sum()) / self.policy.loss_clip]),
            sigma=self.policy.metric_noise_multiplier,
            kind="release",
            settings=settings,
            server_round=server_round,
            run_id=run_id,
            force=force,
        )
        count = max(1, round(float(noisy[0])))
        loss = float(np.clip(noisy[1] * self.policy.loss_clip / count, 0.0, self.policy.loss_clip))
        return PrivateRound(
            metrics={
                "num-examples": count,
                "train-loss": loss,
                "epsilon": _round_up(ledger.epsilon_spent()),
                "delta": float(ledger.delta),
            },
            ledger_seq=result.ledger_seq,
            noise_multiplier=result.noise_multiplier,
            sample_rate=result.sample_rate,
        )

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        model: nn.Module,
        examples: ExampleSet,
        labels: np.ndarray,
        settings: FlowerSettings,
        *,
        server_round: int,
        run_id: str,
        force: str,
    ) -> dict[str, int | float]:
        """Held-out metrics, all post-processing of one capped, charged Gaussian release.

        The release is the score histogram of positives and of negatives over fixed bins
        plus the clipped loss sum: one vehicle moves one bin count by 1 and the scaled loss
        by at most 1, so the L2 sensitivity is sqrt(2).
        """
        ledger = self.ledger(settings, len(examples))
        if ledger.count("evaluate") >= self.policy.max_evaluate_rounds:
            raise PolicyRefusedError(
                f"this force has answered {ledger.count('evaluate')} evaluate round(s), its "
                f"policy's maximum ({self.policy.max_evaluate_rounds})"
            )
        scores = predict_scores(model, examples)
        y = np.asarray(labels, np.float64)
        logits = np.log(np.clip(scores, 1e-12, 1.0)) - np.log(np.clip(1 - scores, 1e-12, 1.0))
        bins = np.searchsorted(SCORE_BIN_LOGITS, logits, side="right")
        n_bins = len(SCORE_BIN_LOGITS) + 1
        pos = np.bincount(bins[y > 0.5], minlength=n_bins).astype(np.float64)
        neg = np.bincount(bins[y <= 0.5], minlength=n_bins).astype(np.float64)
        loss = _bce(scores, y, self.policy.loss_clip).sum() / self.policy.loss_clip
        noisy = self._release(
            ledger,
            np.concatenate([pos, neg, [loss]]),
            sigma=self.policy.evaluate_noise_multiplier,
            kind="evaluate",
            settings=settings,
            server_round=server_round,
            run_id=run_id,
            force=force,
        )
        pos_n = np.clip(noisy[:n_bins], 0.0, None)
        neg_n = np.clip(noisy[n_bins : 2 * n_bins], 0.0, None)
        count = max(1, round(float(pos_n.sum() + neg_n.sum())))
        auc, prec = _pr_from_histograms(pos_n, neg_n)
        return {
            "num-examples": count,
            "num-positives": round(float(pos_n.sum())),
            "eval-loss": float(
                np.clip(noisy[-1] * self.policy.loss_clip / count, 0.0, self.policy.loss_clip)
            ),
            "pr-auc": auc,
            "precision-at-recall-0.5": prec,
        }

    # ------------------------------------------------------------------ releases
    def _release(
        self,
        ledger: PrivacyLedger,
        values: np.ndarray,
        *,
        sigma: float,
        kind: str,
        settings: FlowerSettings,
        server_round: int,
        run_id: str,
        force: str,
    ) -> np.ndarray:
        """``values`` + N(0, (sigma x sqrt 2)^2), charged to ``ledger`` before it is drawn."""
        entry = ledger.reserve(
            noise_multiplier=sigma,
            sample_rate=1.0,
            steps=1,
            max_grad_norm=RELEASE_SENSITIVITY,
            study_id=settings.study_id,
            round_id=int(server_round),
            run_id=run_id,
            kind=kind,
        )
        # A repeated query in the same run and round draws fresh noise (a fixed simulation seed
        # would otherwise repeat it); the same query in a rerun of the run reproduces it.
        repeat = sum(
            1
            for e in ledger.entries[: entry.seq]
            if (e.kind, e.run_id, e.round) == (kind, entry.run_id, entry.round)
        )
        rng = np.random.default_rng(self.seed(settings, force, server_round, f"{kind}-{repeat}"))
        noisy = values + rng.normal(0.0, sigma * RELEASE_SENSITIVITY, size=values.shape)
        ledger.complete(entry.seq)
        return noisy

    # ------------------------------------------------------------------ non-private
    def train_nonprivate(
        self,
        model: nn.Module,
        examples: ExampleSet,
        labels: np.ndarray,
        settings: FlowerSettings,
        *,
        server_round: int,
        force: str,
        training: TrainingConfig,
    ) -> dict[str, int | float]:
        """A NON-PRIVATE reference round (``dp-enabled = false``): simulation only.

        Refused unless the policy allows simulation settings. No ledger entry is written
        (nothing is spent because no guarantee exists): the reply says so explicitly with
        ``epsilon = inf`` and ``delta = 1``, which the egress contract accepts only as a pair.
        """
        self.check_request(settings)
        if not self.policy.allow_simulation_settings:
            raise PolicyRefusedError("non-private training (dp-enabled = false) is simulation-only")
        from client_force.training import train_nonprivate

        seed = self.seed(settings, force, server_round, "nonprivate")
        loss = train_nonprivate(
            model, examples, labels, settings.local_epochs, replace(training, seed=seed)
        )
        return {
            "num-examples": len(examples),
            "train-loss": float(loss) if math.isfinite(loss) else 0.0,
            "epsilon": math.inf,
            "delta": 1.0,
        }


__all__ = [
    "ForcePrivacyEngine",
    "PrivateRound",
    "install_policy",
    "ledger_health",
    "ledger_key",
    "ledger_path_for",
    "simulation_settings_requested",
    "train_shadow_dp",
]
