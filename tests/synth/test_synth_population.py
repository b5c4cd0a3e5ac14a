"""Fleet, offenders, prevalence, offence periods and the conviction-lag distribution."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from privacy.plates import classify_vrm
from research.synth.behaviours import (
    DAYS_PER_MONTH,
    LAG_MAX_MONTHS,
    LAG_MEDIAN_MONTHS,
    LAG_MIN_MONTHS,
    OFFENCE_BEHAVIOURS,
    VEHICLE_CLASSES,
    draw_conviction_lag_days,
)
from research.synth.config import DEFAULT_WORLD, ConfigError, WorldConfig
from research.synth.tours import DAY_S, ChunkDays, offence_tours
from research.synth.world import build_model


@pytest.mark.parametrize(
    ("vehicles", "prevalence"), [(300, 0.02), (1000, 0.0025), (777, 0.013), (50, 0.0)]
)
def test_prevalence_is_exact_up_to_rounding(vehicles: int, prevalence: float) -> None:
    """Offenders are planted as a count, round(P * N), not sampled one by one, so the realised
    share differs from P only by rounding: at most 1 / (2N)."""
    model = build_model(WorldConfig(vehicles=vehicles, days=30, prevalence=prevalence, seed=1))
    n_off = int((model.pop.offence >= 0).sum())
    assert n_off == model.pop.offenders.vehicle.size == round(prevalence * vehicles)
    assert abs(n_off / vehicles - prevalence) <= 1 / (2 * vehicles)


def test_fleet_is_plausible() -> None:
    model = build_model(replace(DEFAULT_WORLD, days=30))
    pop = model.pop
    assert pop.n == DEFAULT_WORLD.vehicles
    assert len(set(pop.vrm)) == pop.n
    formats = [classify_vrm(v) for v in pop.vrm]
    assert None not in formats
    assert formats.count("current") / pop.n > 0.8
    shares = np.bincount(pop.vclass, minlength=len(VEHICLE_CLASSES)) / pop.n
    assert shares[VEHICLE_CLASSES.index("car")] > 0.75
    # offenders are mostly vans and cars
    off_cls = pop.vclass[pop.offenders.vehicle]
    assert (
        np.isin(off_cls, [VEHICLE_CLASSES.index("car"), VEHICLE_CLASSES.index("van")]).mean() > 0.9
    )
    # everybody lives in a town of the preset
    assert (model.geo.node_pop[pop.home] > 0).all()


def test_offence_periods_lie_inside_the_world_and_convictions_lag() -> None:
    cfg = WorldConfig(vehicles=4000, days=540, prevalence=0.05, seed=2)
    off = build_model(cfg).pop.offenders
    assert (off.start_day >= 0).all() and (off.end_day < cfg.days).all()
    assert (off.end_day >= off.start_day).all()
    lag_months = (off.conviction_day - off.end_day) / DAYS_PER_MONTH
    assert lag_months.min() >= LAG_MIN_MONTHS - 0.05 and lag_months.max() <= LAG_MAX_MONTHS + 0.05
    # with a 540-day world and a ~14-month median lag, many convictions come after the world
    assert (off.conviction_day >= cfg.days).mean() > 0.3
    assert set(np.unique(off.behaviour)) == set(range(len(OFFENCE_BEHAVIOURS)))


def test_lag_distribution_median_and_clipping() -> None:
    lags = draw_conviction_lag_days(np.random.default_rng(0), 40_000) / DAYS_PER_MONTH
    assert abs(np.median(lags) - LAG_MEDIAN_MONTHS) < 0.4
    assert lags.min() >= LAG_MIN_MONTHS - 0.02 and lags.max() <= LAG_MAX_MONTHS + 0.02
    # lognormal sigma 0.6: about 40% of convictions within a year
    assert 0.33 < (lags <= 12).mean() < 0.47


def test_offence_tours_only_inside_offence_periods() -> None:
    cfg = WorldConfig(vehicles=2000, days=200, prevalence=0.05, seed=9)
    model = build_model(cfg)
    off = model.pop.offenders
    assert (off.end_day - off.start_day + 1 < cfg.days).any()
    days = ChunkDays.make(0, cfg.days, cfg.start.weekday())
    tours = offence_tours(model.pop, days, model.routes.trip_s, np.random.default_rng(0))
    assert tours.vehicle.size > 0
    row_of = {int(v): i for i, v in enumerate(off.vehicle)}
    rows = np.array([row_of[int(v)] for v in tours.vehicle])
    day = tours.start_s // DAY_S
    # a tour starts on an offence day (hub runs may leave the evening before; shuttle
    # pick-ups run after midnight)
    assert ((day >= off.start_day[rows] - 1) & (day <= off.end_day[rows] + 1)).all()
    hub = off.behaviour[rows] == OFFENCE_BEHAVIOURS.index("hub_pickup")
    assert hub.any()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vehicles", 0, "vehicles"),
        ("vehicles", -5, "vehicles"),
        ("days", 0, "days"),
        ("prevalence", 0.9, "prevalence"),
        ("prevalence", -0.1, "prevalence"),
        ("seed", -1, "seed"),
        ("preset", "atlantis", "preset"),
        ("start", date(1999, 1, 1), "start"),
        ("format", "xlsx", "format"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(DEFAULT_WORLD, **{field: value}).validate()
