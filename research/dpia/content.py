"""The DPIA's seven sections (ICO template), filled with one run's measured facts.

Every number comes from a run-folder file through :class:`~research.dpia.evidence.EvidenceBook`
(``reference:`` items are published figures quoted for comparison). Judgements that only a
person can make -- consultation, lawful basis, approvals -- are :class:`PersonField` blocks.
Risk ratings are *suggested* from the measurements by the rules in :func:`rate` and marked for
the assessor to confirm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from research.dpia.blocks import SECTION_IDS, SECTION_TITLES, Figure, PersonField, Section
from research.dpia.checks import StoreCheck
from research.dpia.evidence import EvidenceBook
from research.dpia.run_folder import RunFolder
from research.dpia.sections import describe, necessity, outcomes, positives, risks
from research.dpia.sections.facts import Facts, rate

__all__ = ["DpiaContent", "build_content", "rate"]


@dataclass
class DpiaContent:
    """The filled-in document: sections, figures and the evidence behind them."""

    title: str
    run_dir: str
    generated_at: str
    sections: list[Section]
    book: EvidenceBook
    residual_risks: list[dict[str, str]]

    @property
    def figures(self) -> list[Figure]:
        """Every figure, in document order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]

    @property
    def person_fields(self) -> list[PersonField]:
        """Every field left for a person, in document order."""
        return [b for s in self.sections for b in s.blocks if isinstance(b, PersonField)]


def build_content(
    run: RunFolder, checks: list[StoreCheck], now: Callable[[], datetime] | None = None
) -> DpiaContent:
    """Fill the seven ICO sections from a parsed run folder and the store checks."""
    book = EvidenceBook(run.root)
    facts = Facts(run, book)
    sections = [
        Section(id_, i + 1, title)
        for i, (id_, title) in enumerate(zip(SECTION_IDS, SECTION_TITLES, strict=True))
    ]
    by_id = {s.id: s for s in sections}
    describe.need(facts, by_id["need"])
    describe.processing(facts, by_id["processing"])
    describe.consultation(facts, by_id["consultation"])
    found = necessity.necessity(facts, by_id["necessity"])
    positives.positives_needed(facts, by_id["necessity"])  # the positives sweep, if run
    found_risks = risks.risks(facts, by_id["risks"], checks, found)
    outcomes.measures(facts, by_id["measures"], checks, found_risks)
    residual = outcomes.residual_risks(facts, found)
    outcomes.signoff(facts, by_id["signoff"], residual)
    stamp = (now or (lambda: datetime.now(UTC)))().isoformat(timespec="seconds")
    return DpiaContent(
        title=f"Data protection impact assessment: {run.manifest.get('study', 'study')}",
        run_dir=str(run.root),
        generated_at=stamp,
        sections=sections,
        book=book,
        residual_risks=residual,
    )
