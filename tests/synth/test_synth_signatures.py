"""Planted offence logistics leave their signatures in the exported reads (and stay noisy).

The checks read the per-force exports like an analyst would, and use the generator's model
(``build_model``: same config, so the same offenders and cameras) only to know which vehicles
offend, with which parameters, and which cameras watch a hub.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from synth_worlds import SIGNATURES, read_all_reads

from research.synth.behaviours import OFFENCE_BEHAVIOURS
from research.synth.world import WorldModel


@pytest.fixture(scope="module")
def reads(signature_world: tuple[Path, WorldModel]) -> pd.DataFrame:
    world, _ = signature_world
    frame = read_all_reads(world)
    frame["day"] = (frame["read_at"] - pd.Timestamp(SIGNATURES.start, tz="UTC")).dt.days
    frame["tod_h"] = (frame["read_at"] - frame["read_at"].dt.floor("D")).dt.total_seconds() / 3600
    return frame


def _offenders(model: WorldModel, behaviour: str) -> list[int]:
    rows = np.flatnonzero(model.pop.offenders.behaviour == OFFENCE_BEHAVIOURS.index(behaviour))
    assert rows.size >= 3, f"fixture should plant several {behaviour} vehicles"
    return rows.tolist()


def _in_period(reads: pd.DataFrame, model: WorldModel, row: int) -> pd.DataFrame:
    off = model.pop.offenders
    vrm = model.pop.vrm[off.vehicle[row]]
    r = reads[reads["vrm"] == vrm]
    return r[(r["day"] >= off.start_day[row]) & (r["day"] <= off.end_day[row])]


def _period_days(model: WorldModel, row: int) -> int:
    off = model.pop.offenders
    return int(off.end_day[row] - off.start_day[row] + 1)


def test_county_lines_runs_cross_force_borders(
    signature_world: tuple[Path, WorldModel], reads: pd.DataFrame
) -> None:
    world, model = signature_world
    vehicles = pq.read_table(world / "truth" / "vehicles.parquet").to_pandas().set_index("vrm")
    rows = _offenders(model, "county_lines")
    crossing = 0
    for row in rows:
        r = _in_period(reads, model, row)
        vrm = model.pop.vrm[model.pop.offenders.vehicle[row]]
        home = vehicles.loc[vrm, "home_force"]
        # every run goes to a provincial town in another force
        crossing += int(r["force"].nunique() >= 2 and (r["force"] != home).any())
    assert crossing / len(rows) >= 0.9


def test_shuttles_repeat_daily_at_similar_night_hours(
    signature_world: tuple[Path, WorldModel], reads: pd.DataFrame
) -> None:
    _, model = signature_world
    off = model.pop.offenders
    shares = []
    for row in _offenders(model, "shuttle"):
        r = _in_period(reads, model, row)
        pickup_h = off.t2_s[row] / 3600  # the night pick-up run, 6-9 h after the drop-off
        near = (r["tod_h"] - (pickup_h - 0.5)) % 24 < 2.5
        shares.append(r.loc[near, "day"].nunique() / _period_days(model, row))
    # most shuttle vehicles are read around the same night hour again and again...
    assert np.mean(np.array(shares) >= 0.15) >= 0.6
    # ...which background traffic rarely is, even counting any night hour (shift workers,
    # taxis and night freight are the noise)
    offenders = set(model.pop.vrm[off.vehicle])
    bg = reads[~reads["vrm"].isin(offenders)]
    night = bg[(bg["tod_h"] >= 0.5) & (bg["tod_h"] < 5.5)]
    regular = night.groupby("vrm")["day"].nunique() / SIGNATURES.days >= 0.15
    assert regular.sum() / bg["vrm"].nunique() < 0.05


def test_hub_pickups_are_weekly_on_the_same_weekday(
    signature_world: tuple[Path, WorldModel], reads: pd.DataFrame
) -> None:
    _, model = signature_world
    off, net = model.pop.offenders, model.net
    rows = _offenders(model, "hub_pickup")
    on_day = total = modal = weekly = 0
    for row in rows:
        hub = off.targets[row, 0]
        hub_cams = set(net.camera_id[net.site_camera[net.site_node == hub]])
        r = _in_period(reads, model, row)
        at_hub = r[r["camera_id"].isin(hub_cams)]
        same = at_hub["read_at"].dt.day_of_week == off.weekday[row]
        on_day += int(same.sum())
        total += len(at_hub)
        if len(at_hub):
            modal += int(at_hub["read_at"].dt.day_of_week.mode().iloc[0] == off.weekday[row])
        # seen at the hub on its weekday in at least two different weeks
        weekly += int(at_hub.loc[same, "day"].floordiv(7).nunique() >= 2)
    # background trips to stations and airports add some other-day reads (noise)
    assert on_day / total >= 0.7
    assert modal / len(rows) >= 0.75
    assert weekly / len(rows) >= 0.75


def test_collections_start_early_on_most_days(
    signature_world: tuple[Path, WorldModel], reads: pd.DataFrame
) -> None:
    _, model = signature_world
    off = model.pop.offenders
    shares = []
    for row in _offenders(model, "collection"):
        r = _in_period(reads, model, row)
        first = r.groupby("day")["tod_h"].min()
        start_h = off.t1_s[row] / 3600
        shares.append(float(((first - (start_h - 0.5)) % 24 < 3).mean()))
    assert np.median(shares) >= 0.6
