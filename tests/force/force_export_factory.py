"""Small, deterministic raw exports for the force tests (and the ingest benchmark).

Shaped like ``anprfed synth`` output: an export ``vrm, camera_id, read_at`` (ISO-8601 UTC) and
a camera register ``camera_id, lat, lon, road_class``. Plates come from
:func:`privacy.plates.random_plates`, so they are valid UK marks; VRMs are written in mixed
spellings (spaces, lower case) to exercise normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from privacy.plates import random_plates

#: The passphrase of the force tests' stores.
PASSPHRASE = "correct horse battery staple"


@dataclass
class Export:
    """Paths and the raw truth of a generated export (the truth stays in test memory)."""

    path: Path
    cameras: Path
    vrms: np.ndarray  # distinct normalised VRMs used
    rows: int
    start: date
    days: int


def camera_register(n: int, seed: int = 0) -> pa.Table:
    """A register of ``n`` cameras in north-west England."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "camera_id": [f"CAM-{i:05d}" for i in range(n)],
            "lat": rng.uniform(53.0, 54.5, n),
            "lon": rng.uniform(-3.2, -2.0, n),
            "road_class": rng.choice(["motorway", "a_road", "urban", "rural"], n),
        }
    )


def spaced(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Write some marks as ``AB12 CDE`` / lower case, as exports do."""
    out = v.astype(object).copy()
    pick = rng.random(len(v))
    for i in np.flatnonzero(pick < 0.2):
        s = out[i]
        out[i] = s[:-3] + " " + s[-3:]
    for i in np.flatnonzero(pick > 0.9):
        out[i] = str(out[i]).lower()
    return out


def make_reads(
    n_vehicles: int,
    reads_per_vehicle: float,
    n_cameras: int,
    start: date,
    days: int,
    seed: int = 0,
    mixed_spelling: bool = True,
    mix: dict[str, float] | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """A clean export table (time-ordered) and the distinct normalised VRMs in it."""
    rng = np.random.default_rng(seed)
    plates = random_plates(rng, n_vehicles, mix, as_of=start)
    n = int(n_vehicles * reads_per_vehicle)
    who = rng.integers(0, n_vehicles, n)
    t0 = int(datetime.combine(start, datetime.min.time(), tzinfo=UTC).timestamp())
    secs = np.sort(rng.integers(t0, t0 + days * 86400, n))
    vrm = plates[who]
    if mixed_spelling:
        vrm = spaced(vrm, rng)
    cams = np.array([f"CAM-{i:05d}" for i in range(n_cameras)], dtype=object)
    table = pa.table(
        {
            "vrm": pa.array(vrm, pa.string()),
            "camera_id": pa.array(cams[rng.integers(0, n_cameras, n)], pa.string()),
            "read_at": pa.array(secs.astype("datetime64[s]"))
            .cast(pa.timestamp("s", tz="UTC"))
            .cast(pa.string()),
        }
    )
    # pyarrow writes "2024-05-01 10:00:00Z"; use the ISO "T" separator like synth does
    iso = pa.compute.replace_substring(table["read_at"], " ", "T")
    return table.set_column(2, "read_at", iso), np.unique(plates[np.unique(who)])


def write_table(table: pa.Table, path: Path) -> Path:
    """Write CSV or Parquet by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def make_export(
    folder: Path,
    n_vehicles: int = 300,
    reads_per_vehicle: float = 6,
    n_cameras: int = 40,
    start: date = date(2024, 5, 1),
    days: int = 3,
    seed: int = 0,
    fmt: str = "csv",
    mix: dict[str, float] | None = None,
) -> Export:
    """Write ``folder/export.<fmt>`` and ``folder/cameras.csv``."""
    table, vrms = make_reads(n_vehicles, reads_per_vehicle, n_cameras, start, days, seed, mix=mix)
    path = write_table(table, folder / f"export.{fmt}")
    cams = write_table(camera_register(n_cameras, seed), folder / "cameras.csv")
    return Export(path, cams, vrms, len(table), start, days)


@dataclass
class MessyExport:
    """A CSV export with every kind of bad row, and where each row should end up."""

    path: Path
    cameras: Path
    rows: int
    expected: dict[str, set[int]]  # reason (or "ok", "duplicate") -> 1-based row numbers
    raw_vrms: set[str]  # every raw VRM string written (for the leak scan)


def make_messy_export(folder: Path, seed: int = 3) -> MessyExport:
    """Clean reads (2024-05-01..03) mixed with bad, duplicate and malformed rows.

    Intended as-of: 2024-06-01 (end of day), retention 365 days.
    """
    import csv

    clean, _ = make_reads(120, 5, 20, date(2024, 5, 1), 3, seed=seed, mixed_spelling=False)
    rows: list[tuple[str, list[str]]] = [
        ("ok", [r["vrm"], r["camera_id"], r["read_at"]]) for r in clean.to_pylist()
    ]
    first = rows[0][1]
    bad: list[tuple[str, list[str]]] = [
        ("non_uk", ["12345", "CAM-00001", "2024-05-02T10:00:00Z"]),
        ("non_uk", ["WDB1234567", "CAM-00002", "2024-05-02T10:00:01Z"]),
        ("unreadable", ["AB?2CDE", "CAM-00001", "2024-05-02T10:00:02Z"]),
        ("unreadable", ["ÄB12CDE", "CAM-00001", "2024-05-02T10:00:03Z"]),
        ("unreadable", ["A", "CAM-00001", "2024-05-02T10:00:04Z"]),
        ("unknown_camera", ["AB12CDE", "CAM-99999", "2024-05-02T10:00:05Z"]),
        ("missing_field", ["", "CAM-00001", "2024-05-02T10:00:06Z"]),
        ("missing_field", ["AB12CDE", "", "2024-05-02T10:00:07Z"]),
        ("missing_field", ["AB12CDE", "CAM-00001", ""]),
        ("missing_field", ["   ", "CAM-00001", "2024-05-02T10:00:08Z"]),
        ("bad_timestamp", ["AB12CDE", "CAM-00001", "yesterday"]),
        ("bad_timestamp", ["AB12CDE", "CAM-00001", "2024-13-01T00:00:00Z"]),
        ("future", ["AB12CDE", "CAM-00001", "2024-06-02T00:00:00Z"]),
        ("future", ["AB12CDE", "CAM-00001", "2030-01-01T00:00:00Z"]),
        ("past_retention", ["AB12CDE", "CAM-00001", "2023-01-01T12:00:00Z"]),
        # as-of 2024-06-02T00:00Z minus 365 days (2024 is a leap year) = 2023-06-03T00:00Z
        ("past_retention", ["AB12CDE", "CAM-00001", "2023-06-02T23:59:59Z"]),
        ("ok", ["AB12CDE", "CAM-00001", "2023-06-03T00:00:00Z"]),  # exactly at the cutoff
        ("ok", ["AB12CDE", "CAM-00001", "2024-06-01T23:59:59Z"]),  # last second before as-of
        ("ok", ["LV51ABC", "CAM-00003", "2024-05-02T11:00:00+01:00"]),  # offset -> UTC
        ("duplicate", list(first)),
        ("duplicate", [first[0].lower()[:-3] + " " + first[0][-3:], first[1], first[2]]),
        ("duplicate", list(rows[5][1])),
        ("duplicate", list(rows[5][1])),
    ]
    rng = np.random.default_rng(seed)
    for item in bad:
        rows.insert(int(rng.integers(1, len(rows))), item)
    # malformed lines (wrong field counts) at fixed places
    malformed_at = [7, len(rows) // 2]
    for at in malformed_at:
        rows.insert(at, ("malformed_row", []))
    path = folder / "messy.csv"
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, set[int]] = {}
    raw: set[str] = set()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["vrm", "camera_id", "read_at"])
        for i, (kind, fields) in enumerate(rows, start=1):
            expected.setdefault(kind, set()).add(i)
            if kind == "malformed_row":
                fh.write(f"MA{i:02d}XYZ,CAM-00001\n" if i % 2 else "ZZ99ZZZ,CAM-00001,a,b\n")
                raw.add(f"MA{i:02d}XYZ" if i % 2 else "ZZ99ZZZ")
            else:
                w.writerow(fields)
                if fields[0].strip():
                    raw.add(fields[0])
    cams = write_table(camera_register(20, seed), folder / "cameras.csv")
    return MessyExport(path, cams, len(rows), expected, raw)
