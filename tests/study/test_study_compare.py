"""``anprfed study compare``: intervals, paired differences on the same split, total spend.

The run folders here are written with the runner's own writers (metrics rows from
``evaluate_design``, held-out files from ``save_held_out``, ledger rows with noise calibrated by
the real accountant), from scores drawn for the test, so each expected property is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from privacy.dp.accountant import calibrate_noise_multiplier, epsilon_for
from research.study.compare import CompareError, compare_runs, write_comparison
from research.study.evaluation import ForceScores, evaluate_design
from research.study.held_out import FOLDER, ForceSplit, save_held_out, tag_for
from research.study.results import write_json, write_table

FORCES = ("cheshire", "cumbria", "merseyside")
DELTA = 1e-4


def _truth(seed: int, n: int = 600) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f: (rng.random(n) < 0.06).astype(np.float64) for f in FORCES}


def _scores(truth: dict[str, np.ndarray], signal: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f: y * signal + rng.normal(size=len(y)) for f, y in truth.items()}


def _ledger_rows(run_id: str, design: str, epsilon: float) -> list[dict]:
    """Two rounds of a force's DP training calibrated to ``epsilon`` over the two."""
    q, steps = 0.05, 40
    sigma = calibrate_noise_multiplier(epsilon, DELTA, q, 2 * steps)
    rows = []
    for force in FORCES:
        for round_id in (1, 2):
            eps_after, _ = epsilon_for([(sigma, q, steps)] * round_id, DELTA)
            rows.append(
                {
                    "run_id": run_id,
                    "retention_days": 365,
                    "design": design,
                    "target_epsilon": epsilon,
                    "force": force,
                    "round": round_id,
                    "epsilon": eps_after,
                    "delta": DELTA,
                    "noise_multiplier": sigma,
                    "sample_rate": q,
                    "steps": steps,
                }
            )
    return rows


def make_run(
    folder: Path, run_id: str, split_seed: int, signals: dict[str, float]
) -> dict[str, float]:
    """A results folder with one point per design at eps 4 (pooled: inf), 365-day window."""
    truth = _truth(split_seed)
    metrics, ledger = [], []
    for i, (design, signal) in enumerate(signals.items()):
        epsilon = float("inf") if design == "pooled" else 4.0
        scores = _scores(truth, signal, seed=split_seed * 100 + i)
        per_force = [ForceScores(f, scores[f], truth[f]) for f in FORCES]
        splits = [
            ForceSplit(f, f"split{split_seed}-{f}", 1400, 80 + j, len(truth[f]))
            for j, f in enumerate(FORCES)
        ]
        eps_label = "inf" if design == "pooled" else "4"
        save_held_out(folder / FOLDER / f"{tag_for(design, eps_label, 365)}.npz", per_force, splits)
        for row in evaluate_design(per_force, 0.5, 1 / 400):
            metrics.append({"design": design, "epsilon": epsilon, "retention_days": 365, **row})
        if design != "pooled":
            ledger.extend(_ledger_rows(run_id, design, epsilon))
    write_table(metrics, folder / "metrics")
    write_table(ledger, folder / "privacy_ledger")
    write_json(folder / "manifest.json", {"run_id": run_id, "study": "test", "spec": {}})
    return {}


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("base", "better", "other-split")}
    signals = {"local-only": 0.6, "federated": 1.0, "pooled": 1.6}
    make_run(folders["base"], "base-1", 1, signals)
    make_run(folders["better"], "better-1", 1, {**signals, "federated": 2.2})
    make_run(folders["other-split"], "other-1", 2, signals)
    return folders


def test_each_row_carries_its_interval_chance_lift_and_verdict(runs: dict[str, Path]) -> None:
    comparison = compare_runs([runs["base"]], replicates=200)
    rows = {r["design"]: r for r in comparison.runs}
    assert set(rows) == {"local-only", "federated", "pooled"}
    for r in rows.values():
        assert r["pr_auc_low"] <= r["pr_auc"] <= r["pr_auc_high"]
        assert r["chance"] == pytest.approx(r["held_out_positives"] / r["held_out_vehicles"])
        assert r["lift"] == pytest.approx(r["pr_auc"] / r["chance"])
        assert r["train_positives"] == 80 + 81 + 82
        assert r["run_id"] == "base-1" and r["diff_pairing"] == "baseline"
    assert rows["pooled"]["verdict"] == "beats chance"
    assert rows["pooled"]["pr_auc_low"] > rows["pooled"]["chance"]


