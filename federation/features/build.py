"""Build one example per vehicle from a force's reads and camera register (vectorised).

All work is done on flat arrays of reads sorted by (vehicle, time): group boundaries, previous
-read differences and per-(vehicle, camera) / per-(vehicle, day) counts come from numpy
``unique``/``bincount``, so a force with a few million reads builds in seconds.

Distances are great-circle (haversine) kilometres between the cameras of consecutive reads,
computed from the force's register inside the force. They depend only on the distances
between cameras, so any rigid motion of the whole register on the sphere (for example shifting
every longitude by the same amount, or rotating the force to another part of the globe) leaves
every feature unchanged up to floating-point rounding. The tests check both.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from federation.features.inputs import ReadArrays, Register, load_reads, load_register
from federation.features.schema import (
    READ_FEATURES,
    ROAD_CLASSES,
    SUMMARY_FEATURES,
    ExampleSet,
    concat_examples,
)

EARTH_RADIUS_KM = 6371.0088
NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 24 * NS_PER_HOUR
MIN_GAP_HOURS_FOR_SPEED = 1.0 / 60.0
NIGHT_HOURS = (22, 6)  # [22:00, 06:00) local
DEFAULT_MAX_READS = 128
DEFAULT_TIMEZONE = "Europe/London"


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between points given in radians."""
    a = (
        np.sin((lat2 - lat1) / 2.0) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2
    )
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def group_ints(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort-based ``np.unique`` for int64 keys: (uniques, first index, inverse, counts).

    ``first index`` is the position of each key's first occurrence in ``x``. numpy's own
    ``unique`` takes a hash path that is several times slower on millions of keys.
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.ones(len(xs), dtype=bool)
    new[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new)
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    counts = np.diff(np.append(starts, len(xs)))
    return xs[starts], order[starts], inverse, counts


def unique_ints(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int64 array (sort-based)."""
    xs = np.sort(x)
    keep = np.ones(len(xs), dtype=bool)
    keep[1:] = xs[1:] != xs[:-1]
    return xs[keep]


class _Sorted:
    """Reads sorted by (vehicle, time, camera) with their group structure."""

    def __init__(self, arrays: ReadArrays) -> None:
        order = np.argsort(arrays.camera_index, kind="stable")
        order = order[np.argsort(arrays.t_ns[order], kind="stable")]
        order = order[np.argsort(arrays.vehicle_code[order], kind="stable")]
        self.vehicles = arrays.vehicles
        self.v = arrays.vehicle_code[order]
        self.t = arrays.t_ns[order]
        self.c = arrays.camera_index[order]
        self.n_vehicles = len(self.vehicles)
        self.counts = np.bincount(self.v, minlength=self.n_vehicles)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        first = np.ones(len(self.v), dtype=bool)
        first[1:] = self.v[1:] != self.v[:-1]
        self.first = first

    def prev(self, values: np.ndarray) -> np.ndarray:
        """The previous read's value (the read's own value for a vehicle's first read)."""
        out = np.empty_like(values)
        out[0:1] = values[0:1]
        out[1:] = values[:-1]
        out[self.first] = values[self.first]
        return out

    def per_vehicle_sum(self, weights: np.ndarray) -> np.ndarray:
        return np.bincount(self.v, weights=weights, minlength=self.n_vehicles)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def build_examples(
    reads: Any,
    cameras: Any,
    window_start: Any,
    window_end: Any,
    *,
    max_reads: int = DEFAULT_MAX_READS,
    timezone: str = DEFAULT_TIMEZONE,
) -> ExampleSet:
    """Turn a force's reads into one location-free example per vehicle.

    Args:
        reads: DataFrame or pyarrow Table with ``vehicle``, ``camera``, ``read_at`` (UTC).
        cameras: the force's register with ``camera``, ``lat``, ``lon``, ``road_class``.
        window_start: first instant of the study window (inclusive; naive means UTC).
        window_end: end of the study window (exclusive).
        max_reads: L, the cap on reads per vehicle; the most recent ``max_reads`` reads in the
            window are kept (summary features use all reads in the window).
        timezone: the local zone for time-of-day and day-of-week features (behaviour follows
            the local clock, including daylight saving).

    Returns:
        An ``ExampleSet`` with vehicles in ascending pseudonym order. Vehicles without a read in
        the window have no example.
    """
    if max_reads < 1:
        raise ValueError(f"max_reads must be at least 1; got {max_reads}")
    register = load_register(cameras)
    arrays = load_reads(reads, register, window_start, window_end)
    n_features, n_summary = len(READ_FEATURES), len(SUMMARY_FEATURES)
    if len(arrays.t_ns) == 0:
        return ExampleSet(
            sequences=np.zeros((0, max_reads, n_features), np.float32),
            mask=np.zeros((0, max_reads), bool),
            summary=np.zeros((0, n_summary), np.float32),
            vehicles=np.zeros(0, dtype=str),
            n_reads=np.zeros(0, np.int64),
        )
    s = _Sorted(arrays)
    window_days = max(
        1.0, (pd.Timestamp(window_end) - pd.Timestamp(window_start)) / pd.Timedelta(1, "D")
    )
    per_read, modal_flag = _read_features(s, register, timezone)
    summary = _summary_features(s, register, per_read, modal_flag, window_days)
    sequences, mask = _pack_sequences(s, per_read, max_reads)
    return ExampleSet(
        sequences=sequences,
        mask=mask,
        summary=summary,
        vehicles=s.vehicles,
        n_reads=s.counts.astype(np.int64),
    )


def _local_clock(t_ns: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Local (day number since 1970-01-01, nanoseconds into the day) for UTC instants."""
    local = pd.DatetimeIndex(t_ns.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(timezone)
    wall = local.tz_localize(None).asi8
    return np.floor_divide(wall, NS_PER_DAY), np.mod(wall, NS_PER_DAY)


def _read_features(
    s: _Sorted, register: Register, timezone: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-read feature columns (name -> float array over sorted reads) and helpers."""
    day, ns_of_day = _local_clock(s.t, timezone)
    hours = ns_of_day / NS_PER_HOUR
    dow = np.mod(day + 3, 7)  # 1970-01-01 was a Thursday; Monday = 0
    gap_h = (s.t - s.prev(s.t)) / NS_PER_HOUR
    prev_c = s.prev(s.c)
    dist = haversine_km(
        register.lat_rad[prev_c],
        register.lon_rad[prev_c],
        register.lat_rad[s.c],
        register.lon_rad[s.c],
    )
    dist[s.first] = 0.0
    speed = dist / np.maximum(gap_h, MIN_GAP_HOURS_FOR_SPEED)

    n_cams = len(register.tokens)
    pair = s.v * n_cams + s.c
    pair_uniq, pair_first, pair_inv, pair_count = group_ints(pair)
    revisit = np.arange(len(pair)) != pair_first[pair_inv]

    hour_bin = np.minimum(hours.astype(np.int64), 23)
    hist = np.bincount(s.v * 24 + hour_bin, minlength=s.n_vehicles * 24).reshape(s.n_vehicles, 24)
    modal = np.argmax(hist, axis=1)
    circ = np.abs(hour_bin - modal[s.v])
    at_modal = np.minimum(circ, 24 - circ) <= 1

    rc = register.road_class[s.c]
    tod = 2 * np.pi * hours / 24.0
    dow_angle = 2 * np.pi * (dow + hours / 24.0) / 7.0
    cols: dict[str, np.ndarray] = {
        "tod_sin": np.sin(tod),
        "tod_cos": np.cos(tod),
        "dow_sin": np.sin(dow_angle),
        "dow_cos": np.cos(dow_angle),
        "log_gap_hours": np.log1p(gap_h),
        "log_dist_km": np.log1p(dist),
        "log_speed_kmh": np.log1p(speed),
        "is_first": s.first.astype(np.float64),
        "same_camera_as_prev": ((prev_c == s.c) & ~s.first).astype(np.float64),
        "revisit": revisit.astype(np.float64),
        "camera_share": pair_count[pair_inv] / s.counts[s.v],
        "at_modal_hour": at_modal.astype(np.float64),
    }
    for k, name in enumerate(ROAD_CLASSES):
        cols[f"road_{name}"] = (rc == k).astype(np.float64)
    cols["_day"] = day
    cols["_dow"] = dow
    cols["_hour"] = hour_bin
    cols["_dist"] = dist
    cols["_gap"] = gap_h
    cols["_pair_inv"] = pair_inv
    cols["_pair_count"] = pair_count
    cols["_pair_v"] = pair_uniq // n_cams
    return cols, at_modal


def _summary_features(
    s: _Sorted,
    register: Register,
    cols: dict[str, np.ndarray],
    at_modal: np.ndarray,
    window_days: float,
) -> np.ndarray:
    """Per-vehicle regularity features in ``SUMMARY_FEATURES`` order."""
    n = s.counts.astype(np.float64)
    nv = s.n_vehicles
    day, dow, hour = cols["_day"], cols["_dow"], cols["_hour"]

    # (vehicle, day) table: active days, days at the modal hour, weekday concentration.
    day0 = day - day.min()
    span = int(day0.max()) + 1
    vd, _, vd_inv, _ = group_ints(s.v * span + day0)
    vd_v = vd // span
    active_days = np.bincount(vd_v, minlength=nv).astype(np.float64)
    modal_days = np.zeros(len(vd), dtype=bool)
    modal_days[vd_inv[at_modal]] = True
    daily_periodicity = _safe_div(np.bincount(vd_v, weights=modal_days, minlength=nv), active_days)
    vd_dow = np.mod(vd % span + day.min() + 3, 7)
    wd = np.bincount(vd_v * 7 + vd_dow, minlength=nv * 7).reshape(nv, 7)
    weekday_conc = _safe_div(wd.max(axis=1).astype(np.float64), active_days)
    n_cams = len(register.tokens)
    vd_cams = unique_ints(vd_inv * n_cams + s.c) // n_cams
    cams_per_day = _safe_div(
        np.bincount(vd_v[vd_cams], minlength=nv).astype(np.float64), active_days
    )

    # (vehicle, camera) table: top shares, entropy, distinct cameras.
    pair_v, pair_count = cols["_pair_v"], cols["_pair_count"].astype(np.float64)
    order = np.lexsort((-pair_count, pair_v))
    pv, pc = pair_v[order], pair_count[order]
    distinct = np.bincount(pv, minlength=nv).astype(np.float64)
    group_start = np.concatenate(([0], np.cumsum(distinct)[:-1])).astype(np.int64)
    rank = np.arange(len(pv)) - group_start[pv]
    top1 = np.bincount(pv, weights=pc * (rank == 0), minlength=nv) / n
    top3 = np.bincount(pv, weights=pc * (rank < 3), minlength=nv) / n
    p = pc / n[pv]
    entropy = np.bincount(pv, weights=-p * np.log(p), minlength=nv)

    # Legs between consecutive reads.
    legs = ~s.first
    n_legs = np.bincount(s.v[legs], minlength=nv).astype(np.float64)
    mean_leg = _safe_div(np.bincount(s.v[legs], weights=cols["_dist"][legs], minlength=nv), n_legs)
    p95 = (
        pd.Series(cols["_dist"][legs])
        .groupby(s.v[legs])
        .quantile(0.95)
        .reindex(np.arange(nv), fill_value=0.0)
        .to_numpy()
    )
    mean_log_gap = _safe_div(
        np.bincount(s.v[legs], weights=np.log1p(cols["_gap"][legs]), minlength=nv), n_legs
    )
    night = (hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])
    road = (
        np.bincount(
            s.v * len(ROAD_CLASSES) + register.road_class[s.c], minlength=nv * len(ROAD_CLASSES)
        ).reshape(nv, len(ROAD_CLASSES))
        / n[:, None]
    )

    feats = {
        "log_reads": np.log1p(n),
        "log_active_days": np.log1p(active_days),
        "log_reads_per_active_day": np.log1p(_safe_div(n, active_days)),
        "top1_camera_share": top1,
        "top3_camera_share": top3,
        "camera_entropy": entropy,
        "log_distinct_cameras": np.log1p(distinct),
        "log_distinct_cameras_per_day": np.log1p(cams_per_day),
        "daily_periodicity": daily_periodicity,
        "weekday_concentration": weekday_conc,
        "weekend_share": s.per_vehicle_sum((dow >= 5).astype(np.float64)) / n,
        "night_share": s.per_vehicle_sum(night.astype(np.float64)) / n,
        "log_mean_leg_km": np.log1p(mean_leg),
        "log_p95_leg_km": np.log1p(p95),
        "mean_log_gap_hours": mean_log_gap,
        "revisit_share": s.per_vehicle_sum(cols["revisit"]) / n,
        "active_day_share": np.minimum(active_days / window_days, 1.0),
    }
    for k, name in enumerate(ROAD_CLASSES):
        feats[f"road_share_{name}"] = road[:, k]
    return np.column_stack([feats[name] for name in SUMMARY_FEATURES]).astype(np.float32)


def _pack_sequences(
    s: _Sorted, cols: dict[str, np.ndarray], max_reads: int
) -> tuple[np.ndarray, np.ndarray]:
    """Place each vehicle's most recent ``max_reads`` reads, oldest first, left-aligned."""
    idx = np.arange(len(s.v))
    offset = s.starts + np.maximum(s.counts - max_reads, 0)  # first kept read per vehicle
    keep = np.flatnonzero(idx >= offset[s.v])
    rows = s.v[keep]
    pos = keep - offset[rows]
    block = np.empty((len(keep), len(READ_FEATURES)), dtype=np.float32)
    for j, name in enumerate(READ_FEATURES):
        block[:, j] = cols[name][keep]
    sequences = np.zeros((s.n_vehicles, max_reads, len(READ_FEATURES)), dtype=np.float32)
    sequences[rows, pos] = block
    mask = np.zeros((s.n_vehicles, max_reads), dtype=bool)
    mask[rows, pos] = True
    return sequences, mask


DEFAULT_CHUNK_READS = 1_000_000


def build_examples_chunked(
    reads: Any,
    cameras: Any,
    window_start: Any,
    window_end: Any,
    *,
    max_reads: int = DEFAULT_MAX_READS,
    timezone: str = DEFAULT_TIMEZONE,
    chunk_reads: int = DEFAULT_CHUNK_READS,
) -> ExampleSet:
    """:func:`build_examples` over ranges of vehicles, so its working memory stays bounded.

    Every feature of a vehicle depends only on that vehicle's own reads (and the window), so
    building the examples of disjoint, ascending ranges of pseudonyms and stacking them gives
    exactly the examples of the whole table, in the same order. Each range holds about
    ``chunk_reads`` reads: the arrays of building (~335 bytes per read, see
    ``docs/benchmarks/scale-memory-ranges.md``) exist for one range at a time; the input table and
    the examples themselves are still held whole. ``reads`` must be a pyarrow Table (as the
    store returns it); a row number in an input error counts within the range.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(reads, pa.Table) or reads.num_rows <= chunk_reads:
        return build_examples(
            reads, cameras, window_start, window_end, max_reads=max_reads, timezone=timezone
        )
    vehicle = reads.column("vehicle")
    counts = pc.value_counts(vehicle).flatten()
    values = counts[0].to_numpy(zero_copy_only=False).astype(str)
    order = np.argsort(values, kind="stable")
    values = values[order]
    per_vehicle = counts[1].to_numpy()[order]
    cumulative = np.cumsum(per_vehicle)
    n_chunks = int(np.ceil(reads.num_rows / chunk_reads))
    cuts = np.searchsorted(cumulative, np.arange(1, n_chunks) * chunk_reads)
    bounds = [None, *sorted(set(values[np.minimum(cuts, len(values) - 1)].tolist())), None]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        mask = None
        if lo is not None:
            mask = pc.greater_equal(vehicle, pa.scalar(lo))
        if hi is not None:
            below = pc.less(vehicle, pa.scalar(hi))
            mask = below if mask is None else pc.and_(mask, below)
        part = reads if mask is None else reads.filter(mask)
        if part.num_rows == 0:
            continue
        built = build_examples(
            part, cameras, window_start, window_end, max_reads=max_reads, timezone=timezone
        )
        if len(built):
            parts.append(built)
        del part
    if not parts:
        return build_examples(
            reads.slice(0, 0),
            cameras,
            window_start,
            window_end,
            max_reads=max_reads,
            timezone=timezone,
        )
    return parts[0] if len(parts) == 1 else concat_examples(parts)
