"""How a force's Flower node finds its own store and key.

Deployment: each force runs one SuperNode started with its own node config, e.g.::

    flower-supernode ... --node-config "store='/srv/anpr/store' key-file='/etc/anpr/master.key'"

Simulation: Flower gives simulated nodes only ``partition-id`` and ``num-partitions``, so the
study runner writes one small TOML file per node, ``<node-config-dir>/node-<partition-id>.toml``::

    store = "/path/to/force-store"
    key-file = "/path/to/force.key"

and passes ``node-config-dir`` in the run config (or the client factory's settings). Each file
names one force's store and key only; relative paths are resolved against the file's folder.

``key-file`` may be omitted in either form; the key then comes from ``ANPRFED_KEY_FILE`` or
``ANPRFED_PASSPHRASE`` in the node's environment.

``policy-file`` (optional, either form) names the force's privacy policy TOML
(``client_force.privacy_policy``); without it the store's authenticated policy, else the
default deployment policy, applies. The run config can never name a policy.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privacy.keys import MasterSecretSource

STORE_KEY = "store"
KEY_FILE_KEY = "key-file"
POLICY_FILE_KEY = "policy-file"
PARTITION_ID_KEY = "partition-id"
NODE_FILE_KEYS = frozenset({STORE_KEY, KEY_FILE_KEY, POLICY_FILE_KEY})


class NodeSettingsError(ValueError):
    """The node cannot tell which store is its own (names the file or key, never secrets)."""


@dataclass(frozen=True)
class NodeStore:
    """A node's store folder and where its master secret comes from."""

    store: Path
    key_file: Path | None
    policy_file: Path | None = None

    def secret(self) -> MasterSecretSource:
        """The store's secret source: the key file, else the environment."""
        if self.key_file is not None:
            return MasterSecretSource.from_key_file(self.key_file)
        return MasterSecretSource.from_env()


def node_config_path(node_config_dir: str | Path, partition_id: int) -> Path:
    """``<dir>/node-<partition-id>.toml``: where the runner writes a simulated node's file."""
    return Path(node_config_dir) / f"node-{int(partition_id)}.toml"


def write_node_config(
    node_config_dir: str | Path,
    partition_id: int,
    store: Path,
    key_file: Path | None,
    policy_file: Path | None = None,
) -> Path:
    """Write a simulated node's config file (for the study runner and tests); returns its path."""
    path = node_config_path(node_config_dir, partition_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{STORE_KEY} = {_toml_str(Path(store).resolve())}"]
    if key_file is not None:
        lines.append(f"{KEY_FILE_KEY} = {_toml_str(Path(key_file).resolve())}")
    if policy_file is not None:
        lines.append(f"{POLICY_FILE_KEY} = {_toml_str(Path(policy_file).resolve())}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def resolve_node_store(node_config: Mapping[str, Any], node_config_dir: str = "") -> NodeStore:
    """This node's store, from its node config or its per-partition file.

    ``store`` in the node config wins (deployment); otherwise ``partition-id`` selects
    ``<node_config_dir>/node-<id>.toml`` (simulation). Errors say what is missing and where.
    """
    if STORE_KEY in node_config:
        return _node_store(node_config, base=Path.cwd(), where="the node config")
    if PARTITION_ID_KEY not in node_config:
        raise NodeSettingsError(
            "the node config has neither 'store' (deployment: --node-config \"store='...' "
            "key-file='...'\") nor 'partition-id' (simulation)"
        )
    if not node_config_dir:
        raise NodeSettingsError(
            "simulated node: run config 'node-config-dir' is empty, so partition "
            f"{node_config[PARTITION_ID_KEY]} cannot find its store file node-<id>.toml"
        )
    path = node_config_path(node_config_dir, int(node_config[PARTITION_ID_KEY]))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NodeSettingsError(f"simulated node: missing node file {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NodeSettingsError(f"simulated node: unreadable node file {path} ({exc})") from None
    unknown = sorted(set(data) - NODE_FILE_KEYS)
    if unknown:
        raise NodeSettingsError(
            f"node file {path}: unknown key(s) {unknown}; allowed {sorted(NODE_FILE_KEYS)}"
        )
    if STORE_KEY not in data:
        raise NodeSettingsError(f"node file {path}: missing '{STORE_KEY}'")
    return _node_store(data, base=path.parent, where=str(path))


def _node_store(values: Mapping[str, Any], base: Path, where: str) -> NodeStore:
    store_value = values.get(STORE_KEY)
    if not isinstance(store_value, str) or not store_value:
        raise NodeSettingsError(f"{where}: '{STORE_KEY}' must be a non-empty path string")
    store = _resolve(base, store_value)
    if not store.is_dir():
        raise NodeSettingsError(f"{where}: store folder {store} does not exist")
    key_value = values.get(KEY_FILE_KEY)
    key_file = None
    if key_value is not None:
        if not isinstance(key_value, str) or not key_value:
            raise NodeSettingsError(f"{where}: '{KEY_FILE_KEY}' must be a non-empty path string")
        key_file = _resolve(base, key_value)
        if not key_file.is_file():
            raise NodeSettingsError(f"{where}: key file {key_file} does not exist")
    policy_value = values.get(POLICY_FILE_KEY)
    policy_file = None
    if policy_value is not None:
        if not isinstance(policy_value, str) or not policy_value:
            raise NodeSettingsError(f"{where}: '{POLICY_FILE_KEY}' must be a non-empty path")
        policy_file = _resolve(base, policy_value)
        if not policy_file.is_file():
            raise NodeSettingsError(f"{where}: policy file {policy_file} does not exist")
    return NodeStore(store=store, key_file=key_file, policy_file=policy_file)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _toml_str(path: Path) -> str:
    text = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
