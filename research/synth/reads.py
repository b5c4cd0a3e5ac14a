"""From timed legs to camera reads, vectorised: repeat each leg over its route entries, keep
each with its probability, resolve town-centre entries to a random centre camera, time every
read, and drop reads by mobile cameras deployed elsewhere (or off duty) that day."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from research.synth.itinerary import Legs
from research.synth.network import CameraNetwork
from research.synth.routes import EntryTable, RouteTable

#: Route entries expanded at once (bounds memory whatever the chunk size).
MAX_ENTRIES_PER_BATCH = 4_000_000
#: Extra seconds of noise on each read time (stop lines, lane changes, clock skew).
READ_JITTER_S = 20


@dataclass
class Reads:
    """Reads in generator-internal form (indices, seconds since world start)."""

    vehicle: np.ndarray  # int32
    camera: np.ndarray  # int32
    t_s: np.ndarray  # int64

    @staticmethod
    def concat(parts: list[Reads]) -> Reads:
        """Concatenate batches."""
        if not parts:
            return Reads(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int64))
        return Reads(
            np.concatenate([p.vehicle for p in parts]),
            np.concatenate([p.camera for p in parts]),
            np.concatenate([p.t_s for p in parts]),
        )

    def take(self, idx: np.ndarray) -> Reads:
        """Rows ``idx``."""
        return Reads(self.vehicle[idx], self.camera[idx], self.t_s[idx])

    @property
    def size(self) -> int:
        """Number of reads."""
        return self.t_s.size


def _expand(
    table: EntryTable,
    key: np.ndarray,
    cnt: np.ndarray,
    legs: Legs,
    leg_idx: np.ndarray,
    routes: RouteTable,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """Reads from ``table`` for legs ``leg_idx`` (``cnt`` entries under each ``key``):
    (leg, site, seconds since world start)."""
    total = int(cnt.sum())
    entry = np.repeat(table.ptr[key] - (np.cumsum(cnt) - cnt), cnt) + np.arange(total)
    hit = rng.random(total, dtype=np.float32) < table.prob[entry]
    forced = legs.forced[leg_idx]
    pinned = forced >= 0
    if pinned.any():  # local legs decided when the tour was thinned (one entry each)
        hit[np.repeat(pinned, cnt)] = np.repeat(forced[pinned] == 1, cnt[pinned])
    keep = np.flatnonzero(hit)
    entry = entry[keep]
    leg = np.repeat(leg_idx.astype(np.int32), cnt)[keep]
    site = table.site[entry]
    spread = rng.random(entry.size, dtype=np.float32) * table.spread_s[entry]
    offset = table.offset_s[entry] + spread
    centre = np.flatnonzero(site < 0)
    if centre.size:
        node = -1 - site[centre]
        lo = routes.node_ptr[node]
        width = routes.node_ptr[node + 1] - lo
        site[centre] = routes.node_site[lo + (rng.random(centre.size) * width).astype(np.int64)]
    t = legs.depart_s[leg] + np.round(offset * legs.factor[leg]).astype(np.int64)
    return leg, site, t


def _finish(
    legs: Legs,
    leg: np.ndarray,
    site: np.ndarray,
    t: np.ndarray,
    net: CameraNetwork,
    n_days: int,
    rng: np.random.Generator,
) -> Reads:
    """Add jitter, drop reads of mobile cameras not deployed at that site that day."""
    t = t + rng.integers(0, READ_JITTER_S, t.size)
    cam = net.site_camera[site]
    row = net.camera_mobile_row[cam]
    mob = np.flatnonzero(row >= 0)
    if mob.size:
        day = t[mob] // 86_400
        inside = (day >= 0) & (day < n_days)
        deployed = np.full(mob.size, -2, np.int16)
        deployed[inside] = net.mobile_schedule[row[mob[inside]], day[inside]]
        ok = np.ones(t.size, bool)
        ok[mob] = deployed == net.site_slot[site[mob]]
        leg, cam, t = leg[ok], cam[ok], t[ok]
    return Reads(legs.vehicle[leg], cam.astype(np.int32), t)


def _batches(counts: np.ndarray) -> list[tuple[int, int]]:
    """Split rows into consecutive slices of at most ~MAX_ENTRIES_PER_BATCH entries."""
    csum = np.cumsum(counts)
    out: list[tuple[int, int]] = []
    lo = 0
    while lo < counts.size:
        base = csum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(csum, base + MAX_ENTRIES_PER_BATCH, side="right")), lo + 1)
        out.append((lo, hi))
        lo = hi
    return out


def legs_to_reads(
    legs: Legs, routes: RouteTable, net: CameraNetwork, n_days: int, rng: np.random.Generator
) -> Reads:
    """All reads produced by ``legs`` (unsorted)."""
    od = legs.origin.astype(np.int64) * routes.n_nodes + legs.dest
    counts = routes.entries.ptr[od + 1] - routes.entries.ptr[od]
    parts: list[Reads] = []
    for lo, hi in _batches(counts):
        sl = slice(lo, hi)
        idx = np.arange(lo, hi)
        res = _expand(routes.entries, od[sl], counts[sl], legs, idx, routes, rng)
        parts.append(_finish(legs, *res, net, n_days, rng))
    return Reads.concat(parts)
