"""The study's own Ray head node: up, joinable, private, and gone afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import ray

from research.study.ray_cluster import StudyRayCluster

SHARED_ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")


def _ray_processes(temp_dir: Path) -> list[str]:
    """Command lines of live processes that belong to this cluster's session folder."""
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines() if str(temp_dir) in line]


def test_cluster_serves_ray_and_stops_with_the_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    shared_before = SHARED_ADDRESS_FILE.read_text() if SHARED_ADDRESS_FILE.exists() else None
    cluster = StudyRayCluster(2, tmp_path / "ray-head.log")
    with cluster:
        address = cluster.connect()
        assert os.environ["RAY_ADDRESS"] == address
        assert address.startswith("127.0.0.1:")
        assert cluster.temp_dir is not None and _ray_processes(cluster.temp_dir)
        ray.init(log_to_driver=False)
        try:
            assert ray.cluster_resources()["CPU"] == 2
            assert ray.get(ray.put(41)) + 1 == 42
        finally:
            ray.shutdown()  # what Flower does after each run: only disconnects
        assert cluster.connect() == address  # still up for the next run
    assert "RAY_ADDRESS" not in os.environ
    assert _ray_processes(cluster.temp_dir) == []
    # Its address went to its own folder, not to the file every plain ray.init() reads.
    assert (cluster.temp_dir / "ray_current_cluster").exists()
    shared_after = SHARED_ADDRESS_FILE.read_text() if SHARED_ADDRESS_FILE.exists() else None
    assert shared_after == shared_before
    assert "Ray runtime started" in (tmp_path / "ray-head.log").read_text()


def test_a_users_own_cluster_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")
    with StudyRayCluster(2, tmp_path / "ray-head.log") as cluster:
        assert cluster.connect() == "10.0.0.9:6379"
        assert cluster.temp_dir is None
    assert os.environ["RAY_ADDRESS"] == "10.0.0.9:6379"
    assert not (tmp_path / "ray-head.log").exists()
