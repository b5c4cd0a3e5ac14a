"""Fixtures: copies of one real 40-day force store built per session."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from retention_helpers import PASSPHRASE, BuiltStore, build_store


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(tmp_path_factory.mktemp("template") / "store")


@pytest.fixture
def make_store(_template: BuiltStore, tmp_path: Path) -> Callable[[], BuiltStore]:
    """A fresh copy of the 40-day template store in this test's tmp dir."""

    counter = iter(range(1000))

    def make() -> BuiltStore:
        root = tmp_path / f"store{next(counter)}"
        shutil.copytree(_template.root, root)
        return BuiltStore(
            root=root,
            days=list(_template.days),
            pseudonyms=set(_template.pseudonyms),
            camera_tokens=set(_template.camera_tokens),
            quarantine_days=list(_template.quarantine_days),
            derived_sources=dict(_template.derived_sources),
        )

    return make


@pytest.fixture
def built(make_store: Callable[[], BuiltStore]) -> BuiltStore:
    """One fresh copy of the template store."""
    return make_store()


@pytest.fixture
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the CLI open the test stores."""
    monkeypatch.delenv("ANPRFED_KEY_FILE", raising=False)
    monkeypatch.setenv("ANPRFED_PASSPHRASE", PASSPHRASE)
