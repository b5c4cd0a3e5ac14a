"""Run-config settings, the pyproject Flower App section, and how a node finds its store."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from client_force.node_settings import (
    NodeSettingsError,
    node_config_path,
    resolve_node_store,
    write_node_config,
)
from federation.flower_settings import FlowerSettings, FlowerSettingsError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_run_config_round_trips_and_overrides_a_base() -> None:
    base = FlowerSettings(num_server_rounds=4, strategy="fedprox", proximal_mu=0.1)
    assert FlowerSettings.from_run_config(base.to_run_config()) == base
    merged = FlowerSettings.from_run_config({"num-server-rounds": 2, "dp-target-epsilon": 3}, base)
    assert (merged.num_server_rounds, merged.strategy, merged.dp_target_epsilon) == (
        2,
        "fedprox",
        3.0,
    )
    assert FlowerSettings.from_run_config({}, base) == base


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num-server-round": 3}, "unknown run-config key 'num-server-round'"),
        ({"num-server-rounds": "3"}, "num-server-rounds: expected int, got str"),
        ({"feature-cache": 1}, "feature-cache: expected bool, got int"),
        ({"strategy": "fedsgd"}, "strategy: must be one of"),
        ({"window-start": "2024-13-01"}, "window-start: expected a YYYY-MM-DD date"),
        ({"window-end": "2023-01-01"}, "window-end: must be after window-start"),
        ({"min-replies": 5}, "min-replies: must not exceed min-available-nodes"),
        ({"dp-target-epsilon": float("inf")}, "dp-target-epsilon: must be positive and finite"),
        ({"secagg-num-shares": 2}, "secagg-num-shares"),
    ],
)
def test_bad_run_config_names_the_key(config: dict, message: str) -> None:
    with pytest.raises(FlowerSettingsError, match=message.replace("(", r"\(")):
        FlowerSettings.from_run_config(config)


def test_pyproject_declares_the_flower_app_with_every_setting() -> None:
    app = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]
    assert app["publisher"]
    assert app["components"] == {
        "serverapp": "server_national.server_app:app",
        "clientapp": "client_force.client_app:app",
    }
    assert FlowerSettings.from_run_config(app["config"]) == FlowerSettings()
    assert set(app["config"]) == set(FlowerSettings.keys())
    assert "federations" not in tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]


def test_a_deployment_node_uses_its_node_config(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    key = tmp_path / "force.key"
    key.write_text("00" * 32)
    node = resolve_node_store({"store": str(store), "key-file": str(key)})
    assert (node.store, node.key_file) == (store, key)
    with pytest.raises(NodeSettingsError, match=r"store folder .* does not exist"):
        resolve_node_store({"store": str(tmp_path / "missing")})
    with pytest.raises(NodeSettingsError, match="neither 'store'"):
        resolve_node_store({"num-partitions": 3})


def test_a_simulated_node_reads_only_its_own_file(tmp_path: Path) -> None:
    stores = []
    for i in range(2):
        stores.append(tmp_path / f"store{i}")
        stores[-1].mkdir()
        (tmp_path / f"k{i}").write_text("00" * 32)
        write_node_config(tmp_path / "nodes", i, stores[-1], tmp_path / f"k{i}")
    for i in range(2):
        node = resolve_node_store({"partition-id": i, "num-partitions": 2}, str(tmp_path / "nodes"))
        assert node.store == stores[i].resolve()
        assert node.key_file == (tmp_path / f"k{i}").resolve()
    with pytest.raises(NodeSettingsError, match=r"missing node file .*node-2\.toml"):
        resolve_node_store({"partition-id": 2}, str(tmp_path / "nodes"))
    with pytest.raises(NodeSettingsError, match="'node-config-dir' is empty"):
        resolve_node_store({"partition-id": 0}, "")
    node_config_path(tmp_path / "nodes", 0).write_text('store = "x"\nother-force = "y"\n')
    with pytest.raises(NodeSettingsError, match=r"unknown key\(s\) \['other-force'\]"):
        resolve_node_store({"partition-id": 0}, str(tmp_path / "nodes"))
