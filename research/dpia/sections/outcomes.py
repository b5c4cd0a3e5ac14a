"""Sections 6-7: measures (DP per force, store checks), residual risks and sign-off."""

from __future__ import annotations

import math
from typing import Any

from research.dpia import figures
from research.dpia.blocks import (
    Figure,
    Heading,
    Missing,
    Para,
    Section,
    Table,
)
from research.dpia.checks import StoreCheck
from research.dpia.run_folder import (
    LEDGER,
    MANIFEST,
)
from research.dpia.sections.facts import (
    Facts,
    person,
)


# ------------------------------------------------------------------------------ section 6
def measures(f: Facts, s: Section, checks: list[StoreCheck], risks: list[dict[str, Any]]) -> None:
    _run, book, sid = f.run, f.book, s.id
    s.add(Heading("Differential privacy: epsilon and delta per force"))
    any_rows = False
    for design in ("federated", "local-only"):
        final = f.ledger_final(design)
        if final.empty:
            continue
        any_rows = True
        rows, plot = [], []
        for _, r in final.iterrows():
            force = str(r["force"])
            loc = (
                f"row design={design}, target_epsilon={f.eps:g}, retention_days={f.window}, "
                f"force={force}, round={int(r['round'])} (the last round); column "
            )
            rows.append(
                [
                    force,
                    book.add(
                        sid, f"{design} {force}: epsilon", r["epsilon"], LEDGER, loc + "epsilon"
                    ),
                    book.add(
                        sid,
                        f"{design} {force}: delta",
                        r["delta"],
                        LEDGER,
                        loc + "delta",
                        display=f"{float(r['delta']):.2e}",
                    ),
                    book.add(
                        sid,
                        f"{design} {force}: rounds",
                        r["rounds"],
                        LEDGER,
                        "distinct values of column round for that force",
                        "count",
                    ),
                    book.add(
                        sid,
                        f"{design} {force}: DP-SGD steps",
                        r["total_steps"],
                        LEDGER,
                        "sum of column steps for that force",
                        "count",
                    ),
                    book.add(
                        sid,
                        f"{design} {force}: noise multiplier",
                        r["noise_multiplier"],
                        LEDGER,
                        loc + "noise_multiplier",
                    ),
                    book.add(
                        sid,
                        f"{design} {force}: accountant",
                        r.get("accountant", "rdp"),
                        LEDGER,
                        loc + "accountant",
                        "text",
                    ),
                    book.add(
                        sid,
                        f"{design} {force}: budget",
                        r.get("epsilon_budget", math.nan),
                        LEDGER,
                        loc + "epsilon_budget",
                    ),
                ]
            )
            plot.append((force, float(r["epsilon"]), float(r["delta"])))
        s.add(
            Table(
                f"{design}: privacy spent per force (target epsilon {f.eps:g}, "
                f"{f.window}-day retention)",
                [
                    "force",
                    "epsilon",
                    "delta",
                    "rounds",
                    "steps",
                    "noise multiplier",
                    "accountant",
                    "force budget",
                ],
                rows,
            )
        )
        if design == "federated":
            s.add(
                Figure(
                    id="fig-epsilon",
                    title="Epsilon per force",
                    png=figures.epsilon_by_force(
                        plot, f.eps, f"{design}: (epsilon, delta) per force from the ledger"
                    ),
                    caption="Cumulative epsilon after the last round, at each force's delta.",
                    sources=[LEDGER],
                )
            )
    if any_rows:
        s.add(
            Para(
                [
                    "Accountant and composition: Opacus's RDP accountant for the "
                    "Poisson-subsampled Gaussian mechanism; every round's steps are composed "
                    "in RDP over the whole study and converted to (epsilon, delta) at the "
                    "force's delta (at most 1/(10 x its training vehicles)). Each force's "
                    "ledger persists across rounds and runs, refuses a round past the budget, "
                    "and is recomputed independently with Google's dp-accounting "
                    "(`python -m privacy.dp.crosscheck`). The unit of privacy is one vehicle "
                    "within one force's data."
                ]
            )
        )
    else:
        s.add(
            Missing(
                "per-force privacy ledger rows (privacy_ledger.csv)",
                "run a DP design with `anprfed study run`",
            )
        )
    s.add(Heading("Retention: store compliance and purge-log verification"))
    if checks:
        rows = []
        for c in checks:
            src = c.sources[0] if c.sources else MANIFEST
            loc = f"store check of {c.force} ({c.retention_days}-day window) as of {c.as_of}"
            rows.append(
                [
                    c.force,
                    f"{c.retention_days} days",
                    book.add(
                        sid,
                        f"{c.force} {c.retention_days}d: compliant",
                        c.compliant,
                        src,
                        loc + ": no expired partition, no interrupted purge",
                        "text",
                    ),
                    book.add(
                        sid,
                        f"{c.force} {c.retention_days}d: days held",
                        c.days_held,
                        src,
                        loc + ": day partitions held",
                        "count",
                    ),
                    book.add(
                        sid,
                        f"{c.force} {c.retention_days}d: purge log verifies",
                        c.log_ok,
                        c.sources[1] if len(c.sources) > 1 else src,
                        loc + ": chain, signatures and signed head",
                        "text",
                    ),
                    book.add(
                        sid,
                        f"{c.force} {c.retention_days}d: purge-log entries",
                        c.log_entries,
                        c.sources[1] if len(c.sources) > 1 else src,
                        loc + ": entries",
                        "count",
                    ),
                    "; ".join(c.problems) or "none",
                ]
            )
        s.add(
            Table(
                "Force stores checked by the DPIA command",
                [
                    "force",
                    "window",
                    "compliant",
                    "days held",
                    "purge log verifies",
                    "log entries",
                    "problems",
                ],
                rows,
            )
        )
    else:
        s.add(
            Missing(
                "store compliance and purge-log verification",
                "run `anprfed dpia report RUN_DIR` where the run's stores are present",
            )
        )
    s.add(Heading("Measures against each risk"))
    measures = {
        "reid": "Keyed pseudonyms (HMAC-SHA256 + AES PRP, 256-bit per-force keys, rotation); "
        "raw VRMs never stored.",
        "membership": "Vehicle-level DP-SGD with a per-force budget and ledger; SecAgg+ "
        "available; audited by membership inference.",
        "false-alerts": "Base-rate reporting; alerts are intelligence to verify; operating "
        "point set by recall target.",
        "disparity": "Per-force evaluation published; monitor rural forces; federation adds "
        "positives that single rural forces lack.",
        "retention": "Rolling cryptographic erase of day partitions and derived caches; signed, "
        "hash-chained purge log verified here.",
        "locations": "Location-free features; egress guard enforces the array/metric contract.",
        "rng": "Noise seeded per round from the force's OS CSPRNG; a deployed force refuses a "
        "server-chosen training seed (simulation only); move to secure mode when torchcsprng "
        "is available. A simulated study also fixes its keys from the spec's seed so its "
        "figures repeat; the manifest says so.",
        "server": "Each force's own privacy policy bounds every round (budget, fixed delta, "
        "minimum noise, sample rate, evaluate cap, test fraction); returned scalars are "
        "charged DP releases; keyed, anchored ledger; tests/adversarial.",
        "composition": "Budgets per force kept small; report the sum for vehicles seen by "
        "several forces.",
    }
    effect = {
        "reid": "reduced",
        "membership": "reduced",
        "false-alerts": "reduced, not removed (inherent to rare-event detection)",
        "disparity": "reduced, not removed",
        "retention": "reduced",
        "locations": "eliminated by design",
        "rng": "accepted for research; reduced in deployment",
        "server": "reduced (a deployed force's guarantee no longer depends on the run config)",
        "composition": "accepted",
    }
    s.add(
        Table(
            "Measures (suggested effect; the residual risk is the rating of section 5, "
            "measured with these measures in place; the approver decides in section 7)",
            ["risk", "measures in this toolkit", "effect on risk", "residual risk"],
            [
                [
                    r["name"],
                    measures.get(r["key"], ""),
                    effect.get(r["key"], "reduced"),
                    r["overall"],
                ]
                for r in risks
            ],
        )
    )


