"""A force's membership-inference audit of a study run's trained models.

Run by each force on its own data (``anprfed privacy audit RUN_DIR`` plays every force in a
simulation). For every trained model in the run folder and every force:

* the *population* is the force's vehicles in the study window: *members* are its training
  vehicles (the model saw them), *non-members* its held-out vehicles (it did not); which side a
  vehicle falls on is a keyed hash of its pseudonym, i.e. an independent coin flip;
* the **loss-threshold** attack scores every vehicle by minus its loss under the model;
* **LiRA** trains ``shadows`` models with the audited model's recipe on random halves of the
  population (each vehicle IN for half of them), non-private or DP-SGD like the audited model,
  and scores the model's confidence on each vehicle against that vehicle's IN and OUT
  distributions (``research.audit.attacks``);
* each attack is judged by AUC, TPR at 0.1% and 1% FPR and the Clopper-Pearson empirical
  epsilon lower bound (``research.audit``), next to the epsilon the force's ledger claims.

Shadows are trained inside the force and thrown away; they spend no privacy budget because
nothing they compute leaves the force except these aggregate figures. The audit writes, under
``RUN_DIR/privacy/``: ``membership_inference.csv/.json`` (one row per model, force and attack:
counts and rates only, no pseudonym or per-vehicle score), ``membership_roc.json``
(down-sampled ROC curves), ``membership_audit.json`` (settings, timings, caveats) and
``RUN_DIR/plots/membership_inference_roc.png``.

Model files looked for: ``RUN_DIR/server/<design>-eps<e>-ret<w>d/checkpoints/final.npz`` (one
shared model, e.g. federated or pooled) or ``.../checkpoints/<force>/final.npz`` (one model per
force, e.g. local-only).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from client_force.force_dataset import ForceDataset, load_force_dataset
from client_force.private_training import train_shadow_dp
from client_force.training import TrainingConfig, train_nonprivate
from federation.features import ExampleSet, concat_examples
from federation.flower_settings import FlowerSettings
from federation.model import TrajectoryModel, example_tensors, set_weights, weight_spec
from privacy.dp.config import max_delta
from privacy.keys import MasterSecretSource
from research.audit import (
    AttackResult,
    evaluate_attack,
    logit_confidence,
    run_shadows,
    shadow_assignment,
)
from research.audit.registry import AttackInputs, attack_names, registered_attacks
from research.study.layout import STATUS, RunLayout
from retention.store import ForceStore

# Where things live in a run folder: research.study.layout.RunLayout (one place for all).
OUTPUT_DIR = RunLayout.PRIVACY
ROWS_STEM = RunLayout.MEMBERSHIP_ROWS
ROC_FILE = RunLayout.MEMBERSHIP_ROC
AUDIT_FILE = RunLayout.MEMBERSHIP_AUDIT
PLOT_FILE = RunLayout.MEMBERSHIP_PLOT
SERVER_DIR = RunLayout.SERVER
CAVEATS = (
    "Clopper-Pearson treats the audited vehicles as independent trials; they come from one "
    "training run, so the epsilon lower bound is the usual one-run heuristic, not a proof.",
    "Shadow models are trained on this force's vehicles only, with the audited model's local "
    "recipe; a federated or pooled model also saw other forces' vehicles, so shadows and "
    "target differ in that respect.",
    "TPR at a false-positive rate below 1/non-members can only be measured at FPR = 0.",
    "Audit statistics are computed without differential privacy; they are aggregate counts "
    "and rates that stay with the force unless it releases them (e.g. in the DPIA).",
)


class AuditError(RuntimeError):
    """The audit cannot run on this folder; the message names the file or setting."""


@dataclass(frozen=True)
class AuditConfig:
    """How hard to attack: shadow models, confidence of the epsilon bound, seeds."""

    shadows: int = 8
    confidence: float = 0.95
    seed: int = 0
    torch_threads: int = 1  # tiny models train faster on one thread, and in parallel tests

    def __post_init__(self) -> None:
        if self.shadows < 2 or self.shadows % 2:
            raise ValueError(f"shadows must be an even number >= 2; got {self.shadows}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1); got {self.confidence}")


@dataclass(frozen=True)
class TrainingRecipe:
    """How the audited model was trained, repeated for every shadow model.

    ``noise_multiplier`` None means non-private training; otherwise DP-SGD with that sigma,
    Poisson sampling at about ``batch_size`` vehicles per step and clipping at
    ``max_grad_norm``.
    """

    epochs: int
    training: TrainingConfig
    batch_size: int = 64
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0

    @property
    def private(self) -> bool:
        """Whether the recipe is DP-SGD."""
        return self.noise_multiplier is not None

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for the audit record."""
        return {
            "private": self.private,
            "epochs": self.epochs,
            "optimizer": self.training.optimizer,
            "learning_rate": self.training.learning_rate,
            "batch_size": self.batch_size,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
        }

    def train(
        self,
        make_model: Callable[[], nn.Module],
        examples: ExampleSet,
        labels: np.ndarray,
        seed: int,
    ) -> nn.Module:
        """A freshly initialised model trained on ``examples`` with this recipe."""
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            model = make_model()
        finally:
            torch.random.set_rng_state(state)
        training = TrainingConfig(
            optimizer=self.training.optimizer,
            learning_rate=self.training.learning_rate,
            momentum=self.training.momentum,
            pos_weight=self.training.pos_weight,
            batch_size=self.training.batch_size,
            seed=seed,
        )
        if not self.private:
            train_nonprivate(model, examples, labels, self.epochs, training)
            return model
        train_shadow_dp(
            model,
            examples,
            labels,
            noise_multiplier=float(self.noise_multiplier),
            batch_size=self.batch_size,
            max_grad_norm=self.max_grad_norm,
            epochs=self.epochs,
            training=training,
        )
        return model


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def predict_logits(model: nn.Module, examples: ExampleSet, batch_size: int = 1024) -> np.ndarray:
    """Logits ``float64 [N]`` (not probabilities: LiRA needs them unsaturated)."""
    seqs, mask, summary = example_tensors(examples)
    was_training = model.training
    model.eval()
    out = [
        model(seqs[i : i + batch_size], mask[i : i + batch_size], summary[i : i + batch_size])
        .double()
        .numpy()
        for i in range(0, len(examples), batch_size)
    ]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


