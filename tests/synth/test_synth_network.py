"""Presets, road graph and camera network: coverage, ownership, mobile units, misses."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from research.synth.geography import NODE_HUB, build_geography, haversine_km
from research.synth.network import MOBILE_STAY_DAYS, build_network
from research.synth.presets import PresetError, list_presets, load_preset
from research.synth.presets import validate_preset as validate

NW_FORCES = {
    "cheshire", "cumbria", "greater-manchester", "lancashire", "merseyside", "north-wales",
}  # fmt: skip


def test_presets_load_and_cover_the_forces() -> None:
    assert {"north-west", "england-wales"} <= set(list_presets())
    nw = build_geography("north-west")
    assert {f.slug for f in nw.forces} == NW_FORCES
    ew = build_geography("england-wales")
    assert len(ew.forces) == 43
    assert len({f.code for f in ew.forces}) == 43
    for geo in (nw, ew):
        assert np.isfinite(geo.time_s).all()  # connected
        assert set(np.unique(geo.node_force)) == set(range(len(geo.forces)))
        # the fastest route is never shorter than the straight line
        t = geo.towns
        crow = haversine_km(
            geo.node_lat[t][:, None], geo.node_lon[t][:, None],
            geo.node_lat[t][None, :], geo.node_lon[t][None, :],
        )  # fmt: skip
        assert (geo.dist_km[np.ix_(t, t)] >= crow - 1e-6).all()
    hubs = {nw.node_name[h] for h in nw.hubs}
    assert {"Manchester Airport", "Liverpool Lime Street", "Holyhead Port"} <= hubs
    m6 = [nw.node_name[n] for n in nw.path(nw.index("Warrington"), nw.index("Carlisle"))]
    assert "Preston" in m6 and "Penrith" in m6


def test_bad_preset_is_reported_with_its_entry() -> None:
    data = copy.deepcopy(load_preset("north-west"))
    data["roads"][0]["via"].append("Atlantis")
    with pytest.raises(PresetError, match=r"roads\[0\].*Atlantis"):
        validate(data)
    with pytest.raises(PresetError, match="unknown preset"):
        load_preset("south-pole")


@pytest.fixture(scope="module")
def nw_network():
    geo = build_geography("north-west")
    return geo, build_network(geo, 120, np.random.default_rng(1))


def test_coverage_clusters_on_motorways_and_towns(nw_network) -> None:
    geo, net = nw_network
    on_edge = net.site_edge >= 0
    fixed = net.site_slot < 0
    per_km = {}
    for cls, name in enumerate(("motorway", "trunk", "a_road")):
        edges = np.flatnonzero(geo.edge_class == cls)
        n_sites = np.isin(net.site_edge[on_edge & fixed], edges).sum()
        per_km[name] = n_sites / geo.edge_km[edges].sum()
    assert per_km["motorway"] > per_km["trunk"] > per_km["a_road"] > 0
    centre = np.bincount(net.site_node[(net.site_node >= 0) & fixed], minlength=geo.n_nodes)
    assert centre[geo.index("Manchester")] > centre[geo.index("Kendal")] >= 0
    rural = [geo.index(t) for t in ("Betws-y-Coed", "Garstang", "Brampton", "Keswick")]
    assert centre[rural].sum() <= 4
    for hub in geo.hubs:
        assert geo.node_kind[hub] == NODE_HUB and centre[hub] >= 3


def test_each_camera_belongs_to_one_force_with_its_sites(nw_network) -> None:
    geo, net = nw_network
    assert len(set(net.camera_id)) == net.n_cameras
    codes = np.array([f.code for f in geo.forces])
    assert all(
        cid.startswith(codes[f] + "-")
        for cid, f in zip(net.camera_id, net.camera_force, strict=True)
    )
    site_force = geo.node_force[geo.nearest_town(net.site_lat, net.site_lon)]
    fixed = net.site_slot < 0
    on_edge = net.site_edge >= 0
    # corridor cameras take the force of the nearest town
    assert (site_force[fixed & on_edge] == net.camera_force[net.site_camera[fixed & on_edge]]).all()
    assert (net.camera_miss > 0).all() and (net.camera_miss < 0.5).all()


def test_mobile_cameras_move_every_few_days(nw_network) -> None:
    geo, net = nw_network
    mobile = np.flatnonzero(net.camera_mobile)
    assert 0.08 < mobile.size / net.n_cameras < 0.2
    hi = MOBILE_STAY_DAYS[1]
    for cam in mobile:
        sched = net.mobile_schedule[net.camera_mobile_row[cam]]
        changes = np.flatnonzero(np.diff(sched) != 0)
        assert changes.size >= 120 // (2 * hi)
        runs = np.diff(changes)
        assert np.median(runs) <= hi + 1
        sites = np.flatnonzero(net.site_camera == cam)
        assert sites.size >= 3
        assert len(set(sched[sched >= 0])) >= 2
        # a mobile camera only ever works inside its own force
        near = geo.node_force[geo.nearest_town(net.site_lat[sites], net.site_lon[sites])]
        assert (near == net.camera_force[cam]).mean() >= 0.5
