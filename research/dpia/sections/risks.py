"""Section 5: risks to individuals, with evidence and suggested ratings."""

from __future__ import annotations

import math
from typing import Any

from research.dpia.blocks import (
    Figure,
    Missing,
    Para,
    Part,
    Section,
    Table,
)
from research.dpia.checks import StoreCheck
from research.dpia.run_folder import (
    MANIFEST,
    MEMBERSHIP,
    METRICS,
    REID,
)
from research.dpia.sections.canary import canary_blocks
from research.dpia.sections.facts import (
    Facts,
    person,
    rate,
)


def risks(
    f: Facts, s: Section, checks: list[StoreCheck], found: dict[str, Any]
) -> list[dict[str, Any]]:
    run, book, sid = f.run, f.book, s.id
    risks: list[dict[str, Any]] = []

    def risk(key: str, name: str, evidence: list[Part], likelihood: str, severity: str) -> None:
        risks.append(
            {
                "key": key,
                "name": name,
                "evidence": evidence,
                "likelihood": likelihood,
                "severity": severity,
                "overall": rate(likelihood, severity),
            }
        )

    # Re-identification of pseudonyms.
    if run.reid:
        md5, keyed = run.reid.get("md5", {}), run.reid.get("keyed", {})
        risk(
            "reid",
            "Re-identification of vehicles from their pseudonyms",
            [
                "unkeyed MD5 (founding method): ",
                book.add(
                    sid,
                    "MD5: plates recovered",
                    md5.get("recovered"),
                    REID,
                    "JSON pointer /md5/recovered",
                    "count",
                ),
                " of ",
                book.add(
                    sid,
                    "MD5: plates pseudonymised",
                    run.reid.get("sample"),
                    REID,
                    "JSON pointer /sample",
                    "count",
                ),
                " recovered at ",
                book.add(
                    sid,
                    "MD5: hashes per second",
                    md5.get("projection_rate_per_second"),
                    REID,
                    "JSON pointer /md5/projection_rate_per_second",
                    "count",
                ),
                " hashes/s; full plate space in ",
                book.add(
                    sid,
                    "MD5: minutes for the full plate space",
                    md5.get("projected_full_space_seconds", math.nan) / 60,
                    REID,
                    "derived from JSON pointer /md5/projected_full_space_seconds, divided by 60",
                ),
                " minutes. Keyed pseudonyms: ",
                book.add(
                    sid,
                    "keyed: recovered",
                    keyed.get("recovered_by_md5_enumeration"),
                    REID,
                    "JSON pointer /keyed/recovered_by_md5_enumeration",
                    "count",
                ),
                " recovered; key space 2^",
                book.add(
                    sid,
                    "keyed: key bits",
                    keyed.get("key_bits"),
                    REID,
                    "JSON pointer /keyed/key_bits",
                    "count",
                ),
            ],
            "remote" if keyed.get("recovered_by_md5_enumeration", 1) == 0 else "probable",
            "severe",
        )
    else:
        risk(
            "reid",
            "Re-identification of vehicles from their pseudonyms",
            ["re-identification demonstration not run"],
            "possible",
            "severe",
        )
    # Membership inference.
    mi = run.membership
    if not mi.empty:
        dp = mi[mi["epsilon"].map(math.isfinite)]
        nonpriv = mi[~mi["epsilon"].map(math.isfinite)]
        parts: list[Part] = []
        if not dp.empty:
            best = dp.loc[dp["auc"].idxmax()]
            worst = dp.loc[dp["eps_lower_bound"].astype(float).idxmax()]
            parts += [
                "DP models: best attack AUC ",
                book.add(
                    sid,
                    "MI on DP models: highest AUC",
                    best["auc"],
                    MEMBERSHIP,
                    f"max of column auc over rows with finite epsilon (row: "
                    f"{best['design']}, {best['force']}, {best['attack']})",
                ),
                "; highest empirical epsilon lower bound ",
                book.add(
                    sid,
                    "MI on DP models: highest epsilon lower bound",
                    float(worst["eps_lower_bound"]),
                    MEMBERSHIP,
                    f"max of column eps_lower_bound over rows with finite epsilon "
                    f"(row: {worst['design']}, {worst['force']}, "
                    f"{worst['attack']})",
                ),
                " against a claimed epsilon of ",
                book.add(
                    sid,
                    "MI: claimed epsilon at that row",
                    float(worst["claimed_epsilon"]),
                    MEMBERSHIP,
                    "column claimed_epsilon of the same row",
                ),
                ". ",
            ]
            found["mi_dp_auc"] = float(best["auc"])
            within = dp["eps_lower_bound"].astype(float) <= dp["claimed_epsilon"].astype(float)
            found["mi_within_claim"] = bool(within.all())
            parts += [
                "Bounds within the claimed epsilon: ",
                book.add(
                    sid,
                    "MI on DP models: rows whose bound is within the claim",
                    int(within.sum()),
                    MEMBERSHIP,
                    "rows with finite epsilon and eps_lower_bound <= claimed_epsilon",
                    "count",
                ),
                f" of {len(dp)} (model, force, attack) rows. ",
            ]
        if not nonpriv.empty:
            top = nonpriv.loc[nonpriv["auc"].idxmax()]
            parts += [
                "Non-private reference: best AUC ",
                book.add(
                    sid,
                    "MI on non-private models: highest AUC",
                    top["auc"],
                    MEMBERSHIP,
                    f"max of column auc over rows with epsilon inf "
                    f"(row: {top['design']}, {top['force']}, {top['attack']})",
                ),
                ".",
            ]
        auc = found.get("mi_dp_auc", 0.5)
        likelihood = "remote" if auc < 0.55 else "possible" if auc < 0.65 else "probable"
        risk(
            "membership",
            "Membership inference: learning that a vehicle was in a force's "
            "data (i.e. was read by its cameras in the window)",
            parts,
            likelihood,
            "significant",
        )
    else:
        risk(
            "membership",
            "Membership inference: learning that a vehicle was in a force's data",
            ["membership-inference audit not run"],
            "possible",
            "significant",
        )
    # False alerts.
    apt = found.get("alerts_per_tp")
    if apt is not None:
        risk(
            "false-alerts",
            "Innocent drivers flagged (false alerts)",
            [
                "federated model at realistic prevalence: ",
                book.add(
                    sid,
                    "alerts per true positive (risk)",
                    apt,
                    METRICS,
                    "row design=federated, force=all forces; column alerts_per_tp_realistic",
                ),
                " alerts per true positive; ",
                book.add(
                    sid,
                    "false alerts per million (risk)",
                    found["false_per_million"],
                    METRICS,
                    "row design=federated, force=all forces; column "
                    "false_alerts_per_million_realistic",
                    "count",
                ),
                " false alerts per million vehicles",
                (
                    " (the federated model shows no skill in this run: its interval includes "
                    "chance, so these are the figures of a random ranking)"
                    if found.get("verdicts", {}).get("federated") == "no skill"
                    else ""
                ),
            ],
            "probable" if apt > 10 else "possible",
            "significant",
        )
    # Disparity.
    if "disparity_fa_ratio" in found:
        ratio = found["disparity_fa_ratio"]
        gap = found["disparity_recall_gap"]
        uneven = (not math.isfinite(ratio)) or ratio > 1.25 or ratio < 0.8 or gap > 0.1
        risk(
            "disparity",
            "Unequal accuracy between urban and rural areas",
            [
                "false-alert ratio urban/rural ",
                book.add(sid, "false-alert ratio (risk)", ratio, METRICS, "see section 4", "ratio"),
                ", recall gap ",
                book.add(sid, "recall gap (risk)", gap, METRICS, "see section 4"),
            ],
            "probable" if uneven else "possible",
            "significant",
        )
    # Retention.
    if checks:
        bad = [c for c in checks if not (c.compliant and c.log_ok)]
        risk(
            "retention",
            "Reads kept beyond the retention period, or deletion not evidenced",
            [
                book.add(
                    sid,
                    "stores compliant and purge log verified",
                    len(checks) - len(bad),
                    checks[0].sources[0] if checks[0].sources else MANIFEST,
                    "store checks (section 6)",
                    "count",
                ),
                " of ",
                str(len(checks)),
                " stores compliant with a verified purge log",
            ],
            "remote" if not bad else "probable",
            "significant",
        )
    else:
        risk(
            "retention",
            "Reads kept beyond the retention period",
            ["store checks not run"],
            "possible",
            "significant",
        )
    risk(
        "locations",
        "Camera locations revealed through the model",
        ["features are location-free; only the contract's arrays and scalars leave a force"],
        "remote",
        "significant",
    )
    risk(
        "rng",
        "DP guarantee weakened by a non-cryptographic random source",
        [
            "Opacus secure mode is off (no torchcsprng wheel on this platform); noise is "
            "seeded from each force's OS CSPRNG, and a deployed force refuses a training seed "
            "chosen by the server (docs/residual-risks.md R1)"
        ],
        "possible",
        "significant",
    )
    risk(
        "server",
        "The national server probes a force (hostile run config, crafted model)",
        [
            "each force's own privacy policy fixes its budget, delta, minimum noise, sample "
            "rate, evaluate cap and test-fraction range; every scalar a force returns is a DP "
            "release charged to its ledger (docs/residual-risks.md R0; tests/adversarial)",
            "this run is a simulation: its forces allowed simulation-only settings (separate "
            "ledger scopes per sweep point), which a deployed force refuses",
        ],
        "remote",
        "significant",
    )
    risk(
        "composition",
        "A vehicle read by several forces is covered by several budgets",
        [
            "per-force guarantees; a vehicle in k forces' data has at most the sum of their "
            "epsilons (docs/residual-risks.md R3)"
        ],
        "possible",
        "significant",
    )
    s.add(
        Para(
            [
                "Likelihood, severity and overall risk below are suggested from the measured "
                "evidence by fixed rules (overall = likelihood x severity on the ICO's "
                "three-point scales); the assessor must confirm or change each rating."
            ]
        )
    )
    s.add(
        Table(
            "Risks to individuals",
            ["risk", "evidence from this run", "likelihood", "severity", "overall"],
            [
                [r["name"], *_join(r["evidence"]), r["likelihood"], r["severity"], r["overall"]]
                for r in risks
            ],
        )
    )
    rel = "plots/membership_inference_roc.png"
    if run.has(rel):
        book.hash_file(rel)
        s.add(
            Figure(
                id="fig-membership",
                title="Membership inference ROC",
                png=(run.root / rel).read_bytes(),
                caption="Members found against non-members falsely flagged, log-log; "
                "the dash-dot diagonal is chance; colour = force, line style = attack. From "
                "the privacy audit.",
                sources=[rel, MEMBERSHIP],
            )
        )
    elif mi.empty:
        s.add(
            Missing(
                "the membership-inference audit (privacy/membership_inference.csv)",
                "run `anprfed privacy audit RUN_DIR`",
            )
        )
    s.add(*canary_blocks(run.root, book, sid))
    if not run.reid:
        s.add(
            Missing(
                "the re-identification demonstration (privacy/reid.json)",
                "run `anprfed privacy reid-demo --out RUN_DIR/privacy`",
            )
        )
    s.add(
        person(
            "risk-ratings",
            "DPIA owner",
            "Confirm or change each suggested rating; add risks specific to the "
            "deployment (e.g. insider misuse, onward sharing of alerts).",
        )
    )
    return risks


def _join(parts: list[Part]) -> list[Part]:
    """A table cell made of several parts: wrapped as one list item for the renderers."""
    return [parts]  # type: ignore[list-item]