# ------------------------------------------------------------------------------ section 7
def residual_risks(f: Facts, found: dict[str, Any]) -> list[dict[str, str]]:
    items = [
        {
            "risk": "No secure random source for DP noise",
            "detail": "Opacus secure mode is off (torchcsprng unavailable); the guarantee holds "
            "under an idealised random source (docs/residual-risks.md R1).",
        },
        {
            "risk": "The pooled counterfactual is not deployable",
            "detail": "The pooled design is a non-private national database shown for comparison "
            "only; its models must never leave a simulation (R4).",
        },
        {
            "risk": "Composition across forces",
            "detail": "A vehicle read by k forces is protected by the sum of k per-force "
            "budgets, which no party can compute without linking pseudonyms (R3).",
        },
        {
            "risk": "Privacy ledger rollback",
            "detail": "The ledger is an HMAC chain covering its budget and delta, anchored "
            "outside its file; restoring both the ledger and its anchor from one old backup "
            "is not detected (R2); keep a copy of the anchor outside the force's store.",
        },
        {
            "risk": "What the national server still controls",
            "detail": "Within each force's policy the server chooses how the budget is spent "
            "(rounds, window, batch size, up to the evaluate cap) and runs the app code on "
            "every SuperNode; reported epsilon reveals a force's size to about one batch (R0, "
            "R6). A simulation's forces allow simulation-only settings (seeds, ledger scopes).",
        },
        {
            "risk": "Audit is a lower bound",
            "detail": "Membership inference shows what these attacks achieve, not the worst case; "
            "the one-run Clopper-Pearson bound is a heuristic.",
        },
        {
            "risk": "Synthetic evidence",
            "detail": "All figures come from a synthetic world; a deployment must repeat the "
            "evaluation and audits on real data inside each force.",
        },
    ]
    if found.get("deployable_beats_chance") is False:
        items.insert(
            0,
            {
                "risk": "The run does not show the processing achieves its purpose",
                "detail": "No deployable design ranks held-out vehicles better than chance "
                "(every interval includes the held-out prevalence): necessity is not shown.",
            },
        )
    if found.get("mi_within_claim") is False:
        items.insert(
            0,
            {
                "risk": "Empirical privacy leakage above the claim",
                "detail": "A membership-inference lower bound exceeded the claimed "
                "epsilon: investigate before any deployment.",
            },
        )
    return items


def signoff(f: Facts, s: Section, residual: list[dict[str, str]]) -> None:
    s.add(Heading("Residual risks"))
    s.add(
        Table(
            "Residual risks after the measures",
            ["residual risk", "detail"],
            [[r["risk"], r["detail"]] for r in residual],
        )
    )
    for id_, role, prompt in (
        (
            "signoff-measures",
            "Name / position / date",
            "Measures approved by (integrate the actions back into the project plan).",
        ),
        (
            "signoff-residual",
            "Name / position / date",
            "Residual risks approved by (if any "
            "high risk remains, consult the ICO "
            "before going ahead).",
        ),
        (
            "signoff-dpo",
            "Data protection officer",
            "DPO advice provided: summary of advice, and whether processing should proceed.",
        ),
        (
            "signoff-dpo-decision",
            "Name / position / date",
            "DPO advice accepted or overruled by (if overruled, explain why).",
        ),
        (
            "signoff-consultation",
            "Name / position / date",
            "Consultation responses reviewed "
            "by (if the decision departs from "
            "individuals' views, explain why).",
        ),
        ("signoff-review", "Name / position", "This DPIA will be kept under review by."),
    ):
        s.add(person(id_, role, prompt))
