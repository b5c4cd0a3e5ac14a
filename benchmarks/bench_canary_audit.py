"""Does the canary audit have power? One force, model and data under honest, noise-free and
deliberately broken DP runs.

For one force of a study run (``anprfed study run``) and its eps-4 federated sweep point,
trains through the force's own round code (``client_force.flower_round.local_train`` ->
``train_round`` -> Opacus, with the force's ledger), in process (FedAvg over one force is the
identity; the CLI runs the same rounds inside a Flower simulation), and audits every run with
the one-run bound (``research.audit.one_run``):

1. **Gradient canaries** (the default audit): ``m`` Dirac canaries added in the force's DP-SGD
   step (``client_force.gradient_canaries``), the recipe's batch, epochs, rounds and clipping
   with plain SGD; views white-box (round by round) and final-model. Runs:

   * ``reference``: the noise taken out honestly (noise multiplier 0.001, ledger records it);
   * ``claimed`` (eps 4), ``dp-eps1``, ``dp-eps8``: honest DP at the study's calibration;
   * ``broken-noise``: the ledger records the eps-4 calibration, DP-SGD runs at noise 0.001;
   * ``replayed-noise``: the eps-4 noise, drawn from a generator seeded by the run config's
     ``seed``; the audit regenerates it and subtracts it (``research.audit.broken_dp``).

   With ``--study-optimizer`` the same audit again with the recipe's own Adam (its power).
2. **Input canaries** (``--input-canaries N``, 0 to skip): canary vehicles, views white-box and
   black-box, for ``reference``, ``claimed`` and ``broken-noise``.

The broken variants exist only here and in tests (``research.audit.broken_dp``), never in the
CLI. Writes ``docs/benchmarks/canary-audit.md`` and ``.json``.

Usage: ``python benchmarks/bench_canary_audit.py RUN_DIR [--force NAME] [--canaries 1000]
[--input-canaries 500] [--study-optimizer]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import torch
from rich.console import Console

from client_force.simulated_force import SimulatedForce
from client_force.training import TrainingConfig
from federation.flower_settings import FlowerSettings
from federation.model import weight_spec
from research.audit import broken_dp
from research.audit.canary_audit import CanaryAuditConfig, CanaryAuditResult, run_canary_audit
from research.audit.canary_run import TrainedRun, scratch_dir, train_in_process
from research.audit.membership import find_models, jsonable, settings_for
from research.study.layout import RunLayout

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
BROKEN_NOISE = 1e-3


def trainer(force: SimulatedForce, settings: FlowerSettings, run_id: str) -> TrainedRun:
    """In-process rounds; ``broken-noise`` and ``replayed-noise`` lie to the ledger."""
    if "broken-noise" in run_id:
        with broken_dp.broken_noise(BROKEN_NOISE):
            return train_in_process(force, settings, run_id)
    if "replayed-noise" in run_id:
        with broken_dp.replayed_noise(settings.seed):
            run = train_in_process(force, settings, run_id)
        rows = [r for r in force.ledger_rows(settings) if r["steps"]]
        effects = broken_dp.replay_noise_effects(
            [shape for _, shape, _ in weight_spec(settings.model_config())],
            rows,
            server_seed=settings.seed,
            learning_rate=settings.learning_rate,
            momentum=TrainingConfig().momentum,
        )
        return dataclasses.replace(run, noise_effects=effects)
    return train_in_process(force, settings, run_id)


def audit(
    force: SimulatedForce,
    settings: FlowerSettings,
    model: object,
    config: CanaryAuditConfig,
    variants: dict,
    console: Console,
) -> CanaryAuditResult:
    """One audit in a scratch folder that is removed afterwards."""
    scratch = scratch_dir()
    try:
        return run_canary_audit(
            force,
            settings,
            design=model.design,  # type: ignore[attr-defined]
            epsilon=model.epsilon,  # type: ignore[attr-defined]
            retention_days=model.retention_days,  # type: ignore[attr-defined]
            scratch=scratch,
            config=config,
            extra_variants=variants,
            trainer=trainer,
            log=console.log,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def section(result: CanaryAuditResult, title: str) -> dict:
    """The JSON of one audit."""
    return {
        "title": title,
        "config": result.config,
        "verdict": result.verdict,
        "other_flags": result.other_flags,
        "rows": result.rows(),
        "seconds": round(result.seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--force", default=None)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--input-canaries", type=int, default=500)
    parser.add_argument("--study-optimizer", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DOCS / "canary-audit.md")
    parser.add_argument("--from-json", type=Path, default=None, help="Only re-render the page.")
    args = parser.parse_args()
    if args.from_json is not None:
        args.out.write_text(render(json.loads(args.from_json.read_text())))
        return
    torch.set_num_threads(1)
    console = Console(log_time=False)
    model = next(
        m for m in find_models(args.run_dir) if m.design == "federated" and m.epsilon == 4.0
    )
    settings = settings_for(args.run_dir, model)
    layout = RunLayout(args.run_dir)
    root = layout.stores_dir(model.retention_days)
    force_name = args.force or sorted(p.name for p in root.iterdir())[0]
    force = SimulatedForce(
        force_name,
        layout.store(model.retention_days, force_name),
        layout.key_file(model.retention_days, force_name),
    )
    started = time.perf_counter()
    at = {
        "dp-eps1": lambda s: s.replace(dp_target_epsilon=1.0),
        "dp-eps8": lambda s: s.replace(dp_target_epsilon=8.0),
        "broken-noise": lambda s: s.replace(dp_target_epsilon=4.0),
        "replayed-noise": lambda s: s.replace(dp_target_epsilon=4.0),
    }
    base = CanaryAuditConfig(
        canaries=args.canaries, engine="in-process", training_seed=1, seed=args.seed
    )
    sections = [
        section(
            audit(force, settings, model, base, at, console),
            "Gradient canaries, audited with SGD (the default)",
        )
    ]
    if args.study_optimizer:
        study = dataclasses.replace(base, optimizer="study")
        broken = {"broken-noise": at["broken-noise"]}
        sections.append(
            section(
                audit(force, settings, model, study, broken, console),
                "Gradient canaries, audited with the study recipe's own Adam",
            )
        )
    if args.input_canaries:
        inputs = dataclasses.replace(
            base, canaries=args.input_canaries, kind="input", optimizer="study"
        )
        sections.append(
            section(
                audit(
                    force, settings, model, inputs, {"broken-noise": at["broken-noise"]}, console
                ),
                "Input-space canary vehicles (the study recipe)",
            )
        )
    payload = {
        "force": force_name,
        "design": model.design,
        "retention_days": model.retention_days,
        "run_dir": str(args.run_dir),
        "sections": sections,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "argv": {
            "canaries": args.canaries,
            "input_canaries": args.input_canaries,
            "study_optimizer": args.study_optimizer,
        },
    }
    args.out.with_suffix(".json").write_text(json.dumps(jsonable(payload), indent=1) + "\n")
    args.out.write_text(render(payload))
    console.print(render(payload))


def _f(x: object) -> str:
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.3g}"
    return str(x)


def reading(rows: list[dict]) -> list[str]:
    """Plain-words conclusions computed from the rows (no number typed by hand)."""
    ref = max(float(r["eps_lower_bound"]) for r in rows if r["variant"] == "reference")
    ceiling = max(float(r["eps_max_testable"]) for r in rows)
    out = [
        f"* Noise-free reference: best lower bound {ref:.2f}. Claims below {ref:.2f} were "
        f"tested with power; claims at or above it were not; {rows[0]['canaries']} canaries "
        f"can show at most {ceiling:.2f} at this delta and confidence.",
    ]
    for variant in sorted({r["variant"] for r in rows} - {"reference"}):
        mine = [r for r in rows if r["variant"] == variant]
        claim = float(mine[0]["ledger_epsilon"])
        best = max(float(r["eps_lower_bound"]) for r in mine)
        state = "**flagged**" if any(r["flagged"] for r in mine) else "within its claim"
        power = "with power" if ref > claim else "without power"
        out.append(
            f"* `{variant}` (ledger eps {claim:.3g}): best lower bound {best:.2f}, {state}; "
            f"claim tested {power}."
        )
    return out


def render(p: dict) -> str:
    """The benchmark page (Markdown)."""
    lines = [
        "# Canary audit: does it have power?",
        "",
        f"Force `{p['force']}`, design `{p['design']}`, eps-4 sweep point, "
        f"{p['retention_days']}-day retention, of a small study run (`{p['run_dir']}`). Every "
        "run trains through `local_train` -> `train_round` -> Opacus with the force's ledger "
        "and noise calibration, in process (FedAvg over one force is the identity). Each "
        "canary is included with probability 1/2; bounds are the one-run method's at 95% "
        "confidence (Steinke, Nasr and Jagielski 2023).",
    ]
    for sec in p["sections"]:
        t = sec["config"]["trained_with"]
        how = (
            f"the study recipe `{t['dp_recipe']}` as the force resolves it (Adam at 0.01, "
            f"expected batch N/10, 5 epochs over the study's {t['rounds']} rounds, clipping 1)"
            if t["dp_recipe"]
            else f"{t['optimizer']} at {t['learning_rate']:g} (momentum 0.9), expected batch "
            f"{t['batch_size']}, {t['rounds']} rounds x {t['local_epochs']} local epochs, "
            f"clipping {t['max_grad_norm']:g} (the recipe's batch, epochs and clipping)"
        )
        lines += [
            "",
            f"## {sec['title']}",
            "",
            f"{sec['config']['canaries']} {sec['config']['kind']} canaries; trained with "
            f"{how}. Took {sec['seconds']:.0f} s.",
            "",
            "| run | view | ledger eps | guesses | correct | eps lower bound | max testable "
            "| separation | above own claim |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in sec["rows"]:
            lines.append(
                f"| {row['variant']} | {row['view']} | {_f(row['ledger_epsilon'])} | "
                f"{row['guesses']} | {row['correct']} | {_f(row['eps_lower_bound'])} | "
                f"{_f(row['eps_max_testable'])} | {_f(row.get('separation', math.nan))} | "
                f"{'**yes**' if row['flagged'] else 'no'} |"
            )
        lines += ["", *reading(sec["rows"]), "", f"Verdict on the eps-4 claim: {sec['verdict']}"]
    lines += [
        "",
        "## Notes",
        "",
        "* *separation*: (median score of included - of excluded canaries) / spread of the "
        "excluded (gradient canaries only); the drift of real gradients is removed by "
        "subtracting a canary-free, noise-free pilot run (own sampling seed, independent of the "
        "coins).",
        "* The gradient audit trains with SGD: the privacy claim covers the noisy gradient "
        "sequence and the optimiser is post-processing, so SGD tests the same clipping, noise "
        "and accounting code where it is most observable. Under Adam (the study recipe) "
        "per-coordinate normalisation hides the canaries (the Adam section, when run).",
        "* White-box and final-model views nearly coincide for one force: the round steps "
        "telescope to the final model; the white-box view only weights rounds.",
        "* Confidence: each bound is Bonferroni-corrected for the abstention levels tried and "
        "for the two views, so the better of a run's two bounds (what its verdict uses) holds "
        "at the stated confidence.",
        "",
        f"Took {p['seconds']:.0f} s in all on {p['machine']} (shared with other jobs).",
        "",
        "Reproduce: `PYTHONPATH=$PWD python benchmarks/bench_canary_audit.py RUN_DIR "
        f"--force {p['force']} --canaries {p['argv']['canaries']} --input-canaries "
        f"{p['argv']['input_canaries']}"
        + (" --study-optimizer" if p["argv"]["study_optimizer"] else "")
        + "` on a run of `anprfed study run` from `anprfed study example` with vehicles 2000, "
        'days 500, designs ["federated"], rounds 2, no epsilon or retention sweep '
        "(`nice -n 10 anprfed study run spec.toml --out RUN_DIR`, about 2 minutes).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
