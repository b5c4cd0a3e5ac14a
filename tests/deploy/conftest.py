"""Fixtures for the deployment tests: a tiny three-force world with canaries, and a process
registry that stops everything a test started, by pid, even when the test fails."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
_TESTS = Path(__file__).resolve().parents[1]
for _path in (_TESTS / "fixtures", _TESTS, Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from canary import plant_canaries  # noqa: E402
from flower_world import INGEST_AS_OF, WINDOW_DAYS, WINDOW_START, FlowerWorld, build_world  # noqa: E402
from loopback import base_env  # noqa: E402
from processes import Processes  # noqa: E402

from client_force.ingest import ingest_export  # noqa: E402
from privacy.keys import MasterSecretSource  # noqa: E402
from retention.store import ForceStore  # noqa: E402


@dataclass(frozen=True)
class CanaryWorld:
    """A Flower test world whose force exports carried canaries before ingest."""

    world: FlowerWorld
    canaries: dict[str, list[str]]  # force name -> canary VRMs then canary camera ids
    exports: dict[str, Path]  # force name -> the canary export folder (force-side only)

    @property
    def all_canaries(self) -> list[str]:
        """Every canary of every force."""
        return [c for name in sorted(self.canaries) for c in self.canaries[name]]


def plant_into_store(world: FlowerWorld) -> CanaryWorld:
    """Plant canaries into an export per force (its full register + canary reads) and ingest
    it, so the canary vehicles and cameras are in every force's training data."""
    start = datetime.combine(WINDOW_START, datetime.min.time(), tzinfo=UTC)
    canaries, exports = {}, {}
    for i, force in enumerate(world.forces):
        export = force.store.parent / "canary-export"
        export.mkdir()
        shutil.copy(force.store.parent / f"{force.name}-cameras.csv", export / "cameras.csv")
        canaries[force.name] = plant_canaries(
            export, start=start, end=start + timedelta(days=WINDOW_DAYS), seed=70 + i
        )
        store = ForceStore.open(force.store, MasterSecretSource.from_key_file(force.key_file))
        report = ingest_export(store, export / "reads.csv", as_of=INGEST_AS_OF)
        assert report.rejected == 0 and report.stored == report.input_rows
        (export / "reads.csv").unlink()  # raw reads do not stay on disk; the register does
        exports[force.name] = export
    return CanaryWorld(world, canaries, exports)


@pytest.fixture(scope="session")
def canary_world(tmp_path_factory: pytest.TempPathFactory) -> CanaryWorld:
    """Three forces of ~150 vehicles each plus canaries, ingested once per session."""
    world = build_world(tmp_path_factory.mktemp("deploy-world"), n_forces=3, n_vehicles=150)
    return plant_into_store(world)


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Every process a test starts; all stopped by pid at teardown, pass or fail, and none of
    them (nor any Flower child they started) may survive."""
    procs = Processes(base_env())
    try:
        yield procs
    finally:
        procs.stop_all()
        survivors = procs.survivors()
        assert not survivors, f"processes left running: {survivors}"
