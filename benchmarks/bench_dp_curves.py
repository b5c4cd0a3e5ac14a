"""The DP recipe's curves at scale: PR-AUC against epsilon and against training vehicles.

Issue 12 asks, where the 0.8 x targets of ``bench_dp_recipe.py`` are not met, for the curve of
held-out PR-AUC against epsilon and against the number of training vehicles, for pooled and
federated DP, each read against the same split's non-private model and chance.

It runs a list of *points* on the same 60,000-vehicle data and the same held-out split as
``bench_dp_recipe.py`` (same public encoder start, seed 0), one point at a time, and writes
every finished point to ``--out``'s ``.json`` at once, so a run that is stopped keeps what it
measured and a second process can run another list beside it (``--points``). A point is
``design:epsilon:fraction[:rounds]``: ``design`` is ``nonprivate``, ``pooled`` or
``federated``; ``fraction`` is the share of the training vehicles kept (a fixed random
subset per fraction, the same for every design); ``rounds`` (federated only) the FedAvg
rounds the recipe splits its epochs over.

``--render`` (no training) merges the point files given and writes the markdown page with a
plot (``docs/benchmarks/utility-recipe-curves.md`` and ``.png``).

Usage::

    python benchmarks/bench_dp_curves.py --cache runs/bench60k.pkl --public-cache runs/pub60k.pkl \\
        --points pooled:1:1,federated:1:1 --out runs/curves-a
    python benchmarks/bench_dp_curves.py --render runs/curves-a.json runs/curves-b.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dp_recipe as recipe_bench
from bench_utility import Data

from client_force import dp_recipe
from client_force.training import TrainingConfig, train_nonprivate
from safefiles import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks" / "utility-recipe-curves.md"
DESIGNS = (
    "nonprivate",
    "nonprivate-dpsteps",
    "pooled-cliponly",
    "federated-cliponly",
    "pooled",
    "federated",
)
CLIP_ONLY_SIGMA = 0.001
"""The clip-only diagnostic's noise multiplier: clipping at the recipe's norm, noise ~0."""
LAYERS = ("all", "head")


@dataclass(frozen=True)
class Point:
    """One training run of the curves."""

    design: str
    epsilon: float
    fraction: float
    rounds: int = 3
    layers: str = "all"

    @classmethod
    def parse(cls, text: str) -> Point:
        """``design:epsilon:fraction[:rounds[:layers]]`` -> Point; a bad field is named."""
        fields = text.split(":")
        if (
            len(fields) not in (3, 4, 5)
            or fields[0] not in DESIGNS
            or (len(fields) == 5 and fields[4] not in LAYERS)
        ):
            raise SystemExit(
                f"bad point {text!r}: expected design:epsilon:fraction[:rounds[:layers]], "
                f"design one of {', '.join(DESIGNS)}, layers one of {', '.join(LAYERS)}"
            )
        rounds = int(fields[3]) if len(fields) >= 4 else 3
        layers = fields[4] if len(fields) == 5 else "all"
        return cls(fields[0], float(fields[1]), float(fields[2]), rounds, layers)

    @property
    def key(self) -> str:
        """A stable name for the point (its row in the json)."""
        suffix = "" if self.layers == "all" else f":{self.layers}"
        return f"{self.design}:{self.epsilon:g}:{self.fraction:g}:{self.rounds}{suffix}"


def training_subset(data: Data, fraction: float) -> np.ndarray:
    """The training vehicles kept at ``fraction``: one fixed random subset per fraction."""
    if fraction >= 1.0:
        return data.train
    rng = np.random.default_rng(round(fraction * 1_000_000))
    return np.sort(rng.choice(data.train, round(fraction * len(data.train)), replace=False))


def train_nonprivate_dp_schedule(data: Data, train: np.ndarray):
    """A diagnostic: the DP recipe's schedule (batch, epochs, optimiser, rate), no clip or noise.

    Separates what the DP recipe loses to its few large steps from what it loses to clipping
    and noise: same start, same number of steps of the same expected size as the pooled DP
    point, plain minibatches (shuffled, not Poisson-sampled).
    """
    resolved = dp_recipe.dp_recipe(len(train), 1)
    model = recipe_bench._model(0)
    config = TrainingConfig(
        optimizer=resolved.optimizer,
        learning_rate=resolved.learning_rate,
        batch_size=resolved.expected_batch_size,
        seed=0,
    )
    train_nonprivate(
        model, data.examples.subset(train), data.labels[train], resolved.local_epochs, config
    )
    return model, resolved.to_dict()


def train_clip_only(data: Data, train: np.ndarray, tmp: Path):
    """A diagnostic: the pooled DP run with per-vehicle clipping but (almost) no noise.

    The very DP code path (Opacus, Poisson sampling, clipping at the recipe's norm, DP-Adam)
    with the noise multiplier fixed at ``CLIP_ONLY_SIGMA``; its ledger has no budget to speak
    of (the epsilon it records is meaningless). Separates clipping's cost from the noise's.
    """
    return recipe_bench.train_pooled_dp(data, train, 4.0, 0, tmp, noise_multiplier=CLIP_ONLY_SIGMA)


def run_point(point: Point, data: Data, tmp: Path) -> dict:
    """Train one point (seed 0) and score it on the fixed held-out split."""
    train = training_subset(data, point.fraction)
    started = time.perf_counter()
    extra: dict = {}
    if point.design == "nonprivate":
        model = recipe_bench.train_pooled_nonprivate(data, train, 0, point.layers)
    elif point.design == "nonprivate-dpsteps":
        model, extra["resolved"] = train_nonprivate_dp_schedule(data, train)
    elif point.design == "pooled-cliponly":
        model, extra["resolved"] = train_clip_only(data, train, tmp)
    elif point.design == "federated-cliponly":
        model, resolved, _ = recipe_bench.train_federated_dp(
            data, train, 4.0, 0, 6, point.rounds, tmp, noise_multiplier=CLIP_ONLY_SIGMA
        )
        extra["resolved"] = resolved[0]
    elif point.design == "pooled":
        model, extra["resolved"] = recipe_bench.train_pooled_dp(
            data, train, point.epsilon, 0, tmp, point.layers
        )
    else:
        model, resolved, spent = recipe_bench.train_federated_dp(
            data, train, point.epsilon, 0, 6, point.rounds, tmp, point.layers
        )
        extra = {"resolved": resolved[0], "epsilon_spent": spent}
    scored = recipe_bench.score(model, data, 0)
    return {
        "point": point.key,
        "design": point.design,
        "epsilon": None if point.design.startswith("nonprivate") else point.epsilon,
        "fraction": point.fraction,
        "rounds": point.rounds if point.design.startswith("federated") else None,
        "layers": point.layers,
        "train_vehicles": len(train),
        "train_positives": int(data.labels[train].sum()),
        **scored,
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
    }


def measure(args: argparse.Namespace) -> None:
    """Run the points of ``--points`` one after another, saving each as it finishes."""
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    points = [Point.parse(p) for p in args.points.split(",") if p]
    data: Data = pickle.loads(args.cache.read_bytes())
    out = args.out.with_suffix(".json")
    done: dict = json.loads(out.read_text()) if out.exists() else {"points": []}
    done["description"] = data.description
    finished = {row["point"] for row in done["points"]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        public = pickle.loads(args.public_cache.read_bytes())
        done["public_pretraining"] = recipe_bench.pretrain_public(
            public, args.pretrain_epochs, tmp / "public.npz"
        )
        del public
        for i, point in enumerate(points, 1):
            if point.key in finished:
                print(f"[{i}/{len(points)}] {point.key}: already measured", flush=True)
                continue
            print(f"[{i}/{len(points)}] {point.key}: training ...", flush=True)
            point_dir = tmp / f"point-{i}"  # a fresh ledger per point: each is its own study
            point_dir.mkdir()
            row = run_point(point, data, point_dir)
            done["points"].append(row)
            atomic_write_bytes(out, json.dumps(done, indent=1, default=str).encode())
            print(
                f"[{i}/{len(points)}] {point.key}: PR-AUC {row['pr_auc']:.3f} "
                f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] chance {row['chance']:.3f} "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )


def _cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    verdict = "" if row["ci_low"] > row["chance"] else " (no skill)"
    return f"{row['pr_auc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]{verdict}"


def load_worlds(files: list[Path]) -> dict[str, dict]:
    """Point files grouped by world (the data description): {description: {key: row}}."""
    worlds: dict[str, dict] = {}
    for f in files:
        raw = json.loads(f.read_text())
        rows = worlds.setdefault(raw["description"], {})
        for row in raw["points"]:
            row = {"layers": "all", **row, "public_pretraining": raw.get("public_pretraining")}
            rows[row["point"]] = row
    return worlds


def render(files: list[Path], page: Path) -> None:
    """Merge point files and write the markdown page, its json and its plot.

    The world with the most points is the main one (its curves); points on other worlds
    (a larger world for one more training-vehicle point) get their own table.
    """
    worlds = load_worlds(files)
    main_desc = max(worlds, key=lambda d: len(worlds[d]))
    rows = worlds[main_desc]

    def find(design: str, eps: float, frac: float, rounds: int = 3, layers: str = "all"):
        return rows.get(Point(design, eps, frac, rounds, layers).key)

    chance = next(iter(rows.values()))["chance"]
    np_by_frac = {
        r["fraction"]: r
        for r in rows.values()
        if r["design"] == "nonprivate" and r["layers"] == "all"
    }
    np_full = np_by_frac.get(1.0)
    lines = [
        "# The DP recipe at 60,000 vehicles: PR-AUC against epsilon and training vehicles",
        "",
        "Produced by `benchmarks/bench_dp_curves.py` (commands in "
        "[utility-recipe.md](utility-recipe.md#curves)). Data: "
        f"{main_desc}. Same held-out split, same public encoder start and the same "
        "recipe as the three-seed table of [utility-recipe.md](utility-recipe.md); one seed "
        "(0) per point; 95 % percentile bootstrap intervals over held-out vehicles; "
        f"**chance (held-out prevalence) {chance:.4f}** for every row; ratio = PR-AUC over "
        "the non-private PR-AUC on the same training vehicles. Federated: six equal IID shards "
        "of the training vehicles, each a force with its own ledger and the recipe resolved "
        "for its own N (FedAvg, 3 rounds unless stated), epsilon per force.",
        "",
        f"## Against epsilon (all {np_full['train_vehicles']:,} training vehicles)"
        if np_full
        else "## Against epsilon",
        "",
        "| epsilon | pooled DP [95%] | ratio | federated DP [95%] | ratio |",
        "| ---: | --- | ---: | --- | ---: |",
    ]
    eps_values = sorted({r["epsilon"] for r in rows.values() if r["epsilon"] is not None})
    for eps in eps_values:
        pooled, fed = find("pooled", eps, 1.0), find("federated", eps, 1.0)
        if pooled is None and fed is None:
            continue
        lines.append(
            f"| {eps:g} | {_cell(pooled)} | {_ratio(pooled, np_full)} | {_cell(fed)} | "
            f"{_ratio(fed, np_full)} |"
        )
    lines.append(f"| inf (non-private) | {_cell(np_full)} | 1 | | |")
    lines += [
        "",
        "## Against training vehicles (epsilon 4)",
        "",
        "| training vehicles (positives) | non-private [95%] | pooled DP [95%] | ratio | "
        "federated DP [95%] | ratio |",
        "| ---: | --- | --- | ---: | --- | ---: |",
    ]
    for frac in sorted(np_by_frac):
        base = np_by_frac[frac]
        pooled, fed = find("pooled", 4.0, frac), find("federated", 4.0, frac)
        lines.append(
            f"| {base['train_vehicles']:,} ({base['train_positives']}) | {_cell(base)} | "
            f"{_cell(pooled)} | {_ratio(pooled, base)} | {_cell(fed)} | {_ratio(fed, base)} |"
        )
    lines += _variants_table(rows, np_full, "## Variants at epsilon 4, every training vehicle")
    for desc, other in worlds.items():
        if desc == main_desc:
            continue
        other_np = other.get(Point("nonprivate", float("inf"), 1.0).key)
        lines += [
            "",
            "## A larger world (its own split and held-out set)",
            "",
            f"Data: {desc}. Chance {next(iter(other.values()))['chance']:.4f}.",
        ]
        lines += _variants_table(other, other_np, "")
    plot = page.with_suffix(".png")
    _plot(rows, np_by_frac, chance, plot, worlds, main_desc)
    lines += ["", f"![PR-AUC against epsilon and training vehicles]({plot.name})", ""]
    page.write_text("\n".join(lines) + "\n")
    page.with_suffix(".json").write_text(
        json.dumps(
            {desc: list(pts.values()) for desc, pts in worlds.items()}, indent=1, default=str
        )
    )
    print(page.read_text())


def _variants_table(rows: dict, base: dict | None, title: str) -> list[str]:
    """Every point at full training data, one row each (design, layers, rounds, epsilon)."""
    out = ["", title, ""] if title else [""]
    out += [
        "| design | trained layers | rounds | epsilon | PR-AUC [95%] | ratio | seconds |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    full = [
        r
        for r in rows.values()
        if r["fraction"] == 1.0 and (r["epsilon"] in (None, 4.0) or "cliponly" in r["design"])
    ]
    order = {d: i for i, d in enumerate(DESIGNS)}
    for r in sorted(full, key=lambda r: (order[r["design"]], r["layers"], r["rounds"] or 0)):
        layers = "head only (public encoder fixed)" if r["layers"] == "head" else "all"
        eps = "inf" if r["epsilon"] is None else f"{r['epsilon']:g}"
        if "cliponly" in r["design"]:
            eps = f"none (sigma {CLIP_ONLY_SIGMA:g})"
        out.append(
            f"| {r['design']} | {layers} | {r['rounds'] or '-'} | {eps} | {_cell(r)} | "
            f"{_ratio(r, base)} | {r['seconds']:.0f} |"
        )
    return out


def _ratio(row: dict | None, base: dict | None) -> str:
    if row is None or base is None:
        return "-"
    return f"{row['pr_auc'] / base['pr_auc']:.2f}"


def _curve(rows: dict, design: str, along: str, **fixed: float) -> list[dict]:
    """The plain points of one design (all layers trained, 3 rounds), sorted along a field."""
    picked = [
        r
        for r in rows.values()
        if r["design"] == design
        and r["rounds"] in (None, 3)
        and r["layers"] == "all"
        and all(r[k] == v for k, v in fixed.items())
    ]
    return sorted(picked, key=lambda r: r[along])


def _plot(
    rows: dict, np_key: dict, chance: float, path: Path, worlds: dict, main_desc: str
) -> None:
    """Two panels, log-x, interval bars, the chance line and the 0.8 x target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_eps, ax_n) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    styles = {"pooled": ("o", "pooled DP"), "federated": ("s", "federated DP (6 forces)")}
    for design, (marker, label) in styles.items():
        pts = _curve(rows, design, "epsilon", fraction=1.0)
        _errorbar(ax_eps, [r["epsilon"] for r in pts], pts, marker, label)
        pts = _curve(rows, design, "train_vehicles", epsilon=4.0)
        _errorbar(ax_n, [r["train_vehicles"] for r in pts], pts, marker, label)
    base = sorted(np_key.values(), key=lambda r: r["train_vehicles"])
    _errorbar(ax_n, [r["train_vehicles"] for r in base], base, "^", "non-private")
    for desc, other in worlds.items():  # a larger world: hollow markers, its own held-out set
        if desc == main_desc:
            continue
        for r in other.values():
            if r["fraction"] == 1.0 and r["layers"] == "all" and r["rounds"] in (None, 3):
                marker = {"nonprivate": "^", "pooled": "o", "federated": "s"}[r["design"]]
                colour = {"nonprivate": "C2", "pooled": "C0", "federated": "C1"}[r["design"]]
                _errorbar(ax_n, [r["train_vehicles"]], [r], marker, None, hollow=colour)
    if 1.0 in np_key:
        full = np_key[1.0]
        ax_eps.axhline(full["pr_auc"], color="grey", ls="-", lw=1, label="non-private")
        ax_eps.axhline(0.8 * full["pr_auc"], color="grey", ls=":", lw=1, label="0.8 x target")
    for ax in (ax_eps, ax_n):
        ax.axhline(chance, color="red", ls="--", lw=1, label=f"chance {chance:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")  # chance (1 %) and the models (5-70 %) both readable
        ax.set_ylim(0.005, 1)
        ax.grid(alpha=0.3)
    ax_eps.set_xlabel("epsilon (per force)")
    ax_n.set_xlabel("training vehicles (epsilon 4; hollow: 120,000-vehicle world)")
    ax_eps.set_ylabel("held-out PR-AUC (95% bootstrap)")
    ax_eps.legend(fontsize=7)
    ax_n.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _errorbar(
    ax, xs: list, pts: list[dict], marker: str, label: str | None, hollow: str = ""
) -> None:
    """Points with their 95% intervals; ``hollow`` (a colour): unfilled, not joined."""
    if not pts:
        return
    face = {"mfc": "none", "color": hollow} if hollow else {}
    ys = np.array([r["pr_auc"] for r in pts])
    err = np.array(
        [[r["pr_auc"] - r["ci_low"] for r in pts], [r["ci_high"] - r["pr_auc"] for r in pts]]
    )
    style = "none" if hollow else "-"
    ax.errorbar(xs, ys, yerr=err, marker=marker, capsize=3, label=label, ls=style, **face)


def main() -> None:
    """Measure points or render the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="pickle of the benchmark world's examples")
    parser.add_argument("--public-cache", type=Path, help="pickle of the public world's examples")
    parser.add_argument("--points", default="", help="design:epsilon:fraction[:rounds],...")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "curves")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--render", type=Path, nargs="*", help="point files to merge")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args()
    if args.render:
        render(args.render, args.page)
        return
    if args.cache is None or args.public_cache is None:
        raise SystemExit("--cache and --public-cache are required to measure points")
    measure(args)


if __name__ == "__main__":
    main()
