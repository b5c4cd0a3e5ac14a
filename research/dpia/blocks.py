"""The DPIA document model: sections made of paragraphs, tables, figures and person fields.

Both renderers (HTML and Markdown) walk the same blocks, so the two documents always say the
same thing. Text parts are plain strings or :class:`~research.dpia.evidence.EvidenceItem`s;
an evidence item is shown with its value and linked to its entry in ``evidence.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from research.dpia.evidence import EvidenceItem

Part = str | EvidenceItem
Cell = Part | list[Part]


@dataclass
class Para:
    """A paragraph of text and evidence values."""

    parts: list[Part]


@dataclass
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass
class Bullets:
    """A bulleted list; each item is a list of parts."""

    items: list[list[Part]]


@dataclass
class Table:
    """A table whose cells are parts (or lists of parts)."""

    caption: str
    headers: list[str]
    rows: list[list[Cell]]


@dataclass
class Figure:
    """A PNG figure with the run-folder files it was drawn from."""

    id: str
    title: str
    png: bytes
    caption: str
    sources: list[str]
    file: str = ""  # path of the PNG written next to the report (set by the writer)


@dataclass
class PersonField:
    """Something only a person can provide (consultation, approvals, legal judgements)."""

    id: str
    role: str
    prompt: str


@dataclass
class Missing:
    """Evidence this run folder does not hold yet, and how to produce it."""

    what: str
    how: str


Block = Para | Heading | Bullets | Table | Figure | PersonField | Missing


@dataclass
class Section:
    """One of the ICO DPIA template's seven steps."""

    id: str
    number: int
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        """Append blocks in order."""
        self.blocks.extend(blocks)


SECTION_IDS = ("need", "processing", "consultation", "necessity", "risks", "measures", "signoff")
SECTION_TITLES = (
    "Identify the need for a DPIA",
    "Describe the processing",
    "Consultation process",
    "Assess necessity and proportionality",
    "Identify and assess risks",
    "Identify measures to reduce risk",
    "Sign off and record outcomes",
)
