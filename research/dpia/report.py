"""Write the DPIA evidence pack of a run: ``dpia.html``, ``dpia.md``, ``evidence.json``, figures.

``write_dpia(run_dir, out_dir, checker)`` reads the run folder (``run_folder``), asks
``checker`` for the retention status of the run's stores (the caller supplies it, because the
checks need the retention package), fills the seven ICO sections (``content``) and renders
them (``render``). PNG figures are embedded in the HTML and also written to
``out_dir/figures/`` for the Markdown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from research.dpia.blocks import SECTION_IDS, PersonField
from research.dpia.checks import StoreCheck, StoreChecker
from research.dpia.content import build_content
from research.dpia.render import render_html, render_markdown
from research.dpia.run_folder import load_run_folder

FORMAT = "anprfed-dpia-evidence/1"


@dataclass(frozen=True)
class DpiaPack:
    """Where the pack was written."""

    html: Path
    markdown: Path
    evidence: Path
    figures: list[Path]


def study_as_of(manifest: dict[str, Any]) -> datetime:
    """The end of the study date (UTC): the instant retention is judged at."""
    day = datetime.fromisoformat(str(manifest.get("as_of"))).date()
    return datetime.combine(day, time.max, tzinfo=UTC)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def write_dpia(
    run_dir: Path,
    out_dir: Path | None = None,
    checker: StoreChecker | None = None,
    now: Callable[[], datetime] | None = None,
) -> DpiaPack:
    """Build the DPIA of ``run_dir`` into ``out_dir`` (default ``run_dir/dpia``)."""
    run = load_run_folder(Path(run_dir))
    out = Path(out_dir) if out_dir is not None else run.root / "dpia"
    out.mkdir(parents=True, exist_ok=True)
    checks: list[StoreCheck] = checker(run.root, study_as_of(run.manifest)) if checker else []
    content = build_content(run, checks, now=now)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    figure_files = []
    for fig in content.figures:
        path = fig_dir / f"{fig.id}.png"
        path.write_bytes(fig.png)
        fig.file = f"figures/{path.name}"
        figure_files.append(path)
    html_path = out / "dpia.html"
    html_path.write_text(render_html(content), encoding="utf-8")
    md_path = out / "dpia.md"
    md_path.write_text(render_markdown(content), encoding="utf-8")
    person: list[dict[str, Any]] = []
    for s in content.sections:
        person += [{"section": s.id, **asdict(b)} for b in s.blocks if isinstance(b, PersonField)]
    evidence = {
        "format": FORMAT,
        "title": content.title,
        "run_dir": str(run.root),
        "generated_at": content.generated_at,
        "sections": [{"id": s.id, "number": s.number, "title": s.title} for s in content.sections],
        "figures": [
            {"id": f.id, "title": f.title, "file": f.file, "sources": f.sources}
            for f in content.figures
        ],
        "person_fields": person,
        "residual_risks": content.residual_risks,
        "store_checks": [asdict(c) for c in checks],
        **content.book.to_json(),
    }
    assert [s["id"] for s in evidence["sections"]] == list(SECTION_IDS)
    ev_path = out / "evidence.json"
    ev_path.write_text(json.dumps(_clean(evidence), indent=2) + "\n", encoding="utf-8")
    return DpiaPack(html=html_path, markdown=md_path, evidence=ev_path, figures=figure_files)
