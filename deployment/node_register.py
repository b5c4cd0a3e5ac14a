"""The national operator's node register: which Flower node id each force's SuperNode got.

``flwr supernode ls`` shows no names, and ``flwr supernode register`` prints a node id once;
revoking a force (``flwr supernode unregister <node-id>``) needs that id. The plan pipes each
registration's JSON into ``anprfed deploy record-node FORCE --register FILE``, which keeps
``{force: node_id}`` in FILE (a JSON object, written atomically, 0600);
``anprfed deploy node-id FORCE --register FILE`` prints the id back.
"""

from __future__ import annotations

import json
from pathlib import Path

from deployment.files import DeployFileError
from safefiles import atomic_write_json, read_regular_file

REGISTER_NAME = "node-register.json"


def parse_register_output(text: str) -> int:
    """The node id in ``flwr supernode register --format json`` output (``node-id``)."""
    try:
        payload = json.loads(text[text.index("{") :])
        return int(payload["node-id"])
    except (ValueError, KeyError, TypeError):
        raise DeployFileError(
            "no node id in the registration output (was it `flwr supernode register ... "
            "--format json`, and did it succeed?)"
        ) from None


def read_register(path: Path) -> dict[str, int]:
    """The register ``{force: node_id}`` (empty if the file does not exist yet)."""
    try:
        data = json.loads(read_regular_file(Path(path)))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise DeployFileError(f"node register {path} is unreadable or not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise DeployFileError(f"node register {path} is not a {{force: node_id}} object")
    return data


def record_node(path: Path, force: str, node_id: int) -> dict[str, int]:
    """Record (or replace, after a key rotation) ``force``'s node id; returns the register."""
    register = {**read_register(path), force: int(node_id)}
    atomic_write_json(Path(path), dict(sorted(register.items())))
    return register


def node_id(path: Path, force: str) -> int:
    """``force``'s node id from the register (:class:`DeployFileError` if not recorded)."""
    register = read_register(path)
    if force not in register:
        raise DeployFileError(f"force {force!r} is not in the node register {path}")
    return register[force]
