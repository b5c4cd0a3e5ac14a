"""Section 4: necessity and proportionality (base rates, alternatives, disparity, retention)."""

from __future__ import annotations

import math
from typing import Any

from research.dpia import figures
from research.dpia.blocks import (
    Bullets,
    Figure,
    Heading,
    Missing,
    Para,
    Part,
    Section,
    Table,
)
from research.dpia.run_folder import (
    ALL_FORCES,
    MANIFEST,
    METRICS,
    RETENTION,
    WORLD,
)
from research.dpia.sections.facts import (
    LFR_ARRESTS,
    LFR_SCANNED,
    LFR_SOURCE,
    Facts,
    eps_text,
    person,
)

# "Vehicles processed per true positive" is not shown: at a fixed recall r it is
# 1 / (prevalence x r) for every design, so it says nothing about a design.
BASE_RATE_COLUMNS = (
    ("pr_auc", "PR-AUC"),
    ("pr_auc_low", "PR-AUC 95% interval, low"),
    ("pr_auc_high", "PR-AUC 95% interval, high"),
    ("chance", "chance (held-out prevalence)"),
    ("lift", "lift over chance"),
    ("positives", "held-out positives"),
    ("tpr", "recall at operating point"),
    ("precision_realistic", "precision (realistic prevalence)"),
    ("alerts_per_tp_realistic", "alerts per true positive"),
    ("false_alerts_per_million_realistic", "false alerts per million vehicles"),
)
MIN_POSITIVES = 20  # research.study.evaluation.MIN_POSITIVES: fewer makes a figure fragile


def _skill(row: Any) -> str:
    """ "no skill" / "above chance" / "undefined", from the row (older runs: from the figures)."""
    if row is None:
        return "n/a"
    if "skill" in row and isinstance(row["skill"], str):
        return str(row["skill"])
    low, chance = float(row.get("pr_auc_low", math.nan)), float(row.get("chance", math.nan))
    if math.isfinite(low) and math.isfinite(chance):
        return "above chance" if low > chance else "no skill"
    return "no interval recorded"


def _deployable(design: str) -> bool:
    from research.study.designs import get_design
    from research.study.designs.registry import UnknownDesignError

    try:
        return get_design(design).deployable
    except UnknownDesignError:
        return design != "pooled"


