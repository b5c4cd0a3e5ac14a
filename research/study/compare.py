"""Compare study runs: one tidy table across results folders (``anprfed study compare``).

For every run, design, epsilon and retention window (all forces' held-out vehicles together):

* PR-AUC with its 95% bootstrap interval over held-out vehicles, the chance level (held-out
  prevalence, and the expected PR-AUC of a random ranking, which is higher when positives are
  few: see ``resampling``), lift over chance with its interval, and the verdict ("no skill"
  unless the whole interval lies above a random ranking's expected PR-AUC); a flag when fewer
  than about 20 held-out positives carry the figure;
* the difference from the same design point in the *baseline* run (the first folder unless
  named): **paired** when both runs scored the same held-out vehicles in the same order (same
  split fingerprint, see ``held_out``), else unpaired and said so;
* training positives (labelled positives the design trained on, all forces);
* the most any one force spent over *all* the run's DP trainings (``force_epsilon_*``).

Two further tables: paired differences between designs inside each run (federated minus
local-only, pooled minus federated, same window and epsilon, same held-out vehicles), and
each force's total privacy spend per run. Each DP design point trains in its own ledger scope
(a simulation convenience: the points stand for alternative studies), so each ledger shows
about the target epsilon and nothing adds them. Here they are added: by RDP composition of
every recorded DP-SGD step (the ledger keeps each round's noise multiplier, sample rate and
steps; converted at the smallest delta any of them used), and, as a plain upper bound, the sum
of the scopes' epsilons (basic composition, at the sum of their deltas). Both are valid
statements; the RDP one is the tighter.

Outputs carry run ids and folder names, never absolute paths.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from privacy.dp.accountant import epsilon_for
from research.study.held_out import FOLDER as HELD_OUT_FOLDER
from research.study.held_out import HeldOut, load_held_out, tag_for
from research.study.resampling import (
    DEFAULT_REPLICATES,
    FEW_POSITIVES,
    Interval,
    paired_difference,
    pr_auc_interval,
    random_ranking_pr_auc,
    skill_label,
    unpaired_difference,
)
from research.study.results import write_json

ALL_FORCES = "all forces"
DESIGN_PAIRS = (("federated", "local-only"), ("pooled", "federated"))
"""Within a run: what federation adds over each force alone, and what privacy and federation
cost against the non-private national pool."""


class CompareError(ValueError):
    """A folder that cannot be compared; the message names the folder (not its full path)."""


def eps_text(epsilon: float) -> str:
    """``inf`` for non-private, else the value as written in tags (``4``, ``0.5``)."""
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def _epsilon(value: Any) -> float:
    if isinstance(value, str):
        text = value.strip().lower()
        return math.inf if text in ("inf", "infinity", "non-private") else float(text)
    return float(value)


@dataclass
class Run:
    """One results folder, read for comparison."""

    folder: Path
    label: str  # the folder's name: what the outputs show instead of a path
    run_id: str
    manifest: dict[str, Any]
    metrics: pd.DataFrame
    ledger: pd.DataFrame
    _held_out: dict[str, HeldOut | None] = field(default_factory=dict)

    def held_out(self, design: str, epsilon: float, retention_days: int) -> HeldOut | None:
        """The point's held-out scores, or None for a run written before they were kept."""
        tag = tag_for(design, eps_text(epsilon), retention_days)
        if tag not in self._held_out:
            path = self.folder / HELD_OUT_FOLDER / f"{tag}.npz"
            self._held_out[tag] = load_held_out(path) if path.exists() else None
        return self._held_out[tag]


def _read_csv(path: Path, label: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, pd.errors.ParserError) as exc:
        raise CompareError(f"{label}/{path.name}: unreadable ({exc})") from None


