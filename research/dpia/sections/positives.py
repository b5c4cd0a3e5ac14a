"""Necessity, continued: how many labelled positives the forces would need together.

The N8 report could not say how much data a working model needs. When the run holds the
positives sweep (``anprfed study run`` with a ``[positives]`` section), this block puts its
answer in the necessity section: per design, the smallest number of training positives from
which PR-AUC beats chance with its whole 95% interval (and reaches 5 x chance), with the plot.
Without the sweep, it says the evidence is absent and how to produce it.
"""

from __future__ import annotations

import math

import pandas as pd

from research.dpia.blocks import Figure, Heading, Missing, Para, Section, Table
from research.dpia.sections.facts import Facts

NEEDED = "positives_needed.csv"
POINTS = "positives_sweep.csv"
PLOT = "plots/positives_needed.png"


def _count(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "not reached"
    return str(int(number)) if math.isfinite(number) else "not reached"


def positives_needed(f: Facts, s: Section) -> None:
    """Add the sweep's answer (table, plot, plain reading) to section ``s``."""
    run, book, sid = f.run, f.book, s.id
    s.add(Heading("How many positives are needed"))
    if not run.has(NEEDED):
        s.add(
            Missing(
                "the positives sweep (positives_needed.csv): how many labelled positives a "
                "design needs before it beats chance",
                "add a [positives] section to the study spec (see docs/study-guide.md) and run "
                "`anprfed study run SPEC`",
            )
        )
        return
    needed = pd.read_csv(run.root / NEEDED)
    points = pd.read_csv(run.root / POINTS) if run.has(POINTS) else pd.DataFrame()
    rows = []
    for r in needed.to_dict("records"):
        design = str(r["design"])
        loc = f"row design={design}; column "
        rows.append(
            [
                design,
                book.add(
                    sid, f"{design}: sweep points", r["points"], NEEDED, loc + "points", "count"
                ),
                f"{int(r['train_positives_min'])}–{int(r['train_positives_max'])}",
                book.add(
                    sid,
                    f"{design}: training positives from which it beats chance",
                    _count(r["min_positives_beats_chance"]),
                    NEEDED,
                    loc + "min_positives_beats_chance",
                    "text",
                ),
                book.add(
                    sid,
                    f"{design}: training positives from which it reaches 5 x chance",
                    _count(r["min_positives_5x_chance"]),
                    NEEDED,
                    loc + "min_positives_5x_chance",
                    "text",
                ),
            ]
        )
    s.add(
        Table(
            "Training positives needed per design (sweep over prevalence, retention window "
            "and forces taking part)",
            ["design", "points", "positives tried", "beats chance from", "5 x chance from"],
            rows,
        )
    )
    if run.has(PLOT):
        s.add(
            Figure(
                id="fig-positives-needed",
                title="Lift over chance against training positives",
                png=(run.root / PLOT).read_bytes(),
                caption="Each point is one design trained on the positives available at one "
                "prevalence, retention window and set of forces; bars are 95% bootstrap "
                "intervals over held-out vehicles; chance is lift 1.",
                sources=[POINTS, NEEDED],
            )
        )
    federated = needed[needed["design"] == "federated"]
    reading = [
        "Read this as the evidence the N8 report lacked: how many labelled (convicted, still "
        "retained) positives the forces would need between them before a model ranks "
        "offending vehicles better than chance. 'Beats chance from N' means every point of "
        "the sweep with N or more training positives had its whole 95% interval above the "
        "held-out prevalence. "
    ]
    if not federated.empty and not math.isfinite(
        float(federated.iloc[0]["min_positives_beats_chance"])
    ):
        reading.append(
            "In this run the federated design did not beat chance at any size tried: the run "
            "does not show how many positives would be enough."
        )
    if not points.empty and bool(points.get("few_positives", pd.Series(dtype=bool)).any()):
        reading.append(
            " Some points rest on fewer than 20 held-out positives; their intervals are wide."
        )
    s.add(Para(reading))
