"""Utility against epsilon: the trajectory model and the logistic baseline on a synthetic world.

For one force (``--force SLUG``) or all forces pooled (``--force pooled``, the non-federated
national reference), examples are built from the last ``--window-days`` of the world, a
vehicle is labelled 1 if its planted offence period overlaps the window (``truth/labels``),
and vehicles are split into training and held-out sets (stratified, ``--test-fraction``).
For every epsilon in ``--epsilons`` (``inf`` = non-private) and every seed, it trains

* the trajectory model (``federation.model.TrajectoryModel``): DP-SGD through the force's
  real training path (``client_force.training.train_round`` with a fresh ledger whose budget is
  that epsilon), or ``train_nonprivate`` for ``inf``;
* the baseline: the exact logistic regression (``research.baseline``) for ``inf``, and the
  same logistic model trained with DP-SGD (``federation.model.SummaryLogistic``) for finite
  epsilon;

and reports held-out PR-AUC and precision at recall 0.5 (mean and spread over seeds), plus
alerts per true positive at a 1-in-400 prevalence. Writes ``docs/benchmarks/utility.md``.

Raw ``vrm`` / ``camera_id`` stand in for the force's pseudonyms and camera tokens: a keyed
hash is a relabelling, and features never depend on identities.

Usage::

    # generates DEFAULT_WORLD into --world if it holds no world yet
    python benchmarks/bench_utility.py --world runs/bench-world
    python benchmarks/bench_utility.py --force pooled --seeds 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from client_force.training import NONPRIVATE_TRAINING, TrainingConfig, train_nonprivate, train_round
from federation.features import ExampleSet, build_examples, split_examples
from federation.metrics import evaluate_scores
from federation.model import ModelConfig, SummaryLogistic, TrajectoryModel, predict_scores
from privacy.dp.config import DPConfig
from privacy.dp.ledger import PrivacyLedger
from research.baseline import fit_logistic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "utility.md"


@dataclass(frozen=True)
class Data:
    """Examples, labels and the vehicle split of one benchmark dataset."""

    examples: ExampleSet
    labels: np.ndarray
    train: np.ndarray
    test: np.ndarray
    description: str


def ensure_world(world: Path) -> Path:
    """Generate the default synthetic world into ``world`` unless one is already there."""
    if (world / "world.json").exists():
        return world
    from research.synth import DEFAULT_WORLD, generate_world

    print(f"generating DEFAULT_WORLD into {world} ...", flush=True)
    generate_world(DEFAULT_WORLD, world)
    return world


def _read_force(world: Path, slug: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    export = world / "forces" / slug / "export"
    reads = pq.read_table(export / "reads.parquet").to_pandas()
    cameras = pq.read_table(export / "cameras.parquet").to_pandas()
    return (
        reads.rename(columns={"vrm": "vehicle", "camera_id": "camera"}),
        cameras.rename(columns={"camera_id": "camera"}),
    )


def load_data(
    world: Path, force: str, window_days: int, max_reads: int, test_fraction: float
) -> Data:
    """Build examples and window labels for one force or the pooled forces."""
    slugs = sorted(p.name for p in (world / "forces").iterdir()) if force == "pooled" else [force]
    parts = [_read_force(world, s) for s in slugs]
    reads = pd.concat([p[0] for p in parts], ignore_index=True)
    cameras = pd.concat([p[1] for p in parts], ignore_index=True)
    end = reads["read_at"].max().normalize() + pd.Timedelta(days=1)
    start = end - pd.Timedelta(days=window_days)
    examples = build_examples(reads, cameras, start, end, max_reads=max_reads)
    truth = pq.read_table(world / "truth" / "labels.parquet").to_pandas()
    o_start = pd.to_datetime(truth["offence_start"]).dt.tz_localize("UTC")
    o_end = pd.to_datetime(truth["offence_end"]).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    offending = set(truth.loc[(o_start < end) & (o_end > start), "vrm"])
    labels = np.isin(examples.vehicles, list(offending)).astype(np.float32)
    train, test = split_examples(labels, test_fraction=test_fraction, seed=0)
    description = (
        f"{'all forces pooled' if force == 'pooled' else force}: {len(examples)} vehicles "
        "with a read "
        f"in the {window_days}-day window ending {end.date()}, {int(labels.sum())} offending "
        f"(prevalence {labels.mean():.4f}); {len(train)} train / {len(test)} held out "
        f"({int(labels[test].sum())} positives held out); {int(examples.n_reads.sum())} reads, "
        f"max {max_reads} per vehicle"
    )
    return Data(examples, labels, train, test, description)


def _dp_train(model, data: Data, epsilon: float, args, seed: int) -> None:
    train = data.examples.subset(data.train)
    dp = DPConfig.plan(
        n_vehicles=len(train),
        target_epsilon=epsilon,
        expected_batch_size=args.batch,
        total_rounds=1,
        local_epochs=args.dp_epochs,
        max_grad_norm=args.clip,
    )
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger.open(Path(tmp) / "ledger.json", epsilon_budget=epsilon)
        training = TrainingConfig(optimizer=args.dp_optimizer, learning_rate=args.dp_lr, seed=seed)
        train_round(
            model, train, data.labels[data.train], dp, ledger, study_id="bench", training=training
        )


def run_one(data: Data, design: str, epsilon: float, args, seed: int) -> dict[str, float]:
    """Train one (design, epsilon, seed) and return held-out metrics."""
    torch.manual_seed(seed)
    test = data.examples.subset(data.test)
    y_test = data.labels[data.test]
    if design == "baseline" and math.isinf(epsilon):
        fitted = fit_logistic(data.examples.summary[data.train], data.labels[data.train])
        scores = fitted.predict_scores(test)
    else:
        if design == "model":
            model = TrajectoryModel(ModelConfig(hidden=args.hidden))
        else:
            model = SummaryLogistic()
        if math.isinf(epsilon):
            training = replace(NONPRIVATE_TRAINING, seed=seed)
            train_nonprivate(
                model,
                data.examples.subset(data.train),
                data.labels[data.train],
                args.epochs,
                training,
            )
        else:
            _dp_train(model, data, epsilon, args, seed)
        scores = predict_scores(model, test)
    return evaluate_scores(y_test, scores)


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def render(data: Data, results: dict, args, elapsed: float) -> str:
    """The markdown report."""
    eps_label = {e: ("non-private" if math.isinf(e) else f"{e:g}") for e in args.epsilons}
    lines = [
        "# Utility against epsilon",
        "",
        f"Produced by `python benchmarks/bench_utility.py --force {args.force} "
        f"--window-days {args.window_days} --max-reads {args.max_reads} --seeds {args.seeds} "
        f"--clip {args.clip} --dp-optimizer {args.dp_optimizer} --dp-lr {args.dp_lr} "
        f"--epsilons {','.join('inf' if math.isinf(e) else f'{e:g}' for e in args.epsilons)}` "
        f"on `{args.world.name}` ({elapsed / 60:.1f} min).",
        "",
        f"Data: {data.description}.",
        "",
        f"Trajectory model: hidden {args.hidden}; DP-SGD {args.dp_epochs} epochs, expected batch "
        f"{args.batch}, clipping norm {args.clip}, {args.dp_optimizer} lr {args.dp_lr}, one round, "
        f"delta = 1/(10 x training vehicles); non-private: Adam, {args.epochs} epochs. Baseline: "
        "logistic regression on the summary features -- exact (Newton) fit when non-private, "
        "the same model trained with the same DP-SGD otherwise.",
        "",
        f"Held-out metrics, mean ± standard deviation over {args.seeds} seed(s) (seeds vary "
        "initialisation, sampling and noise; the vehicle split is fixed). Chance PR-AUC equals "
        "the held-out prevalence.",
        "",
        "| epsilon | model PR-AUC | baseline PR-AUC | model P@R0.5 | baseline P@R0.5 | "
        "model alerts/TP at 1:400 | baseline alerts/TP at 1:400 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in args.epsilons:
        m, b = results[("model", e)], results[("baseline", e)]

        def col(rows, key):
            return _fmt([r[key] for r in rows])

        def alerts(rows):
            key = "alerts_per_true_positive_at_target_prevalence"
            return f"{statistics.median([r[key] for r in rows]):.0f}"

        lines.append(
            f"| {eps_label[e]} | {col(m, 'pr_auc')} | {col(b, 'pr_auc')} | "
            f"{col(m, 'precision_at_recall_0_5')} | {col(b, 'precision_at_recall_0_5')} | "
            f"{alerts(m)} | {alerts(b)} |"
        )
    prevalence = float(data.labels[data.test].mean())
    lines += ["", verdict(results, args.epsilons, prevalence), ""]
    return "\n".join(lines)


def verdict(results: dict, epsilons: list[float], prevalence: float) -> str:
    """Honest sentences on whether the model beats the baseline, epsilon by epsilon.

    A mean difference smaller than the larger of the two seed standard deviations is called
    indistinguishable, and a PR-AUC below three times the held-out prevalence near chance.
    """
    lines = []
    for e in epsilons:
        name = "non-private" if math.isinf(e) else f"epsilon {e:g}"
        m = [r["pr_auc"] for r in results[("model", e)]]
        b = [r["pr_auc"] for r in results[("baseline", e)]]
        spread = max(_sd(m), _sd(b))
        mm, bm = statistics.mean(m), statistics.mean(b)
        if max(mm, bm) < 3 * prevalence:
            text = f"both near chance (PR-AUC under 3x the prevalence {prevalence:.4f})"
        elif abs(mm - bm) <= spread:
            text = "indistinguishable (difference within one seed standard deviation)"
        elif mm > bm:
            text = f"the learned model beats the baseline ({mm:.3f} vs {bm:.3f})"
        else:
            text = f"the learned model does NOT beat the baseline ({mm:.3f} vs {bm:.3f})"
        lines.append(f"- {name}: {text}.")
    return "**Verdict** (mean held-out PR-AUC over seeds):\n\n" + "\n".join(lines)


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "runs" / "bench-world")
    parser.add_argument("--force", default="cheshire", help="force slug, or 'pooled'")
    parser.add_argument("--window-days", type=int, default=365)
    parser.add_argument("--max-reads", type=int, default=128)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--epsilons", default="0.5,1,2,4,8,inf")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--clip", type=float, default=5.0)
    parser.add_argument("--dp-epochs", type=int, default=10)
    parser.add_argument("--dp-optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--dp-lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=15, help="non-private epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.epsilons = [float(e) for e in args.epsilons.split(",")]
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    data = load_data(
        ensure_world(args.world), args.force, args.window_days, args.max_reads, args.test_fraction
    )
    print(data.description, flush=True)
    results: dict = {}
    for e in args.epsilons:
        for design in ("model", "baseline"):
            rows = [run_one(data, design, e, args, seed) for seed in range(args.seeds)]
            results[(design, e)] = rows
            print(
                f"eps={e:g} {design:8s} pr_auc={_fmt([r['pr_auc'] for r in rows])} "
                f"p@r0.5={_fmt([r['precision_at_recall_0_5'] for r in rows])}",
                flush=True,
            )
    report = render(data, results, args, time.perf_counter() - t0)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    raw = {f"{design}@{e:g}": rows for (design, e), rows in results.items()}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
