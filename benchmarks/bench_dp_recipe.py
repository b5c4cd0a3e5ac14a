"""The DP recipe's utility at scale: pooled and federated DP-SGD against the non-private model.

On a world of >= 60,000 vehicles (all forces pooled, truth labels: a vehicle is positive if its
planted offence period overlaps the window; built with ``bench_utility.load_data``), with one
fixed held-out split, for every seed it trains the recipe's model (``client_force.dp_recipe``)

* **pooled non-private**: the recipe's non-private rule (``nonprivate_training``);
* **pooled DP**: one force holding every training vehicle, the recipe resolved for N, one
  round through ``client_force.flower_round.round_plan`` and ``client_force.training.train_round``
  (the very code a force's Flower round runs), epsilon = ``--epsilon``;
* **federated DP**: ``--forces`` forces, each with its own ledger and the recipe resolved for
  its own N, ``--rounds`` rounds of FedAvg (weights averaged by training vehicles) in-process,
  each force's round through the same ``round_plan`` + ``train_round``. The forces are equal
  IID shards of the pooled training vehicles (each shard is one force's DP dataset); in a real
  federation each force sees only its own cameras' reads of a vehicle, which this does not
  model.

Held-out PR-AUC with its chance level (held-out prevalence) and a 95% bootstrap interval over
held-out vehicles; the curve of PR-AUC against epsilon and against training vehicles (one
seed). Writes ``docs/benchmarks/utility-recipe.md`` and ``.json``.

Usage::

    python benchmarks/bench_dp_recipe.py --world runs/bench-world-60k --cache /tmp/bw.pkl
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_utility import Data, load_data

from client_force import dp_recipe
from client_force.flower_round import round_plan
from client_force.training import TrainingConfig, train_nonprivate, train_round
from federation.flower_settings import FlowerSettings, frozen_prefixes
from federation.metrics import pr_auc
from federation.model import (
    ModelConfig,
    TrajectoryModel,
    get_weights,
    load_initial_weights,
    predict_scores,
    set_weights,
    weights_npz_bytes,
)
from privacy.dp.ledger import PrivacyLedger
from safefiles import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "utility-recipe.md"


def bootstrap_interval(
    y: np.ndarray, scores: np.ndarray, *, resamples: int = 400, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of PR-AUC over held-out vehicles."""
    rng = np.random.default_rng(seed)
    n = len(y)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        if y[idx].sum() == 0:
            continue
        values.append(pr_auc(y[idx], scores[idx]))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


CONFIG = ModelConfig(hidden=dp_recipe.MODEL_HIDDEN, n_conv_layers=dp_recipe.MODEL_CONV_LAYERS)
PUBLIC_INIT: dict[str, Path] = {}  # set by --public-cache: the pre-trained public file


def _model(seed: int) -> TrajectoryModel:
    torch.manual_seed(seed)
    model = TrajectoryModel(CONFIG)
    if "path" in PUBLIC_INIT:  # start from the public read encoder, seeded head
        set_weights(
            model, load_initial_weights(CONFIG, PUBLIC_INIT["path"], seed=seed, encoder_only=True)
        )
    return model


def pretrain_public(public: Data, epochs: int, out: Path) -> dict:
    """Pre-train on every vehicle of a separately seeded public world (truth labels)."""
    torch.manual_seed(0)
    model = TrajectoryModel(CONFIG)
    plan = dp_recipe.nonprivate_training(0)
    plan.pop("epochs")
    train_nonprivate(model, public.examples, public.labels, epochs, TrainingConfig(**plan))
    atomic_write_bytes(out, weights_npz_bytes(model))
    PUBLIC_INIT["path"] = out
    return {"public": public.description, "epochs": epochs}


def _settings(
    epsilon: float, rounds: int, train_layers: str = "all", noise_multiplier: float = 0.0
) -> FlowerSettings:
    """Run settings for the recipe; ``noise_multiplier`` > 0 fixes sigma (a diagnostic)."""
    return FlowerSettings(
        dp_noise_multiplier=noise_multiplier,
        train_layers=train_layers,
        dp_recipe=dp_recipe.RECIPE_ID,
        num_server_rounds=rounds,
        dp_target_epsilon=epsilon,
        model_hidden=dp_recipe.MODEL_HIDDEN,
        model_conv_layers=dp_recipe.MODEL_CONV_LAYERS,
    )