def load_run(folder: Path) -> Run:
    """Read a study's results folder; refuses a folder without ``manifest.json``/``metrics.csv``."""
    folder = Path(folder)
    label = folder.resolve().name
    manifest_path, metrics_path = folder / "manifest.json", folder / "metrics.csv"
    if not manifest_path.is_file() or not metrics_path.is_file():
        raise CompareError(
            f"{label}: not a study results folder (needs manifest.json and metrics.csv)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CompareError(f"{label}/manifest.json: not valid JSON ({exc})") from None
    metrics = _read_csv(metrics_path, label)
    missing = {"design", "epsilon", "retention_days", "force", "pr_auc"} - set(metrics.columns)
    if missing:
        raise CompareError(f"{label}/metrics.csv: missing column(s) {', '.join(sorted(missing))}")
    metrics["epsilon"] = metrics["epsilon"].map(_epsilon)
    ledger_path = folder / "privacy_ledger.csv"
    ledger = _read_csv(ledger_path, label) if ledger_path.is_file() else pd.DataFrame()
    run_id = str(manifest.get("run_id") or f"{manifest.get('study', 'study')}@{label}")
    return Run(folder, label, run_id, manifest, metrics, ledger)


# ----------------------------------------------------------------------------- privacy spend
def force_budgets(run: Run) -> list[dict[str, Any]]:
    """Each force's total spend over every DP training of the run (see module docstring)."""
    ledger = run.ledger
    needed = {"force", "design", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps"}
    if ledger.empty or not needed <= set(ledger.columns):
        return []
    scope_keys = [k for k in ("design", "target_epsilon", "retention_days") if k in ledger]
    rows = []
    for force, entries in ledger.groupby("force", sort=True):
        scopes = entries.groupby(scope_keys, sort=False)
        last = scopes.tail(1)  # each scope's cumulative epsilon after its last round
        sigma = entries["noise_multiplier"].astype(float)
        if (sigma <= 0).any():
            composed, delta = math.inf, float(entries["delta"].min())
        else:
            history = zip(
                sigma,
                entries["sample_rate"].astype(float),
                entries["steps"].astype(int),
                strict=True,
            )
            delta = float(entries["delta"].min())
            composed, _ = epsilon_for(list(history), delta)
        rows.append(
            {
                "run_id": run.run_id,
                "run": run.label,
                "force": str(force),
                "trainings": int(scopes.ngroups),
                "rounds": len(entries),
                "epsilon_composed_rdp": composed,
                "delta_composed": delta,
                "epsilon_sum_upper_bound": float(last["epsilon"].astype(float).sum()),
                "delta_sum": float(last["delta"].astype(float).sum()),
                "largest_single_design_epsilon": float(last["epsilon"].astype(float).max()),
            }
        )
    return rows


# ----------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class Point:
    """One design point of one run: its keys and its held-out scores (if kept)."""

    run: Run
    design: str
    epsilon: float
    retention_days: int
    row: dict[str, Any]
    held_out: HeldOut | None

    @property
    def key(self) -> tuple[str, float, int]:
        """(design, epsilon, retention days)."""
        return (self.design, self.epsilon, self.retention_days)


def design_points(run: Run) -> list[Point]:
    """The run's all-forces rows, in the order they were written."""
    overall = run.metrics[run.metrics["force"] == ALL_FORCES]
    points = []
    for row in overall.to_dict("records"):
        design, eps, window = str(row["design"]), float(row["epsilon"]), int(row["retention_days"])
        points.append(Point(run, design, eps, window, row, run.held_out(design, eps, window)))
    return points


def point_figures(point: Point, replicates: int, seed: int) -> dict[str, Any]:
    """PR-AUC, chance, lift and verdict for one point, with bootstrap intervals when possible."""
    row = point.row
    held = point.held_out
    if held is not None:
        auc, lift = pr_auc_interval(
            held.scores, held.truth, held.strata, replicates=replicates, seed=seed
        )
        positives, vehicles = int(held.truth.sum()), len(held.truth)
        train_positives = sum(held.train_positives)
        split = held.split
    else:  # no held-out scores kept: the interval metrics.csv published, if any
        value = float(row["pr_auc"])
        auc = Interval(
            value, float(row.get("pr_auc_low", math.nan)), float(row.get("pr_auc_high", math.nan))
        )
        lift = None
        positives = int(row.get("positives", 0) or 0)
        vehicles = int(row.get("vehicles", 0) or 0)
        train_positives = row.get("train_positives", math.nan)
        split = ""
    chance = positives / vehicles if vehicles else math.nan
    chance_pr_auc = random_ranking_pr_auc(positives, vehicles)
    if lift is None:
        lift = Interval(auc.estimate / chance if chance else math.nan, math.nan, math.nan)
    return {
        "run_id": point.run.run_id,
        "run": point.run.label,
        "design": point.design,
        "epsilon": point.epsilon,
        "retention_days": point.retention_days,
        "held_out_vehicles": vehicles,
        "held_out_positives": positives,
        "chance": chance,
        "chance_pr_auc": chance_pr_auc,
        "pr_auc": auc.estimate,
        "pr_auc_low": auc.low,
        "pr_auc_high": auc.high,
        "lift": lift.estimate,
        "lift_low": lift.low,
        "lift_high": lift.high,
        "verdict": skill_label(auc, chance_pr_auc) if finite(auc.low) else "no interval",
        "few_positives": positives < FEW_POSITIVES,
        "train_positives": train_positives,
        "split": split,
    }


def _difference(a: Point, b: Point, replicates: int, seed: int) -> tuple[Interval, str]:
    """PR-AUC of ``a`` minus ``b``: paired on the same split, else independent resamples."""
    ha, hb = a.held_out, b.held_out
    if ha is None or hb is None:
        value = float(a.row["pr_auc"]) - float(b.row["pr_auc"])
        return Interval(value, math.nan, math.nan), "no held-out scores"
    if ha.split == hb.split and len(ha.truth) == len(hb.truth) and (ha.truth == hb.truth).all():
        diff = paired_difference(
            ha.scores, hb.scores, ha.truth, ha.strata, replicates=replicates, seed=seed
        )
        return diff, "paired"
    diff = unpaired_difference(
        (ha.scores, ha.truth, ha.strata),
        (hb.scores, hb.truth, hb.strata),
        replicates=replicates,
        seed=seed,
    )
    return diff, "unpaired (different held-out vehicles)"


@dataclass
class Comparison:
    """The three tables ``compare`` writes."""

    runs: list[dict[str, Any]]
    designs: list[dict[str, Any]]
    budgets: list[dict[str, Any]]

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables as DataFrames, by output stem."""
        return {
            "compare": pd.DataFrame(self.runs),
            "compare_designs": pd.DataFrame(self.designs),
            "compare_budgets": pd.DataFrame(self.budgets),
        }


def compare_runs(
    folders: Sequence[Path],
    *,
    baseline: int = 0,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> Comparison:
    """Compare results folders; ``baseline`` is the index of the run others are set against."""
    if not folders:
        raise CompareError("no results folder given")
    runs = [load_run(Path(f)) for f in folders]
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        # Two folders of the same name: tell them apart by run id in the outputs.
        for run in runs:
            run.label = f"{run.label} ({run.run_id})"
    if not 0 <= baseline < len(runs):
        raise CompareError(f"baseline {baseline} is not one of the {len(runs)} runs")
    base = {p.key: p for p in design_points(runs[baseline])}
    budgets: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    designs: list[dict[str, Any]] = []
    for index, run in enumerate(runs):
        run_budgets = force_budgets(run)
        budgets.extend(run_budgets)
        worst = max(run_budgets, key=lambda b: b["epsilon_composed_rdp"], default=None)
        points = design_points(run)
        for point in points:
            row = point_figures(point, replicates, seed)
            row["baseline_run"] = runs[baseline].label
            diff, pairing = Interval(math.nan, math.nan, math.nan), ""
            other = base.get(point.key)
            if index == baseline:
                pairing = "baseline"
            elif other is None:
                pairing = "not in baseline run"
            else:
                diff, pairing = _difference(point, other, replicates, seed)
            row.update(
                diff_vs_baseline=diff.estimate,
                diff_low=diff.low,
                diff_high=diff.high,
                diff_pairing=pairing,
                force_epsilon_composed_max=worst["epsilon_composed_rdp"] if worst else math.nan,
                force_epsilon_sum_max=max(
                    (b["epsilon_sum_upper_bound"] for b in run_budgets), default=math.nan
                ),
            )
            rows.append(row)
        designs.extend(_within_run(run, points, replicates, seed))
    return Comparison(rows, designs, budgets)


def _within_run(run: Run, points: list[Point], replicates: int, seed: int) -> list[dict]:
    """Paired design differences inside one run (same window, same held-out vehicles)."""
    by_key = {p.key: p for p in points}
    out = []
    for a_design, b_design in DESIGN_PAIRS:
        for (design, eps, window), a in by_key.items():
            if design != a_design:
                continue
            # pooled is non-private: set it against the DP design at every epsilon
            partners = [
                p
                for (d, e, w), p in by_key.items()
                if d == b_design and w == window and (e == eps or a_design == "pooled")
            ]
            for b in partners:
                diff, pairing = _difference(a, b, replicates, seed)
                out.append(
                    {
                        "run_id": run.run_id,
                        "run": run.label,
                        "retention_days": window,
                        "a": f"{a.design} eps={eps_text(a.epsilon)}",
                        "b": f"{b.design} eps={eps_text(b.epsilon)}",
                        "pr_auc_a": float(a.row["pr_auc"]),
                        "pr_auc_b": float(b.row["pr_auc"]),
                        "difference": diff.estimate,
                        "low": diff.low,
                        "high": diff.high,
                        "pairing": pairing,
                        "clear_of_zero": diff.excludes(0.0),
                    }
                )
    return out


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """Write each table as CSV and JSON under ``out``; returns the files."""
    from safefiles import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for stem, frame in comparison.frames().items():
        csv_path = out / f"{stem}.csv"
        atomic_write_text(csv_path, frame.to_csv(index=False), mode=0o644)
        files.append(csv_path)
        files.append(write_json(out / f"{stem}.json", frame.to_dict("records")))
    return files


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_interval(estimate: Any, low: Any, high: Any, digits: int = 3) -> str:
    """``0.412 [0.301, 0.522]``, the estimate alone without an interval, ``–`` if undefined."""
    if not finite(estimate):
        return "–"
    text = f"{float(estimate):.{digits}f}"
    if finite(low) and finite(high):
        text += f" [{float(low):.{digits}f}, {float(high):.{digits}f}]"
    return text


def _eps_cell(value: Any) -> str:
    eps = float(value)
    return "∞ (non-private)" if math.isinf(eps) else f"{eps:g}"


def comparison_tables(comparison: Comparison) -> list[Any]:
    """Rich tables of the comparison (what ``anprfed study compare`` prints)."""
    from rich.table import Table

    runs = Table(
        title="Runs compared: held-out vehicles, all forces",
        caption="PR-AUC and lift with 95% bootstrap intervals over held-out vehicles; chance = "
        "held-out prevalence (lift = PR-AUC / chance); the verdict tests the interval against "
        "a random ranking's expected PR-AUC, a little above the prevalence when positives are "
        "few. Δ = PR-AUC minus the same design point of the baseline run "
        "(paired when both runs held out the same vehicles). ⚠ = fewer than "
        f"{FEW_POSITIVES} held-out positives. Max force ε: the most one force spent over all "
        "DP trainings of the run (RDP composition; sum of ε as upper bound in brackets).",
    )
    for name in (
        "run",
        "design",
        "ε",
        "retention",
        "PR-AUC [95%]",
        "chance",
        "lift [95%]",
        "verdict",
        "Δ vs baseline [95%]",
        "train pos.",
        "max force ε",
    ):
        runs.add_column(name, justify="left" if name in ("run", "design", "verdict") else "right")
    for r in comparison.runs:
        delta = fmt_interval(r["diff_vs_baseline"], r["diff_low"], r["diff_high"])
        if r["diff_pairing"] not in ("paired", "baseline", ""):
            delta += f" ({r['diff_pairing']})"
        elif r["diff_pairing"] == "baseline":
            delta = "baseline"
        budget = "–"
        if finite(r["force_epsilon_composed_max"]):
            budget = (
                f"{float(r['force_epsilon_composed_max']):.2f} "
                f"(≤ {float(r['force_epsilon_sum_max']):.1f})"
            )
        runs.add_row(
            r["run"],
            r["design"],
            _eps_cell(r["epsilon"]),
            f"{r['retention_days']}d",
            fmt_interval(r["pr_auc"], r["pr_auc_low"], r["pr_auc_high"]),
            f"{r['chance']:.3f}" if finite(r["chance"]) else "–",
            fmt_interval(r["lift"], r["lift_low"], r["lift_high"], 1),
            r["verdict"] + (" ⚠" if r["few_positives"] else ""),
            delta,
            str(int(r["train_positives"])) if finite(r["train_positives"]) else "–",
            budget,
        )
    designs = Table(title="Design differences within each run (PR-AUC, same held-out vehicles)")
    for name in ("run", "retention", "a − b", "difference [95%]", "pairing", "clear of 0"):
        designs.add_column(name)
    for d in comparison.designs:
        designs.add_row(
            d["run"],
            f"{d['retention_days']}d",
            f"{d['a']} − {d['b']}",
            fmt_interval(d["difference"], d["low"], d["high"]),
            d["pairing"],
            "yes" if d["clear_of_zero"] else "no",
        )
    budgets = Table(
        title="Privacy spent by each force over all DP trainings of a run",
        caption="Each design point trained in its own simulated ledger scope; here they are "
        "composed. RDP: every recorded step composed, at the smallest δ used. Sum: basic "
        "composition, an upper bound at the sum of the δs.",
    )
    for name in ("run", "force", "trainings", "ε (RDP)", "δ", "ε sum (upper bound)", "δ sum"):
        budgets.add_column(name, justify="left" if name in ("run", "force") else "right")
    for b in comparison.budgets:
        budgets.add_row(
            b["run"],
            b["force"],
            str(b["trainings"]),
            f"{b['epsilon_composed_rdp']:.2f}",
            f"{b['delta_composed']:.1e}",
            f"{b['epsilon_sum_upper_bound']:.2f}",
            f"{b['delta_sum']:.1e}",
        )
    return [runs, designs, budgets]
