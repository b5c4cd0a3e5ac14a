"""Render the DPIA as a self-contained HTML page (Jinja2) and as Markdown.

The HTML embeds its PNG figures as ``data:`` URIs and its CSS inline (with a print stylesheet
for A4), and its Content-Security-Policy forbids loading anything else, so the page is one
file that renders the same anywhere and prints to a readable PDF. Every evidence value links
to its row in the evidence index at the end; fields for a person are boxed and labelled.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from research.dpia.blocks import (
    Bullets,
    Figure,
    Heading,
    Missing,
    Para,
    PersonField,
    Table,
)
from research.dpia.content import DpiaContent
from research.dpia.evidence import EvidenceItem

PERSON_LABEL = "FOR A PERSON TO COMPLETE"
_CODE = re.compile(r"`([^`]+)`")

CSS = """
:root { --ink: #1a1a1a; --muted: #5a5a5a; --line: #c8c8c8; --accent: #1b5e8c; }
* { box-sizing: border-box; }
body { font: 15px/1.5 "DejaVu Sans", Arial, sans-serif; color: var(--ink); margin: 0;
       background: #fff; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.7em; margin: 0 0 .2em; }
h2 { font-size: 1.35em; border-bottom: 2px solid var(--accent); padding-bottom: .2em;
     margin-top: 2em; }
h3 { font-size: 1.08em; margin: 1.4em 0 .4em; color: var(--accent); }
.meta { color: var(--muted); font-size: .9em; }
nav.toc { border: 1px solid var(--line); padding: 8px 16px; margin: 16px 0; background: #fafafa; }
nav.toc ol { margin: 4px 0; }
.notice { border-left: 4px solid #b2182b; background: #fdf3f3; padding: 8px 12px; }
table { border-collapse: collapse; width: 100%; margin: .6em 0 1.2em; font-size: .86em; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border: 1px solid var(--line); padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #eef3f7; }
.ev { font-weight: 600; white-space: nowrap; }
sup.ref { font-size: .68em; color: var(--muted); }
sup.ref a { color: var(--muted); text-decoration: none; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); display: block; }
figcaption { font-size: .86em; color: var(--muted); margin-top: 4px; }
.person-field { border: 2px dashed #b2182b; background: #fffaf0; padding: 8px 12px;
                margin: 1em 0; }
.person-field .who { font-weight: bold; color: #b2182b; letter-spacing: .02em; }
.person-field .answer { min-height: 3.2em; border-bottom: 1px solid #999; margin-top: 6px; }
.missing { border-left: 4px solid #e08214; background: #fff7ec; padding: 6px 12px;
           margin: 1em 0; }
code { font-size: .92em; }
.appendix td { font-size: .92em; word-break: break-word; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  section.dpia-section, section.appendix { break-before: page; }
  h2, h3 { break-after: avoid; }
  figure, table, .person-field, .missing { break-inside: avoid; }
  figure img { max-height: 150mm; width: auto; max-width: 100%; }
  table { font-size: 7.5pt; }
  th, td { padding: 2px 3px; overflow-wrap: anywhere; }
  a { color: inherit; text-decoration: none; }
  th { background: #eee !important; -webkit-print-color-adjust: exact;
       print-color-adjust: exact; }
}
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{ c.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<header>
<h1>{{ c.title }}</h1>
<p class="meta">Generated {{ c.generated_at }} by <code>anprfed dpia report</code> from the
results folder <code>{{ c.run_dir }}</code>. Every figure is traceable: each value links to the
evidence index, which names the run-folder file and rows it came from
(<code>evidence.json</code> holds the same with file hashes).</p>
<p class="notice">Structured under the ICO's DPIA template. Boxes marked
<strong>{{ person_label }}</strong> can only be completed by the named person; risk ratings are
suggestions from the measurements, for the assessor to confirm.</p>
</header>
<nav class="toc"><strong>Contents</strong><ol>
{% for s in c.sections %}<li><a href="#{{ s.id }}">{{ s.title }}</a></li>
{% endfor %}</ol><a href="#evidence-index">Evidence index</a></nav>
{% for s in c.sections %}
<section class="dpia-section" id="{{ s.id }}">
<h2>{{ s.number }}. {{ s.title }}</h2>
{% for b in s.blocks %}{{ block(b) }}
{% endfor %}
</section>
{% endfor %}
<section class="appendix" id="evidence-index">
<h2>Evidence index</h2>
<table><thead><tr><th>id</th><th>fact</th><th>value</th><th>source file</th><th>where in it</th>
</tr></thead><tbody>
{% for e in c.book.items %}<tr id="ev-{{ e.id }}"><td>{{ e.id }}</td><td>{{ e.label }}</td>
<td>{{ e.display }}</td><td><code>{{ e.source }}</code></td><td>{{ e.locator }}</td></tr>
{% endfor %}</tbody></table>
<h3>Source files</h3>
<table><thead><tr><th>file (relative to the run folder)</th><th>bytes</th><th>SHA-256</th></tr>
</thead><tbody>
{% for path, info in c.book.source_files.items() %}<tr><td><code>{{ path }}</code></td>
<td>{{ info.bytes }}</td><td><code>{{ info.sha256 }}</code></td></tr>
{% endfor %}</tbody></table>
</section>
</main>
</body>
</html>
"""


def _ev_html(item: EvidenceItem) -> str:
    title = html.escape(f"{item.id}: {item.label}; source {item.source}; {item.locator}")
    return (
        f'<span class="ev" data-evidence="{item.id}" title="{title}">'
        f"{html.escape(item.display)}</span>"
        f'<sup class="ref"><a href="#ev-{item.id}">{item.id}</a></sup>'
    )


def _text_html(text: str) -> str:
    """Escaped text; `backticked` spans become <code>, as in the Markdown."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


def _parts_html(parts: Any) -> str:
    if isinstance(parts, EvidenceItem):
        return _ev_html(parts)
    if isinstance(parts, str):
        return _text_html(parts)
    return "".join(_parts_html(p) for p in parts)


def _block_html(block: Any, figure_numbers: dict[str, int]) -> str:
    if isinstance(block, Para):
        return f"<p>{_parts_html(block.parts)}</p>"
    if isinstance(block, Heading):
        return f"<h3>{html.escape(block.text)}</h3>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_parts_html(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{_parts_html(c)}</td>" for c in row) + "</tr>"
            for row in block.rows
        )
        return (
            f"<table><caption>{html.escape(block.caption)}</caption><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table>"
        )
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        n = figure_numbers[block.id]
        sources = ", ".join(f"<code>{html.escape(s)}</code>" for s in block.sources)
        return (
            f'<figure id="{block.id}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(block.title)}"><figcaption><strong>Figure {n}: '
            f"{html.escape(block.title)}.</strong> {html.escape(block.caption)} "
            f"Source files: {sources}.</figcaption></figure>"
        )
    if isinstance(block, PersonField):
        return (
            f'<div class="person-field" data-person-field="{block.id}">'
            f'<div class="who">{PERSON_LABEL}: {html.escape(block.role)}</div>'
            f'<div>{html.escape(block.prompt)}</div><div class="answer"></div></div>'
        )
    if isinstance(block, Missing):
        return (
            f'<div class="missing"><strong>Evidence not in this run folder:</strong> '
            f"{_text_html(block.what)}. To produce it: {_text_html(block.how)}.</div>"
        )
    raise TypeError(f"unknown block {type(block).__name__}")


def figure_numbers(content: DpiaContent) -> dict[str, int]:
    """Figure id -> its number in document order."""
    return {f.id: i + 1 for i, f in enumerate(content.figures)}


def render_html(content: DpiaContent) -> str:
    """The self-contained HTML page."""
    numbers = figure_numbers(content)
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(PAGE)
    return template.render(
        c=content,
        css=Markup(CSS),
        person_label=PERSON_LABEL,
        block=lambda b: Markup(_block_html(b, numbers)),
    )


# ------------------------------------------------------------------------------ markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _parts_md(parts: Any) -> str:
    if isinstance(parts, EvidenceItem):
        return f"**{parts.display}** [{parts.id}]"
    if isinstance(parts, str):
        return parts
    return "".join(_parts_md(p) for p in parts)


def _block_md(block: Any, numbers: dict[str, int]) -> str:
    if isinstance(block, Para):
        return _parts_md(block.parts)
    if isinstance(block, Heading):
        return f"### {block.text}"
    if isinstance(block, Bullets):
        return "\n".join(f"- {_parts_md(i)}" for i in block.items)
    if isinstance(block, Table):
        lines = [
            f"*{block.caption}*",
            "",
            "| " + " | ".join(block.headers) + " |",
            "|" + "---|" * len(block.headers),
        ]
        lines += [
            "| " + " | ".join(_md_escape(_parts_md(c)) for c in row) + " |" for row in block.rows
        ]
        return "\n".join(lines)
    if isinstance(block, Figure):
        return (
            f"![Figure {numbers[block.id]}: {block.title}]({block.file})\n\n"
            f"*Figure {numbers[block.id]}: {block.title}.* {block.caption} Source files: "
            + ", ".join(f"`{s}`" for s in block.sources)
            + "."
        )
    if isinstance(block, PersonField):
        return (
            f"> **{PERSON_LABEL}: {block.role}** <!-- person-field: {block.id} -->\n>\n"
            f"> {block.prompt}\n>\n> ______________________________________________"
        )
    if isinstance(block, Missing):
        return f"> **Evidence not in this run folder:** {block.what}. To produce it: {block.how}."
    raise TypeError(f"unknown block {type(block).__name__}")


def render_markdown(content: DpiaContent) -> str:
    """The same document as Markdown (figures as relative links to ``figures/*.png``)."""
    numbers = figure_numbers(content)
    out = [
        f"# {content.title}",
        "",
        f"Generated {content.generated_at} by `anprfed dpia report` from `{content.run_dir}`. "
        "Each value is followed by its evidence id; the evidence index at the end (and "
        "`evidence.json`) names the run-folder file and rows it came from.",
        "",
        f"Structured under the ICO's DPIA template. Blocks marked **{PERSON_LABEL}** can only "
        "be completed by the named person; risk ratings are suggestions to confirm.",
        "",
    ]
    for s in content.sections:
        out += [f'<a id="{s.id}"></a>', "", f"## {s.number}. {s.title}", ""]
        for b in s.blocks:
            out += [_block_md(b, numbers), ""]
    out += [
        '<a id="evidence-index"></a>',
        "",
        "## Evidence index",
        "",
        "| id | fact | value | source file | where in it |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {e.id} | {_md_escape(e.label)} | {_md_escape(e.display)} | `{e.source}` | "
        f"{_md_escape(e.locator)} |"
        for e in content.book.items
    ]
    out += ["", "| source file | bytes | SHA-256 |", "|---|---|---|"]
    out += [
        f"| `{p}` | {i['bytes']} | `{i['sha256']}` |" for p, i in content.book.source_files.items()
    ]
    return "\n".join(out) + "\n"
