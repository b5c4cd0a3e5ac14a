"""One EC key pair per force for Flower SuperNode authentication.

With ``flower-superlink --enable-supernode-auth`` the SuperLink accepts only SuperNodes whose
public key the national operator registered beforehand (``flwr supernode register KEY.pub``);
every Fleet API request a SuperNode makes is signed with its private key
(``flower-supernode --auth-supernode-private-key KEY``). flwr 1.41 reads both in OpenSSH
format and requires a NIST curve; these are ECDSA P-384 (what ``ssh-keygen -t ecdsa -b 384``
makes).

Layout (``anprfed deploy node-keys DIR --forces cheshire,cumbria``)::

    DIR/<force>/supernode.key   private, mode 0600: stays on that force's SuperNode host
    DIR/<force>/supernode.pub   public: sent to the national unit, registered there

Generate each force's pair **on that force's machine** (``--forces <its name>``) and send only
the ``.pub`` file; compare its fingerprint (``SHA256:...``, the same as ``ssh-keygen -lf``)
over a second channel before registering it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deployment.files import (
    PUBLIC_MODE,
    SECRET_MODE,
    DeployFileError,
    read_file,
    refuse_existing,
    write_file,
)

PRIVATE_KEY_NAME = "supernode.key"
PUBLIC_KEY_NAME = "supernode.pub"
_FORCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class NodeKeyError(ValueError):
    """A force name or SuperNode key is not acceptable (names the force or file)."""


@dataclass(frozen=True)
class NodeKeyPair:
    """Where one force's SuperNode key pair lives, and its public fingerprint."""

    force: str
    private_key: Path
    public_key: Path
    fingerprint: str  # OpenSSH form: "SHA256:<base64>"


def check_force_names(names: Iterable[str]) -> list[str]:
    """Split comma-separated values, validate each name, refuse duplicates; keep the order.

    A force name becomes a folder name and the SuperNode's ``--name``: lower-case letters,
    digits, ``-`` and ``_``, starting with a letter or digit, at most 63 characters.
    """
    forces: list[str] = []
    for value in names:
        for part in value.split(","):
            name = part.strip()
            if not name:
                continue
            if not _FORCE_NAME.match(name):
                raise NodeKeyError(
                    f"force name {name!r}: use lower-case letters, digits, '-' or '_' "
                    "(starting with a letter or digit, at most 63 characters)"
                )
            if name in forces:
                raise NodeKeyError(f"force {name!r} is given twice")
            forces.append(name)
    if not forces:
        raise NodeKeyError("give at least one force (--forces cheshire,cumbria,...)")
    return forces


def key_paths(directory: Path, force: str) -> tuple[Path, Path]:
    """``(private, public)`` key paths of ``force`` under ``directory``."""
    folder = Path(directory) / force
    return folder / PRIVATE_KEY_NAME, folder / PUBLIC_KEY_NAME


def openssh_fingerprint(public_key_line: bytes) -> str:
    """``SHA256:<base64>`` of an OpenSSH public key line (as ``ssh-keygen -lf`` prints)."""
    fields = public_key_line.split()
    if len(fields) < 2:
        raise NodeKeyError("not an OpenSSH public key line")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except ValueError:
        raise NodeKeyError("not an OpenSSH public key line") from None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def generate_node_key() -> tuple[bytes, bytes]:
    """A fresh P-384 pair as ``(OpenSSH private key, OpenSSH public key line)``."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public


def write_node_keys(
    directory: Path, forces: Sequence[str], overwrite: bool = False
) -> list[NodeKeyPair]:
    """Write one key pair per force under ``directory``; refuses to replace keys by default."""
    names = check_force_names(forces)
    paths = [key_paths(directory, f) for f in names]
    refuse_existing([p for pair in paths for p in pair], overwrite)
    pairs = []
    for force, (private_path, public_path) in zip(names, paths, strict=True):
        private, public = generate_node_key()
        comment = f" anprfed-supernode-{force}\n".encode()
        write_file(private_path, private, SECRET_MODE)
        write_file(public_path, public + comment, PUBLIC_MODE)
        pairs.append(NodeKeyPair(force, private_path, public_path, openssh_fingerprint(public)))
    return pairs


def load_public_key(path: Path) -> NodeKeyPair:
    """Check a ``.pub`` file is an OpenSSH EC public key on a NIST curve; its fingerprint."""
    data = read_file(path, "SuperNode public key")
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise NodeKeyError(f"{path} is not an OpenSSH public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NodeKeyError(f"{path} is not an EC public key (flwr needs a NIST EC curve)")
    path = Path(path)
    return NodeKeyPair(path.parent.name, path.with_suffix(".key"), path, openssh_fingerprint(data))


def check_private_key(path: Path) -> None:
    """Raise :class:`NodeKeyError` unless ``path`` is an owner-only OpenSSH EC private key."""
    data = read_file(path, "SuperNode private key")
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise NodeKeyError(f"{path} is not an unencrypted OpenSSH private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise NodeKeyError(f"{path} is not an EC private key")
    if Path(path).stat().st_mode & 0o077:
        raise NodeKeyError(f"{path} is readable by group or others; chmod 600 it")


__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "DeployFileError",
    "NodeKeyError",
    "NodeKeyPair",
    "check_force_names",
    "check_private_key",
    "generate_node_key",
    "key_paths",
    "load_public_key",
    "openssh_fingerprint",
    "write_node_keys",
]
