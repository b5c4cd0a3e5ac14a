"""A tiny planted-pattern world for unit tests and micro-benchmarks of the feature/model stack.

The realistic multi-force generator is ``research.synth``; this one exists so that tests of
features, model and DP training can run in seconds on a world whose answer is known. It
returns data in the force-store shape (``vehicle``/``camera`` tokens, ``read_at`` UTC), a camera
register and labels.

Negatives are a mix of random drivers, ordinary weekday commuters and weekday night-shift
workers (so neither regularity nor night driving alone is the answer); positives run a tight
nightly shuttle between two cameras on most days of the week, weekends included, plus
background driving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CENTRE = (53.48, -2.24)
NS_PER_HOUR = 3_600_000_000_000


@dataclass(frozen=True)
class ToyWorld:
    """Reads, camera register, labels (Series vehicle -> 0/1) and the window."""

    reads: pd.DataFrame
    cameras: pd.DataFrame
    labels: pd.Series
    window_start: pd.Timestamp
    window_end: pd.Timestamp


def make_cameras(n_cameras: int, rng: np.random.Generator, spread_deg: float = 0.4) -> pd.DataFrame:
    """A register of ``n_cameras`` cameras scattered around a city centre."""
    classes = np.array(["motorway", "a_road", "urban", "rural"])
    return pd.DataFrame(
        {
            "camera": [f"{i:016x}" for i in rng.permutation(1 << 20)[:n_cameras]],
            "lat": CENTRE[0] + rng.normal(0, spread_deg / 2, n_cameras),
            "lon": CENTRE[1] + rng.normal(0, spread_deg, n_cameras),
            "road_class": classes[rng.integers(0, len(classes), n_cameras)],
        }
    )


def make_toy_world(
    *,
    n_vehicles: int = 600,
    n_cameras: int = 40,
    days: int = 28,
    prevalence: float = 0.1,
    seed: int = 0,
) -> ToyWorld:
    """Generate a toy world; ``round(prevalence * n_vehicles)`` vehicles are positives."""
    rng = np.random.default_rng(seed)
    cameras = make_cameras(n_cameras, rng)
    start = pd.Timestamp("2024-03-04", tz="UTC")
    n_pos = round(prevalence * n_vehicles)
    vehicles = np.array([f"{i:032x}" for i in rng.permutation(1 << 24)[:n_vehicles]])
    label = np.zeros(n_vehicles, dtype=np.int64)
    label[rng.permutation(n_vehicles)[:n_pos]] = 1
    role = rng.random(n_vehicles)
    commuter = (label == 0) & (role < 0.35)
    night_worker = (label == 0) & (role >= 0.35) & (role < 0.45)

    parts = []
    # Background driving for everyone: Poisson count of reads at uniform times and cameras.
    n_bg = rng.poisson(np.where(label == 1, 8, 15), n_vehicles)
    v = np.repeat(np.arange(n_vehicles), n_bg)
    parts.append((v, rng.random(len(v)) * days * 24.0, rng.integers(0, n_cameras, len(v))))
    # Commuters: weekday mornings and evenings between their own two cameras, loose timing.
    home = rng.integers(0, n_cameras, (n_vehicles, 2))
    day_grid = np.arange(days)
    weekday = (day_grid % 7) < 5
    for who, legs in ((commuter, ((0, 8.0), (1, 17.5))), (night_worker, ((0, 22.0), (1, 30.0)))):
        cv, cd = np.nonzero(
            who[:, None] & weekday[None, :] & (rng.random((n_vehicles, days)) < 0.7)
        )
        for leg, base_hour in legs:
            hour = base_hour + rng.normal(0, 1.0, len(cv))
            parts.append((cv, cd * 24.0 + hour, home[cv, leg]))
    # Positives: nightly shuttle at a tight hour, most days including weekends.
    pv, pd_ = np.nonzero((label == 1)[:, None] & (rng.random((n_vehicles, days)) < 0.6))
    shuttle_hour = rng.uniform(1.0, 4.0, n_vehicles)
    hour = shuttle_hour[pv] + rng.normal(0, 0.15, len(pv))
    parts.append((pv, pd_ * 24.0 + hour, home[pv, 0]))
    parts.append((pv, pd_ * 24.0 + hour + 0.6 + rng.normal(0, 0.05, len(pv)), home[pv, 1]))

    vi = np.concatenate([p[0] for p in parts])
    hours = np.clip(np.concatenate([p[1] for p in parts]), 0.0, days * 24.0 - 1e-6)
    ci = np.concatenate([p[2] for p in parts])
    reads = pd.DataFrame(
        {
            "vehicle": vehicles[vi],
            "camera": cameras["camera"].to_numpy()[ci],
            "read_at": start + pd.to_timedelta((hours * NS_PER_HOUR).astype(np.int64), unit="ns"),
        }
    )
    reads = reads.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    seen = np.unique(vi)
    labels = pd.Series(label[seen], index=vehicles[seen], name="label")
    return ToyWorld(
        reads=reads,
        cameras=cameras,
        labels=labels,
        window_start=start,
        window_end=start + pd.Timedelta(days, "D"),
    )
