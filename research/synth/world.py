"""``generate_world``: build the map, cameras, fleet and offenders, then simulate day chunks
and stream every force's reads to its own export folder, in bounded memory.

Output layout (``DIR``)::

    forces/<slug>/export/reads.parquet|csv      vrm, camera_id, read_at (UTC), time-sorted
    forces/<slug>/export/cameras.parquet|csv    camera_id, lat, lon, road_class
    forces/<slug>/export/manifest.json          counts and date range
    truth/labels.parquet                        offenders only: behaviour, period, conviction
    truth/vehicles.parquet                      every vehicle: class, home force, behaviour
    world.json                                  preset, seed, parameters, counts

The world is written to ``DIR.partial`` and renamed into place at the end, so a crash never
leaves a half-written world that looks complete.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from federation import __version__
from research.synth.behaviours import (
    LAG_MAX_MONTHS,
    LAG_MEDIAN_MONTHS,
    LAG_MIN_MONTHS,
    LAG_SIGMA,
    OFFENCE_BEHAVIOURS,
    Profiles,
    build_profiles,
)
from research.synth.config import WorldConfig
from research.synth.export import ForceExport, iso_utc, write_camera_register, write_json
from research.synth.geography import Geography, build_geography
from research.synth.itinerary import Legs, schedule_legs
from research.synth.network import CameraNetwork, build_network
from research.synth.population import Population, build_population
from research.synth.reads import Reads, legs_to_reads
from research.synth.routes import RouteTable, build_routes
from research.synth.summary import ForceSummary, WorldSummary
from research.synth.tours import ChunkDays, chunk_tours
from research.synth.truth import write_truth

DAY_S = 86_400
#: Vehicle-days simulated per chunk (bounds memory; the chunk is 1..MAX_CHUNK_DAYS days).
CHUNK_VEHICLE_DAYS = 300_000
MAX_CHUNK_DAYS = 31

ProgressCallback = Callable[[int, int], None]


class OutputExistsError(FileExistsError):
    """The output folder exists and is not an anprfed world we may replace."""


@dataclass
class WorldModel:
    """Everything drawn before simulation starts (deterministic in the config)."""

    config: WorldConfig
    geo: Geography
    net: CameraNetwork
    routes: RouteTable
    profiles: Profiles
    pop: Population
    sim_seed: np.random.SeedSequence


def build_model(config: WorldConfig) -> WorldModel:
    """Build map, cameras, routes, profiles and fleet for ``config`` (no I/O).

    Tests and demos use it to look inside a world that ``generate_world`` wrote with the
    same config (e.g. which cameras watch a hub)."""
    cfg = config.validate()
    s_net, s_pop, s_sim = np.random.SeedSequence(cfg.seed).spawn(3)
    geo = build_geography(cfg.preset)
    net = build_network(geo, cfg.days, np.random.default_rng(s_net))
    routes = build_routes(geo, net)
    profiles = build_profiles(geo)
    pop = build_population(cfg, geo, profiles, np.random.default_rng(s_pop))
    return WorldModel(cfg, geo, net, routes, profiles, pop, s_sim)


def chunk_days(n_vehicles: int, n_days: int) -> int:
    """Days per simulation chunk for a fleet of ``n_vehicles``."""
    return int(min(max(CHUNK_VEHICLE_DAYS // max(n_vehicles, 1), 1), MAX_CHUNK_DAYS, n_days))


def check_output(out: Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` unless ``out`` may receive a world."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / "world.json").is_file():
            raise OutputExistsError(
                f"{out}: exists, is not empty and holds no world.json; refusing to write there"
            )
        if not overwrite:
            raise OutputExistsError(
                f"{out}: a world already exists there (pass --overwrite to replace it)"
            )


def _prepare_out(out: Path, overwrite: bool) -> Path:
    check_output(out, overwrite)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def _time_order(reads: Reads, n_cameras: int, n_vehicles: int) -> np.ndarray:
    """Order by (time, camera, vehicle). A vehicle is read at most once per camera and second,
    so the combined key is unique and any sort algorithm gives the same order."""
    t0 = int(reads.t_s.min()) if reads.size else 0
    span = (int(reads.t_s.max()) - t0 + 1) if reads.size else 1
    if span * n_cameras * n_vehicles < 2**62:
        key = ((reads.t_s - t0) * n_cameras + reads.camera) * n_vehicles + reads.vehicle
        return np.argsort(key)
    return np.lexsort((reads.vehicle, reads.camera, reads.t_s))


def _emit(reads: Reads, camera_force: np.ndarray, exports: list[ForceExport]) -> None:
    """Send time-sorted reads to their forces' exports (stable split keeps time order)."""
    if reads.size == 0:
        return
    force = camera_force[reads.camera].astype(np.int16)
    order = np.argsort(force, kind="stable")  # radix sort on int16; keeps time order
    bounds = np.searchsorted(force[order], np.arange(len(exports) + 1))
    for f, exp in enumerate(exports):
        idx = order[bounds[f] : bounds[f + 1]]
        if idx.size:
            exp.add(reads.vehicle[idx], reads.camera[idx], reads.t_s[idx])