def necessity(f: Facts, s: Section) -> dict[str, Any]:
    run, book, sid = f.run, f.book, s.id
    found: dict[str, Any] = {}
    s.add(
        person(
            "lawful-basis",
            "Controller, advised by the DPO",
            "State the lawful basis and the law-enforcement purpose (DPA 2018 Part 3, "
            "s.35), and, if any data is sensitive processing, the condition relied on.",
        )
    )
    s.add(Heading("Does the processing achieve its purpose, and is there a less intrusive way?"))
    designs = f.designs()
    rows = []
    verdicts: dict[str, str] = {}
    few: list[str] = []
    for design in designs:
        eps = (
            "non-private"
            if design == "pooled"
            else "none (no force data)"
            if design == "public-start"
            else eps_text(f.eps)
        )
        metric_row = f.metric_row(design)
        verdicts[design] = _skill(metric_row)
        if metric_row is not None and int(metric_row.get("positives", 0)) < MIN_POSITIVES:
            few.append(design)
        rows.append(
            [design, eps]
            + [
                f.metric(
                    sid,
                    design,
                    col,
                    f"{design}: {label}",
                    kind="count" if col == "positives" else "number",
                )
                for col, label in BASE_RATE_COLUMNS
            ]
            + [verdicts[design] + (" (fewer than 20 held-out positives)" if design in few else "")]
        )
    prevalence = run.spec.get("evaluation", {}).get("realistic_prevalence")
    s.add(
        Table(
            f"Base rates at the study's operating point (recall target "
            f"{run.spec.get('evaluation', {}).get('recall', 'n/a')}), all forces' held-out "
            f"vehicles, {f.window}-day retention, re-weighted to a realistic prevalence of "
            f"{prevalence if prevalence is not None else 'n/a'}",
            ["design", "epsilon", *(label for _, label in BASE_RATE_COLUMNS), "verdict"],
            rows,
        )
    )
    s.add(
        Para(
            [
                "How to read this table: a model that ranks vehicles at random has a PR-AUC "
                "equal to the held-out prevalence (\u201cchance\u201d), and its precision at any "
                "recall is the prevalence too. The interval is a 95% bootstrap over held-out "
                "vehicles; a design is marked \u201cno skill\u201d when that interval reaches "
                "down to chance, or when random rankings of the same vehicles reach its PR-AUC "
                "in 5% of draws or more (with few positives a random ranking scores above the "
                "prevalence): the run cannot tell it apart from a random ranking."
            ]
        )
    )
    if few:
        s.add(
            Para(
                [
                    "Warning: the figures of ",
                    ", ".join(few),
                    f" rest on fewer than {MIN_POSITIVES} held-out positives; one more or one "
                    "fewer offender found would move them visibly, so they are fragile.",
                ]
            )
        )
    found["verdicts"] = verdicts
    deployable = [d for d in designs if _deployable(d)]
    skilled = [d for d in deployable if verdicts.get(d) == "above chance"]
    found["deployable_beats_chance"] = bool(skilled)
    if deployable and not skilled:
        s.add(
            Para(
                [
                    "This run does not show that the processing achieves its purpose. No "
                    "deployable design (",
                    ", ".join(deployable),
                    ") ranks held-out vehicles better than a random ranking would: each one's "
                    "interval includes chance. On this evidence the processing of every "
                    "vehicle's reads is not shown to be necessary for finding offenders, and "
                    "the alert figures below describe a ranking no better than chance.",
                ]
            )
        )
    start = f.metric_row("public-start") if "public-start" in designs else None
    if start is not None:
        start_high = float(start.get("pr_auc_high", math.nan))
        not_above_start = [
            d
            for d in skilled
            if float(f.metric_row(d).get("pr_auc_low", math.nan)) <= start_high  # type: ignore[union-attr]
        ]
        found["not_above_public_start"] = not_above_start
        if not_above_start:
            s.add(
                Para(
                    [
                        "Read against its start: ",
                        ", ".join(not_above_start),
                        " beat"
                        + ("s" if len(not_above_start) == 1 else "")
                        + " chance but not the public starting model they began from "
                        "(public-start, PR-AUC ",
                        f.metric(sid, "public-start", "pr_auc", "public-start: PR-AUC"),
                        ", made without any force's data): the intervals overlap, so this run "
                        "does not show that the forces' data add skill to what public "
                        "pre-training gives.",
                    ]
                )
            )
    fed = f.metric_row("federated")
    if fed is not None and math.isfinite(float(fed.get("alerts_per_tp_realistic", math.nan))):
        lfr = book.add(
            sid,
            "LFR: people scanned per arrest",
            LFR_SCANNED / LFR_ARRESTS,
            LFR_SOURCE,
            "144,366 / 8",
            "count",
        )
        realistic = run.spec.get("evaluation", {}).get("realistic_prevalence")
        random_alerts = (
            book.add(
                sid,
                "random ranking: alerts per true positive",
                1.0 / float(realistic),
                MANIFEST,
                "derived from JSON pointer /spec/evaluation/realistic_prevalence: 1 / value",
                "number",
            )
            if realistic
            else "n/a"
        )
        fed_skill = verdicts.get("federated", "n/a")
        s.add(
            Para(
                [
                    "Proportionality: at realistic prevalence the federated model raises ",
                    f.metric(
                        sid,
                        "federated",
                        "alerts_per_tp_realistic",
                        "federated: alerts per true positive",
                    ),
                    " alerts for every offending vehicle it finds, of which all but one are "
                    "innocent vehicles. A random ranking raises ",
                    random_alerts,
                    " alerts per offending vehicle found (one over the prevalence), at any "
                    "recall. ",
                    (
                        "The federated model shows no skill in this run, so its alert burden "
                        "is that of a random ranking, within the run's uncertainty. "
                        if fed_skill == "no skill"
                        else ""
                    ),
                    "For comparison, the Metropolitan Police's live facial recognition "
                    "deployments scanned ",
                    lfr,
                    " people per arrest. Each alert must be treated as "
                    "intelligence to verify, never as grounds for action on its own.",
                ]
            )
        )
        found["alerts_per_tp"] = float(fed["alerts_per_tp_realistic"])
        found["false_per_million"] = float(fed["false_alerts_per_million_realistic"])
    if "local-only" in designs and "federated" in designs:
        s.add(
            Para(
                [
                    "Less intrusive alternative: each force alone (local-only, same DP budget) "
                    "reaches "
                    "PR-AUC ",
                    f.metric(sid, "local-only", "pr_auc", "local-only: PR-AUC"),
                    " against ",
                    f.metric(sid, "federated", "pr_auc", "federated: PR-AUC"),
                    f" federated ({verdicts.get('local-only', 'n/a')} and "
                    f"{verdicts.get('federated', 'n/a')} respectively, against chance "
                    "at the held-out prevalence). The pooled national database reaches ",
                    f.metric(sid, "pooled", "pr_auc", "pooled: PR-AUC")
                    if "pooled" in designs
                    else "n/a",
                    " but is a non-private counterfactual: it is shown for reference and is not "
                    "deployable.",
                ]
            )
        )
    notes = run.manifest.get("notes", [])
    pooled_note = next((n for n in notes if "pooled" in n), None)
    if pooled_note:
        found["pooled_note"] = book.add(
            sid,
            "pooled design status",
            pooled_note,
            MANIFEST,
            "derived from JSON pointer /notes: the entry that mentions pooled",
            "text",
        )
        s.add(Para(["The run itself records: \u201c", found["pooled_note"], "\u201d."]))
    for name, caption in (
        ("pr_curves.png", "Precision-recall curves (held-out vehicles)"),
        ("utility_vs_epsilon.png", "Utility against epsilon per design"),
    ):
        rel = f"plots/{name}"
        if run.has(rel):
            book.hash_file(rel)
            book.hash_file(METRICS)
            s.add(
                Figure(
                    id=f"fig-{name.removesuffix('.png').replace('_', '-')}",
                    title=caption,
                    png=(run.root / rel).read_bytes(),
                    caption=f"Drawn by the study runner from {METRICS}.",
                    sources=[rel, METRICS],
                )
            )
    found.update(_disparity(f, s))
    _retention_outcome(f, s)
    s.add(Heading("Data minimisation, quality, information and rights"))
    s.add(
        Bullets(
            [
                [
                    "Minimisation: the model sees location-free per-read features of retained "
                    "reads only, "
                    "capped per vehicle; nothing but model arrays and allowlisted scalars leaves a "
                    "force."
                ],
                [
                    "Function creep: the egress contract fixes what the server can receive; any "
                    "other "
                    "use of the model needs a new DPIA."
                ],
                [
                    "Data quality: labels come from the conviction log, which lags offences by "
                    "months; "
                    "the retention table above shows how many positives deletion removes."
                ],
            ]
        )
    )
    s.add(
        person(
            "info-rights",
            "DPIA owner, advised by the DPO",
            "How are individuals informed (privacy notice, force websites)? How are "
            "their rights supported, and which exemptions apply? Which processors are "
            "involved, and are there international transfers?",
        )
    )
    return found


