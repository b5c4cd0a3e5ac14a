"""From tours to timed legs: put each vehicle's tours in order without overlap, then split
them into legs (home -> stop 1 -> ... -> home) with departure times.

A vehicle cannot be on two tours at once: if a tour would start before the previous one has
ended, it is pushed back to just after it. That recurrence (end_i = max(end_{i-1}, start_i) +
duration_i) is solved for all vehicles at once with a segmented running maximum, so there is
no Python loop over vehicles or tours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.synth.tours import Tours

#: Gap a vehicle stays at home between two tours.
TOUR_GAP_S = 600
#: Per-tour speed factor ~ lognormal(0, sigma); peak-hour tours are slower.
SPEED_SIGMA = 0.08
PEAK_FACTOR = 1.2
PEAK_HOURS = ((7.0, 9.5), (16.0, 18.5))
_PEAK_BY_HALF_HOUR = np.array(
    [PEAK_FACTOR if any(lo <= h / 2 < hi for lo, hi in PEAK_HOURS) else 1.0 for h in range(48)],
    dtype=np.float32,
)


@dataclass
class Legs:
    """Timed legs: one row per drive from ``origin`` to ``dest``."""

    vehicle: np.ndarray  # int32
    origin: np.ndarray  # int32
    dest: np.ndarray  # int32
    depart_s: np.ndarray  # int64 seconds since world start
    factor: np.ndarray  # float32 travel-time multiplier
    forced: np.ndarray  # int8: -1 draw reads; 0 / 1 this (local) leg has no / one centre read


def _group_exclusive_cumsum(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum restarting at each group (rows sorted by group)."""
    c = np.cumsum(values)
    excl = c - values
    first = np.flatnonzero(group_start)
    base = np.repeat(excl[first], np.diff(np.append(first, values.size)))
    return excl - base


def schedule_legs(
    tours: Tours,
    home: np.ndarray,
    trip_s: np.ndarray,
    busy_until: np.ndarray,
    rng: np.random.Generator,
) -> tuple[Legs, np.ndarray]:
    """Order tours per vehicle without overlap and expand them into timed legs.

    ``busy_until[v]`` (seconds since world start) is when vehicle ``v`` is back from its last
    tour of the previous chunk; it is updated and returned.
    """
    n = tours.vehicle.size
    if n == 0:
        z = np.empty(0, np.int32)
        empty = Legs(z, z, z, np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int8))
        return empty, busy_until
    legs_per = tours.n_stops + 1
    n_legs = int(legs_per.sum())
    tour_of_leg = np.repeat(np.arange(n, dtype=np.int32), legs_per)
    leg_first = np.cumsum(legs_per) - legs_per
    is_last = np.zeros(n_legs, dtype=bool)
    is_last[leg_first + tours.n_stops] = True
    # stops padded with the home at both ends of each tour: leg k goes from slot k to k + 1
    padded = np.empty(n_legs + n, dtype=np.int32)
    pad_first = leg_first + np.arange(n)
    is_stop = np.ones(n_legs + n, dtype=bool)
    is_stop[pad_first] = False
    is_stop[pad_first + legs_per] = False
    padded[~is_stop] = np.repeat(home[tours.vehicle], 2)
    padded[is_stop] = tours.stops
    leg_slot = np.arange(n_legs, dtype=np.int64) + tour_of_leg
    origin = padded[leg_slot]
    dest = padded[leg_slot + 1]
    dwell = np.zeros(n_legs)
    dwell[~is_last] = tours.dwell_s
    # speed factor per tour: noise, slower in the peaks
    half_hour = (tours.start_s % 86_400) // 1800
    noise = np.exp(rng.standard_normal(n, dtype=np.float32) * np.float32(SPEED_SIGMA))
    factor = noise * _PEAK_BY_HALF_HOUR[half_hour]
    flat_od = origin.astype(np.int64) * trip_s.shape[0] + dest
    travel = trip_s.ravel()[flat_od] * np.repeat(factor, legs_per)
    step = np.round(travel + dwell).astype(np.int64)
    duration = np.add.reduceat(step, leg_first) + TOUR_GAP_S

    # non-overlap per vehicle, with each vehicle's carried-over busy time as a 0-length tour
    carry = np.flatnonzero(busy_until > tours.start_s.min())
    veh = np.concatenate([tours.vehicle, carry]).astype(np.int64)
    start = np.concatenate([tours.start_s, busy_until[carry]])
    dur = np.concatenate([duration, np.zeros(carry.size, np.int64)])
    base = start.min()
    order = np.argsort(veh * (int(start.max() - base) + 1) + (start - base), kind="stable")
    v_s, s_s, d_s = veh[order], start[order], dur[order]
    gstart = np.ones(v_s.size, bool)
    gstart[1:] = v_s[1:] != v_s[:-1]
    c_excl = _group_exclusive_cumsum(d_s, gstart)
    vals = s_s - base - c_excl
    gid = np.cumsum(gstart) - 1
    big = int(np.abs(vals).max()) * 2 + 1
    running = np.maximum.accumulate(vals + gid * big) - gid * big
    new_start = running + c_excl + base
    end = new_start + d_s
    fixed_start = np.empty_like(new_start)
    fixed_start[order] = new_start
    last = np.append(gstart[1:], True)
    busy = busy_until.copy()
    busy[v_s[last]] = np.maximum(busy[v_s[last]], end[last])
    tour_start = fixed_start[:n]

    forced = np.full(n_legs, -1, np.int8)
    if tours.forced is not None:
        pinned = np.flatnonzero(tours.forced >= 0)
        bits = tours.forced[pinned]
        forced[leg_first[pinned]] = bits & 1
        forced[leg_first[pinned] + 1] = (bits >> 1) & 1
    excl = np.cumsum(step) - step
    depart = np.repeat(tour_start - excl[leg_first], legs_per) + excl
    return (
        Legs(
            vehicle=np.repeat(tours.vehicle, legs_per).astype(np.int32),
            origin=origin.astype(np.int32),
            dest=dest.astype(np.int32),
            depart_s=depart.astype(np.int64),
            factor=np.repeat(factor, legs_per),
            forced=forced,
        ),
        busy,
    )
