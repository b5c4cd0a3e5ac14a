"""The purge job's own key file: it unwraps only the purge-log signing seed.

``anprfed force purge-key`` writes a random 32-byte key file (0600) and wraps the
:class:`privacy.keys.PurgeSigner` seed under it in ``keys/signing.wrapped``; ``anprfed retention
purge`` opens the store with that file alone (``ANPRFED_PURGE_KEY_FILE``), so the purge can sign
its log and check manifests without any key that decrypts data.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.keys import (
    LABEL_PURGE_KEY_CHECK,
    SIGNING_WRAPPED_NAME,
    KeyMaterialError,
    PurgeSigner,
    WrongPassphraseError,
    hkdf_sha256,
    read_key_file,
)
from safefiles import atomic_write_bytes, read_regular_file

_SIGNING_AAD = b"anprfed/v1/purge-signing-seed"


def write_purge_key(keys_dir: Path, signer: PurgeSigner, key_file: Path) -> None:
    """Create the purge job's key file (32 random bytes, 0600; refuses to overwrite) and wrap
    ``signer``'s seed under it in ``keys_dir/signing.wrapped`` (replacing an older wrap)."""
    key_file = Path(key_file)
    if key_file.exists() or key_file.is_symlink():
        raise KeyMaterialError(f"purge key file {key_file} already exists; not overwriting")
    purge_key = secrets.token_bytes(32)
    nonce = secrets.token_bytes(12)
    ct = AESGCM(purge_key).encrypt(nonce, signer.seed_for_wrapping(), _SIGNING_AAD)
    record = {
        "version": 1,
        "public_key": signer.public_key_hex(),
        "check": hkdf_sha256(purge_key, LABEL_PURGE_KEY_CHECK, 16).hex(),
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(ct).decode("ascii"),
    }
    atomic_write_bytes(key_file, purge_key.hex().encode() + b"\n")
    atomic_write_bytes(keys_dir / SIGNING_WRAPPED_NAME, json.dumps(record, indent=1).encode())


def load_purge_signer(keys_dir: Path, key_file: Path) -> PurgeSigner:
    """Unwrap the purge job's signing seed with its key file; :class:`WrongPassphraseError` if
    the file does not fit, :class:`KeyMaterialError` if no purge key was made for this store."""
    path = keys_dir / SIGNING_WRAPPED_NAME
    try:
        record = json.loads(read_regular_file(path))
        nonce = base64.b64decode(record["nonce"])
        ct = base64.b64decode(record["ciphertext"])
        check = str(record["check"])
    except FileNotFoundError:
        raise KeyMaterialError(
            f"{path} is missing: create a purge key first (anprfed force purge-key)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise KeyMaterialError(f"unreadable or malformed {path}") from None
    purge_key = read_key_file(Path(key_file))
    if not hmac.compare_digest(hkdf_sha256(purge_key, LABEL_PURGE_KEY_CHECK, 16).hex(), check):
        raise WrongPassphraseError(f"purge key file {key_file} does not fit this store")
    try:
        seed = AESGCM(purge_key).decrypt(nonce, ct, _SIGNING_AAD)
    except InvalidTag:
        raise KeyMaterialError(f"{path} failed authentication") from None
    return PurgeSigner(seed)
