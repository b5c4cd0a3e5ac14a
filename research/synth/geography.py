"""The world's map: forces, towns, hubs and road corridors as a small weighted graph.

Nodes are towns (with a population), transport hubs (airport, rail station, port; leaf nodes
attached to one town so routes never pass *through* them) and bare junctions. Edges are road
segments between consecutive ``via`` nodes of a preset road; their length is the great-circle
distance times a winding factor per road class, their time that length over a class speed.
All-pairs fastest paths come from a vectorised Floyd-Warshall (a few hundred nodes at most).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from research.synth.presets import ROAD_CLASSES, PresetError, load_preset

NODE_TOWN, NODE_HUB, NODE_JUNCTION = 0, 1, 2
EARTH_RADIUS_KM = 6371.0088

#: Free-flow speeds (km/h) and winding factors (road length / straight line) per road class.
ROAD_SPEED_KMH = {"motorway": 100.0, "trunk": 80.0, "a_road": 55.0, "urban": 30.0}
ROAD_WINDING = {"motorway": 1.10, "trunk": 1.15, "a_road": 1.25, "urban": 1.30}


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in km (numpy-broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass(frozen=True)
class Force:
    """A territorial police force: folder slug, full name, camera-id code."""

    slug: str
    name: str
    code: str


@dataclass
class Geography:
    """Nodes, edges and fastest-path tables of one preset."""

    name: str
    description: str
    forces: list[Force]
    node_name: list[str]
    node_force: np.ndarray  # int16, index into forces
    node_lat: np.ndarray
    node_lon: np.ndarray
    node_pop: np.ndarray  # thousands of residents (0 for hubs and junctions)
    node_kind: np.ndarray  # NODE_TOWN / NODE_HUB / NODE_JUNCTION
    node_hub_type: list[str]  # "airport" / "rail" / "port" / ""
    edge_a: np.ndarray
    edge_b: np.ndarray
    edge_class: np.ndarray  # index into ROAD_CLASSES
    edge_km: np.ndarray
    edge_time_s: np.ndarray
    edge_road: list[str]
    cities: np.ndarray  # node indices of county-lines / shuttle cities
    dist_km: np.ndarray  # (N, N) length of the fastest path
    time_s: np.ndarray  # (N, N) free-flow time of the fastest path
    next_hop: np.ndarray  # (N, N) next node on the fastest path
    best_edge: dict[tuple[int, int], int]

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.node_name)

    @property
    def endpoints(self) -> np.ndarray:
        """Nodes a trip may start or end at (towns and hubs, not bare junctions)."""
        return np.flatnonzero(self.node_kind != NODE_JUNCTION)

    @property
    def towns(self) -> np.ndarray:
        """Town nodes."""
        return np.flatnonzero(self.node_kind == NODE_TOWN)

    @property
    def hubs(self) -> np.ndarray:
        """Hub nodes (airports, rail stations, ports)."""
        return np.flatnonzero(self.node_kind == NODE_HUB)

    def index(self, name: str) -> int:
        """Node index of a named node."""
        return self.node_name.index(name)

    def path(self, origin: int, dest: int) -> list[int]:
        """Nodes of the fastest path from ``origin`` to ``dest`` (both included)."""
        nodes = [origin]
        while nodes[-1] != dest:
            nodes.append(int(self.next_hop[nodes[-1], dest]))
        return nodes

    def nearest_town(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Index of the nearest town node for each point (how cameras get their force)."""
        towns = self.towns
        d = haversine_km(
            np.asarray(lat)[:, None],
            np.asarray(lon)[:, None],
            self.node_lat[towns][None, :],
            self.node_lon[towns][None, :],
        )
        return towns[np.argmin(d, axis=1)]


