"""A simulated study is reproducible from its seed: keys, split, initialisation and training
all follow from the spec, so a rerun writes the same metrics; another seed does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from research.study.layout import RunLayout
from research.study.runner import run_study
from research.study.spec import spec_from_dict

TINY = {
    "name": "repeatable",
    "designs": ["local-only", "federated", "pooled"],
    "world": {"vehicles": 300, "days": 75, "start": "2025-03-01", "prevalence": 0.06, "seed": 5},
    "training": {"rounds": 1, "batch_size": 32, "max_reads": 32, "round_timeout_s": 300},
    "dp": {"epsilon": 4.0},
    "retention": {"max_age_days": 60},
}


def _run(tmp: Path, name: str, seed: int, world: Path | None, repeats: int = 1) -> Path:
    out = tmp / name
    if world is not None:  # the same synthetic world (its own seed), reused as is
        shutil.copytree(world, out / "world")
    run_study(spec_from_dict({**TINY, "seed": seed, "repeats": repeats}), out)
    return out


@pytest.mark.slow
def test_the_same_seed_reproduces_every_figure_and_another_seed_does_not(
    tmp_path: Path,
) -> None:
    first = _run(tmp_path, "first", 11, None)
    world = RunLayout(first).world_dir
    again = _run(tmp_path, "again", 11, world, repeats=2)
    other = _run(tmp_path, "other", 12, world)
    metrics = RunLayout.METRICS + ".csv"
    a = pd.read_csv(first / metrics)
    b = pd.read_csv(again / metrics)
    spread = [c for c in b.columns if "_repeat_" in c or c == "repeats"]
    # repeat 0 of a two-repeat run is the one-repeat run, to the last digit
    assert a.drop(columns=spread).to_csv() == b.drop(columns=spread).to_csv()
    for table in ("ingest.csv", "retention.csv"):
        assert (first / table).read_bytes() == (again / table).read_bytes()
    ledger = ["epsilon", "noise_multiplier", "sample_rate", "steps", "examples"]
    assert pd.read_csv(first / "privacy_ledger.csv")[ledger].equals(
        pd.read_csv(again / "privacy_ledger.csv")[ledger]
    )
    c = pd.read_csv(other / metrics)
    assert not a["pr_auc"].equals(c["pr_auc"])  # another seed: other keys, split, training
    # the second repeat trained with another seed on the same split: same positives, new scores
    repeats = pd.read_csv(again / "repeats.csv")
    overall = repeats[repeats["force"] == "all forces"]
    assert (overall.groupby(["design", "epsilon"])["positives"].nunique() == 1).all()
    dp = overall[overall["design"] == "local-only"]
    assert dp["pr_auc"].nunique() == 2
    spread = b.dropna(subset=["pr_auc"])
    assert (spread["pr_auc_repeat_max"] >= spread["pr_auc_repeat_min"]).all()
    assert (spread[spread["design"] == "local-only"]["pr_auc_repeat_sd"] > 0).any()
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["repeats"] == 2 and len(set(manifest["training_seeds"])) == 2
    assert "SIMULATION ONLY" in manifest["simulation_keys"]


def test_simulated_keys_follow_from_seed_and_force_and_fresh_keys_do_not(tmp_path: Path) -> None:
    import pyarrow as pa

    from privacy.keys import MasterSecretSource, SimulationSecretSource
    from retention.store import ForceStore

    def pseudonym(name: str, source: MasterSecretSource, force: str = "cumbria") -> str:
        store = ForceStore.create(tmp_path / name, force, source)
        return store.pseudonymiser().pseudonymise(pa.array(["AB12CDE"])).to_pylist()[0]

    def sim(name: str, seed: int, force: str = "cumbria") -> SimulationSecretSource:
        return SimulationSecretSource(tmp_path / f"{name}.key", seed=seed, force=force)

    same = pseudonym("a", sim("a", 7)), pseudonym("b", sim("b", 7))
    assert same[0] == same[1]
    assert pseudonym("c", sim("c", 8)) != same[0]
    assert pseudonym("d", sim("d", 7, "lancs"), "lancs") != same[0]
    fresh = [pseudonym(n, MasterSecretSource.from_key_file(tmp_path / f"{n}.key")) for n in "ef"]
    assert fresh[0] != fresh[1] and same[0] not in fresh
    assert "SIMULATION ONLY" in repr(sim("g", 7))


def test_no_deployable_code_can_reach_the_simulation_key_derivation() -> None:
    root = Path(__file__).resolve().parents[2]
    allowed = {root / "privacy" / "keys.py", root / "client_force" / "simulated_force.py"}
    for package in ("client_force", "server_national", "deployment", "federation", "retention"):
        for path in (root / package).rglob("*.py"):
            if path not in allowed:
                assert "SimulationSecretSource" not in path.read_text(), path
