"""PR-AUC of every design of a finished study run, with a 95% bootstrap interval and chance.

Re-evaluates the run's checkpoints on every force's held-out examples
(``SimulatedForce.evaluate``) and resamples them 1,000 times. Also scores the federated
design's round-0 checkpoint: the starting model (with public pre-training, the public encoder
and a seeded head, before any force data), so a design can be read against its start.

Usage::

    python benchmarks/study_intervals.py runs/study-a [SPEC.toml]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from client_force.simulated_force import SimulatedForce
from federation.metrics import pr_auc
from federation.model import weight_spec
from research.study import world as world_io
from research.study.runner import eps_label, study_settings
from research.study.spec import default_spec, load_spec


def bootstrap(y: np.ndarray, s: np.ndarray, rng: np.random.Generator, n: int = 1000):
    """95% percentile interval of PR-AUC over resampled held-out examples."""
    values = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if y[i].sum():
            values.append(pr_auc(y[i], s[i]))
    return np.percentile(values, [2.5, 97.5])


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1]).resolve()
    spec = load_spec(Path(sys.argv[2])) if len(sys.argv) > 2 else default_spec()
    manifest = json.loads((out / "manifest.json").read_text())
    public = {}
    if manifest.get("public_pretraining"):
        public = {
            "init_weights": str(out / "public" / "public-init.npz"),
            "init_encoder_only": spec.training.public_pretraining.startswith("encoder"),
            "train_layers": (
                "head" if spec.training.public_pretraining == "encoder-frozen" else "all"
            ),
        }
    forces = world_io.force_names(out / "world")
    rng = np.random.default_rng(0)
    for window in spec.retention_windows():
        nodes = [
            SimulatedForce(
                f,
                out / "stores" / f"retention-{window}d" / f,
                out / "keys" / f"retention-{window}d" / f"{f}.key",
            )
            for f in forces
        ]
        runs = []
        for design in spec.designs:
            epsilons = [e for w, e in spec.sweep_points() if w == window]
            for eps in [math.inf] if design == "pooled" else epsilons:
                runs.append((design, eps, "final.npz"))
        if "federated" in spec.designs:
            runs.append(("federated", spec.dp.epsilon, "round-0000.npz"))
        for design, eps, name in runs:
            folder = out / "server" / f"{design}-eps{eps_label(eps)}-ret{window}d"
            settings = study_settings(spec, window, eps, folder, len(nodes)).replace(**public)
            names = [n for n, _, _ in weight_spec(settings.model_config())]
            ys, ss = [], []
            for node in nodes:
                sub = f"{node.name}/{name}" if design == "local-only" else name
                path = folder / "checkpoints" / sub
                if not path.exists():
                    break
                arrays = np.load(path)
                s, y = node.evaluate([arrays[n] for n in names], settings)
                ys.append(y)
                ss.append(s)
            if len(ys) != len(nodes):
                continue
            y, s = np.concatenate(ys), np.concatenate(ss)
            low, high = bootstrap(y, s, rng)
            label = "start (round 0)" if name.startswith("round-0000") else design
            verdict = "beats chance" if low > y.mean() else "no skill"
            print(
                f"{label:16s} eps={eps_label(eps):4s} ret={window}d PR-AUC={pr_auc(y, s):.3f} "
                f"[{low:.3f}, {high:.3f}] chance={y.mean():.4f} positives={int(y.sum())} "
                f"-> {verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