def _dp_round(model, examples, labels, settings, ledger, round_id: int, seed: int) -> dict:
    training, dp, recipe = round_plan(settings, len(examples), seed)
    train_round(
        model,
        examples,
        labels,
        dp,
        ledger,
        dp.local_epochs,
        round_id,
        study_id="bench-dp-recipe",
        training=training,
        recipe=recipe,
    )
    return recipe or {}


def train_pooled_nonprivate(
    data: Data, train: np.ndarray, seed: int, train_layers: str = "all"
) -> TrajectoryModel:
    """The recipe's model, non-private, on every training vehicle (``head``: encoder fixed)."""
    model = _model(seed)
    plan = dp_recipe.nonprivate_training(seed)
    epochs = plan.pop("epochs")
    frozen = frozen_prefixes(_settings(1.0, 1, train_layers))
    train_nonprivate(
        model,
        data.examples.subset(train),
        data.labels[train],
        epochs,
        TrainingConfig(**plan, frozen=frozen),
    )
    return model


def _ledger(path: Path, epsilon: float, noise_multiplier: float) -> PrivacyLedger:
    """A fresh ledger: budget ``epsilon``, or none to speak of when sigma is fixed."""
    return PrivacyLedger.open(path, epsilon_budget=epsilon if noise_multiplier <= 0 else 1e12)


def train_pooled_dp(
    data: Data,
    train: np.ndarray,
    epsilon: float,
    seed: int,
    tmp: Path,
    train_layers: str = "all",
    noise_multiplier: float = 0.0,
):
    """One force with every training vehicle: one round of the recipe's DP-SGD.

    ``noise_multiplier`` > 0 fixes sigma instead of calibrating it to ``epsilon`` (a
    diagnostic: its ledger then has no budget to speak of).
    """
    model = _model(seed)
    name = f"pooled-{seed}-{epsilon}-{len(train)}-{train_layers}-{noise_multiplier}.json"
    recipe = _dp_round(
        model,
        data.examples.subset(train),
        data.labels[train],
        _settings(epsilon, 1, train_layers, noise_multiplier),
        _ledger(tmp / name, epsilon, noise_multiplier),
        1,
        seed,
    )
    return model, recipe


def train_federated_dp(
    data: Data,
    train: np.ndarray,
    epsilon: float,
    seed: int,
    forces: int,
    rounds: int,
    tmp: Path,
    train_layers: str = "all",
    noise_multiplier: float = 0.0,
):
    """FedAvg over ``forces`` IID shards, each a force with its own ledger and recipe.

    ``noise_multiplier`` > 0 fixes sigma instead of calibrating it to ``epsilon`` (a
    diagnostic: its ledgers then have no budget to speak of).
    """
    rng = np.random.default_rng(seed)
    shards = np.array_split(rng.permutation(train), forces)
    settings = _settings(epsilon, rounds, train_layers, noise_multiplier)
    ledgers = [
        _ledger(
            tmp / f"fed-{seed}-{epsilon}-{len(train)}-{rounds}-{train_layers}-{i}.json",
            epsilon,
            noise_multiplier,
        )
        for i in range(forces)
    ]
    global_weights = get_weights(_model(seed))
    recipes = []
    for r in range(1, rounds + 1):
        updates, sizes = [], []
        for i, shard in enumerate(shards):
            model = _model(seed)
            set_weights(model, global_weights)
            recipe = _dp_round(
                model,
                data.examples.subset(shard),
                data.labels[shard],
                settings,
                ledgers[i],
                r,
                seed * 1000 + r * 10 + i,
            )
            if r == 1:
                recipes.append(recipe)
            updates.append(get_weights(model))
            sizes.append(len(shard))
        w = np.asarray(sizes, np.float64) / sum(sizes)
        global_weights = [
            np.sum([wi * u[k] for wi, u in zip(w, updates, strict=True)], axis=0).astype(np.float32)
            for k in range(len(global_weights))
        ]
    model = _model(seed)
    set_weights(model, global_weights)
    spent = max(led.epsilon_spent(led.entries[-1].delta) for led in ledgers)
    return model, recipes, spent


def score(model, data: Data, seed: int) -> dict:
    """Held-out PR-AUC, its bootstrap interval and chance."""
    y = data.labels[data.test].astype(np.float64)
    s = predict_scores(model, data.examples.subset(data.test))
    low, high = bootstrap_interval(y, s, seed=seed)
    return {"pr_auc": pr_auc(y, s), "ci_low": low, "ci_high": high, "chance": float(y.mean())}