def _disparity(f: Facts, s: Section) -> dict[str, Any]:
    run, book, sid = f.run, f.book, s.id
    found: dict[str, Any] = {}
    design = "federated" if "federated" in f.designs() else (f.designs() or [""])[0]
    world_forces = {}
    if run.world:
        for entry in run.world.get("counts", run.world).get("forces", []):
            world_forces[str(entry.get("slug"))] = entry
    s.add(Heading("Disparity between forces (urban against rural coverage)"))
    rows, plot_rows = [], []
    for force in run.forces:
        row = f.metric_row(design, force)
        if row is None:
            continue
        cams = world_forces.get(force)
        cameras = (
            None
            if cams is None
            else int(cams.get("cameras_fixed", 0)) + int(cams.get("cameras_mobile", 0))
        )
        idx = (
            next(
                (
                    i
                    for i, e in enumerate(run.world.get("counts", run.world).get("forces", []))
                    if str(e.get("slug")) == force
                ),
                None,
            )
            if run.world
            else None
        )
        cam_cell: Part = (
            "n/a"
            if cameras is None
            else book.add(
                sid,
                f"{force}: cameras",
                cameras,
                WORLD,
                f"derived from JSON pointers /counts/forces/{idx}/cameras_fixed and "
                f"/counts/forces/{idx}/cameras_mobile: their sum",
                "count",
            )
        )
        rows.append(
            [
                force,
                cam_cell,
                f.metric(sid, design, "positives", f"{force}: held-out positives", force, "count"),
                f.metric(sid, design, "pr_auc", f"{force}: PR-AUC", force),
                f.metric(sid, design, "chance", f"{force}: chance", force),
                _skill(row)
                + (
                    f" (fewer than {MIN_POSITIVES} positives)"
                    if int(row.get("positives", 0)) < MIN_POSITIVES
                    else ""
                ),
                f.metric(sid, design, "tpr", f"{force}: recall", force),
                f.metric(
                    sid,
                    design,
                    "false_alerts_per_million_realistic",
                    f"{force}: false alerts per million",
                    force,
                    "count",
                ),
            ]
        )
        plot_rows.append(
            (
                force,
                cameras or 0,
                float(row.get("tpr", math.nan)),
                float(row.get("false_alerts_per_million_realistic", math.nan)),
            )
        )
    if not rows:
        s.add(Missing("per-force metrics", "run `anprfed study run`"))
        return found
    s.add(
        Table(
            f"Per-force results of the {design} model (held-out vehicles; realistic prevalence)",
            [
                "force",
                "cameras",
                "held-out positives",
                "PR-AUC",
                "chance",
                "verdict",
                "recall",
                "false alerts per million",
            ],
            rows,
        )
    )
    plot_rows.sort(key=lambda r: r[1], reverse=True)
    s.add(
        Figure(
            id="fig-disparity",
            title="Disparity by force",
            png=figures.disparity(
                plot_rows, f"{design}: recall and false alerts by force (most cameras first)"
            ),
            caption="Forces ordered by camera count (a proxy for urban coverage, from "
            "world/world.json).",
            sources=[METRICS] + ([WORLD] if run.world else []),
        )
    )
    valid = [r for r in plot_rows if math.isfinite(r[2]) and r[1] > 0]
    undefined = [r[0] for r in plot_rows if not math.isfinite(r[2])]
    if undefined:
        s.add(
            Para(
                [
                    ", ".join(undefined),
                    " had no held-out positive, so recall (and the "
                    "alert burden) is undefined there: too few offenders in one force to "
                    "measure, let alone to learn from, which is the founding project's problem. "
                    "The comparison below is between forces with positives.",
                ]
            )
        )
    if len(valid) >= 2 and run.world:
        urban, rural = valid[0], valid[-1]
        ratio_fa = (urban[3] / rural[3]) if rural[3] > 0 else math.inf
        found["disparity_recall_gap"] = abs(urban[2] - rural[2])
        found["disparity_fa_ratio"] = ratio_fa
        s.add(
            Para(
                [
                    "Most urban coverage: ",
                    urban[0],
                    f" ({urban[1]} cameras); most rural: ",
                    rural[0],
                    f" ({rural[1]} cameras). Recall differs by ",
                    book.add(
                        sid,
                        "recall gap urban - rural",
                        urban[2] - rural[2],
                        METRICS,
                        f"column tpr: force={urban[0]} minus force={rural[0]} ({design})",
                    ),
                    " and false alerts per million by a factor of ",
                    book.add(
                        sid,
                        "false-alert ratio urban / rural",
                        ratio_fa,
                        METRICS,
                        f"column false_alerts_per_million_realistic: force={urban[0]} / "
                        f"force={rural[0]} ({design})",
                        "ratio",
                    ),
                    ". Rural forces see fewer reads per vehicle and few positives, so their "
                    "figures "
                    "are the least certain; a deployment must monitor them (Equality Act 2010 "
                    "s.149).",
                ]
            )
        )
    return found


