"""End to end on a small synthetic world: every force's export ingests cleanly and stays linked."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from client_force.ingest import ingest_export
from client_force.status import store_status
from privacy.keys import MasterSecretSource
from research.synth.config import WorldConfig
from research.synth.world import generate_world
from retention.store import ForceStore


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_synth_world_ingests_and_rotates(tmp_path: Path, fmt: str) -> None:
    world = tmp_path / "world"
    generate_world(
        WorldConfig(vehicles=400, days=10, start=date(2025, 1, 1), format=fmt, seed=5), world
    )
    forces = sorted(p for p in (world / "forces").iterdir() if p.is_dir())
    assert len(forces) >= 2
    for force in forces[:2]:
        manifest = json.loads((force / "export" / "manifest.json").read_text())
        store = ForceStore.create(
            tmp_path / f"store-{force.name}",
            force.name,
            MasterSecretSource.from_key_file(tmp_path / f"{force.name}.key"),
        )
        export = force / "export" / manifest["files"]["reads"]
        rep = ingest_export(store, export, as_of=datetime(2025, 1, 11, tzinfo=UTC))
        assert rep.accounted and rep.input_rows == manifest["reads"]
        assert rep.stored + rep.duplicates == manifest["reads"] and rep.rejected == 0
        st = store_status(store)
        assert st.vehicles == manifest["vehicles_seen"] and st.reads == rep.stored
        assert st.cameras == manifest["cameras"]
        before = store.read_reads()
        store.rotate_pseudonym_key()
        after = store.read_reads()
        assert after.num_rows == before.num_rows
        assert len(set(after["vehicle"].to_pylist())) == manifest["vehicles_seen"]
        assert not set(after["vehicle"].to_pylist()) & set(before["vehicle"].to_pylist())
        # a fresh ingest of the same export after rotation links to the rotated data
        again = ingest_export(store, export, as_of=datetime(2025, 1, 11, tzinfo=UTC))
        assert again.stored == 0 and again.duplicates == manifest["reads"]
        assert store.read_reads().equals(after)
        assert pa.compute.count_distinct(after["camera"]).as_py() <= manifest["cameras"]
