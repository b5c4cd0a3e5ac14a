"""Daily travel as *tours*: leave home, visit one or more stops (dwelling at each), return.

Every generator here is vectorised over (vehicle, day) for a chunk of days: it draws which
vehicle-days travel, when they leave, where they stop and for how long. Background tours
(commuting, errands, business rounds, freight runs, leisure outings, taxi fares) run for
everyone; offence tours (county lines, shuttles, hub pick-ups, collections) run for offenders
on eligible days inside their offence period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.synth.behaviours import (
    BACKGROUND_BEHAVIOURS,
    BUSINESS_P,
    COMMUTE_P,
    ERRAND_HOURS_WEEKDAY,
    ERRAND_HOURS_WEEKEND,
    ERRAND_RATE,
    FREIGHT_P,
    OFFENCE_BEHAVIOURS,
    OFFENDER_BACKGROUND_SCALE,
    OUTING_P,
    TAXI_FARES,
    TAXI_HOURS,
    VEHICLE_CLASSES,
    Profiles,
)
from research.synth.population import Population

DAY_S = 86_400
H = 3600.0
_COMMUTING = BACKGROUND_BEHAVIOURS.index("commuting")
_BUSINESS = BACKGROUND_BEHAVIOURS.index("business")
_FREIGHT = BACKGROUND_BEHAVIOURS.index("freight")
_LEISURE = BACKGROUND_BEHAVIOURS.index("leisure")
_TAXI = VEHICLE_CLASSES.index("taxi")


@dataclass
class Tours:
    """A batch of tours; stops and dwell times are flattened (``n_stops`` per tour)."""

    vehicle: np.ndarray  # int32
    start_s: np.ndarray  # int64 seconds since world start
    n_stops: np.ndarray  # int32 (>= 1)
    stops: np.ndarray  # int32 nodes
    dwell_s: np.ndarray  # float64 seconds at each stop
    #: int8 per tour: -1 = reads are drawn when legs are expanded; otherwise a bit mask of
    #: which of the (two) legs of a local tour produce a town-centre read (see
    #: :func:`thin_local_tours`).
    forced: np.ndarray | None = None

    def select(self, keep: np.ndarray) -> Tours:
        """The tours where ``keep`` is true."""
        stop_keep = np.repeat(keep, self.n_stops)
        forced = None if self.forced is None else self.forced[keep]
        return Tours(
            self.vehicle[keep], self.start_s[keep], self.n_stops[keep],
            self.stops[stop_keep], self.dwell_s[stop_keep], forced,
        )  # fmt: skip

    @staticmethod
    def concat(parts: list[Tours]) -> Tours:
        """Concatenate batches."""
        parts = [p for p in parts if p.vehicle.size]
        if not parts:
            z = np.empty(0, np.int32)
            return Tours(z, np.empty(0, np.int64), z, z, np.empty(0))
        return Tours(
            np.concatenate([p.vehicle for p in parts]).astype(np.int32),
            np.concatenate([p.start_s for p in parts]).astype(np.int64),
            np.concatenate([p.n_stops for p in parts]).astype(np.int32),
            np.concatenate([p.stops for p in parts]).astype(np.int32),
            np.concatenate([p.dwell_s for p in parts]).astype(np.float64),
            np.concatenate(
                [
                    np.full(p.vehicle.size, -1, np.int8) if p.forced is None else p.forced
                    for p in parts
                ]
            ),
        )


@dataclass
class ChunkDays:
    """The days of one chunk: absolute day index, weekday (0 = Monday) and day type."""

    day: np.ndarray  # int64 days since world start
    weekday: np.ndarray  # 0..6
    daytype: np.ndarray  # 0 weekday, 1 Saturday, 2 Sunday

    @staticmethod
    def make(first_day: int, n: int, start_weekday: int) -> ChunkDays:
        """Days ``first_day .. first_day + n - 1`` of a world starting on ``start_weekday``."""
        day = np.arange(first_day, first_day + n, dtype=np.int64)
        wd = (start_weekday + day) % 7
        return ChunkDays(day, wd, np.where(wd < 5, 0, np.where(wd == 5, 1, 2)))


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return np.exp(rng.normal(np.log(median), sigma, n))


def _hours(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    cum = np.cumsum(weights) / weights.sum()
    hour = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), 23)
    return hour * H + rng.random(n) * H


def _single_stop(veh: np.ndarray, start: np.ndarray, stops: np.ndarray, dwell: np.ndarray) -> Tours:
    return Tours(veh, np.round(start).astype(np.int64), np.ones(veh.size, np.int32), stops, dwell)


def background_scale(pop: Population, days: ChunkDays) -> np.ndarray:
    """(n_vehicles, n_days) multiplier on background travel (offenders travel less on duty)."""
    scale = np.ones((pop.n, days.day.size), dtype=np.float32)
    off = pop.offenders
    active = (days.day[None, :] >= off.start_day[:, None]) & (
        days.day[None, :] <= off.end_day[:, None]
    )
    scale[off.vehicle] = np.where(active, OFFENDER_BACKGROUND_SCALE, 1.0)
    return scale


def commute_tours(
    pop: Population, days: ChunkDays, scale: np.ndarray, rng: np.random.Generator
) -> Tours:
    """Home -> work -> home at the vehicle's usual hours, mostly on weekdays."""
    v = np.flatnonzero(pop.background == _COMMUTING)
    p = (
        COMMUTE_P[days.daytype][None, :]
        * scale[v]
        * np.minimum(1.0, pop.activity[v])[:, None] ** 0.3
    )
    vi, di = np.nonzero(rng.random(p.shape) < p)
    veh = v[vi]
    start = days.day[di] * DAY_S + pop.commute_start_s[veh] + rng.normal(0, 900, veh.size)
    dwell = np.maximum(pop.commute_dwell_s[veh] + rng.normal(0, 1200, veh.size), 1800)
    return _single_stop(veh, start, pop.work[veh], dwell)


