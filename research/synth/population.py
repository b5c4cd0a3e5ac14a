"""The fleet: every vehicle's VRM, class, home, background behaviour and habits, and the
planted offenders with their offence period, logistics parameters and conviction date."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privacy.plates import random_plates
from research.synth.behaviours import (
    ACTIVITY_SIGMA,
    BACKGROUND_BEHAVIOURS,
    BACKGROUND_GIVEN_CLASS,
    CLASS_GIVEN_OFFENCE,
    CLASS_MIX,
    OFFENCE_BEHAVIOURS,
    OFFENCE_DAY_P,
    OFFENCE_HOURS,
    OFFENCE_MEDIAN_DAYS,
    OFFENCE_MIX,
    OFFENCE_SIGMA,
    Profiles,
    draw_conviction_lag_days,
)
from research.synth.config import WorldConfig
from research.synth.geography import NODE_TOWN, Geography

MAX_TARGETS = 4
H = 3600.0


@dataclass
class Offenders:
    """Per-offender parameters (row i describes vehicle ``vehicle[i]``).

    ``targets`` holds up to MAX_TARGETS nodes whose meaning depends on the behaviour:
    county_lines: provincial towns in other forces; shuttle: [city centre];
    hub_pickup: [hub, drop-off town]; collection: residence towns (the worksite is ``site``).
    """

    vehicle: np.ndarray  # int32
    behaviour: np.ndarray  # int8 index into OFFENCE_BEHAVIOURS
    start_day: np.ndarray  # first offence day (inclusive), days since world start
    end_day: np.ndarray  # last offence day (inclusive)
    conviction_day: np.ndarray  # days since world start (usually after the world ends)
    p_day: np.ndarray  # chance of an offence tour on an eligible day
    t1_s: np.ndarray  # main time of day (start; hub pick-up: arrival at the hub)
    t2_s: np.ndarray  # second time of day (shuttle pick-up run)
    weekday: np.ndarray  # hub pick-up weekday (0 = Monday)
    targets: np.ndarray  # (n, MAX_TARGETS) int32, -1 padded
    n_targets: np.ndarray
    site: np.ndarray  # collection worksite


@dataclass
class Population:
    """All vehicles (index = vehicle id inside the generator, never written out)."""

    vrm: np.ndarray  # object (str), unique, normalised
    vclass: np.ndarray  # int8 index into VEHICLE_CLASSES
    home: np.ndarray  # int32 node
    background: np.ndarray  # int8 index into BACKGROUND_BEHAVIOURS
    activity: np.ndarray  # float64 multiplier
    work: np.ndarray  # int32 node (commute / base)
    commute_start_s: np.ndarray  # usual departure time of day
    commute_dwell_s: np.ndarray  # usual time at work
    business_start_s: np.ndarray  # usual start of a business / freight day
    offence: np.ndarray  # int8: -1 background only, else index into OFFENCE_BEHAVIOURS
    offenders: Offenders

    @property
    def n(self) -> int:
        """Number of vehicles."""
        return self.vrm.size


def _sample_nodes(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    p = weights / weights.sum()
    return rng.choice(p.size, size=n, p=p).astype(np.int32)


def _pick(
    rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray, k: int
) -> np.ndarray:
    """Pick up to k distinct candidates with probability ∝ weights."""
    k = min(k, candidates.size)
    p = weights / weights.sum()
    return rng.choice(candidates, size=k, replace=False, p=p).astype(np.int32)


def _offender_homes_and_targets(
    geo: Geography, rng: np.random.Generator, behaviour: np.ndarray
) -> tuple[np.ndarray, ...]:
    n = behaviour.size
    towns = geo.towns
    pop = geo.node_pop
    home = np.zeros(n, np.int32)
    targets = np.full((n, MAX_TARGETS), -1, np.int32)
    n_t = np.zeros(n, np.int32)
    site = np.full(n, -1, np.int32)
    hubs = geo.hubs
    for i, b in enumerate(behaviour):
        name = OFFENCE_BEHAVIOURS[b]
        if name == "county_lines":
            h = int(rng.choice(geo.cities))
            d = geo.dist_km[h, towns]
            ok = towns[(geo.node_force[towns] != geo.node_force[h]) & (d >= 30) & (d <= 170)]
            if ok.size == 0:
                ok = towns[geo.node_force[towns] != geo.node_force[h]]
            k = int(rng.integers(1, 4))
            t = _pick(rng, ok, np.sqrt(pop[ok]) + 1.0, k)
        elif name == "shuttle":
            city = int(rng.choice(geo.cities))
            d = geo.dist_km[city, towns]
            ok = towns[(d >= 4) & (d <= 25) & (towns != city)]
            if ok.size == 0:
                ok = towns[towns != city]
            h = int(_pick(rng, ok, pop[ok] + 1.0, 1)[0])
            t = np.array([city], np.int32)
        elif name == "hub_pickup":
            hub = int(rng.choice(hubs)) if hubs.size else int(rng.choice(geo.cities))
            d = geo.dist_km[hub, towns]
            ok = towns[(d >= 8) & (d <= 120)]
            if ok.size == 0:
                ok = towns
            h = int(_pick(rng, ok, pop[ok] + 1.0, 1)[0])
            near = towns[(geo.dist_km[h, towns] <= 30)]
            drop = h if rng.random() < 0.6 else int(_pick(rng, near, pop[near] + 1.0, 1)[0])
            t = np.array([hub, drop], np.int32)
        else:  # collection
            ok = towns[pop[towns] >= 10]
            h = int(_pick(rng, ok, pop[ok], 1)[0])
            for radius in (25, 40, 80, 1e9):
                near = towns[(geo.dist_km[h, towns] <= radius)]
                if near.size >= 3:
                    break
            k = int(rng.integers(2, 5))
            t = _pick(rng, near, pop[near] + 1.0, k)
            d = geo.dist_km[h, towns]
            ws = towns[(d >= 10) & (d <= 40)]
            if ws.size == 0:
                ws = towns[towns != h]
            site[i] = int(rng.choice(ws))
        home[i] = h
        targets[i, : t.size] = t
        n_t[i] = t.size
    return home, targets, n_t, site


def build_population(
    cfg: WorldConfig, geo: Geography, profiles: Profiles, rng: np.random.Generator
) -> Population:
    """Draw the fleet and plant exactly ``cfg.n_offenders`` offending vehicles."""
    n = cfg.vehicles
    towns_w = np.where(geo.node_kind == NODE_TOWN, geo.node_pop, 0.0)
    vrm = random_plates(rng, n, as_of=cfg.start)
    vclass = rng.choice(len(CLASS_MIX), size=n, p=CLASS_MIX).astype(np.int8)
    home = _sample_nodes(rng, towns_w, n)
    n_off = cfg.n_offenders
    off_vehicle = np.sort(rng.choice(n, size=n_off, replace=False)).astype(np.int32)
    off_beh = rng.choice(len(OFFENCE_MIX), size=n_off, p=OFFENCE_MIX).astype(np.int8)
    for b in range(len(OFFENCE_BEHAVIOURS)):
        idx = np.flatnonzero(off_beh == b)
        vclass[off_vehicle[idx]] = rng.choice(4, size=idx.size, p=CLASS_GIVEN_OFFENCE[b])
    cum = np.cumsum(BACKGROUND_GIVEN_CLASS, axis=1)
    u = rng.random(n)
    background = (u[:, None] >= cum[vclass]).sum(axis=1).astype(np.int8)
    activity = np.exp(rng.normal(-(ACTIVITY_SIGMA**2) / 2, ACTIVITY_SIGMA, n))
    o_home, targets, n_t, site = _offender_homes_and_targets(geo, rng, off_beh)
    home[off_vehicle] = o_home
    work = profiles.commute.sample(home, rng.random(n))
    shift = rng.random(n)
    commute_start = np.where(
        shift < 0.88,
        rng.normal(7.8 * H, 0.7 * H, n),
        np.where(shift < 0.95, rng.normal(14.0 * H, 0.5 * H, n), rng.normal(21.5 * H, 0.5 * H, n)),
    )
    commute_start = np.clip(commute_start, 0, 23.5 * H)
    commute_dwell = np.clip(rng.normal(8.8 * H, 0.7 * H, n), 4 * H, 12 * H)
    freight_night = rng.random(n) < 0.35
    business_start = np.where(
        background == BACKGROUND_BEHAVIOURS.index("freight"),
        np.where(freight_night, rng.normal(2.0 * H, 1.5 * H, n), rng.normal(7.0 * H, 1.5 * H, n)),
        rng.normal(8.0 * H, 0.6 * H, n),
    )
    business_start = np.mod(business_start, 24 * H)
    # offence periods and conviction dates
    days = cfg.days
    dur = np.exp(rng.normal(np.log(OFFENCE_MEDIAN_DAYS), OFFENCE_SIGMA, n_off))
    dur = np.minimum(np.clip(np.round(dur), 30, 365), days).astype(np.int64)
    start = np.floor(rng.random(n_off) * (days - dur + 1)).astype(np.int64)
    end = start + dur - 1
    conviction = end + draw_conviction_lag_days(rng, n_off)
    # behaviour parameters
    p_lo, p_hi = (np.array([OFFENCE_DAY_P[b][k] for b in OFFENCE_BEHAVIOURS]) for k in (0, 1))
    h_lo, h_hi = (np.array([OFFENCE_HOURS[b][k] for b in OFFENCE_BEHAVIOURS]) for k in (0, 1))
    p_day = rng.uniform(p_lo[off_beh], p_hi[off_beh])
    t1 = rng.uniform(h_lo[off_beh], h_hi[off_beh]) * H
    t2 = np.mod(t1 + rng.uniform(6, 9, n_off) * H, 24 * H)
    offence = np.full(n, -1, np.int8)
    offence[off_vehicle] = off_beh
    return Population(
        vrm=vrm,
        vclass=vclass,
        home=home,
        background=background,
        activity=activity,
        work=work,
        commute_start_s=commute_start,
        commute_dwell_s=commute_dwell,
        business_start_s=business_start,
        offence=offence,
        offenders=Offenders(
            vehicle=off_vehicle,
            behaviour=off_beh,
            start_day=start,
            end_day=end,
            conviction_day=conviction,
            p_day=p_day,
            t1_s=t1,
            t2_s=t2,
            weekday=rng.integers(0, 7, n_off),
            targets=targets,
            n_targets=n_t,
            site=site,
        ),
    )
