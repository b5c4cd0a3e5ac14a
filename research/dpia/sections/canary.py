"""The canary audit's figures and its plain-words verdict, for the risks section.

Reads ``privacy/canary_audit_summary.json`` and ``privacy/canary_audit.csv`` written by
``anprfed privacy canary-audit`` (``research.audit.canary_report``). For every audited sweep
point and force the pack shows, side by side, the ledger's claim, the claimed run's one-run
lower bounds (every view: white-box and final-model for gradient canaries, white-box and
black-box for canary vehicles), the noise-free reference's bound, and the verdict
sentence saying whether the claim was tested with power.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from research.dpia.blocks import Block, Heading, Missing, Para, Table

SUMMARY = "privacy/canary_audit_summary.json"
ROWS = "privacy/canary_audit.csv"


def _best(rows: pd.DataFrame, variant: str) -> float:
    picked = rows[rows["variant"] == variant]["eps_lower_bound"].astype(float)
    return float(picked.max()) if not picked.empty else math.nan


def canary_blocks(run_root: Path, book: Any, sid: str) -> list[Block]:
    """Blocks for the canary audit, or a :class:`Missing` saying how to produce it."""
    summary_path, rows_path = Path(run_root) / SUMMARY, Path(run_root) / ROWS
    if not summary_path.is_file() or not rows_path.is_file():
        return [
            Missing(
                "the canary audit of the DP training (privacy/canary_audit_summary.json)",
                "run `anprfed privacy canary-audit RUN_DIR`",
            )
        ]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    rows = pd.read_csv(rows_path)
    table_rows = []
    for audit in summary.get("audits", []):
        mine = rows[
            (rows["design"] == audit["design"])
            & (rows["retention_days"] == audit["retention_days"])
            & (rows["force"] == audit["force"])
            & (rows["epsilon"].astype(float) == float(audit["epsilon"]))
        ]
        where = (
            f"{audit['design']}, eps {audit['epsilon']}, {audit['retention_days']}-day "
            f"retention, {audit['force']}"
        )
        table_rows.append(
            [
                where,
                book.add(
                    sid,
                    f"canary audit ({where}): claimed epsilon",
                    float(audit["claimed_epsilon"]),
                    SUMMARY,
                    "audits[].claimed_epsilon of this sweep point and force",
                ),
                book.add(
                    sid,
                    f"canary audit ({where}): lower bound, claimed run",
                    _best(mine, "claimed"),
                    ROWS,
                    "max eps_lower_bound over the claimed run's rows (every view)",
                ),
                book.add(
                    sid,
                    f"canary audit ({where}): lower bound, noise-free reference",
                    _best(mine, "reference"),
                    ROWS,
                    "max eps_lower_bound over the reference run's rows",
                ),
                audit["verdict"],
            ]
        )
    return [
        Heading("Canary audit of the DP training"),
        Para(
            [
                "Canaries (Dirac gradient canaries in the force's DP-SGD step, or canary "
                "vehicles; see privacy/canary_audit_summary.json) were given to a copy of a "
                "force's data and the force's DP training was rerun; the one-run method "
                "(Steinke, Nasr and Jagielski 2023) turns the guesses of which canaries were "
                "trained on into a lower bound on epsilon. "
                "A noise-free reference run shows whether the audit could have caught a failure."
            ]
        ),
        Table(
            "Canary audit: claim, lower bounds and verdict",
            [
                "sweep point and force",
                "claimed eps",
                "bound (claimed run)",
                "bound (reference)",
                "verdict",
            ],
            table_rows,
        ),
    ]
