"""Ground truth, written ONLY under ``DIR/truth/`` (never inside a force export)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from research.synth.behaviours import BACKGROUND_BEHAVIOURS, OFFENCE_BEHAVIOURS, VEHICLE_CLASSES
from research.synth.geography import Geography
from research.synth.population import Population

LABELS_SCHEMA = pa.schema(
    [
        pa.field("vrm", pa.string(), nullable=False),
        pa.field("behaviour", pa.string(), nullable=False),
        pa.field("offence_start", pa.date32(), nullable=False),
        pa.field("offence_end", pa.date32(), nullable=False),
        pa.field("conviction_date", pa.date32(), nullable=False),
    ]
)
VEHICLES_SCHEMA = pa.schema(
    [
        pa.field("vrm", pa.string(), nullable=False),
        pa.field("vehicle_class", pa.string(), nullable=False),
        pa.field("home_force", pa.string(), nullable=False),
        pa.field("home_town", pa.string(), nullable=False),
        pa.field("behaviour", pa.string(), nullable=False),
        pa.field("background_behaviour", pa.string(), nullable=False),
        pa.field("offending", pa.bool_(), nullable=False),
    ]
)


def _dates(start: date, days: np.ndarray) -> pa.Array:
    epoch = (start - date(1970, 1, 1)).days
    return pa.array((epoch + days).astype(np.int32), type=pa.date32())


def write_truth(folder: Path, pop: Population, geo: Geography, start: date) -> None:
    """Write ``labels.parquet`` (offenders: behaviour, offence period inclusive, conviction
    date) and ``vehicles.parquet`` (every vehicle: class, home, behaviour), sorted by VRM."""
    folder.mkdir(parents=True, exist_ok=True)
    off = pop.offenders
    order = np.argsort(pop.vrm[off.vehicle].astype(str), kind="stable")
    labels = pa.table(
        [
            pa.array(pop.vrm[off.vehicle][order].tolist(), pa.string()),
            pa.array(
                np.array(OFFENCE_BEHAVIOURS, dtype=object)[off.behaviour[order]].tolist(),
                pa.string(),
            ),
            _dates(start, off.start_day[order]),
            _dates(start, off.end_day[order]),
            _dates(start, off.conviction_day[order]),
        ],
        schema=LABELS_SCHEMA,
    )
    pq.write_table(labels, folder / "labels.parquet", compression="zstd")
    vorder = np.argsort(pop.vrm.astype(str), kind="stable")
    bg = np.array(BACKGROUND_BEHAVIOURS, dtype=object)[pop.background[vorder]]
    offending = pop.offence[vorder] >= 0
    behaviour = np.where(
        offending,
        np.array(OFFENCE_BEHAVIOURS, dtype=object)[np.maximum(pop.offence[vorder], 0)],
        bg,
    )
    slugs = np.array([f.slug for f in geo.forces], dtype=object)
    names = np.array(geo.node_name, dtype=object)
    vehicles = pa.table(
        [
            pa.array(pop.vrm[vorder].tolist(), pa.string()),
            pa.array(
                np.array(VEHICLE_CLASSES, dtype=object)[pop.vclass[vorder]].tolist(), pa.string()
            ),
            pa.array(slugs[geo.node_force[pop.home[vorder]]].tolist(), pa.string()),
            pa.array(names[pop.home[vorder]].tolist(), pa.string()),
            pa.array(behaviour.tolist(), pa.string()),
            pa.array(bg.tolist(), pa.string()),
            pa.array(offending, pa.bool_()),
        ],
        schema=VEHICLES_SCHEMA,
    )
    pq.write_table(vehicles, folder / "vehicles.parquet", compression="zstd")
