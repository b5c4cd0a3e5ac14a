"""Validate and normalise the two inputs of feature building: a force's reads and its register.

Errors name the field and the (0-based) row number and give counts; they never quote a
vehicle pseudonym, a camera token or a coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from federation.features.schema import ROAD_CLASSES

READ_COLUMNS = ("vehicle", "camera", "read_at")
CAMERA_COLUMNS = ("camera", "lat", "lon", "road_class")


class FeatureInputError(ValueError):
    """Reads or a camera register that feature building cannot use (names field and row)."""


def _to_frame(table: Any, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Return the named columns of a pandas DataFrame or pyarrow Table as a DataFrame."""
    if hasattr(table, "to_pandas") and not isinstance(table, pd.DataFrame):
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise FeatureInputError(f"{what}: missing column(s) {missing}")
        return table.select(list(columns)).to_pandas()
    if not isinstance(table, pd.DataFrame):
        raise FeatureInputError(f"{what}: expected a pandas DataFrame or pyarrow Table")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise FeatureInputError(f"{what}: missing column(s) {missing}")
    return table.loc[:, list(columns)]


def _first_bad_row(bad: np.ndarray) -> str:
    rows = np.flatnonzero(bad)
    return f"{len(rows)} row(s), first at row {int(rows[0])}"


def utc_nanoseconds(values: pd.Series, what: str) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch, UTC.

    Timezone-aware values are converted to UTC; naive values are taken to be UTC already (the
    force-store contract). Nulls and unparseable values are an error naming the row.
    """
    try:
        ts = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise FeatureInputError(f"{what}.read_at: cannot parse as timestamps ({exc})") from None
    bad = ts.isna().to_numpy()
    if bad.any():
        raise FeatureInputError(f"{what}.read_at: null timestamp in {_first_bad_row(bad)}")
    return ts.dt.as_unit("ns").astype("int64").to_numpy()


@dataclass(frozen=True)
class Register:
    """A camera register as arrays: tokens (sorted), radians, road-class codes."""

    tokens: pd.Index
    lat_rad: np.ndarray
    lon_rad: np.ndarray
    road_class: np.ndarray  # int8 index into ROAD_CLASSES


def load_register(cameras: Any) -> Register:
    """Validate a camera register (``camera, lat, lon, road_class``) and return its arrays."""
    frame = _to_frame(cameras, CAMERA_COLUMNS, "camera register")
    tokens = frame["camera"]
    if tokens.isna().any():
        raise FeatureInputError(
            f"camera register.camera: null in {_first_bad_row(tokens.isna().to_numpy())}"
        )
    dup = tokens.duplicated().to_numpy()
    if dup.any():
        raise FeatureInputError(f"camera register.camera: duplicate token in {_first_bad_row(dup)}")
    coords = {}
    for name, limit in (("lat", 90.0), ("lon", 180.0)):
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (np.abs(values) > limit)
        if bad.any():
            raise FeatureInputError(
                f"camera register.{name}: missing or outside ±{limit:g} in {_first_bad_row(bad)}"
            )
        coords[name] = np.radians(values)
    classes = frame["road_class"].astype("string").str.strip().str.lower().fillna("other")
    lookup = {name: i for i, name in enumerate(ROAD_CLASSES)}
    codes = classes.map(lookup).fillna(lookup["other"]).to_numpy(dtype=np.int8)
    order = np.argsort(tokens.to_numpy(dtype=str), kind="stable")
    return Register(
        tokens=pd.Index(tokens.to_numpy(dtype=str)[order]),
        lat_rad=coords["lat"][order],
        lon_rad=coords["lon"][order],
        road_class=codes[order],
    )


@dataclass(frozen=True)
class ReadArrays:
    """Reads inside the window as parallel arrays (not yet sorted)."""

    vehicle_code: np.ndarray  # int64 index into ``vehicles``
    vehicles: np.ndarray  # str, sorted ascending, each with at least one read in the window
    camera_index: np.ndarray  # int64 index into the Register
    t_ns: np.ndarray  # int64 ns since epoch, UTC


def load_reads(reads: Any, register: Register, window_start: Any, window_end: Any) -> ReadArrays:
    """Validate reads, keep those with ``window_start <= read_at < window_end``, join cameras.

    Every read in the window must name a camera in the register (an error gives the count and
    first row); reads outside the window are dropped, which is the definition of the window.
    """
    frame = _to_frame(reads, READ_COLUMNS, "reads")
    for name in ("vehicle", "camera"):
        bad = frame[name].isna().to_numpy()
        if bad.any():
            raise FeatureInputError(f"reads.{name}: null in {_first_bad_row(bad)}")
    t_ns = utc_nanoseconds(frame["read_at"], "reads")
    start, end = window_bounds_ns(window_start, window_end)
    inside = (t_ns >= start) & (t_ns < end)
    rows = np.flatnonzero(inside)
    cam_codes, cam_tokens = pd.factorize(frame["camera"].iloc[rows])
    token_index = register.tokens.get_indexer(np.asarray(cam_tokens, dtype=str))
    camera_index = token_index[cam_codes] if len(rows) else np.zeros(0, np.int64)
    unknown = camera_index < 0
    if unknown.any():
        first = int(rows[np.flatnonzero(unknown)[0]])
        raise FeatureInputError(
            f"reads.camera: {int(unknown.sum())} read(s) in the window name a camera that is not "
            f"in the camera register (first at row {first})"
        )
    vehicle_code, vehicles = pd.factorize(frame["vehicle"].iloc[rows], sort=True)
    return ReadArrays(
        vehicle_code=vehicle_code.astype(np.int64),
        vehicles=np.asarray(vehicles, dtype=str),
        camera_index=camera_index.astype(np.int64),
        t_ns=t_ns[rows],
    )


def window_bounds_ns(window_start: Any, window_end: Any) -> tuple[int, int]:
    """The study window as UTC nanoseconds; naive bounds are taken to be UTC."""
    bounds = []
    for value in (window_start, window_end):
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        bounds.append(int(ts.as_unit("ns").value))
    if bounds[1] <= bounds[0]:
        raise FeatureInputError("window_end must be after window_start")
    return bounds[0], bounds[1]
