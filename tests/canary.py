"""Canary VRMs and camera ids: plant them in a force's export, then search bytes for them.

A canary is searched for in every form that would betray it: the raw text, lower case, with a
space (``AB12 CDE``), UTF-16, and the unkeyed MD5 and SHA-256 hex digests of the text (the
founding project's "encryption" was unkeyed MD5), in both hex cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from privacy.plates import random_plates

CANARY_CAMERA_PREFIX = "CANARY-CAM-"


@dataclass(frozen=True)
class Hit:
    """A canary found in a file: the file and the canary (never the bytes around it)."""

    path: Path
    needle: str
    form: str


def forms_of(value: str) -> dict[str, bytes]:
    """Every byte pattern of ``value`` that counts as a leak, by name."""
    forms = {"raw": value.encode("utf-8"), "lower": value.lower().encode("utf-8")}
    if len(value) == 7 and value.isalnum():  # a current-format plate, as printed
        forms["spaced"] = f"{value[:4]} {value[4:]}".encode()
    forms["utf-16"] = value.encode("utf-16-le")
    for name in ("md5", "sha256"):
        digest = hashlib.new(name, value.encode("utf-8")).hexdigest()
        forms[name] = digest.encode("ascii")
        forms[f"{name}-upper"] = digest.upper().encode("ascii")
    return forms


def files_under(paths: Iterable[Path]) -> Iterable[Path]:
    """Every regular file at or under ``paths`` (symlinks are not followed)."""
    for path in map(Path, paths):
        if path.is_file() and not path.is_symlink():
            yield path
        elif path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink())


def scan_for(paths: Iterable[Path], needles: Iterable[str]) -> list[Hit]:
    """Every (file, canary, form) where a form of a canary occurs in a file under ``paths``."""
    patterns = [
        (needle, form, data) for needle in needles for form, data in forms_of(needle).items()
    ]
    hits = []
    for file in files_under(paths):
        try:
            content = file.read_bytes()
        except OSError:
            continue
        hits.extend(Hit(file, needle, form) for needle, form, data in patterns if data in content)
    return hits


def scan_text(text: str, needles: Iterable[str]) -> list[str]:
    """The canaries (any form) that occur in captured log text."""
    data = text.encode("utf-8", "replace")
    return sorted({n for n in needles for pattern in forms_of(n).values() if pattern in data})


def _canary_vrms(seed: int, n: int) -> list[str]:
    return [str(v) for v in random_plates(np.random.default_rng(seed), n, {"current": 1.0})]


def _canary_cameras(seed: int) -> list[str]:
    return [f"{CANARY_CAMERA_PREFIX}{seed:03d}{i}" for i in range(2)]


def _canary_reads(
    vrms: list[str], cameras: list[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Two reads a day per canary vehicle (08:00 at one canary camera, 17:00 at the other)."""
    rows = []
    day = start
    while day < end:
        for vrm in vrms:
            rows.append((vrm, cameras[0], day + timedelta(hours=8)))
            rows.append((vrm, cameras[1], day + timedelta(hours=17)))
        day += timedelta(days=1)
    return pd.DataFrame(rows, columns=["vrm", "camera_id", "read_at"])


def plant_canaries(
    export: Path, *, start: datetime, end: datetime, seed: int, n_vrms: int = 3
) -> list[str]:
    """Write ``export/reads.csv`` with canary reads and append canary cameras to its register.

    ``export/cameras.csv`` must already hold the force's register; the canary cameras are
    appended as its last rows, near its first camera. Returns the canary VRMs, then the
    canary camera ids.
    """
    vrms, cameras = _canary_vrms(seed, n_vrms), _canary_cameras(seed)
    register_path = export / "cameras.csv"
    register = pd.read_csv(register_path)
    anchor = register.iloc[0]
    extra = pd.DataFrame(
        {
            "camera_id": cameras,
            "lat": [anchor["lat"] + 0.01, anchor["lat"] + 0.02],
            "lon": [anchor["lon"] + 0.01, anchor["lon"] + 0.02],
            "road_class": [anchor["road_class"]] * 2,
        }
    )
    pd.concat([register, extra], ignore_index=True).to_csv(register_path, index=False)
    reads = _canary_reads(vrms, cameras, start, end)
    reads["read_at"] = reads["read_at"].map(lambda t: t.isoformat())
    reads.to_csv(export / "reads.csv", index=False)
    return [*vrms, *cameras]


def plant_canaries_parquet(export: Path, *, days: int = 30, seed: int = 7) -> list[str]:
    """Add canary reads to a synthetic force export (``reads.parquet`` + ``cameras.parquet``).

    The reads cover the export's last ``days`` days, so the canary vehicles are retained,
    featurised and trained on like any other. Returns the canary VRMs, then the camera ids.
    """
    vrms, cameras = _canary_vrms(seed, 3), _canary_cameras(seed)
    register_path, reads_path = export / "cameras.parquet", export / "reads.parquet"
    register = pq.read_table(register_path).to_pandas()
    anchor = register.iloc[0]
    extra = pd.DataFrame(
        {
            "camera_id": cameras,
            "lat": [float(anchor["lat"]) + 0.01, float(anchor["lat"]) + 0.02],
            "lon": [float(anchor["lon"]) + 0.01, float(anchor["lon"]) + 0.02],
            "road_class": [anchor["road_class"]] * 2,
        }
    )
    register = pd.concat([register, extra], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(register, preserve_index=False), register_path)
    reads = pq.read_table(reads_path)
    last = pc.max(reads["read_at"]).as_py()
    end = datetime(last.year, last.month, last.day, tzinfo=last.tzinfo) + timedelta(days=1)
    planted = _canary_reads(vrms, cameras, end - timedelta(days=days), end)
    table = pa.table(
        {
            "vrm": pa.array(planted["vrm"], pa.string()),
            "camera_id": pa.array(planted["camera_id"], pa.string()),
            "read_at": pa.array(planted["read_at"], reads.schema.field("read_at").type),
        }
    )
    pq.write_table(
        pa.concat_tables([reads, table.select(reads.schema.names).cast(reads.schema)]), reads_path
    )
    return [*vrms, *cameras]