def generate_world(
    config: WorldConfig,
    out: Path,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
) -> WorldSummary:
    """Generate the world described by ``config`` into ``out`` and return its summary.

    ``progress(days_done, days_total)`` is called after every simulated chunk. Same config
    gives byte-identical files. Raises ``ConfigError`` for a bad config and
    ``OutputExistsError`` if ``out`` holds something other than a world (or a world and
    ``overwrite`` is false).
    """
    cfg = config.validate()
    t0 = time.perf_counter()
    out = Path(out)
    partial = _prepare_out(out, overwrite)
    model = build_model(cfg)
    geo, net, routes, profiles, pop = model.geo, model.net, model.routes, model.profiles, model.pop
    s_sim = model.sim_seed

    epoch_us = (
        int(datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=UTC).timestamp())
        * 1_000_000
    )
    vrms = pa.array(pop.vrm.tolist(), pa.string())
    cam_ids = pa.array(net.camera_id.tolist(), pa.string())
    exports = [
        ForceExport(
            partial / "forces" / f.slug / "export", cfg.format, vrms, cam_ids, epoch_us, pop.n
        )
        for f in geo.forces
    ]
    world_end_s = cfg.days * DAY_S
    step = chunk_days(pop.n, cfg.days)
    n_chunks = -(-cfg.days // step)
    chunk_seqs = [seq.spawn(2) for seq in s_sim.spawn(n_chunks)]
    busy = np.zeros(pop.n, dtype=np.int64)
    carry = Reads.concat([])
    weekday0 = cfg.start.weekday()

    def observe(ci: int, legs: Legs) -> int:
        """Stage 2 (one worker thread, chunks in order): legs -> reads -> sorted -> exports."""
        nonlocal carry
        first = ci * step
        n = min(step, cfg.days - first)
        fresh = legs_to_reads(legs, routes, net, cfg.days, np.random.default_rng(chunk_seqs[ci][1]))
        reads = Reads.concat([carry, fresh])
        reads = reads.take(np.flatnonzero((reads.t_s >= 0) & (reads.t_s < world_end_s)))
        reads = reads.take(_time_order(reads, net.n_cameras, pop.n))
        cut = (
            reads.size
            if ci == n_chunks - 1
            else int(np.searchsorted(reads.t_s, (first + n) * DAY_S))
        )
        _emit(reads.take(np.arange(cut)), net.camera_force, exports)
        carry = reads.take(np.arange(cut, reads.size))
        return first + n

    # Stage 1 (tours -> timed legs) of chunk i+1 overlaps stage 2 of chunk i: numpy and
    # pyarrow release the GIL in their inner loops, so two cores are used. Each stage has its
    # own random stream per chunk, so the output does not depend on thread timing.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-observe") as pool:
        pending: Future[int] | None = None
        for ci in range(n_chunks):
            rng = np.random.default_rng(chunk_seqs[ci][0])
            days = ChunkDays.make(ci * step, min(step, cfg.days - ci * step), weekday0)
            tours = chunk_tours(pop, days, profiles, routes.trip_s, routes.local_read_p, rng)
            legs, busy = schedule_legs(tours, pop.home, routes.trip_s, busy, rng)
            del tours
            if pending is not None:
                done = pending.result()
                if progress is not None:
                    progress(done, cfg.days)
            pending = pool.submit(observe, ci, legs)
        if pending is not None:
            done = pending.result()
            if progress is not None:
                progress(done, cfg.days)
    for exp in exports:
        exp.close()

    offender_seen = pop.offence >= 0
    force_summaries: list[ForceSummary] = []
    seen_any = np.zeros(pop.n, dtype=bool)
    for f, (force, exp) in enumerate(zip(geo.forces, exports, strict=True)):
        cams = np.flatnonzero(net.camera_force == f)
        write_camera_register(
            exp.folder,
            cfg.format,
            net.camera_id[cams],
            net.camera_lat[cams],
            net.camera_lon[cams],
            net.camera_road_class[cams],
        )
        seen_any |= exp.seen
        pos = exp.seen & offender_seen
        positives = {
            b: int(np.count_nonzero(pos & (pop.offence == i)))
            for i, b in enumerate(OFFENCE_BEHAVIOURS)
        }
        fs = ForceSummary(
            slug=force.slug,
            name=force.name,
            cameras_fixed=int(np.count_nonzero(~net.camera_mobile[cams])),
            cameras_mobile=int(np.count_nonzero(net.camera_mobile[cams])),
            vehicles_seen=int(np.count_nonzero(exp.seen)),
            reads=exp.reads,
            positives=positives,
            first_read_at=None
            if exp.first_s is None
            else iso_utc(epoch_us + exp.first_s * 1_000_000),
            last_read_at=None if exp.last_s is None else iso_utc(epoch_us + exp.last_s * 1_000_000),
        )
        force_summaries.append(fs)
        write_json(
            exp.folder / "manifest.json",
            {
                "force": force.slug,
                "name": force.name,
                "format": cfg.format,
                "files": {
                    "reads": f"reads.{'parquet' if cfg.format == 'parquet' else 'csv'}",
                    "cameras": f"cameras.{'parquet' if cfg.format == 'parquet' else 'csv'}",
                },
                "reads": fs.reads,
                "cameras": fs.cameras_fixed + fs.cameras_mobile,
                "cameras_fixed": fs.cameras_fixed,
                "cameras_mobile": fs.cameras_mobile,
                "vehicles_seen": fs.vehicles_seen,
                "first_read_at": fs.first_read_at,
                "last_read_at": fs.last_read_at,
                "world_start": cfg.start.isoformat(),
                "world_end_exclusive": cfg.end.isoformat(),
                "synthetic": True,
            },
        )
    write_truth(partial / "truth", pop, geo, cfg.start)
    by_beh = {
        b: int(np.count_nonzero(pop.offenders.behaviour == i))
        for i, b in enumerate(OFFENCE_BEHAVIOURS)
    }
    summary = WorldSummary(
        preset=cfg.preset,
        seed=cfg.seed,
        vehicles=cfg.vehicles,
        days=cfg.days,
        start=cfg.start.isoformat(),
        end_exclusive=cfg.end.isoformat(),
        prevalence=cfg.prevalence,
        offenders=int(pop.offenders.vehicle.size),
        offenders_by_behaviour=by_beh,
        vehicles_seen=int(np.count_nonzero(seen_any)),
        reads=sum(e.reads for e in exports),
        forces=force_summaries,
    )
    write_json(
        partial / "world.json",
        {
            "generator": "anprfed synth",
            "version": __version__,
            "preset": cfg.preset,
            "seed": cfg.seed,
            "params": cfg.to_json(),
            "forces": [f.slug for f in geo.forces],
            "counts": summary.to_json(),
            "conviction_lag_months": {
                "distribution": "lognormal",
                "median": LAG_MEDIAN_MONTHS,
                "sigma": LAG_SIGMA,
                "clip": [LAG_MIN_MONTHS, LAG_MAX_MONTHS],
            },
            "layout": {
                "reads": "forces/<force>/export/reads.<format>",
                "cameras": "forces/<force>/export/cameras.<format>",
                "labels": "truth/labels.parquet",
                "vehicles": "truth/vehicles.parquet",
            },
        },
    )
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    summary.elapsed_s = time.perf_counter() - t0
    return summary
