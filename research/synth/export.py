"""Per-force raw exports: what each force's back office would hand over.

``forces/<slug>/export/reads.parquet`` (or ``reads.csv``) holds ``vrm``, ``camera_id`` and
``read_at`` (UTC) sorted by time; ``cameras.parquet`` (``cameras.csv``) is the force's camera
register; ``manifest.json`` gives counts and the date range. Files are written
deterministically: fixed row order and row-group boundaries, no wall-clock metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

READS_SCHEMA = pa.schema(
    [
        pa.field("vrm", pa.string(), nullable=False),
        pa.field("camera_id", pa.string(), nullable=False),
        pa.field("read_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
CAMERAS_SCHEMA = pa.schema(
    [
        pa.field("camera_id", pa.string(), nullable=False),
        pa.field("lat", pa.float64(), nullable=False),
        pa.field("lon", pa.float64(), nullable=False),
        pa.field("road_class", pa.string(), nullable=False),
    ]
)
ROW_GROUP_ROWS = 262_144
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso_utc(epoch_us: int) -> str:
    """ISO-8601 UTC text of a microsecond timestamp."""
    return datetime.fromtimestamp(epoch_us / 1e6, tz=UTC).strftime(ISO_FORMAT)


def _write_parquet_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)


def _write_csv_table(table: pa.Table, path: Path) -> None:
    with path.open("wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(
            table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
        )


def _to_csv_columns(table: pa.Table) -> pa.Table:
    cols = []
    for name in table.column_names:
        col = table[name]
        if pa.types.is_timestamp(col.type):
            col = pc.strftime(col.cast(pa.timestamp("s", tz="UTC")), format=ISO_FORMAT)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


@dataclass
class ForceExport:
    """Streams one force's reads to disk in fixed-size row groups."""

    folder: Path
    fmt: str
    vrms: pa.Array  # vehicle index -> VRM
    camera_ids: pa.Array  # camera index -> id
    epoch_us: int  # world start
    n_vehicles: int
    reads: int = 0
    first_s: int | None = None
    last_s: int | None = None
    seen: np.ndarray = field(init=False)
    _buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list, init=False)
    _buffered: int = field(default=0, init=False)
    _writer: Any = field(default=None, init=False)
    _fh: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seen = np.zeros(self.n_vehicles, dtype=bool)
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(
                self.folder / "reads.parquet",
                READS_SCHEMA,
                compression="zstd",
                use_dictionary=["vrm", "camera_id"],
                column_encoding={"read_at": "DELTA_BINARY_PACKED"},
            )
        else:
            self._fh = (self.folder / "reads.csv").open("wb")
            self._fh.write(b"vrm,camera_id,read_at\n")

    def add(self, vehicle: np.ndarray, camera: np.ndarray, t_s: np.ndarray) -> None:
        """Append time-sorted reads (generator indices)."""
        if t_s.size == 0:
            return
        self.reads += int(t_s.size)
        self.first_s = int(t_s[0]) if self.first_s is None else self.first_s
        self.last_s = int(t_s[-1])
        self.seen[vehicle] = True
        self._buf.append((vehicle, camera, t_s))
        self._buffered += int(t_s.size)
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush(final=False)

    def _table(self, vehicle: np.ndarray, camera: np.ndarray, t_s: np.ndarray) -> pa.Table:
        read_at = pa.array(self.epoch_us + t_s * 1_000_000, type=pa.timestamp("us", tz="UTC"))
        return pa.table(
            [self.vrms.take(pa.array(vehicle)), self.camera_ids.take(pa.array(camera)), read_at],
            schema=READS_SCHEMA,
        )

    def _flush(self, final: bool) -> None:
        if not self._buf:
            return
        v = np.concatenate([b[0] for b in self._buf])
        c = np.concatenate([b[1] for b in self._buf])
        t = np.concatenate([b[2] for b in self._buf])
        n_out = v.size if final else (v.size // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
        for lo in range(0, n_out, ROW_GROUP_ROWS):
            hi = min(lo + ROW_GROUP_ROWS, n_out)
            table = self._table(v[lo:hi], c[lo:hi], t[lo:hi])
            if self._writer is not None:
                self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            else:
                pacsv.write_csv(
                    _to_csv_columns(table),
                    self._fh,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
                )
        self._buf = [(v[n_out:], c[n_out:], t[n_out:])] if n_out < v.size else []
        self._buffered = v.size - n_out

    def close(self) -> None:
        """Flush and close the reads file."""
        self._flush(final=True)
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.close()


def write_camera_register(
    folder: Path,
    fmt: str,
    ids: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    road_class: np.ndarray,
) -> None:
    """Write a force's camera register, sorted by camera id."""
    order = np.argsort(ids.astype(str), kind="stable")
    table = pa.table(
        [
            pa.array(ids[order].tolist(), pa.string()),
            pa.array(lat[order], pa.float64()),
            pa.array(lon[order], pa.float64()),
            pa.array(road_class[order].tolist(), pa.string()),
        ],
        schema=CAMERAS_SCHEMA,
    )
    if fmt == "parquet":
        _write_parquet_table(table, folder / "cameras.parquet")
    else:
        _write_csv_table(table, folder / "cameras.csv")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON deterministically (sorted keys, trailing newline)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
