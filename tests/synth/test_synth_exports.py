"""Per-force exports: schema, camera ownership, manifests, CSV option, no truth leaking."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from synth_worlds import SMALL, read_all_reads

from privacy.plates import classify_vrm
from research.synth.behaviours import BACKGROUND_BEHAVIOURS, OFFENCE_BEHAVIOURS
from research.synth.export import CAMERAS_SCHEMA, READS_SCHEMA
from research.synth.geography import build_geography
from research.synth.world import generate_world

FORCES = [f.slug for f in build_geography("north-west").forces]


def test_layout_and_schemas(small_world: Path) -> None:
    assert sorted(p.name for p in (small_world / "forces").iterdir()) == sorted(FORCES)
    for force in FORCES:
        export = small_world / "forces" / force / "export"
        assert sorted(p.name for p in export.iterdir()) == [
            "cameras.parquet",
            "manifest.json",
            "reads.parquet",
        ]
        assert pq.read_schema(export / "reads.parquet").remove_metadata() == READS_SCHEMA
        assert pq.read_schema(export / "cameras.parquet").remove_metadata() == CAMERAS_SCHEMA
    assert sorted(p.name for p in (small_world / "truth").iterdir()) == [
        "labels.parquet",
        "vehicles.parquet",
    ]


def test_every_read_uses_a_camera_of_its_own_force(small_world: Path) -> None:
    registers = {}
    for force in FORCES:
        export = small_world / "forces" / force / "export"
        cams = pq.read_table(export / "cameras.parquet").to_pandas()
        assert cams["camera_id"].is_unique
        assert cams["road_class"].isin(["motorway", "trunk", "a_road", "urban", "mobile"]).all()
        assert cams["lat"].between(52.5, 55.5).all() and cams["lon"].between(-5.0, -1.5).all()
        registers[force] = set(cams["camera_id"])
        reads = pq.read_table(export / "reads.parquet").to_pandas()
        assert set(reads["camera_id"]) <= registers[force]
        # opaque ids, prefixed with the force's code, e.g. GMP-0412
        prefixes = {c.split("-")[0] for c in registers[force]}
        assert len(prefixes) == 1
    all_ids = [c for ids in registers.values() for c in ids]
    assert len(all_ids) == len(set(all_ids)), "camera ids must be unique across forces"


def test_reads_sorted_within_world_and_manifest_counts(small_world: Path) -> None:
    start = pd.Timestamp(SMALL.start, tz="UTC")
    end = pd.Timestamp(SMALL.end, tz="UTC")
    total = 0
    for force in FORCES:
        export = small_world / "forces" / force / "export"
        reads = pq.read_table(export / "reads.parquet").to_pandas()
        manifest = json.loads((export / "manifest.json").read_text())
        assert manifest["reads"] == len(reads)
        assert manifest["cameras"] == manifest["cameras_fixed"] + manifest["cameras_mobile"]
        assert reads["read_at"].is_monotonic_increasing
        assert (reads["read_at"] >= start).all() and (reads["read_at"] < end).all()
        if len(reads):
            assert manifest["first_read_at"] == reads["read_at"].min().strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        total += len(reads)
    world = json.loads((small_world / "world.json").read_text())
    assert world["counts"]["reads"] == total > 0
    assert world["params"]["vehicles"] == SMALL.vehicles


def test_plates_valid_unique_and_reads_only_of_known_vehicles(small_world: Path) -> None:
    vehicles = pq.read_table(small_world / "truth" / "vehicles.parquet").to_pandas()
    assert len(vehicles) == SMALL.vehicles
    assert vehicles["vrm"].is_unique
    assert all(classify_vrm(v) is not None for v in vehicles["vrm"])
    reads = read_all_reads(small_world)
    assert set(reads["vrm"]) <= set(vehicles["vrm"])
    # a vehicle crossing borders appears in several forces' exports
    assert (reads.groupby("vrm")["force"].nunique() > 1).any()


def test_truth_never_leaks_into_exports(small_world: Path) -> None:
    labels = pq.read_table(small_world / "truth" / "labels.parquet").to_pandas()
    assert len(labels) > 0
    words = [*OFFENCE_BEHAVIOURS, *BACKGROUND_BEHAVIOURS, "offence", "conviction", "offending"]
    for path in (small_world / "forces").rglob("*"):
        if not path.is_file():
            continue
        blob = path.read_bytes().lower()
        for word in words:
            assert word.encode() not in blob, f"{word!r} found in {path.name}"
        if path.suffix == ".parquet":
            cols = set(pq.read_schema(path).names)
            assert cols in (
                {"vrm", "camera_id", "read_at"},
                {"camera_id", "lat", "lon", "road_class"},
            )
    world = (small_world / "world.json").read_text()
    assert not any(v in world for v in labels["vrm"]), "world.json must hold no per-vehicle data"


def test_labels_describe_offence_period_and_conviction(small_world: Path) -> None:
    labels = pq.read_table(small_world / "truth" / "labels.parquet").to_pandas()
    assert labels["behaviour"].isin(OFFENCE_BEHAVIOURS).all()
    start, end = pd.Timestamp(SMALL.start), pd.Timestamp(SMALL.end)
    os_, oe = pd.to_datetime(labels["offence_start"]), pd.to_datetime(labels["offence_end"])
    conv = pd.to_datetime(labels["conviction_date"])
    assert (os_ >= start).all() and (oe < end).all() and (os_ <= oe).all()
    lag_days = (conv - oe).dt.days
    assert lag_days.between(round(2 * 30.4375), round(60 * 30.4375)).all()


def test_csv_export_holds_the_same_reads(small_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    generate_world(replace(SMALL, format="csv"), out)
    for force in FORCES:
        export = out / "forces" / force / "export"
        assert (export / "reads.csv").read_text().splitlines()[0] == "vrm,camera_id,read_at"
        table = pacsv.read_csv(
            export / "reads.csv",
            convert_options=pacsv.ConvertOptions(
                column_types={"vrm": pa.string(), "camera_id": pa.string(), "read_at": pa.string()}
            ),
        ).to_pandas()
        assert table["read_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
        parquet = pq.read_table(small_world / "forces" / force / "export" / "reads.parquet")
        parquet = parquet.to_pandas()
        assert table["vrm"].tolist() == parquet["vrm"].tolist()
        assert table["camera_id"].tolist() == parquet["camera_id"].tolist()
        parsed = pd.to_datetime(table["read_at"], utc=True)
        assert np.array_equal(parsed.to_numpy(), parquet["read_at"].to_numpy())
        cams = pd.read_csv(export / "cameras.csv")
        assert list(cams.columns) == ["camera_id", "lat", "lon", "road_class"]
    assert (out / "truth" / "labels.parquet").exists()
