"""Fixtures for the force-node tests: cheap scrypt (tests only), stores and exports."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from force_export_factory import PASSPHRASE, Export, make_export

from privacy.keys import MasterSecretSource
from retention.store import ForceStore


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key material from the environment (stores made in-process use scrypt n = 2**4)."""
    monkeypatch.delenv("ANPRFED_KEY_FILE", raising=False)
    monkeypatch.setenv("ANPRFED_PASSPHRASE", PASSPHRASE)


@pytest.fixture
def secret() -> MasterSecretSource:
    """The tests' passphrase source."""
    return MasterSecretSource.from_passphrase(PASSPHRASE, scrypt_log2_n=4)


@pytest.fixture
def new_store(tmp_path: Path, secret: MasterSecretSource) -> Callable[..., ForceStore]:
    """Create a fresh store under the test's tmp dir."""
    counter = iter(range(100))

    def make(force: str = "cheshire") -> ForceStore:
        return ForceStore.create(tmp_path / f"store{next(counter)}", force, secret)

    return make


@pytest.fixture
def store(new_store: Callable[..., ForceStore]) -> ForceStore:
    """One fresh, empty store."""
    return new_store()


@pytest.fixture
def export(tmp_path: Path) -> Export:
    """A clean CSV export (300 vehicles x 6 reads over 3 days) with cameras.csv beside it."""
    return make_export(tmp_path / "export")
