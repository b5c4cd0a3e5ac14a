"""Shared helpers of the DPIA sections: the run's facts as evidence, ratings, person fields.

:class:`Facts` selects rows of the run's tables and records every value it hands out in the
:class:`~research.dpia.evidence.EvidenceBook`, with the file and rows it came from.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from research.dpia.blocks import PersonField
from research.dpia.evidence import REFERENCE, EvidenceBook, EvidenceItem
from research.dpia.run_folder import ALL_FORCES, MANIFEST, METRICS, RunFolder

LFR_SCANNED = 144_366
LFR_ARRESTS = 8
LFR_SOURCE = (
    REFERENCE + " Computer Weekly on the Metropolitan Police's live facial recognition "
    "deployments (context document 003): 144,366 people scanned, 8 arrests"
)
LIKELIHOOD = ("remote", "possible", "probable")
SEVERITY = ("minimal", "significant", "severe")


def rate(likelihood: str, severity: str) -> str:
    """ICO overall risk: likelihood (1-3) x severity (1-3): <= 2 low, <= 4 medium, else high."""
    score = (LIKELIHOOD.index(likelihood) + 1) * (SEVERITY.index(severity) + 1)
    return "low" if score <= 2 else "medium" if score <= 4 else "high"


def eps_text(eps: float) -> str:
    """An epsilon as text (\"non-private\" for infinity)."""
    return "non-private" if math.isinf(eps) else f"{eps:g}"


class Facts:
    """Selects rows of the run's tables and records each value used as evidence."""

    def __init__(self, run: RunFolder, book: EvidenceBook) -> None:
        self.run = run
        self.book = book
        self.eps = run.main_epsilon
        self.window = run.main_retention
        self._metric_items: dict[tuple[str, str, str], EvidenceItem] = {}

    # -- metrics -----------------------------------------------------------------------------
    def metric_row(self, design: str, force: str = ALL_FORCES) -> pd.Series | None:
        m = self.run.metrics
        eps = math.inf if _once(design) else self.eps
        rows = m[
            (m["design"] == design) & (m["force"] == force) & (m["retention_days"] == self.window)
        ]
        rows = rows[rows["epsilon"].map(lambda e: e == eps or (math.isinf(e) and math.isinf(eps)))]
        return None if rows.empty else rows.iloc[0]

    def metric(
        self,
        section: str,
        design: str,
        column: str,
        label: str,
        force: str = ALL_FORCES,
        kind: str = "number",
    ) -> EvidenceItem | str:
        key = (design, force, column)
        if key in self._metric_items:
            return self._metric_items[key]
        row = self.metric_row(design, force)
        if row is None or column not in row:
            return "n/a"
        eps = "inf" if _once(design) else f"{self.eps:g}"
        item = self.book.add(
            section,
            label,
            row[column],
            METRICS,
            f"row design={design}, epsilon={eps}, retention_days={self.window}, force={force}; "
            f"column {column}",
            kind,
        )
        self._metric_items[key] = item
        return item

    # -- json --------------------------------------------------------------------------------
    def manifest(self, section: str, label: str, pointer: str, kind: str = "number") -> Any:
        value: Any = self.run.manifest
        for key in pointer.strip("/").split("/"):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return "n/a"
        return self.book.add(section, label, value, MANIFEST, f"JSON pointer {pointer}", kind)

    def designs(self) -> list[str]:
        order = ("public-start", "local-only", "federated", "pooled")
        present = set(self.run.metrics["design"])
        return [d for d in order if d in present]

    # -- ledger ------------------------------------------------------------------------------
    def ledger_final(self, design: str) -> pd.DataFrame:
        """Per force: the last ledger row of the headline sweep point (cumulative epsilon)."""
        led = self.run.ledger
        if led.empty:
            return led
        rows = led[
            (led["design"] == design)
            & (led["retention_days"] == self.window)
            & (led["target_epsilon"] == self.eps)
        ]
        if rows.empty:
            return rows
        last = rows.sort_values("round").groupby("force", sort=False).tail(1)
        steps = rows.groupby("force")["steps"].sum().rename("total_steps")
        rounds = rows.groupby("force")["round"].nunique().rename("rounds")
        return last.merge(steps, left_on="force", right_index=True).merge(
            rounds, left_on="force", right_index=True
        )


def person(id_: str, role: str, prompt: str) -> PersonField:
    """A field only a person can fill."""
    return PersonField(id=id_, role=role, prompt=prompt)


def _once(design: str) -> bool:
    """A design the study runs once per window, without DP (``pooled``, ``public-start``)."""
    from research.study.designs import get_design
    from research.study.designs.registry import UnknownDesignError

    try:
        return not get_design(design).private
    except UnknownDesignError:
        return design == "pooled"