def test_same_split_differences_are_paired_and_other_splits_are_not(
    runs: dict[str, Path],
) -> None:
    comparison = compare_runs([runs["base"], runs["better"], runs["other-split"]], replicates=200)
    by = {(r["run"], r["design"]): r for r in comparison.runs}
    improved = by[("better", "federated")]
    assert improved["diff_pairing"] == "paired"
    assert improved["diff_low"] > 0  # a clearly better model on the same vehicles
    unchanged = by[("better", "local-only")]
    assert unchanged["diff_vs_baseline"] == 0.0 and unchanged["diff_pairing"] == "paired"
    moved = by[("other-split", "federated")]
    assert moved["diff_pairing"].startswith("unpaired")


def test_within_run_design_differences_are_paired(runs: dict[str, Path]) -> None:
    comparison = compare_runs([runs["base"]], replicates=200)
    pairs = {(d["a"], d["b"]): d for d in comparison.designs}
    fed = pairs[("federated eps=4", "local-only eps=4")]
    assert fed["pairing"] == "paired" and fed["low"] <= fed["difference"] <= fed["high"]
    assert ("pooled eps=inf", "federated eps=4") in pairs


def test_each_forces_spend_is_composed_across_designs(runs: dict[str, Path]) -> None:
    """Two DP designs at eps 4 each: by RDP composition the force spent more than 4 and less
    than the plain sum 8, which is stated as an upper bound."""
    comparison = compare_runs([runs["base"]], replicates=100)
    assert {b["force"] for b in comparison.budgets} == set(FORCES)
    for b in comparison.budgets:
        assert b["trainings"] == 2 and b["rounds"] == 4
        assert b["epsilon_sum_upper_bound"] == pytest.approx(8.0, rel=1e-2)
        assert 4.0 < b["epsilon_composed_rdp"] < b["epsilon_sum_upper_bound"]
        assert b["largest_single_design_epsilon"] <= 4.0 + 1e-9
    row = comparison.runs[0]
    assert row["force_epsilon_composed_max"] == max(
        b["epsilon_composed_rdp"] for b in comparison.budgets
    )


def test_outputs_name_runs_not_paths(runs: dict[str, Path], tmp_path: Path) -> None:
    comparison = compare_runs([runs["base"], runs["better"]], replicates=100)
    files = write_comparison(comparison, tmp_path / "cmp")
    assert {p.name for p in files} >= {"compare.csv", "compare.json", "compare_budgets.csv"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert str(tmp_path) not in text and "/tmp" not in text
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert {r["run"] for r in rows} == {"base", "better"}


def test_a_folder_that_is_not_a_run_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(CompareError, match="notes: not a study results folder") as err:
        compare_runs([tmp_path / "notes"])
    assert str(tmp_path) not in str(err.value)


def test_the_cli_prints_and_writes_the_tables(runs: dict[str, Path], tmp_path: Path) -> None:
    from research.study.cli import app

    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(runs["base"]),
            str(runs["better"]),
            "--out",
            str(out),
            "--replicates",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Runs compared" in result.output and "Privacy spent" in result.output
    assert (out / "compare.csv").exists() and (out / "compare_designs.json").exists()
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "absent")])
    assert bad.exit_code == 2


def test_the_notebook_is_valid_and_runs_on_two_runs(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/compare-runs.ipynb: nbformat 4 JSON without outputs, whose code runs as written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(__file__).resolve().parents[2] / "docs" / "compare-runs.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4 and notebook["cells"]
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    monkeypatch.setenv("ANPRFED_RUNS", f"{runs['base']} {runs['better']}")
    namespace: dict = {}
    for cell in code:
        exec(compile("".join(cell["source"]), str(path), "exec"), namespace)
    assert set(namespace["table"]["run"]) == {"base", "better"}
    assert len(namespace["fig"].axes) == 2
    plt.close("all")
