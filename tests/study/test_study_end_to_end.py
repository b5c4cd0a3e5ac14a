"""A whole (tiny) study through Flower's Simulation Engine, and the canary scan of the server.

Canary VRMs and camera ids are planted in one force's raw export before ingest. After the
study, no form of them (raw, spaced, lower case, UTF-16, unkeyed MD5/SHA-256 hex), nor the
force's keyed pseudonyms and tokens of them, may appear in anything on the national side:
the server's outputs and checkpoints, the results folder, Ray's session folder and the log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from canary import plant_canaries_parquet, scan_for, scan_text

from privacy.keys import MasterSecretSource
from research.study import world as world_io
from research.study.runner import run_study
from research.study.spec import spec_from_dict
from retention.store import ForceStore

TINY = {
    "name": "tiny",
    "seed": 5,
    "designs": ["public-start", "local-only", "federated", "pooled"],
    "world": {"vehicles": 300, "days": 75, "start": "2025-03-01", "prevalence": 0.06, "seed": 5},
    "training": {"rounds": 2, "batch_size": 32, "max_reads": 32, "round_timeout_s": 300},
    "dp": {"epsilon": 4.0},
    "retention": {"max_age_days": 60},
}
RAY_ROOT = Path("/tmp/ray")


def _ray_sessions() -> set[Path]:
    return set(RAY_ROOT.glob("session_*")) if RAY_ROOT.exists() else set()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("tiny-study")
    spec = spec_from_dict(TINY)
    world_dir = world_io.ensure_world(spec.world, out / "world")
    force = world_io.force_names(world_dir)[0]
    canaries = plant_canaries_parquet(world_io.export_dir(world_dir, force), days=40, seed=11)
    before = _ray_sessions()
    handler_records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(self.format(record))

    collect = Collect(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(collect)
    previous = root.level
    root.setLevel(logging.DEBUG)
    started = time.perf_counter()
    try:
        result = run_study(spec, out)
    finally:
        root.removeHandler(collect)
        root.setLevel(previous)
    return {
        "out": out,
        "spec": spec,
        "result": result,
        "force": force,
        "canaries": canaries,
        # Ray's state: the study's own head node keeps it in a private folder (simulation_dirs);
        # anything a plain ray.init() left in /tmp/ray is scanned too.
        "ray_sessions": sorted(_ray_sessions() - before) + list(result.simulation_dirs),
        "log": "\n".join(handler_records),
        "seconds": time.perf_counter() - started,
    }


def test_results_folder_holds_every_table_plot_and_the_manifest(tiny_run: dict) -> None:
    out = tiny_run["out"]
    for stem in ("metrics", "privacy_ledger", "retention", "ingest"):
        assert (out / f"{stem}.csv").stat().st_size > 0
        assert isinstance(json.loads((out / f"{stem}.json").read_text()), list)
    for png in ("utility_vs_epsilon", "pr_curves", "retention_outcome"):
        assert (out / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["name"] == "tiny" and manifest["seed"] == 5
    assert manifest["versions"]["flwr"] == "1.41.0"
    assert manifest["timings_s"]["total"] > 0


def test_every_design_is_evaluated_per_force_and_overall(tiny_run: dict) -> None:
    metrics = pd.read_csv(tiny_run["out"] / "metrics.csv")
    forces = set(world_io.force_names(tiny_run["out"] / "world"))
    for design in ("public-start", "local-only", "federated", "pooled"):
        rows = metrics[metrics["design"] == design]
        assert set(rows["force"]) == forces | {"all forces"}
        overall = rows[rows["force"] == "all forces"].iloc[0]
        assert overall["vehicles"] == rows[rows["force"] != "all forces"]["vehicles"].sum()
        assert overall["positives"] > 0
        assert 0.0 <= overall["pr_auc"] <= 1.0


def test_privacy_ledger_composes_rounds_within_the_target(tiny_run: dict) -> None:
    ledger = pd.read_csv(tiny_run["out"] / "privacy_ledger.csv")
    assert set(ledger["design"]) == {"local-only", "federated"}
    for (_, _), rows in ledger.groupby(["design", "force"]):
        rows = rows.sort_values("round")
        assert list(rows["round"]) == [1, 2]
        assert rows["epsilon"].is_monotonic_increasing
        assert rows["epsilon"].iloc[-1] <= 4.0 * (1 + 1e-6)
        assert (rows["noise_multiplier"] > 0).all() and (rows["delta"] > 0).all()


def test_every_design_keeps_its_models_for_audits(tiny_run: dict) -> None:
    server = tiny_run["out"] / "server"
    forces = world_io.force_names(tiny_run["out"] / "world")
    local = next(server.glob("local-only-*"))
    assert sorted(p.parent.name for p in local.glob("checkpoints/*/final.npz")) == forces
    for design in ("federated", "pooled"):
        assert (next(server.glob(f"{design}-*")) / "checkpoints" / "final.npz").exists()
    with (
        np.load(local / "checkpoints" / forces[0] / "final.npz") as one,
        np.load(local / "checkpoints" / forces[1] / "final.npz") as other,
    ):
        assert one.files == other.files
        assert any(not np.array_equal(one[k], other[k]) for k in one.files)  # trained apart


def test_the_server_wrote_its_round_outputs(tiny_run: dict) -> None:
    server = next((tiny_run["out"] / "server").glob("federated-*"))
    status = json.loads((server / "status.json").read_text())
    assert status["status"] == "completed"
    assert (server / "checkpoints" / "final.npz").exists()
    assert json.loads((server / "rejections.json").read_text()) == []
    assert json.loads((server / "failures.json").read_text()) == []


def test_the_run_can_be_compared_without_paths_or_node_ids(tiny_run: dict) -> None:
    from research.study.compare import compare_runs

    out = tiny_run["out"]
    forces = set(world_io.force_names(out / "world"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"].startswith("tiny-")
    assert manifest["simulation_dirs"] and all(
        not Path(d).is_absolute() for d in manifest["simulation_dirs"]
    )
    ledger = pd.read_csv(out / "privacy_ledger.csv")
    assert set(ledger["run_id"]) == {manifest["run_id"]}
    metrics = pd.read_csv(out / "metrics.csv")
    keys = ["design", "epsilon", "retention_days"]
    overall = metrics[metrics["force"] == "all forces"].set_index(keys).sort_index()
    per_force = metrics[metrics["force"] != "all forces"].groupby(keys)
    assert (overall["train_vehicles"] > 0).all()
    for column in ("train_vehicles", "train_positives"):  # (the tiny world has no conviction)
        assert per_force[column].sum().sort_index().tolist() == overall[column].tolist()
    server = next((out / "server").glob("federated-*"))
    rounds = json.loads((server / "metrics.json").read_text())["rounds"]
    trained = [set(r["train"]["nodes"]) for r in rounds if r["train"]]
    assert trained and all(nodes == forces for nodes in trained)  # forces, not node ids
    entries = json.loads((server / "ledger.json").read_text())["entries"]
    assert {e["force"] for e in entries} == forces
    # (the server's status.json is checked in tests/flower/test_node_names.py)
    written = [*out.glob("*.json"), *out.glob("*.csv")]
    assert not [p.name for p in written if str(out) in p.read_text()]
    comparison = compare_runs([out], replicates=200)
    assert {r["design"] for r in comparison.runs} == {
        "public-start",
        "local-only",
        "federated",
        "pooled",
    }
    assert {b["force"] for b in comparison.budgets} == forces
    assert all(b["trainings"] == 2 for b in comparison.budgets)  # local-only and federated
    assert all(
        4.0 < b["epsilon_composed_rdp"] <= b["epsilon_sum_upper_bound"] + 1e-9
        for b in comparison.budgets
    )


def test_no_canary_reaches_any_national_byte(tiny_run: dict) -> None:
    out, canaries = tiny_run["out"], tiny_run["canaries"]
    national = [
        out / "server",
        out / "plots",
        out / "held_out",
        *out.glob("*.csv"),
        *out.glob("*.json"),
        *tiny_run["ray_sessions"],
    ]
    store_dir = out / "stores" / "retention-60d" / tiny_run["force"]
    store = ForceStore.open(
        store_dir,
        MasterSecretSource.from_key_file(
            out / "keys" / "retention-60d" / f"{tiny_run['force']}.key"
        ),
    )
    vrms = [c for c in canaries if not c.startswith("CANARY-CAM-")]
    ray_files = [p for d in tiny_run["ray_sessions"] for p in Path(d).rglob("*") if p.is_file()]
    assert any(p.name.startswith("worker-") for p in ray_files)  # Ray's state is really scanned
    keyed = store.pseudonymiser().pseudonymise(pa.array(vrms)).to_pylist()
    keyed += [t for t in store.read_cameras()["token"].to_pylist()[-2:]]
    assert scan_for(national, canaries) == []
    assert scan_for(national, keyed) == []
    assert scan_text(tiny_run["log"], canaries + keyed) == []
    # Positive controls: the canaries did flow into the force's data and training...
    export = world_io.export_dir(out / "world", tiny_run["force"])
    assert set(vrms) <= set(pq.read_table(export / "reads.parquet")["vrm"].to_pylist())
    held = set(store.read_reads()["vehicle"].to_pylist())
    assert set(keyed[: len(vrms)]) <= held
    # ...and the scanner finds a leak when there is one.
    leak = out / "leak-probe.txt"
    leak.write_text(f"x {vrms[0][:4]} {vrms[0][4:]} y")
    assert [h.form for h in scan_for([leak], vrms[:1])] == ["spaced"]
    leak.unlink()
    assert scan_for([store_dir], canaries) == []  # the force store holds no raw canary either
