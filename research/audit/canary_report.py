"""The canary audit of a study run's folder: which sweep points and forces, and what is written.

``anprfed privacy canary-audit RUN_DIR`` audits each DP sweep point (design, epsilon,
retention window) of the run at the chosen force(s) with
:func:`research.audit.canary_audit.run_canary_audit`, in a scratch folder that is deleted
afterwards, and writes under ``RUN_DIR/privacy/``:

* ``canary_audit.csv`` / ``.json``: one row per (sweep point, force, run variant, view) with
  design, epsilon, retention window and force named; counts and bounds only, never a canary's
  score or a vehicle's pseudonym;
* ``canary_audit_summary.json``: per (sweep point, force) the verdict in plain words, whether
  the claim was tested with power, whether the claimed run was flagged, settings and timings.
  The DPIA pack shows the verdicts beside the figures.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from client_force.simulated_force import SimulatedForce
from research.audit.canary_audit import CanaryAuditConfig, CanaryAuditResult, run_canary_audit
from research.audit.canary_run import scratch_dir
from research.audit.membership import AuditError, find_models, jsonable, settings_for
from research.study.layout import RunLayout
from safefiles import atomic_write_json, atomic_write_text

OUTPUT_DIR = RunLayout.PRIVACY
ROWS_STEM = "canary_audit"
SUMMARY_FILE = "canary_audit_summary.json"


def forces_of(run_dir: Path, retention_days: int) -> list[str]:
    """The forces with a store for this retention window."""
    root = RunLayout(Path(run_dir)).stores_dir(retention_days)
    if not root.is_dir():
        raise AuditError(f"{root}: no force stores for the {retention_days}-day window")
    return sorted(p.name for p in root.iterdir() if p.is_dir())


@dataclass
class CanaryAuditRun:
    """What :func:`canary_audit_run` found and wrote."""

    results: list[CanaryAuditResult] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every result's rows."""
        return [row for r in self.results for row in r.rows()]


def summary_of(result: CanaryAuditResult) -> dict[str, Any]:
    """One sweep point at one force: the verdict and what it rests on."""
    return {
        "design": result.design,
        "epsilon": result.epsilon,
        "retention_days": result.retention_days,
        "force": result.force,
        "claimed_epsilon": result.claimed_epsilon,
        "tested_with_power": result.tested_with_power,
        "flagged": result.flagged,
        "verdict": result.verdict,
        "seconds": round(result.seconds, 1),
    }


def canary_audit_run(
    run_dir: Path,
    config: CanaryAuditConfig,
    *,
    designs: tuple[str, ...] | None = None,
    epsilons: tuple[float, ...] | None = None,
    forces: tuple[str, ...] | None = None,
    log: Callable[[str], None] | None = None,
) -> CanaryAuditRun:
    """Canary-audit the run's DP sweep points at the chosen forces; write the results.

    Defaults: every DP sweep point and the first force (alphabetically) of each window.
    """
    run_dir = Path(run_dir)
    models = [
        m
        for m in find_models(run_dir)
        if math.isfinite(m.epsilon)
        and (designs is None or m.design in designs)
        and (epsilons is None or any(math.isclose(m.epsilon, e) for e in epsilons))
    ]
    if not models:
        raise AuditError(f"{RunLayout(run_dir).server_dir}: no DP sweep point to canary-audit")
    out = CanaryAuditRun()
    started = time.perf_counter()
    for model in models:
        settings = settings_for(run_dir, model)
        available = forces_of(run_dir, model.retention_days)
        chosen = [f for f in available if forces is None or f in forces]
        if forces is None:
            chosen = chosen[:1]
        missing = sorted(set(forces or ()) - set(available))
        out.skipped.extend(f"{model.tag}/{f}: no such force" for f in missing)
        for force_name in chosen:
            layout = RunLayout(run_dir)
            store = layout.store(model.retention_days, force_name)
            key = layout.key_file(model.retention_days, force_name)
            if not key.is_file():
                raise AuditError(f"{key}: missing (the audit runs inside the force, with its key)")
            scratch = scratch_dir()
            try:
                if log:
                    count = config.canaries or "auto"
                    log(f"{model.tag} / {force_name}: canary audit ({count} canaries)")
                result = run_canary_audit(
                    SimulatedForce(force_name, store, key),
                    settings,
                    design=model.design,
                    epsilon=model.epsilon,
                    retention_days=model.retention_days,
                    scratch=scratch,
                    config=config,
                    log=log,
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            out.results.append(result)
    if not out.results:
        raise AuditError("nothing was canary-audited: " + "; ".join(out.skipped))
    out.files.extend(_write(run_dir, out, config, time.perf_counter() - started))
    return out


def _write(
    run_dir: Path, out: CanaryAuditRun, config: CanaryAuditConfig, seconds: float
) -> list[Path]:
    folder = run_dir / OUTPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rows = jsonable(out.rows)
    csv_path = folder / f"{ROWS_STEM}.csv"
    atomic_write_text(csv_path, pd.DataFrame(rows).to_csv(index=False))
    json_path = folder / f"{ROWS_STEM}.json"
    atomic_write_json(json_path, rows)
    summary_path = folder / SUMMARY_FILE
    atomic_write_json(
        summary_path,
        jsonable(
            {
                "method": "one-run audit (Steinke, Nasr and Jagielski 2023) with "
                + (
                    "Dirac gradient canaries in the force's DP-SGD step (audited with "
                    f"{config.optimizer}); white-box = the server's round-by-round view, "
                    "final-model = the last global model"
                    if config.kind == "gradient"
                    else "input-space canary vehicles; white-box = the server's "
                    "round-by-round view, black-box = the final model"
                ),
                "config": {
                    "kind": config.kind,
                    "optimizer": config.optimizer,
                    "canaries": config.canaries,
                    "amplitude": config.amplitude,
                    "confidence": config.confidence,
                    "seed": config.seed,
                    "engine": config.engine,
                },
                "audits": [summary_of(r) for r in out.results],
                "skipped": out.skipped,
                "seconds": round(seconds, 1),
            }
        ),
    )
    return [csv_path, json_path, summary_path]
