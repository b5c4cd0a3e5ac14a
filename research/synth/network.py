"""The camera network: fixed cameras on corridors and in town centres, mobile units, misses.

A *site* is a place a camera can read from; a fixed camera has one site, a mobile camera has
several in its own force and is deployed at one of them for a few days at a time (or is off
duty). Densities are per km of road class (motorways densest) plus town-centre cameras that
grow sub-linearly with population, so coverage is clustered on motorways, A-roads and towns
and sparse in rural areas. Every camera belongs to exactly one force: the force of the town
nearest to it (hub and town-centre cameras: the force of their node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.synth.geography import NODE_HUB, NODE_TOWN, Geography
from research.synth.presets import ROAD_CLASSES

#: Expected fixed cameras per km of road, by class.
CAMERAS_PER_KM = {"motorway": 1 / 22.0, "trunk": 1 / 32.0, "a_road": 1 / 55.0, "urban": 1 / 12.0}
#: A corridor camera watches one carriageway (either way, equally likely) or, with this
#: probability, both.
BOTH_WAYS = 0.3
#: Expected town-centre cameras: URBAN_SCALE * population_thousands ** URBAN_EXPONENT.
URBAN_SCALE, URBAN_EXPONENT = 0.3, 0.6
#: Cameras on the approaches of each hub type.
HUB_CAMERAS = {"airport": 5, "rail": 3, "port": 3}
#: Share of a force's cameras that are mobile (UK: ~1,900 of ~14,000).
MOBILE_SHARE = 0.13
#: A mobile deployment lasts this many days (inclusive range); a day off duty has this chance.
MOBILE_STAY_DAYS = (2, 5)
MOBILE_OFF_DUTY = 0.15
#: Read miss rates ~ Beta(a, b): fixed cameras ~6.7%, mobile ~12%.
MISS_BETA_FIXED = (2.0, 28.0)
MISS_BETA_MOBILE = (3.0, 22.0)
MOBILE_ROAD_CLASS = "mobile"


@dataclass
class CameraNetwork:
    """Cameras (one row per camera) and the sites they read from (one row per site)."""

    # sites
    site_camera: np.ndarray  # int32
    site_lat: np.ndarray
    site_lon: np.ndarray
    site_node: np.ndarray  # int32: node of a town-centre / hub site, -1 on an edge
    site_edge: np.ndarray  # int32: edge of a corridor site, -1 otherwise
    site_pos_km: np.ndarray  # distance from edge_a along the edge
    site_slot: np.ndarray  # int16: index among a mobile camera's sites, -1 for fixed
    site_dir: np.ndarray  # int8: 0 reads traffic a->b of its edge, 1 b->a, 2 both ways
    # cameras
    camera_id: np.ndarray  # object (str), unique across forces, e.g. "GMP-0412"
    camera_force: np.ndarray  # int16
    camera_mobile: np.ndarray  # bool
    camera_miss: np.ndarray  # float64
    camera_road_class: np.ndarray  # object (str)
    camera_lat: np.ndarray  # register position (mobile: centre of its sites)
    camera_lon: np.ndarray
    camera_mobile_row: np.ndarray  # int32 row into mobile_schedule, -1 for fixed
    mobile_schedule: np.ndarray  # (n_mobile, n_days) int16: deployed slot, -1 off duty

    @property
    def n_cameras(self) -> int:
        """Number of cameras."""
        return len(self.camera_id)

    @property
    def n_sites(self) -> int:
        """Number of sites."""
        return len(self.site_camera)


def _corridor_sites(geo: Geography, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    counts = rng.poisson(
        geo.edge_km * np.array([CAMERAS_PER_KM[ROAD_CLASSES[c]] for c in geo.edge_class])
    )
    edge = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    frac = rng.uniform(0.03, 0.97, size=edge.size)
    pos = frac * geo.edge_km[edge]
    a, b = geo.edge_a[edge], geo.edge_b[edge]
    lat = geo.node_lat[a] + frac * (geo.node_lat[b] - geo.node_lat[a])
    lon = geo.node_lon[a] + frac * (geo.node_lon[b] - geo.node_lon[a])
    lat = lat + rng.normal(0, 0.0015, edge.size)
    lon = lon + rng.normal(0, 0.0025, edge.size)
    direction = np.where(rng.random(edge.size) < BOTH_WAYS, 2, rng.integers(0, 2, edge.size))
    return edge, pos, lat, lon, direction.astype(np.int8)


def _node_sites(geo: Geography, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    lam = np.where(geo.node_kind == NODE_TOWN, URBAN_SCALE * geo.node_pop**URBAN_EXPONENT, 0.0)
    counts = rng.poisson(lam)
    hub_counts = np.array([HUB_CAMERAS.get(h, 0) for h in geo.node_hub_type])
    counts = np.where(geo.node_kind == NODE_HUB, hub_counts, counts)
    node = np.repeat(np.arange(geo.n_nodes, dtype=np.int32), counts)
    spread = np.where(
        geo.node_kind[node] == NODE_HUB, 0.002, 0.006 * np.sqrt(geo.node_pop[node] / 10 + 1)
    )
    lat = geo.node_lat[node] + rng.normal(0, 1, node.size) * spread
    lon = geo.node_lon[node] + rng.normal(0, 1, node.size) * spread * 1.6
    return node, lat, lon


def _camera_ids(codes: list[str], force: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ids = np.empty(force.size, dtype=object)
    for fi, code in enumerate(codes):
        idx = np.flatnonzero(force == fi)
        digits = max(4, len(str(idx.size * 4)))
        nums = rng.choice(10**digits - 1, size=idx.size, replace=False) + 1
        ids[idx] = [f"{code}-{n:0{digits}d}" for n in nums]
    return ids


def _mobile_schedule(n_sites: np.ndarray, n_days: int, rng: np.random.Generator) -> np.ndarray:
    out = np.full((n_sites.size, n_days), -1, dtype=np.int16)
    lo, hi = MOBILE_STAY_DAYS
    for row, k in enumerate(n_sites):
        stays = rng.integers(lo, hi + 1, size=n_days // lo + 2)
        slots = rng.integers(0, k, size=stays.size).astype(np.int16)
        slots[rng.random(stays.size) < MOBILE_OFF_DUTY] = -1
        out[row] = np.repeat(slots, stays)[:n_days]
    return out


def build_network(geo: Geography, n_days: int, rng: np.random.Generator) -> CameraNetwork:
    """Place fixed and mobile cameras over ``geo`` and draw mobile deployments for ``n_days``."""
    e_edge, e_pos, e_lat, e_lon, e_dir = _corridor_sites(geo, rng)
    n_node, n_lat, n_lon = _node_sites(geo, rng)
    # fixed cameras: one per site
    f_lat = np.concatenate([e_lat, n_lat])
    f_lon = np.concatenate([e_lon, n_lon])
    f_edge = np.concatenate([e_edge, np.full(n_node.size, -1, np.int32)])
    f_node = np.concatenate([np.full(e_edge.size, -1, np.int32), n_node])
    f_pos = np.concatenate([e_pos, np.zeros(n_node.size)])
    f_dir = np.concatenate([e_dir, np.full(n_node.size, 2, np.int8)])
    f_force = np.concatenate(
        [geo.node_force[geo.nearest_town(e_lat, e_lon)], geo.node_force[n_node]]
    ).astype(np.int16)
    f_class = np.concatenate(
        [
            np.array(ROAD_CLASSES, dtype=object)[geo.edge_class[e_edge]],
            np.full(n_node.size, "urban", dtype=object),
        ]
    )
    n_fixed = f_lat.size
    # mobile cameras: per force, sites re-using positions drawn like fixed ones in that force
    m_force: list[int] = []
    m_sites: list[np.ndarray] = []
    for fi in range(len(geo.forces)):
        pool = np.flatnonzero(f_force == fi)
        n_mob = round(pool.size * MOBILE_SHARE / (1 - MOBILE_SHARE))
        if pool.size == 0:
            continue
        for _ in range(n_mob):
            k = int(rng.integers(3, 7))
            m_force.append(fi)
            m_sites.append(rng.choice(pool, size=min(k, pool.size), replace=False))
    n_mobile = len(m_sites)
    per_cam = np.array([s.size for s in m_sites], dtype=np.int64)
    src = np.concatenate(m_sites) if m_sites else np.empty(0, np.int64)
    jitter = rng.normal(0, 0.004, size=(src.size, 2))
    s_lat = np.concatenate([f_lat, f_lat[src] + jitter[:, 0]])
    s_lon = np.concatenate([f_lon, f_lon[src] + jitter[:, 1]])
    s_edge = np.concatenate([f_edge, f_edge[src]])
    s_node = np.concatenate([f_node, f_node[src]])
    s_pos = np.concatenate([f_pos, f_pos[src]])
    s_dir = np.concatenate([f_dir, f_dir[src]]).astype(np.int8)
    mob_cam = n_fixed + np.repeat(np.arange(n_mobile), per_cam)
    s_cam = np.concatenate([np.arange(n_fixed), mob_cam]).astype(np.int32)
    slot = np.concatenate(
        [np.full(n_fixed, -1), np.concatenate([np.arange(k) for k in per_cam]) if n_mobile else []]
    ).astype(np.int16)
    cam_force = np.concatenate([f_force, np.array(m_force, dtype=np.int16)])
    mobile = np.concatenate([np.zeros(n_fixed, bool), np.ones(n_mobile, bool)])
    a_f, b_f = MISS_BETA_FIXED
    a_m, b_m = MISS_BETA_MOBILE
    miss = np.where(
        mobile,
        rng.beta(a_m, b_m, size=mobile.size),
        rng.beta(a_f, b_f, size=mobile.size),
    )
    cam_class = np.concatenate([f_class, np.full(n_mobile, MOBILE_ROAD_CLASS, dtype=object)])
    starts = np.concatenate([[0], np.cumsum(per_cam)]) + n_fixed
    m_lat = np.array([s_lat[starts[i] : starts[i + 1]].mean() for i in range(n_mobile)])
    m_lon = np.array([s_lon[starts[i] : starts[i + 1]].mean() for i in range(n_mobile)])
    cam_lat = np.round(np.concatenate([f_lat, m_lat]), 5)
    cam_lon = np.round(np.concatenate([f_lon, m_lon]), 5)
    ids = _camera_ids([f.code for f in geo.forces], cam_force, rng)
    mobile_row = np.full(mobile.size, -1, dtype=np.int32)
    mobile_row[n_fixed:] = np.arange(n_mobile)
    schedule = _mobile_schedule(per_cam, n_days, rng)
    return CameraNetwork(
        site_camera=s_cam,
        site_lat=s_lat,
        site_lon=s_lon,
        site_node=s_node.astype(np.int32),
        site_edge=s_edge.astype(np.int32),
        site_pos_km=s_pos,
        site_slot=slot,
        site_dir=s_dir,
        camera_id=ids,
        camera_force=cam_force,
        camera_mobile=mobile,
        camera_miss=miss,
        camera_road_class=cam_class,
        camera_lat=cam_lat,
        camera_lon=cam_lon,
        camera_mobile_row=mobile_row,
        mobile_schedule=schedule,
    )