def _all_pairs_fastest(
    n: int, a: np.ndarray, b: np.ndarray, t: np.ndarray, km: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    time = np.full((n, n), np.inf)
    dist = np.full((n, n), np.inf)
    nxt = np.tile(np.arange(n, dtype=np.int32), (n, 1))
    np.fill_diagonal(time, 0.0)
    np.fill_diagonal(dist, 0.0)
    for i, j, ti, ki in zip(a, b, t, km, strict=True):
        for u, v in ((i, j), (j, i)):
            if ti < time[u, v]:
                time[u, v], dist[u, v], nxt[u, v] = ti, ki, v
    for k in range(n):
        cand = time[:, k, None] + time[None, k, :]
        better = cand < time - 1e-9
        time = np.where(better, cand, time)
        dist = np.where(better, dist[:, k, None] + dist[None, k, :], dist)
        nxt = np.where(better, nxt[:, k, None], nxt)
    return time, dist, nxt


def build_geography(preset: str | dict[str, Any]) -> Geography:
    """Build the graph of a preset (a packaged name or an already loaded preset dict)."""
    data = load_preset(preset) if isinstance(preset, str) else preset
    forces: list[Force] = []
    names: list[str] = []
    nforce: list[int] = []
    lat: list[float] = []
    lon: list[float] = []
    pop: list[float] = []
    kind: list[int] = []
    hub_type: list[str] = []
    hub_links: list[tuple[str, str, str]] = []
    for fi, f in enumerate(data["forces"]):
        forces.append(Force(f["slug"], f["name"], f["code"]))
        for t in f["towns"]:
            names.append(t[0])
            nforce.append(fi)
            lat.append(float(t[1]))
            lon.append(float(t[2]))
            pop.append(float(t[3]))
            kind.append(NODE_TOWN)
            hub_type.append("")
        for h in f["hubs"]:
            names.append(h[0])
            nforce.append(fi)
            lat.append(float(h[1]))
            lon.append(float(h[2]))
            pop.append(0.0)
            kind.append(NODE_HUB)
            hub_type.append(h[3])
            hub_links.append((h[0], h[4], h[5]))
        for j in f["junctions"]:
            names.append(j[0])
            nforce.append(fi)
            lat.append(float(j[1]))
            lon.append(float(j[2]))
            pop.append(0.0)
            kind.append(NODE_JUNCTION)
            hub_type.append("")
    index = {nm: i for i, nm in enumerate(names)}
    latv, lonv = np.array(lat), np.array(lon)
    ea: list[int] = []
    eb: list[int] = []
    ecls: list[int] = []
    eroad: list[str] = []
    for road in data["roads"]:
        via = [index[v] for v in road["via"]]
        for u, v in itertools.pairwise(via):
            if u == v:
                raise PresetError(f"road {road['name']}: repeated consecutive node {names[u]!r}")
            ea.append(u)
            eb.append(v)
            ecls.append(ROAD_CLASSES.index(road["class"]))
            eroad.append(road["name"])
    for hub, town, cls in hub_links:
        ea.append(index[hub])
        eb.append(index[town])
        ecls.append(ROAD_CLASSES.index(cls))
        eroad.append(f"{hub} access")
    a, b, c = np.array(ea), np.array(eb), np.array(ecls)
    winding = np.array([ROAD_WINDING[ROAD_CLASSES[k]] for k in c])
    speed = np.array([ROAD_SPEED_KMH[ROAD_CLASSES[k]] for k in c])
    km = np.maximum(haversine_km(latv[a], lonv[a], latv[b], lonv[b]) * winding, 0.5)
    t = km / speed * 3600.0
    n = len(names)
    time, dist, nxt = _all_pairs_fastest(n, a, b, t, km)
    if not np.isfinite(time).all():
        i, j = np.argwhere(~np.isfinite(time))[0]
        raise PresetError(f"preset {data['name']}: no road between {names[i]!r} and {names[j]!r}")
    best: dict[tuple[int, int], int] = {}
    for e in range(len(a)):
        for u, v in ((int(a[e]), int(b[e])), (int(b[e]), int(a[e]))):
            if (u, v) not in best or t[e] < t[best[(u, v)]]:
                best[(u, v)] = e
    return Geography(
        name=data["name"],
        description=data.get("description", ""),
        forces=forces,
        node_name=names,
        node_force=np.array(nforce, dtype=np.int16),
        node_lat=latv,
        node_lon=lonv,
        node_pop=np.array(pop),
        node_kind=np.array(kind, dtype=np.int8),
        node_hub_type=hub_type,
        edge_a=a.astype(np.int32),
        edge_b=b.astype(np.int32),
        edge_class=c.astype(np.int8),
        edge_km=km,
        edge_time_s=t,
        edge_road=eroad,
        cities=np.array([index[cname] for cname in data["cities"]], dtype=np.int32),
        dist_km=dist,
        time_s=time,
        next_hop=nxt,
        best_edge=best,
    )
