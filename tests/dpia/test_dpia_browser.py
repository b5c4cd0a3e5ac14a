"""The DPIA's HTML in a real browser: headless Chromium (Debian's package, installed by .ci/run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from headless_chromium import A4_CONTENT_WIDTH_PX, chromium_path, inspect_page

from research.dpia.blocks import SECTION_IDS

CHECK = r"""
(() => {
  const vw = window.innerWidth;
  const wide = [...document.querySelectorAll("table, figure, img, p, h1, h2, h3, .person-field")]
    .filter(e => e.getBoundingClientRect().right > vw + 1)
    .map(e => e.tagName + "#" + (e.id || ""));
  return JSON.stringify({
    sections: [...document.querySelectorAll("section.dpia-section")].map(s => s.id),
    headings: [...document.querySelectorAll("section.dpia-section > h2")].map(h => h.textContent),
    images: [...document.images].map(i => ({
      figure: i.closest("figure") ? i.closest("figure").id : null,
      complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
      shownWidth: i.getBoundingClientRect().width})),
    person: [...document.querySelectorAll("[data-person-field]")].map(e => e.dataset.personField),
    evidence: new Set([...document.querySelectorAll("[data-evidence]")]
      .map(e => e.dataset.evidence)).size,
    viewport: vw, scrollWidth: document.documentElement.scrollWidth, wide,
    tocHidden: getComputedStyle(document.querySelector("nav.toc")).display === "none",
  });
})()
"""


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf))


def test_html_renders_in_headless_chromium_and_prints(dpia_dir: Path) -> None:
    if chromium_path() is None:
        pytest.fail("Chromium is not installed: run `apt-get install chromium` (.ci/run does)")
    evidence = json.loads((dpia_dir / "evidence.json").read_text())
    report = inspect_page(dpia_dir / "dpia.html", CHECK)

    assert report.errors == [], report.errors  # no console error, exception or CSP violation
    screen = report.checks
    assert screen["sections"] == list(SECTION_IDS)
    assert [h.split(". ", 1)[1] for h in screen["headings"]] == [
        s["title"] for s in evidence["sections"]
    ]
    figures = [f["id"] for f in evidence["figures"]]
    assert [i["figure"] for i in screen["images"]] == figures
    for image in screen["images"]:  # every embedded PNG decoded and laid out
        assert image["complete"] and image["naturalWidth"] > 100 and image["naturalHeight"] > 100
        assert image["shownWidth"] > 100
    assert screen["person"] == [f["id"] for f in evidence["person_fields"]]
    assert screen["evidence"] == len(evidence["items"])
    assert not screen["tocHidden"]

    printed = report.print_checks  # A4 print media at the page's content width
    assert printed["viewport"] == A4_CONTENT_WIDTH_PX
    assert printed["wide"] == [] and printed["scrollWidth"] <= A4_CONTENT_WIDTH_PX
    assert printed["tocHidden"]  # the print stylesheet applies
    assert all(i["shownWidth"] <= A4_CONTENT_WIDTH_PX for i in printed["images"])

    assert report.pdf[:5] == b"%PDF-"
    # Each of the seven sections and the evidence index starts on a new page.
    assert _pages(report.pdf) >= len(SECTION_IDS) + 1
    (dpia_dir / "dpia.pdf").write_bytes(report.pdf)
