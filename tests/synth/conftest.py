"""Small synthetic worlds shared by the synth tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_worlds import SIGNATURES, SMALL

from research.synth.world import WorldModel, build_model, generate_world


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small") / "world"
    generate_world(SMALL, out)
    return out


@pytest.fixture(scope="session")
def signature_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorldModel]:
    out = tmp_path_factory.mktemp("signatures") / "world"
    generate_world(SIGNATURES, out)
    return out, build_model(SIGNATURES)
