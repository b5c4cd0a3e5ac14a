"""Evidence items: every number in the DPIA, with the run-folder file it came from.

Each item has an id (``E001``...), the section that cites it, what it is, its value, how it is
shown, the *source* (a path relative to the run folder, or ``reference:`` for a published
figure quoted for comparison) and a *locator* saying which rows and column of that file hold
it. ``evidence.json`` lists every item and the SHA-256 of every source file, so a reader can
check each figure against the file it came from, and notice if a file changed since.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REFERENCE = "reference:"


@dataclass(frozen=True)
class EvidenceItem:
    """One cited fact."""

    id: str
    section: str
    label: str
    value: Any
    display: str
    source: str
    locator: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats as strings)."""
        data = asdict(self)
        v = data["value"]
        if isinstance(v, float) and not math.isfinite(v):
            data["value"] = "inf" if v > 0 else ("-inf" if v < 0 else "nan")
        return data


def format_value(value: Any, kind: str = "number") -> str:
    """How a value is shown: counts with separators, rates as %, small figures to 3 s.f."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if kind == "count":
        return f"{round(v):,}"
    if kind == "percent":
        return f"{100 * v:.3g}%"
    if kind == "ratio":
        return f"{v:.2f}×"
    if abs(v) >= 1e4:
        return f"{round(v):,}"
    if v == int(v) and abs(v) < 1e4:
        return f"{int(v)}"
    return f"{v:.3g}"


class EvidenceBook:
    """Collects evidence items for one run folder and hashes their source files."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.items: list[EvidenceItem] = []
        self._hashes: dict[str, dict[str, Any]] = {}

    def add(
        self,
        section: str,
        label: str,
        value: Any,
        source: str,
        locator: str,
        kind: str = "number",
        display: str | None = None,
    ) -> EvidenceItem:
        """Record a fact; ``source`` is relative to the run folder (or ``reference:...``)."""
        if not source.startswith(REFERENCE):
            self.hash_file(source)
        if hasattr(value, "item"):
            value = value.item()
        item = EvidenceItem(
            id=f"E{len(self.items) + 1:03d}",
            section=section,
            label=label,
            value=value,
            display=display if display is not None else format_value(value, kind),
            source=source,
            locator=locator,
        )
        self.items.append(item)
        return item

    def hash_file(self, source: str) -> None:
        """Record the SHA-256 and size of a run-folder file (it must exist)."""
        if source in self._hashes:
            return
        path = self.run_dir / source
        if not path.is_file():
            raise FileNotFoundError(f"evidence source {source} is not a file in {self.run_dir}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self._hashes[source] = {"sha256": digest, "bytes": path.stat().st_size}

    @property
    def source_files(self) -> dict[str, dict[str, Any]]:
        """Every source file cited, with its hash and size."""
        return dict(sorted(self._hashes.items()))

    def to_json(self) -> dict[str, Any]:
        """The ``evidence.json`` body (without the report-level header)."""
        return {
            "items": [i.to_dict() for i in self.items],
            "source_files": self.source_files,
        }