def _retention_outcome(f: Facts, s: Section) -> None:
    run, book, sid = f.run, f.book, s.id
    ret = run.retention
    s.add(Heading("Retention: what rolling deletion costs the model"))
    if ret.empty:
        s.add(Missing("retention outcome (retention.csv)", "run `anprfed study run`"))
        return
    columns = [
        ("offenders_seen", "offenders seen"),
        ("convictions_in_log", "in the conviction logs (ingest.csv)"),
        ("convicted_not_read_while_offending", "convicted, never read while offending"),
        ("convicted_by_study_date", "convicted by study date, read while offending"),
        ("conviction_arrived_while_held", "conviction arrived while reads held"),
        ("lost_to_deletion_before_conviction", "lost to deletion first"),
        ("usable_positives_at_study_date", "usable positives"),
        ("not_yet_convicted", "not yet convicted"),
    ]
    columns = [(c, label) for c, label in columns if c in ret.columns]
    rows, few = [], []
    for _, r in ret[ret["force"] == ALL_FORCES].iterrows():
        days = int(r["retention_days"])
        loc = f"row retention_days={days}, force=all forces; column "
        rows.append(
            [f"{days} days"]
            + [
                book.add(sid, f"{days}d: {col}", r[col], RETENTION, loc + col, "count")
                for col, _ in columns
            ]
        )
        if int(r.get("usable_positives_at_study_date", 0)) < MIN_POSITIVES:
            few.append(f"{days} days")
    s.add(
        Table(
            "Planted offenders and their convictions against the retention window (all forces)",
            ["retention", *(label for _, label in columns)],
            rows,
        )
    )
    if "convictions_in_log" in ret.columns:
        s.add(
            Para(
                [
                    "The conviction logs (ingest.csv, convictions_loaded) hold every convicted "
                    "offender a force has read at all; only those read during their offence "
                    "period can teach a model the offence, and only those whose offence-period "
                    "reads are still held on the study date are usable positives."
                ]
            )
        )
    if few:
        s.add(
            Para(
                [
                    "Warning: with a retention window of ",
                    ", ".join(few),
                    f", fewer than {MIN_POSITIVES} usable positives remain across all forces: "
                    "too few to train on or to measure a model with.",
                ]
            )
        )
    rel = "plots/retention_outcome.png"
    if run.has(rel):
        book.hash_file(rel)
        s.add(
            Figure(
                id="fig-retention",
                title="Retention outcome",
                png=(run.root / rel).read_bytes(),
                caption=f"Drawn by the study runner from {RETENTION}.",
                sources=[rel, RETENTION],
            )
        )


# ------------------------------------------------------------------------------ section 5