def _mean(rows: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def _fmt_rows(rows: list[dict]) -> str:
    values = [r["pr_auc"] for r in rows]
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    cis = "; ".join(f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" for r in rows)
    return f"{statistics.mean(values):.3f}{spread} | {cis}"


def _checkpoint(args: argparse.Namespace, partial: dict) -> None:
    """Write what is finished so far (a long run that is stopped keeps its seeds)."""
    path = args.out.with_suffix(".partial.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(partial, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "runs" / "bench-world-60k")
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the built examples")
    parser.add_argument("--window-days", type=int, default=365)
    parser.add_argument("--max-reads", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=4.0)
    parser.add_argument("--forces", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--curve-epsilons", default="1,8")
    parser.add_argument("--curve-fractions", default="0.25,0.5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--public-cache",
        type=Path,
        default=None,
        help="pickle of a separately seeded PUBLIC world's examples: pre-train the read encoder",
    )
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        data = pickle.loads(args.cache.read_bytes())
    else:
        data = load_data(args.world, "pooled", args.window_days, args.max_reads, 0.3)
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps(data))
    print(data.description, flush=True)
    results: dict[str, list[dict]] = {"nonprivate": [], "pooled-dp": [], "federated-dp": []}
    recipes: dict[str, object] = {}
    pretraining = None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.public_cache is not None:
            public = pickle.loads(args.public_cache.read_bytes())
            shared = len(set(public.examples.vehicles) & set(data.examples.vehicles))
            pretraining = {
                **pretrain_public(public, args.pretrain_epochs, tmp / "public.npz"),
                "vehicles_shared_with_study_world": shared,
            }
            del public
            print("pre-trained", pretraining, flush=True)
        for seed in range(args.seeds):
            results["nonprivate"].append(
                score(train_pooled_nonprivate(data, data.train, seed), data, seed)
            )
            model, recipes["pooled"] = train_pooled_dp(data, data.train, args.epsilon, seed, tmp)
            results["pooled-dp"].append(score(model, data, seed))
            model, recipes["federated"], spent = train_federated_dp(
                data, data.train, args.epsilon, seed, args.forces, args.rounds, tmp
            )
            results["federated-dp"].append({**score(model, data, seed), "epsilon_spent": spent})
            print(seed, {k: round(v[-1]["pr_auc"], 3) for k, v in results.items()}, flush=True)
            _checkpoint(args, {"results": results, "resolved": recipes, "seeds_done": seed + 1})
        curve_eps = []
        for eps in [float(e) for e in args.curve_epsilons.split(",") if e]:
            model, _ = train_pooled_dp(data, data.train, eps, 0, tmp)
            curve_eps.append({"epsilon": eps, **score(model, data, 0)})
            print("eps", eps, round(curve_eps[-1]["pr_auc"], 3), flush=True)
        curve_n = []
        rng = np.random.default_rng(0)
        for frac in [float(f) for f in args.curve_fractions.split(",") if f]:
            sub = np.sort(rng.choice(data.train, round(frac * len(data.train)), replace=False))
            model, _ = train_pooled_dp(data, sub, args.epsilon, 0, tmp)
            row = {"train_vehicles": len(sub), "dp": score(model, data, 0)}
            row["nonprivate"] = score(train_pooled_nonprivate(data, sub, 0), data, 0)
            curve_n.append(row)
            print("n", len(sub), round(row["dp"]["pr_auc"], 3), flush=True)
    elapsed = time.perf_counter() - t0
    raw = {
        "description": data.description,
        "args": {k: str(v) for k, v in vars(args).items()},
        "recipe_rule": dp_recipe.describe(),
        "resolved": recipes,
        "results": results,
        "curve_epsilon": curve_eps,
        "curve_train_vehicles": curve_n,
        "elapsed_s": elapsed,
        "public_pretraining": pretraining,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    args.out.write_text(render(raw, args))
    print(args.out.read_text())


def render(raw: dict, args) -> str:
    """The markdown page."""
    res = raw["results"]
    chance = res["nonprivate"][0]["chance"]
    np_mean = _mean(res["nonprivate"], "pr_auc")
    lines = [
        "# The DP recipe at scale (pooled and federated)",
        "",
        f"Produced by `python benchmarks/bench_dp_recipe.py --world {args.world.name} "
        f"--seeds {args.seeds} --epsilon {args.epsilon:g} --forces {args.forces} "
        f"--rounds {args.rounds}` ({raw['elapsed_s'] / 60:.0f} min on a shared 2-core machine).",
        "",
        f"Data: {raw['description']}. Chance (held-out prevalence): **{chance:.4f}**.",
        "",
        "Start: "
        + (
            f"read encoder pre-trained on a separately seeded public world "
            f"({raw['public_pretraining']['public']}; {raw['public_pretraining']['epochs']} "
            f"epochs; vehicles shared with the benchmark world: "
            f"{raw['public_pretraining']['vehicles_shared_with_study_world']}), head seeded."
            if raw.get("public_pretraining")
            else "seeded initialisation (no pre-training)."
        ),
        "",
        f"Recipe `{dp_recipe.RECIPE_ID}` (`client_force/dp_recipe.py`), resolved: "
        f"pooled {_short(raw['resolved'].get('pooled'))}; each federated force "
        f"{_short((raw['resolved'].get('federated') or [{}])[0])}.",
        "",
        "| design | PR-AUC (mean ± sd over seeds) | 95% bootstrap interval per seed | "
        "ratio to pooled non-private |",
        "| --- | --- | --- | ---: |",
    ]
    for name, label in (
        ("nonprivate", "pooled, non-private (same model)"),
        ("pooled-dp", f"pooled, DP eps={args.epsilon:g}"),
        ("federated-dp", f"federated FedAvg, {args.forces} forces, DP eps={args.epsilon:g} each"),
    ):
        ratio = _mean(res[name], "pr_auc") / np_mean
        lines.append(f"| {label} | {_fmt_rows(res[name])} | {ratio:.2f} |")
    lines += ["", *_verdict(res, np_mean, chance)]
    lines += ["", "PR-AUC against epsilon (pooled DP, seed 0):", ""]
    lines += ["| epsilon | PR-AUC | 95% interval |", "| ---: | ---: | --- |"]
    points = [*raw["curve_epsilon"], {"epsilon": args.epsilon, **res["pooled-dp"][0]}]
    for row in sorted(points, key=lambda r: r["epsilon"]):
        lines.append(
            f"| {row['epsilon']:g} | {row['pr_auc']:.3f} | "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] |"
        )
    lines += ["", f"PR-AUC against training vehicles (pooled, eps={args.epsilon:g}, seed 0):", ""]
    lines += [
        "| training vehicles | DP PR-AUC [95%] | non-private PR-AUC [95%] |",
        "| ---: | --- | --- |",
    ]
    for row in raw["curve_train_vehicles"]:
        d, n = row["dp"], row["nonprivate"]
        lines.append(
            f"| {row['train_vehicles']:,} | {d['pr_auc']:.3f} [{d['ci_low']:.3f}, "
            f"{d['ci_high']:.3f}] | {n['pr_auc']:.3f} [{n['ci_low']:.3f}, {n['ci_high']:.3f}] |"
        )
    return "\n".join(lines) + "\n"


TARGET_RATIO = 0.8
"""Issue 12's target: DP PR-AUC at least this share of the pooled non-private PR-AUC."""


def _verdict(res: dict, np_mean: float, chance: float) -> list[str]:
    """The targets, met or not, each read against chance (the worst seed's interval)."""
    out = []
    for name, label in (("pooled-dp", "pooled DP"), ("federated-dp", "federated DP")):
        ratio = _mean(res[name], "pr_auc") / np_mean
        clear = min(r["ci_low"] for r in res[name]) > chance
        out.append(
            f"* {label}: {ratio:.2f} x the pooled non-private PR-AUC (target "
            f">= {TARGET_RATIO:g}): **{'met' if ratio >= TARGET_RATIO else 'NOT met'}**; "
            + (
                "every seed's interval is clear of chance."
                if clear
                else "at least one seed's interval reaches chance (no skill there)."
            )
        )
    return out


def _short(recipe: dict | None) -> str:
    if not recipe:
        return "-"
    return (
        f"N={recipe['n_vehicles']:,}, expected batch {recipe['expected_batch_size']:,}, "
        f"{recipe['local_epochs']} local epoch(s) x {recipe['rounds']} round(s), "
        f"{recipe['optimizer']} lr {recipe['learning_rate']:g}, clip {recipe['max_grad_norm']:g}"
    )


if __name__ == "__main__":
    main()
