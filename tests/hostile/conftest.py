"""Fixtures for the hostile-file suite: copies of a small real store, and tmpfs mounts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "retention"))

from retention_helpers import PASSPHRASE, BuiltStore, build_store


@pytest.fixture(scope="session")
def _hostile_template(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(tmp_path_factory.mktemp("hostile") / "store", n_days=20)


@pytest.fixture
def built(_hostile_template: BuiltStore, tmp_path: Path) -> BuiltStore:
    """A fresh copy of a 20-day store (6 vehicles, 2 quarantine days, 3 derived artifacts)."""
    root = tmp_path / "store"
    shutil.copytree(_hostile_template.root, root, symlinks=True)
    return BuiltStore(
        root=root,
        days=list(_hostile_template.days),
        pseudonyms=set(_hostile_template.pseudonyms),
        quarantine_days=list(_hostile_template.quarantine_days),
        derived_sources=dict(_hostile_template.derived_sources),
    )


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the retention CLI open the test stores with their passphrase."""
    monkeypatch.delenv("ANPRFED_KEY_FILE", raising=False)
    monkeypatch.delenv("ANPRFED_PURGE_KEY_FILE", raising=False)
    monkeypatch.setenv("ANPRFED_PASSPHRASE", PASSPHRASE)


def _run(*cmd: str) -> bool:
    return subprocess.run(list(cmd), capture_output=True, check=False).returncode == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only; skips elsewhere) and unmount it afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        if not _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)):
            pytest.skip("cannot mount a tmpfs here (not root?)")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        _run("umount", "-l", str(point))