@dataclass
class ForceAudit:
    """The attacks on one model at one force."""

    results: list[AttackResult]
    members: int
    nonmembers: int
    shadows: int
    seconds: float


def audit_model(
    model: nn.Module,
    make_model: Callable[[], nn.Module],
    data: ForceDataset,
    recipe: TrainingRecipe,
    *,
    delta: float,
    config: AuditConfig | None = None,
) -> ForceAudit:
    """Attack ``model`` with the force's training vehicles as members, held-out as non-members.

    ``make_model`` builds a fresh, untrained model of the audited architecture for shadows.
    Labels are the force's own training labels (``train_labels``/``test_labels``).
    """
    config = config or AuditConfig()
    started = time.perf_counter()
    population = concat_examples([data.train, data.test])
    labels = np.concatenate([data.train_labels, data.test_labels]).astype(np.float64)
    is_member = np.r_[np.ones(len(data.train), bool), np.zeros(len(data.test), bool)]
    with torch_threads(config.torch_threads):
        target_logits = predict_logits(model, population)
        target_phi = logit_confidence(target_logits, labels)
        attacks = registered_attacks()
        rng = np.random.default_rng(config.seed)
        assignment = shadow_assignment(len(population), config.shadows, rng)

        def train_and_score(in_mask: np.ndarray, index: int) -> np.ndarray:
            keep = np.flatnonzero(in_mask)
            shadow = recipe.train(
                make_model,
                population.subset(keep),
                labels[keep].astype(np.float32),
                seed=config.seed * 1000 + index + 1,
            )
            return logit_confidence(predict_logits(shadow, population), labels)

        needs_shadows = any(a.needs_shadows for a in attacks)
        shadow_phi = run_shadows(train_and_score, assignment) if needs_shadows else None
    inputs = AttackInputs(
        logits=target_logits,
        labels=labels,
        phi=target_phi,
        shadow_phi=shadow_phi,
        shadow_in=assignment if needs_shadows else None,
    )
    results = [
        evaluate_attack(
            attack.name,
            attack.score(inputs),
            is_member,
            delta=delta,
            confidence=config.confidence,
            seed=config.seed,
        )
        for attack in attacks
    ]
    return ForceAudit(
        results=results,
        members=int(is_member.sum()),
        nonmembers=int((~is_member).sum()),
        shadows=config.shadows,
        seconds=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------- the run folder
@dataclass(frozen=True)
class TrainedModel:
    """One sweep point's trained model(s) in a run folder."""

    tag: str
    design: str
    epsilon: float
    retention_days: int
    folder: Path

    def checkpoint(self, force: str) -> Path | None:
        """The model file this force's vehicles were scored with, if any."""
        shared = RunLayout.checkpoint_in(self.folder)
        for path in (RunLayout.checkpoint_in(self.folder, force), shared):
            if path.is_file():
                return path
        return None


def find_models(run_dir: Path) -> list[TrainedModel]:
    """Every ``server/<design>-eps<e>-ret<w>d`` folder of the run (sorted)."""
    return [
        TrainedModel(folder.name, tag.design, tag.epsilon, tag.retention_days, folder)
        for tag, folder in RunLayout(Path(run_dir)).sweep_tags()
    ]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditError(f"{path}: missing") from None
    except ValueError as exc:
        raise AuditError(f"{path}: not valid JSON ({exc})") from None


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def settings_for(run_dir: Path, model: TrainedModel) -> FlowerSettings:
    """The study settings of a sweep point.

    The server's ``status.json`` of that point if it wrote one; else that of another point
    with the same retention window (the designs of a study share their training settings; a
    non-private design only drops DP); else rebuilt from ``manifest.json`` the way the study
    runner builds them.
    """
    siblings = [model.folder] + [
        m.folder for m in find_models(run_dir) if m.retention_days == model.retention_days
    ]
    for folder in siblings:
        status = folder / STATUS
        if status.is_file():
            data = _read_json(status).get("settings") or {}
            return FlowerSettings.from_run_config(data, allow_unknown=True)
    from research.study.runner import study_settings
    from research.study.spec import spec_from_dict

    manifest = _read_json(RunLayout(Path(run_dir)).manifest)
    spec = spec_from_dict(_drop_none(manifest.get("spec", {})))
    epsilon = model.epsilon if math.isfinite(model.epsilon) else spec.dp.epsilon
    if not math.isfinite(epsilon):
        epsilon = 1.0  # a non-private design: epsilon enters no training setting
    forces = sorted(p.name for p in _store_root(run_dir, model.retention_days).iterdir())
    return study_settings(spec, model.retention_days, epsilon, model.folder, len(forces))


def _store_root(run_dir: Path, retention_days: int) -> Path:
    root = RunLayout(Path(run_dir)).stores_dir(retention_days)
    if not root.is_dir():
        raise AuditError(f"{root}: no force stores for the {retention_days}-day window")
    return root


def open_force_store(run_dir: Path, retention_days: int, force: str) -> ForceStore:
    """A simulated force's store, opened with its key file from the run folder."""
    store = _store_root(run_dir, retention_days) / force
    key = RunLayout(Path(run_dir)).key_file(retention_days, force)
    if not key.is_file():
        raise AuditError(f"{key}: missing (the audit runs inside the force, with its key)")
    return ForceStore.open(store, MasterSecretSource.from_key_file(key))


def _ledger_rows(run_dir: Path) -> pd.DataFrame:
    path = RunLayout(Path(run_dir)).csv(RunLayout.LEDGER)
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_csv(path)


def claimed_privacy(
    ledger: pd.DataFrame, model: TrainedModel, force: str, n_train: int
) -> tuple[float, float, float | None]:
    """(claimed epsilon, delta, noise multiplier) for a force; (inf, 1/(10n), None) if the
    design is non-private or the ledger has no row for it."""
    if ledger.empty or not math.isfinite(model.epsilon):
        return math.inf, max_delta(n_train), None
    rows = ledger[
        (ledger["design"] == model.design)
        & (ledger["retention_days"] == model.retention_days)
        & np.isclose(ledger["target_epsilon"].astype(float), model.epsilon)
        & (ledger["force"] == force)
    ]
    if rows.empty:
        return math.inf, max_delta(n_train), None
    # The claim is the force's cumulative spend (DP-SGD rounds and the releases of their
    # scalars); the recipe's noise is the DP-SGD rounds' (not a release's).
    train = rows[rows["kind"] == "train"] if "kind" in rows.columns else rows
    last = rows.sort_values("round", kind="stable").iloc[-1]
    sigma = train.sort_values("round", kind="stable").iloc[-1]["noise_multiplier"]
    return float(rows["epsilon"].max()), float(last["delta"]), float(sigma)


def recipe_for(
    model: TrainedModel, settings: FlowerSettings, noise_multiplier: float | None
) -> TrainingRecipe:
    """The training recipe of a design, as the study runner and the force nodes apply it."""
    epochs = settings.num_server_rounds * settings.local_epochs
    if noise_multiplier is None:  # pooled: SimulatedForce.train_pooled's recipe
        return TrainingRecipe(
            epochs=epochs,
            training=TrainingConfig(learning_rate=settings.learning_rate),
            batch_size=settings.batch_size,
        )
    return TrainingRecipe(  # DP rounds: client_force.flower_round.local_train's recipe
        epochs=epochs,
        training=TrainingConfig(optimizer=settings.optimizer, learning_rate=settings.learning_rate),
        batch_size=settings.batch_size,
        noise_multiplier=noise_multiplier,
        max_grad_norm=settings.dp_max_grad_norm,
    )


def _load_model(path: Path, settings: FlowerSettings) -> nn.Module:
    config = settings.model_config()
    with np.load(path, allow_pickle=False) as arrays:
        names = [name for name, _, _ in weight_spec(config)]
        missing = [n for n in names if n not in arrays.files]
        if missing:
            raise AuditError(f"{path}: arrays missing from the checkpoint: {', '.join(missing)}")
        weights = [np.asarray(arrays[n], np.float32) for n in names]
    model = TrajectoryModel(config)
    set_weights(model, weights)
    return model


@dataclass
class AuditRun:
    """What ``audit_run`` wrote."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def audit_run(
    run_dir: Path,
    config: AuditConfig | None = None,
    *,
    designs: tuple[str, ...] | None = None,
    forces: tuple[str, ...] | None = None,
    log: Callable[[str], None] | None = None,
) -> AuditRun:
    """Audit every trained model of a run folder at every force; write the results there."""
    config = config or AuditConfig()
    run_dir = Path(run_dir)
    models = [m for m in find_models(run_dir) if designs is None or m.design in designs]
    if not models:
        raise AuditError(f"{run_dir / SERVER_DIR}: no trained model folder to audit")
    ledger = _ledger_rows(run_dir)
    out = AuditRun()
    curves: list[dict[str, Any]] = []
    started = time.perf_counter()
    for model in models:
        settings = settings_for(run_dir, model)
        root = _store_root(run_dir, model.retention_days)
        for force in sorted(p.name for p in root.iterdir() if p.is_dir()):
            if forces is not None and force not in forces:
                continue
            path = model.checkpoint(force)
            if path is None:
                out.skipped.append(f"{model.tag}/{force}: no model file")
                continue
            store = open_force_store(run_dir, model.retention_days, force)
            data = load_force_dataset(store, settings)
            claimed, delta, sigma = claimed_privacy(ledger, model, force, len(data.train))
            if math.isfinite(model.epsilon) and sigma is None:
                out.skipped.append(f"{model.tag}/{force}: no ledger row for a DP model")
                continue
            if log:
                log(
                    f"{model.tag} / {force}: {len(data.train)} members, "
                    f"{len(data.test)} non-members, {config.shadows} shadows"
                )
            audit = audit_model(
                _load_model(path, settings),
                lambda s=settings: TrajectoryModel(s.model_config()),
                data,
                recipe_for(model, settings, sigma),
                delta=delta,
                config=config,
            )
            base = {
                "design": model.design,
                "epsilon": model.epsilon,
                "retention_days": model.retention_days,
                "force": force,
                "claimed_epsilon": claimed,
                "delta": delta,
                "shadows": audit.shadows,
                "shadow_recipe": "dp-sgd" if sigma is not None else "non-private",
                "model_file": str(path.relative_to(run_dir)),
            }
            for result in audit.results:
                row = {**base, **result.to_row()}
                lower = result.epsilon.lower
                row["bound_within_claim"] = bool(lower <= claimed)
                out.rows.append(row)
                curves.append(
                    {
                        **{k: base[k] for k in ("design", "epsilon", "retention_days", "force")},
                        "attack": result.attack,
                        **result.roc.downsample(),
                    }
                )
    if not out.rows:
        raise AuditError("nothing was audited: " + "; ".join(out.skipped))
    out.files.extend(_write(run_dir, out, curves, config, time.perf_counter() - started))
    return out


def jsonable(value: Any) -> Any:
    """JSON-safe copy: non-finite floats as strings, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def _write(
    run_dir: Path, out: AuditRun, curves: list[dict[str, Any]], config: AuditConfig, seconds: float
) -> list[Path]:
    folder = run_dir / OUTPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rows = jsonable(out.rows)
    csv_path = folder / f"{ROWS_STEM}.csv"
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    json_path = folder / f"{ROWS_STEM}.json"
    json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    roc_path = folder / ROC_FILE
    roc_path.write_text(json.dumps(jsonable(curves)) + "\n", encoding="utf-8")
    audit_path = folder / AUDIT_FILE
    audit_path.write_text(
        json.dumps(
            jsonable(
                {
                    "config": asdict(config),
                    "attacks": list(attack_names()),
                    "members": "the force's training vehicles (keyed-hash split)",
                    "nonmembers": "the force's held-out vehicles",
                    "labels": "the force's conviction-log labels, as used in training",
                    "seconds": round(seconds, 2),
                    "skipped": out.skipped,
                    "caveats": list(CAVEATS),
                }
            ),
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    plot = plot_roc(curves, RunLayout(run_dir).plot(PLOT_FILE))
    return [csv_path, json_path, roc_path, audit_path, plot]


def plot_roc(curves: list[dict[str, Any]], path: Path) -> Path:
    """Log-log ROC curves (members found against false alarms), one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(
        {(c["design"], float(c["epsilon"]), c["retention_days"]) for c in curves},
        key=lambda k: (k[2], k[0], k[1]),
    )
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4.0), squeeze=False)
    forces = sorted({c["force"] for c in curves})
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(forces)}
    styles = {a.name: a.line_style for a in registered_attacks()}
    for ax, key in zip(axes[0], keys, strict=True):
        for c in curves:
            if (c["design"], float(c["epsilon"]), c["retention_days"]) != key:
                continue
            fpr = np.maximum(np.asarray(c["fpr"], float), 1e-4)
            tpr = np.maximum(np.asarray(c["tpr"], float), 1e-4)
            ax.plot(
                fpr,
                tpr,
                label=f"{c['force']}: {c['attack']}",
                lw=1.2,
                color=colours[c["force"]],
                ls=styles.get(c["attack"], "-."),
            )
        ax.plot([1e-4, 1], [1e-4, 1], color="grey", lw=0.8, ls="-.", label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(1e-3, 1)
        ax.set_title(f"{key[0]}, eps={key[1]:g}, {key[2]}-day retention", fontsize=9)
        ax.set_xlabel("false-positive rate (non-members flagged)")
        ax.set_ylabel("true-positive rate (members found)")
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Membership inference against the trained models (whole vehicles)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