def _decide_local(
    veh: np.ndarray,
    stops: np.ndarray,
    home: np.ndarray,
    local_read_p: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """For single-stop tours: which to keep and their ``forced`` codes (see thin_local_tours)."""
    local = np.flatnonzero(stops == home[veh])
    hits = rng.random((local.size, 2)) < local_read_p[home[veh[local]]][:, None]
    forced = np.full(veh.size, -1, np.int8)
    forced[local] = hits[:, 0] + 2 * hits[:, 1]
    keep = np.ones(veh.size, bool)
    keep[local[~hits.any(axis=1)]] = False
    return keep, forced


def errand_tours(
    pop: Population,
    days: ChunkDays,
    scale: np.ndarray,
    profiles: Profiles,
    local_read_p: np.ndarray,
    rng: np.random.Generator,
) -> Tours:
    """Short out-and-back trips (shops, school, visits), mostly local, Poisson per day.

    Local errands that pass no camera are dropped as soon as their destination is known
    (see :func:`thin_local_tours`), before their times are drawn."""
    v = np.flatnonzero(pop.vclass != _TAXI)
    rate = ERRAND_RATE[pop.background[v]][:, days.daytype] * pop.activity[v][:, None] * scale[v]
    counts = rng.poisson(rate)
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    vi, di = np.divmod(flat, days.day.size)
    veh = v[vi]
    stops = profiles.local.sample(pop.home[veh], rng.random(veh.size))
    keep, forced = _decide_local(veh, stops, pop.home, local_read_p, rng)
    veh, di, stops, forced = veh[keep], di[keep], stops[keep], forced[keep]
    weekend = days.daytype[di] > 0
    hours = np.empty(veh.size)
    hours[weekend] = _hours(rng, ERRAND_HOURS_WEEKEND, int(weekend.sum()))
    hours[~weekend] = _hours(rng, ERRAND_HOURS_WEEKDAY, int((~weekend).sum()))
    start = days.day[di] * DAY_S + hours
    dwell = np.clip(_lognormal(rng, 45 * 60, 0.8, veh.size), 300, 6 * H)
    tours = _single_stop(veh, start, stops, dwell)
    tours.forced = forced
    return tours


def _chains(
    veh: np.ndarray,
    start: np.ndarray,
    k: np.ndarray,
    origin: np.ndarray,
    profile_sample,
    dwell: np.ndarray,
    rng: np.random.Generator,
) -> Tours:
    tour = np.repeat(np.arange(veh.size), k)
    stops = profile_sample(origin[tour], rng.random(tour.size))
    return Tours(veh, np.round(start).astype(np.int64), k.astype(np.int32), stops, dwell)


def business_tours(
    pop: Population,
    days: ChunkDays,
    scale: np.ndarray,
    profiles: Profiles,
    rng: np.random.Generator,
) -> Tours:
    """Vans' rounds: several regional stops on working days."""
    v = np.flatnonzero((pop.background == _BUSINESS) & (pop.vclass != _TAXI))
    p = BUSINESS_P[days.daytype][None, :] * scale[v]
    vi, di = np.nonzero(rng.random(p.shape) < p)
    veh = v[vi]
    k = np.minimum(1 + rng.poisson(0.9, veh.size), 5)
    start = days.day[di] * DAY_S + pop.business_start_s[veh] + rng.normal(0, 1500, veh.size)
    dwell = np.clip(_lognormal(rng, 40 * 60, 0.7, int(k.sum())), 300, 4 * H)
    return _chains(veh, start, k, pop.home[veh], profiles.regional.sample, dwell, rng)


def freight_tours(
    pop: Population,
    days: ChunkDays,
    scale: np.ndarray,
    profiles: Profiles,
    rng: np.random.Generator,
) -> Tours:
    """HGV runs: one to a few long legs to large towns, ports and airports, day or night."""
    v = np.flatnonzero(pop.background == _FREIGHT)
    p = FREIGHT_P[days.daytype][None, :] * scale[v]
    vi, di = np.nonzero(rng.random(p.shape) < p)
    veh = v[vi]
    k = np.minimum(1 + rng.poisson(0.8, veh.size), 4)
    start = days.day[di] * DAY_S + pop.business_start_s[veh] + rng.normal(0, 3600, veh.size)
    dwell = np.clip(_lognormal(rng, 60 * 60, 0.5, int(k.sum())), 900, 5 * H)
    return _chains(veh, start, k, pop.home[veh], profiles.freight.sample, dwell, rng)


def outing_tours(
    pop: Population,
    days: ChunkDays,
    scale: np.ndarray,
    profiles: Profiles,
    rng: np.random.Generator,
) -> Tours:
    """Leisure outings, mostly at weekends (commuters too, half as often)."""
    v = np.flatnonzero(
        ((pop.background == _LEISURE) | (pop.background == _COMMUTING)) & (pop.vclass != _TAXI)
    )
    w = np.where(pop.background[v] == _LEISURE, 1.0, 0.5)
    p = OUTING_P[days.daytype][None, :] * w[:, None] * scale[v]
    vi, di = np.nonzero(rng.random(p.shape) < p)
    veh = v[vi]
    k = 1 + (rng.random(veh.size) < 0.3)
    start = days.day[di] * DAY_S + np.clip(rng.normal(10.5 * H, 1.5 * H, veh.size), 6 * H, 20 * H)
    dwell = np.clip(_lognormal(rng, 2.5 * H, 0.5, int(k.sum())), 1800, 8 * H)
    return _chains(veh, start, k, pop.home[veh], profiles.leisure.sample, dwell, rng)


def taxi_tours(
    pop: Population,
    days: ChunkDays,
    scale: np.ndarray,
    profiles: Profiles,
    local_read_p: np.ndarray,
    rng: np.random.Generator,
) -> Tours:
    """Taxi fares: many short trips around town (and to stations and airports), day and night.
    Local fares that pass no camera are dropped early, as for errands."""
    v = np.flatnonzero(pop.vclass == _TAXI)
    counts = rng.poisson(TAXI_FARES[days.daytype][None, :] * pop.activity[v][:, None] * scale[v])
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    vi, di = np.divmod(flat, days.day.size)
    veh = v[vi]
    stops = profiles.taxi.sample(pop.home[veh], rng.random(veh.size))
    keep, forced = _decide_local(veh, stops, pop.home, local_read_p, rng)
    veh, di, stops, forced = veh[keep], di[keep], stops[keep], forced[keep]
    start = days.day[di] * DAY_S + _hours(rng, TAXI_HOURS, veh.size)
    dwell = np.clip(_lognormal(rng, 6 * 60, 0.6, veh.size), 60, 3600)
    tours = _single_stop(veh, start, stops, dwell)
    tours.forced = forced
    return tours


def _template_tours(
    veh: np.ndarray, start: np.ndarray, stops: np.ndarray, dwell: np.ndarray
) -> Tours:
    """Tours from padded (n_tours, width) stop / dwell matrices (-1 marks no stop)."""
    valid = stops >= 0
    return Tours(
        veh.astype(np.int32),
        np.round(start).astype(np.int64),
        valid.sum(axis=1).astype(np.int32),
        stops[valid],
        dwell[valid],
    )


def offence_tours(
    pop: Population, days: ChunkDays, trip_s: np.ndarray, rng: np.random.Generator
) -> Tours:
    """The planted logistics, for offenders on eligible days inside their offence period."""
    off = pop.offenders
    if off.vehicle.size == 0:
        return Tours.concat([])
    d = days.day
    active = (d[None, :] >= off.start_day[:, None]) & (d[None, :] <= off.end_day[:, None])
    parts: list[Tours] = []
    for b, name in enumerate(OFFENCE_BEHAVIOURS):
        rows = np.flatnonzero(off.behaviour == b)
        if rows.size == 0:
            continue
        elig = active[rows]
        if name == "hub_pickup":
            elig = elig & (days.weekday[None, :] == off.weekday[rows][:, None])
        elif name == "collection":
            elig = elig & (days.weekday[None, :] < 6)
        go = elig & (rng.random(elig.shape) < off.p_day[rows][:, None])
        ri, di = np.nonzero(go)
        r = rows[ri]
        n = r.size
        if n == 0:
            continue
        veh = off.vehicle[r]
        day0 = d[di] * DAY_S
        home = pop.home[veh]
        if name == "county_lines":
            nt = off.n_targets[r]
            first = rng.integers(0, nt)
            second = (first + 1 + rng.integers(0, np.maximum(nt - 1, 1))) % nt
            two = (rng.random(n) < 0.25) & (nt > 1)
            stops = np.stack([off.targets[r, first], np.where(two, off.targets[r, second], -1)], 1)
            dwell = rng.uniform(20 * 60, 150 * 60, (n, 2))
            overnight = rng.random(n) < 0.15
            last = np.where(two, 1, 0)
            dwell[np.arange(n)[overnight], last[overnight]] = rng.uniform(
                8 * H, 14 * H, overnight.sum()
            )
            start = day0 + off.t1_s[r] + rng.normal(0, 50 * 60, n)
            parts.append(_template_tours(veh, start, stops, dwell))
        elif name == "shuttle":
            city = off.targets[r, 0]
            drop = day0 + off.t1_s[r] + rng.normal(0, 15 * 60, n)
            t2 = off.t2_s[r]
            pick = day0 + t2 + np.where(t2 < off.t1_s[r], DAY_S, 0) + rng.normal(0, 20 * 60, n)
            keep = rng.random(n) >= 0.05
            for start, m in ((drop, np.ones(n, bool)), (pick, keep)):
                parts.append(
                    _template_tours(
                        veh[m],
                        start[m],
                        city[m][:, None],
                        rng.uniform(5 * 60, 20 * 60, (int(m.sum()), 1)),
                    )
                )
        elif name == "hub_pickup":
            hub = off.targets[r, 0]
            drop = off.targets[r, 1]
            lead = trip_s[home, hub] + rng.uniform(10 * 60, 25 * 60, n)
            start = day0 + off.t1_s[r] - lead + rng.normal(0, 15 * 60, n)
            stops = np.stack([hub, np.where(drop == home, -1, drop)], 1)
            dwell = np.stack(
                [rng.uniform(25 * 60, 75 * 60, n), rng.uniform(10 * 60, 40 * 60, n)], 1
            )
            parts.append(_template_tours(veh, start, stops, dwell))
        else:  # collection: residences, worksite, residences in reverse
            res = off.targets[r]  # (n, MAX_TARGETS), -1 padded
            rev = np.full_like(res, -1)
            for i in range(res.shape[1]):
                # reverse the valid prefix of each row
                src = off.n_targets[r] - 1 - i
                ok = src >= 0
                rev[ok, i] = res[ok, src[ok]]
            stops = np.concatenate([res, off.site[r][:, None], rev], axis=1)
            w = res.shape[1]
            dwell = rng.uniform(3 * 60, 12 * 60, stops.shape)
            dwell[:, w] = rng.uniform(8 * H, 11 * H, n)
            start = day0 + off.t1_s[r] + rng.normal(0, 15 * 60, n)
            parts.append(_template_tours(veh, start, stops, dwell))
    return Tours.concat(parts)


def chunk_tours(
    pop: Population,
    days: ChunkDays,
    profiles: Profiles,
    trip_s: np.ndarray,
    local_read_p: np.ndarray,
    rng: np.random.Generator,
) -> Tours:
    """All tours (background and offence) starting on the chunk's days, local ones thinned."""
    scale = background_scale(pop, days)
    tours = Tours.concat(
        [
            commute_tours(pop, days, scale, rng),
            errand_tours(pop, days, scale, profiles, local_read_p, rng),
            business_tours(pop, days, scale, profiles, rng),
            freight_tours(pop, days, scale, profiles, rng),
            outing_tours(pop, days, scale, profiles, rng),
            taxi_tours(pop, days, scale, profiles, local_read_p, rng),
            offence_tours(pop, days, trip_s, rng),
        ]
    )
    return thin_local_tours(tours, pop.home, local_read_p, rng)


def thin_local_tours(
    tours: Tours, home: np.ndarray, local_read_p: np.ndarray, rng: np.random.Generator
) -> Tours:
    """Decide now whether each leg of a local out-and-back tour (one stop, in the home town)
    passes a town-centre camera, and drop the tours that pass none.

    Such tours are about half of all tours but rarely pass a camera; a dropped one could only
    have delayed the vehicle's next tour, which no read would show. The decisions travel with
    the kept tours (``forced``) so the reads are exactly as likely as if drawn later. Tours
    already decided by their generator (errands, taxi fares) are left as they are.
    """
    forced = tours.forced if tours.forced is not None else np.full(tours.vehicle.size, -1, np.int8)
    first_stop = np.cumsum(tours.n_stops) - tours.n_stops
    single = np.flatnonzero((tours.n_stops == 1) & (forced < 0))
    keep_s, forced_s = _decide_local(
        tours.vehicle[single], tours.stops[first_stop[single]], home, local_read_p, rng
    )
    forced = forced.copy()
    forced[single] = forced_s
    keep = np.ones(tours.vehicle.size, bool)
    keep[single[~keep_s]] = False
    tours.forced = forced
    return tours.select(keep)
