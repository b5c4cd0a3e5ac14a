"""The study's synthetic world: generate it once, reuse it, and read the simulation's truth.

The truth (who offends, when, and when they are convicted) is the researcher's view of the
simulation. The runner hands each force only what a real force would hold: its own conviction
log (convictions known by the study date, for vehicles its cameras read) and, for evaluation
only, which of its vehicles truly offended in the study window.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.progress import Progress

from research.study.spec import WorldSpec

WORLD_SETTINGS_FILE = "study-world.json"


def _world_settings(world: WorldSpec) -> dict[str, object]:
    data = asdict(world)
    data["start"] = world.start.isoformat()
    return data


def ensure_world(world: WorldSpec, directory: Path, progress: Progress | None = None) -> Path:
    """Generate the world into ``directory`` unless one with the same settings is already there."""
    from research.synth.config import WorldConfig
    from research.synth.world import generate_world

    marker = directory / WORLD_SETTINGS_FILE
    wanted = _world_settings(world)
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
        return directory
    config = WorldConfig(
        preset=world.preset,
        vehicles=world.vehicles,
        days=world.days,
        start=world.start,
        prevalence=world.prevalence,
        seed=world.seed,
    )
    callback = None
    if progress is not None:
        task = progress.add_task("synthesise world (days)", total=world.days)

        def callback(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

    generate_world(config, directory, progress=callback, overwrite=True)
    marker.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    return directory


def force_names(world_dir: Path) -> list[str]:
    """The forces of a generated world, in a stable order."""
    return sorted(p.name for p in (world_dir / "forces").iterdir() if p.is_dir())


def study_forces(world_dir: Path, wanted: tuple[str, ...] = ()) -> list[str]:
    """The forces taking part: ``wanted`` (in the world's order), or every force if empty.

    Raises ``ValueError`` naming any wanted force the world does not have.
    """
    names = force_names(world_dir)
    if not wanted:
        return names
    unknown = [f for f in wanted if f not in names]
    if unknown:
        raise ValueError(
            f"force(s) {', '.join(repr(f) for f in unknown)} not in the world "
            f"(its forces: {', '.join(names)})"
        )
    return [f for f in names if f in wanted]


def forces_by_size(world_dir: Path) -> list[str]:
    """The world's forces, most reads first (ties by name): the order the positives sweep
    adds forces in."""
    sizes = {}
    for force in force_names(world_dir):
        path = reads_file(world_dir, force)
        if path.suffix == ".parquet":
            sizes[force] = pq.ParquetFile(path).metadata.num_rows
        else:
            with path.open("rb") as handle:
                sizes[force] = sum(1 for _ in handle) - 1
    return sorted(sizes, key=lambda f: (-sizes[f], f))


def export_dir(world_dir: Path, force: str) -> Path:
    """Where a force's raw export (reads and camera register) lies."""
    return world_dir / "forces" / force / "export"


def reads_file(world_dir: Path, force: str) -> Path:
    """The force's reads export (Parquet, or CSV when the world was written as CSV)."""
    folder = export_dir(world_dir, force)
    parquet = folder / "reads.parquet"
    return parquet if parquet.exists() else folder / "reads.csv"


def load_truth(world_dir: Path) -> pd.DataFrame:
    """The planted offenders: ``vrm``, ``behaviour``, offence period and conviction date."""
    truth = pd.read_parquet(world_dir / "truth" / "labels.parquet")
    for column in ("offence_start", "offence_end", "conviction_date"):
        truth[column] = pd.to_datetime(truth[column]).dt.date
    return truth


def offender_reads(world_dir: Path, force: str, offenders: pd.Series) -> pd.DataFrame:
    """The force's raw reads of planted offenders (``vrm``, ``read_at``): simulation view only."""
    path = reads_file(world_dir, force)
    if path.suffix == ".parquet":
        table = pq.read_table(path, columns=["vrm", "read_at"])
    else:
        table = pd.read_csv(path, usecols=["vrm", "read_at"])
        table["read_at"] = pd.to_datetime(table["read_at"], utc=True)
        return table[table["vrm"].isin(set(offenders))].reset_index(drop=True)
    mask = pc.is_in(table["vrm"], value_set=pa.array(offenders.astype(str).tolist(), pa.string()))
    frame = table.filter(mask).to_pandas()
    frame["read_at"] = pd.to_datetime(frame["read_at"], utc=True)
    return frame


def convictions_for(truth: pd.DataFrame, seen_vrms: set[str], as_of: date) -> pd.DataFrame:
    """A force's intelligence log: convictions known by ``as_of`` of vehicles it has read."""
    known = truth[(truth["conviction_date"] <= as_of) & truth["vrm"].isin(seen_vrms)]
    return known[["vrm", "offence_start", "offence_end", "conviction_date"]].reset_index(drop=True)


def offending_in_window(truth: pd.DataFrame, start: date, end: date) -> pd.Series:
    """VRMs whose offence period overlaps ``[start, end)``: the evaluation positives."""
    overlap = (truth["offence_start"] < end) & (truth["offence_end"] >= start)
    return truth.loc[overlap, "vrm"].astype(str)


def window_for(as_of: date, retention_days: int) -> tuple[date, date]:
    """The study window ``[as_of - retention, as_of)``: what a compliant store may hold."""
    return as_of - timedelta(days=retention_days), as_of
