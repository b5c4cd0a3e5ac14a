"""Vehicle classes, background behaviours, planted offence logistics and their parameters.

Everything a reader needs to judge the realism of the world is in this module as named
constants: fleet mix, how often each behaviour travels on weekdays and weekends, at what
hours, how far (gravity destination profiles), and the conviction-lag distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.synth.geography import NODE_HUB, NODE_TOWN, Geography

VEHICLE_CLASSES: tuple[str, ...] = ("car", "van", "hgv", "taxi")
#: Share of the fleet per class (GB licensed stock ~84% cars, ~12% vans; HGVs and taxis
#: slightly over-weighted because they drive far more than their share of the stock).
CLASS_MIX = np.array([0.83, 0.125, 0.03, 0.015])

BACKGROUND_BEHAVIOURS: tuple[str, ...] = ("commuting", "business", "freight", "leisure")
#: P(background behaviour | class); rows follow VEHICLE_CLASSES.
BACKGROUND_GIVEN_CLASS = np.array(
    [
        [0.55, 0.08, 0.00, 0.37],  # car
        [0.20, 0.70, 0.02, 0.08],  # van
        [0.00, 0.00, 1.00, 0.00],  # hgv
        [0.00, 1.00, 0.00, 0.00],  # taxi: plies for hire (business, taxi profile)
    ]
)

OFFENCE_BEHAVIOURS: tuple[str, ...] = ("county_lines", "shuttle", "hub_pickup", "collection")
#: Share of offending vehicles per planted behaviour.
OFFENCE_MIX = np.array([0.30, 0.25, 0.20, 0.25])
#: P(class | offence behaviour): mostly vans and cars.
CLASS_GIVEN_OFFENCE = np.array(
    [
        [0.60, 0.40, 0.0, 0.00],  # county_lines
        [0.70, 0.20, 0.0, 0.10],  # shuttle
        [0.50, 0.50, 0.0, 0.00],  # hub_pickup
        [0.20, 0.80, 0.0, 0.00],  # collection (minibus-type vans)
    ]
)

#: Chance of an offence tour on an eligible day (uniform per offender in this range).
#: Eligible: any day (county lines, shuttle), the offender's weekday (hub pick-up),
#: Monday-Saturday (collection); always inside the offence period.
OFFENCE_DAY_P = {
    "county_lines": (0.2, 0.45),
    "shuttle": (0.6, 0.9),
    "hub_pickup": (0.85, 0.85),
    "collection": (0.5, 0.8),
}
#: Usual hour of the offence tour (uniform per offender in this range): county-lines run
#: departure, shuttle drop-off departure (the pick-up run follows 6-9 h later), hub arrival
#: time (the train / plane / ferry), collection round departure.
OFFENCE_HOURS = {
    "county_lines": (13.0, 22.0),
    "shuttle": (17.0, 21.0),
    "hub_pickup": (6.0, 23.0),
    "collection": (4.5, 6.5),
}

#: Errand tours per day (Poisson mean) by background behaviour: weekday, Saturday, Sunday.
ERRAND_RATE = np.array(
    [
        [0.30, 0.80, 0.60],  # commuting
        [0.20, 0.45, 0.35],  # business
        [0.08, 0.20, 0.20],  # freight
        [0.55, 0.90, 0.80],  # leisure
    ]
)
#: Chance a commuter drives to work: weekday, Saturday, Sunday.
COMMUTE_P = np.array([0.82, 0.10, 0.05])
#: Chance of a business round (vans), a freight run (HGVs), a leisure outing.
BUSINESS_P = np.array([0.70, 0.25, 0.05])
FREIGHT_P = np.array([0.85, 0.35, 0.25])
OUTING_P = np.array([0.08, 0.35, 0.30])
#: Taxi fares per day (Poisson mean): weekday, Saturday, Sunday.
TAXI_FARES = np.array([3.5, 4.5, 3.0])
#: Per-vehicle activity multiplier ~ lognormal(-s^2/2, s): mean 1, some rarely used vehicles.
ACTIVITY_SIGMA = 0.6
#: On days inside its offence period an offender's background travel is scaled by this.
OFFENDER_BACKGROUND_SCALE = 0.5

#: Hour-of-day weights (24 values) for errand starts: weekday and weekend.
ERRAND_HOURS_WEEKDAY = np.array(
    [0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 1.5, 2.0, 2.5, 3.0, 3.2,
     3.2, 3.0, 2.8, 3.0, 3.4, 3.8, 3.6, 3.0, 2.2, 1.5, 0.8, 0.3]
)  # fmt: skip
ERRAND_HOURS_WEEKEND = np.array(
    [0.3, 0.2, 0.1, 0.05, 0.05, 0.1, 0.3, 0.8, 1.8, 3.0, 3.8, 4.0,
     4.0, 3.8, 3.6, 3.4, 3.2, 3.0, 2.8, 2.4, 1.8, 1.2, 0.8, 0.5]
)  # fmt: skip
TAXI_HOURS = np.array(
    [2.0, 1.8, 1.2, 0.6, 0.4, 0.6, 1.2, 2.0, 2.4, 1.8, 1.6, 1.8,
     2.0, 1.8, 1.8, 2.0, 2.4, 2.8, 2.8, 2.6, 2.4, 2.6, 2.8, 2.4]
)  # fmt: skip

#: Conviction lag after the offence ends: lognormal with this median (months) and sigma,
#: clipped to [LAG_MIN, LAG_MAX] months. 40% of convictions come within 12 months, 60% later.
LAG_MEDIAN_MONTHS = 14.0
LAG_SIGMA = 0.6
LAG_MIN_MONTHS = 2.0
LAG_MAX_MONTHS = 60.0
DAYS_PER_MONTH = 30.4375
#: Offence period length: lognormal, median 150 days, clipped to [30, 365] (and to the world).
OFFENCE_MEDIAN_DAYS = 150.0
OFFENCE_SIGMA = 0.5


def draw_conviction_lag_days(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` conviction lags in whole days from the documented lag distribution."""
    months = np.exp(rng.normal(np.log(LAG_MEDIAN_MONTHS), LAG_SIGMA, n))
    months = np.clip(months, LAG_MIN_MONTHS, LAG_MAX_MONTHS)
    return np.round(months * DAYS_PER_MONTH).astype(np.int64)


