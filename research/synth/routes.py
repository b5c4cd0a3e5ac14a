"""Route tables: which camera sites a trip passes, when, and how likely each read is.

A trip between two towns follows the fastest path of the road graph. It passes

* every corridor site on the path's edges that watches its direction of travel, in travel
  order, read unless the camera misses;
* at each end, possibly one town-centre camera (chance 1 - exp(-E), the camera chosen at
  random among the town's centre cameras when the read happens) and, at a hub, each of the
  hub's approach cameras with a high probability.

Through traffic is assumed to bypass the centres of towns on the way. A local trip (origin ==
destination) may pass one of its town's centre cameras.

Everything is stored as CSR tables of *entries* ``(site, offset_s, spread_s, prob)``: a read's
time is ``offset_s + u * spread_s`` seconds (u uniform) after the trip's departure (origin and
corridor entries) or relative to its arrival (destination entries), scaled by the trip's
speed factor. ``site = -1 - node`` marks a town-centre entry. The corridor table is built for
all endpoint pairs at once by walking the next-hop table in numpy, hop by hop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.synth.geography import NODE_HUB, ROAD_SPEED_KMH, Geography
from research.synth.network import CameraNetwork
from research.synth.presets import ROAD_CLASSES

#: Minutes spent in town at each end of an inter-town trip (access to / from the corridor).
ACCESS_S = 300.0
#: Duration of a local (same-town) trip.
LOCAL_TRIP_S = 900.0
#: Expected town-centre reads at each end of a trip and on a local trip (at most one each).
EXPECTED_END_READS = 0.2
EXPECTED_LOCAL_READS = 0.12
#: Chance to pass each approach camera of a hub one travels to or from.
HUB_PASS = 0.5


@dataclass
class EntryTable:
    """CSR entries: rows ``ptr[k] : ptr[k + 1]`` belong to key ``k``."""

    ptr: np.ndarray  # int64
    site: np.ndarray  # int32 (>= 0 a site; -1 - node a town-centre entry)
    offset_s: np.ndarray  # float32
    spread_s: np.ndarray  # float32
    prob: np.ndarray  # float32

    @staticmethod
    def from_rows(
        n_keys: int,
        key: np.ndarray,
        site: np.ndarray,
        offset: np.ndarray,
        spread: np.ndarray,
        prob: np.ndarray,
        key_scale: int = 1,
    ) -> EntryTable:
        """Build from unsorted rows; ``key // key_scale`` is the CSR key, the rest orders rows
        within a key (a stable sort keeps the given order among equal keys)."""
        order = np.argsort(key, kind="stable")
        return EntryTable(
            ptr=np.searchsorted(key[order], np.arange(n_keys + 1) * key_scale).astype(np.int64),
            site=site[order].astype(np.int32),
            offset_s=offset[order].astype(np.float32),
            spread_s=spread[order].astype(np.float32),
            prob=prob[order].astype(np.float32),
        )


@dataclass
class RouteTable:
    """All entries of each (origin, destination) pair, centre sites and trip durations."""

    n_nodes: int
    entries: EntryTable  # key o * n + d (o == d: a local trip), offsets from departure
    trip_s: np.ndarray  # (n, n) trip duration in seconds (local trips on the diagonal)
    node_ptr: np.ndarray  # int64, n + 1: town-centre sites of each node
    node_site: np.ndarray  # int32
    local_read_p: np.ndarray  # per node: chance a local trip passes a centre camera


def _directed_edges(geo: Geography, net: CameraNetwork) -> tuple[np.ndarray, ...]:
    """Corridor sites of every directed edge in travel order: (id matrix, time, CSR)."""
    n = geo.n_nodes
    de_id = np.full((n, n), -1, dtype=np.int64)
    keys = sorted(geo.best_edge)
    de_time = np.empty(len(keys))
    on_edge = np.flatnonzero(net.site_edge >= 0)
    on_edge = on_edge[np.argsort(net.site_edge[on_edge], kind="stable")]
    bounds = np.searchsorted(net.site_edge[on_edge], np.arange(len(geo.edge_a) + 1))
    sites_l: list[np.ndarray] = []
    secs_l: list[np.ndarray] = []
    for i, (u, v) in enumerate(keys):
        e = geo.best_edge[(u, v)]
        de_id[u, v] = i
        de_time[i] = geo.edge_time_s[e]
        sites = on_edge[bounds[e] : bounds[e + 1]]
        forward = u == geo.edge_a[e]
        sites = sites[net.site_dir[sites] != (1 if forward else 0)]
        pos = net.site_pos_km[sites]
        if not forward:
            pos = geo.edge_km[e] - pos
        srt = np.argsort(pos, kind="stable")
        sites_l.append(sites[srt])
        secs_l.append(pos[srt] / ROAD_SPEED_KMH[ROAD_CLASSES[geo.edge_class[e]]] * 3600.0)
    counts = np.array([s.size for s in sites_l], dtype=np.int64)
    de_ptr = np.concatenate([[0], np.cumsum(counts)])
    return de_id, de_time, de_ptr, np.concatenate(sites_l), np.concatenate(secs_l)


def build_routes(geo: Geography, net: CameraNetwork) -> RouteTable:
    """Precompute corridor entries for every endpoint pair and the end entries per node."""
    n = geo.n_nodes
    keep = 1.0 - net.camera_miss[net.site_camera]
    hub = geo.node_kind == NODE_HUB

    # --- corridor entries, all pairs at once ------------------------------------------------
    de_id, de_time, de_ptr, de_site, de_secs = _directed_edges(geo, net)
    ends = geo.endpoints
    o_all = np.repeat(ends, ends.size)
    d_all = np.tile(ends, ends.size)
    inter = o_all != d_all
    pair_o, pair_d = o_all[inter], d_all[inter]
    cur = pair_o.copy()
    t_before = np.zeros(pair_o.size)
    rec_pair: list[np.ndarray] = []
    rec_edge: list[np.ndarray] = []
    rec_t: list[np.ndarray] = []
    while True:
        a = np.flatnonzero(cur != pair_d)
        if a.size == 0:
            break
        nxt = geo.next_hop[cur[a], pair_d[a]]
        de = de_id[cur[a], nxt]
        rec_pair.append(a)
        rec_edge.append(de)
        rec_t.append(t_before[a].copy())
        t_before[a] += de_time[de]
        cur[a] = nxt
    r_pair = np.concatenate(rec_pair)
    r_edge = np.concatenate(rec_edge)
    r_t = np.concatenate(rec_t)
    cnt = de_ptr[r_edge + 1] - de_ptr[r_edge]
    rep = np.repeat(np.arange(r_pair.size), cnt)
    within = np.arange(rep.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    idx = de_ptr[r_edge][rep] + within
    c_site = de_site[idx]
    corr_key = (pair_o[r_pair] * n + pair_d[r_pair])[rep]
    corr_off = ACCESS_S + r_t[rep] + de_secs[idx]

    # --- end entries per node ----------------------------------------------------------------
    centre = np.flatnonzero(net.site_node >= 0)
    centre = centre[np.argsort(net.site_node[centre], kind="stable")]
    town_sites = centre[~hub[net.site_node[centre]]]
    node_ptr = np.searchsorted(net.site_node[town_sites], np.arange(n + 1)).astype(np.int64)
    has_centre = np.diff(node_ptr) > 0
    centre_keep = np.zeros(n)
    np.add.at(centre_keep, net.site_node[town_sites], keep[town_sites])
    centre_keep = np.divide(centre_keep, np.maximum(np.diff(node_ptr), 1))
    towns_c = np.flatnonzero(has_centre)
    hub_sites = centre[hub[net.site_node[centre]]]
    hub_node = net.site_node[hub_sites]
    hub_rank = np.arange(hub_sites.size) - np.searchsorted(hub_node, hub_node)
    hub_n = np.bincount(hub_node, minlength=n)[hub_node]
    hub_frac = (hub_rank + 1) / (hub_n + 1)
    p_end = (1.0 - np.exp(-EXPECTED_END_READS)) * centre_keep[towns_c]
    p_local = (1.0 - np.exp(-EXPECTED_LOCAL_READS)) * centre_keep[towns_c]
    virtual = -1 - towns_c
    trip_s = 2 * ACCESS_S + geo.time_s
    np.fill_diagonal(trip_s, LOCAL_TRIP_S)
    local_read_p = np.zeros(n)
    local_read_p[towns_c] = p_local
    # end entries per node: a possible centre read, then the hub approach cameras
    end_node = np.concatenate([towns_c, hub_node])
    end_site = np.concatenate([virtual, hub_sites])
    end_prob = np.concatenate([p_end, HUB_PASS * keep[hub_sites]])
    end_spread = np.concatenate([np.full(towns_c.size, ACCESS_S), np.zeros(hub_sites.size)])
    leave_off = np.concatenate([np.zeros(towns_c.size), hub_frac * ACCESS_S])
    arrive_off = np.concatenate([np.full(towns_c.size, -ACCESS_S), -(1 - hub_frac) * ACCESS_S])
    # origin ends: every inter-town pair leaving from the entry's node
    inter_o, inter_d = pair_o, pair_d
    by_o = np.argsort(inter_o, kind="stable")
    o_ptr = np.searchsorted(inter_o[by_o], np.arange(n + 1))
    o_cnt = o_ptr[end_node + 1] - o_ptr[end_node]
    o_rep = np.repeat(np.arange(end_node.size), o_cnt)
    o_pairs = by_o[
        np.repeat(o_ptr[end_node], o_cnt)
        + np.arange(o_rep.size)
        - np.repeat(np.cumsum(o_cnt) - o_cnt, o_cnt)
    ]
    by_d = np.argsort(inter_d, kind="stable")
    d_ptr = np.searchsorted(inter_d[by_d], np.arange(n + 1))
    d_cnt = d_ptr[end_node + 1] - d_ptr[end_node]
    d_rep = np.repeat(np.arange(end_node.size), d_cnt)
    d_pairs = by_d[
        np.repeat(d_ptr[end_node], d_cnt)
        + np.arange(d_rep.size)
        - np.repeat(np.cumsum(d_cnt) - d_cnt, d_cnt)
    ]
    d_trip = trip_s[inter_o[d_pairs], inter_d[d_pairs]]
    # segment rank orders a pair's entries: leaving (0), corridor (1), arriving (2); local (3)
    key = np.concatenate(
        [
            inter_o[o_pairs] * n + inter_d[o_pairs],
            corr_key,
            inter_o[d_pairs] * n + inter_d[d_pairs],
            towns_c * n + towns_c,
        ]
    )
    rank = np.concatenate(
        [
            np.zeros(o_rep.size),
            np.ones(corr_key.size),
            np.full(d_rep.size, 2),
            np.full(towns_c.size, 3),
        ]
    )
    entries = EntryTable.from_rows(
        n * n,
        key * 4 + rank.astype(np.int64),
        np.concatenate([end_site[o_rep], c_site, end_site[d_rep], virtual]),
        np.concatenate(
            [leave_off[o_rep], corr_off, d_trip + arrive_off[d_rep], np.full(towns_c.size, 60.0)]
        ),
        np.concatenate(
            [
                end_spread[o_rep],
                np.zeros(corr_key.size),
                end_spread[d_rep],
                np.full(towns_c.size, LOCAL_TRIP_S - 120),
            ]
        ),
        np.concatenate([end_prob[o_rep], keep[c_site], end_prob[d_rep], p_local]),
        key_scale=4,
    )
    return RouteTable(
        n_nodes=n,
        entries=entries,
        trip_s=trip_s,
        node_ptr=node_ptr,
        node_site=town_sites.astype(np.int32),
        local_read_p=local_read_p,
    )
