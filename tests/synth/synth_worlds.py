"""Configurations and helpers shared by the synth tests (imported by name, not via conftest)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from research.synth.config import WorldConfig

#: Small world: 300 vehicles x 20 days, a few offenders.
SMALL = WorldConfig(vehicles=300, days=20, prevalence=0.02, seed=5, start=date(2025, 3, 3))
#: Many offenders (10%) over four weeks, so every behaviour is planted several times.
SIGNATURES = WorldConfig(vehicles=500, days=28, prevalence=0.1, seed=11)


def read_all_reads(world: Path) -> pd.DataFrame:
    """Every force's reads with a ``force`` column."""
    frames = []
    for path in sorted(world.glob("forces/*/export/reads.parquet")):
        frame = pq.read_table(path).to_pandas()
        frame["force"] = path.parent.parent.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