#: Buckets per origin of the guide table that speeds up inverse-CDF sampling.
GUIDE_BUCKETS = 256


@dataclass
class DestinationProfile:
    """A gravity model P(destination | origin), sampled exactly by inverse CDF.

    A guide table (Chen & Asau) gives, for each origin and each of GUIDE_BUCKETS equal slices
    of [0, 1), the first destination whose cumulative probability reaches the slice; a few
    vectorised steps forward then land on the exact inverse-CDF answer.
    """

    cum: np.ndarray  # (n, n) row-wise cumulative probabilities, ending exactly at 1
    guide: np.ndarray  # (n, GUIDE_BUCKETS) int32

    @staticmethod
    def from_probabilities(p: np.ndarray) -> DestinationProfile:
        """Build from a row-stochastic matrix."""
        cum = np.cumsum(p, axis=1)
        # from each row's last possible destination on, the CDF is exactly 1 (no float drift
        # can then select a zero-probability destination such as a bare junction)
        last = p.shape[1] - 1 - np.argmax((p > 0)[:, ::-1], axis=1)
        cum[np.arange(p.shape[1])[None, :] >= last[:, None]] = 1.0
        edges = np.arange(GUIDE_BUCKETS) / GUIDE_BUCKETS
        guide = np.stack([np.searchsorted(row, edges, side="right") for row in cum])
        return DestinationProfile(cum=cum, guide=np.minimum(guide, p.shape[1] - 1).astype(np.int32))

    def sample(self, origin: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Destinations for each origin given uniforms ``u`` in [0, 1): the first ``d`` with
        ``cum[origin, d] > u``."""
        n = self.cum.shape[1]
        flat = self.cum.ravel()
        base = origin.astype(np.int64) * n
        d = self.guide[origin, (u * GUIDE_BUCKETS).astype(np.int64)].astype(np.int64)
        todo = np.flatnonzero(flat[base + d] <= u)
        while todo.size:
            d[todo] += 1
            still = flat[base[todo] + d[todo]] <= u[todo]
            todo = todo[still]
        return d.astype(np.int32)


def gravity_profile(
    geo: Geography,
    length_km: float,
    self_weight: float,
    hub_weight: float,
    pop_exponent: float = 1.0,
) -> DestinationProfile:
    """P(d | o) ∝ attraction(d) * exp(-road_km(o, d) / length_km); self trips weighted apart."""
    attract = np.where(geo.node_kind == NODE_TOWN, geo.node_pop**pop_exponent, 0.0)
    attract = attract + np.where(geo.node_kind == NODE_HUB, hub_weight, 0.0)
    w = attract[None, :] * np.exp(-geo.dist_km / length_km)
    np.fill_diagonal(w, self_weight * attract)
    w[:, attract <= 0] = 0.0
    rows = w.sum(axis=1, keepdims=True)
    rows[rows == 0] = 1.0
    return DestinationProfile.from_probabilities(w / rows)


@dataclass
class Profiles:
    """The destination profiles used by the behaviours."""

    local: DestinationProfile  # errands: mostly in town
    commute: DestinationProfile  # where people work
    regional: DestinationProfile  # business rounds
    leisure: DestinationProfile  # outings
    freight: DestinationProfile  # HGV runs
    taxi: DestinationProfile  # fares


def build_profiles(geo: Geography) -> Profiles:
    """Gravity profiles with the documented length scales."""
    return Profiles(
        local=gravity_profile(geo, 8.0, self_weight=6.0, hub_weight=2.0),
        commute=gravity_profile(geo, 12.0, self_weight=2.5, hub_weight=10.0),
        regional=gravity_profile(geo, 22.0, self_weight=1.0, hub_weight=15.0),
        leisure=gravity_profile(geo, 28.0, self_weight=0.3, hub_weight=12.0, pop_exponent=0.7),
        freight=gravity_profile(geo, 120.0, self_weight=0.0, hub_weight=150.0),
        taxi=gravity_profile(geo, 6.0, self_weight=12.0, hub_weight=40.0),
    )
