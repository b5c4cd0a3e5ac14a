"""A force's master secret: creation, protection at rest, and the subkeys derived from it.

The master secret is 32 random bytes. At rest it is either wrapped with AES-256-GCM under a key
derived from a passphrase with scrypt (``keys/master.wrapped``), or kept raw in a key file the
operator holds, created with mode 0600. Every working key is derived from it with HKDF-SHA256
under a distinct ``info`` label, so one secret protects the whole store and nothing else needs
storing: the key-wrapping key for per-day data keys, the camera-token key, the pseudonym base key
and the Ed25519 seed that signs the purge log.

The purge job need not hold the master secret: :class:`PurgeSigner` is the signing seed alone
(it signs the purge log and authenticates derived-artifact manifests, and cannot unwrap any data
key). ``anprfed force purge-key`` wraps it under a separate, operator-held purge key file
(``keys/signing.wrapped``), which is all ``anprfed retention purge`` then needs.

scrypt costs n = 2**17, r = 8, p = 1 (OWASP's recommendation for scrypt; ~128 MiB, ~0.3 s).
The parameters are recorded beside the wrapped secret, and :func:`rewrap_master_secret` (``anprfed
force passphrase``) re-wraps it under a new passphrase at the current cost without touching any
data. A lower cost is only possible through the explicit ``scrypt_log2_n`` argument that tests
pass; no environment variable or CLI option lowers it.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from safefiles import atomic_write_bytes, read_regular_file

MASTER_SECRET_BYTES = 32
PASSPHRASE_ENV = "ANPRFED_PASSPHRASE"
KEY_FILE_ENV = "ANPRFED_KEY_FILE"
PURGE_KEY_FILE_ENV = "ANPRFED_PURGE_KEY_FILE"
NEW_PASSPHRASE_ENV = "ANPRFED_NEW_PASSPHRASE"
DEFAULT_SCRYPT_LOG2N = 17  # n = 2**17, r = 8, p = 1 (OWASP): 128 MiB and ~0.3 s per derivation
MAX_SCRYPT_LOG2N = 24

# HKDF info labels: one per derived key, versioned so a future scheme cannot collide.
LABEL_WRAPPING = b"anprfed/v1/data-key-wrapping"
LABEL_CAMERA_TOKEN = b"anprfed/v1/camera-token"
LABEL_PSEUDONYM_BASE = b"anprfed/v1/pseudonym-base"
LABEL_SIGNING = b"anprfed/v1/purge-log-signing-ed25519"
LABEL_KEY_CHECK = b"anprfed/v1/key-check"
LABEL_MANIFEST_MAC = b"anprfed/v1/derived-manifest-mac"
LABEL_PURGE_KEY_CHECK = b"anprfed/v1/purge-key-check"
SIGNING_WRAPPED_NAME = "signing.wrapped"
# SIMULATION ONLY: labels of the deterministic derivation in ``SimulationSecretSource``.
LABEL_SIMULATION_MASTER = b"anprfed/v1/SIMULATION-ONLY/master-secret"
LABEL_SIMULATION_EPOCH = b"anprfed/v1/SIMULATION-ONLY/pseudonym-epoch-key"

_MASTER_AAD = b"anprfed/v1/master-secret"


class KeyManagementError(Exception):
    """Base class for key-management errors (messages never contain key material)."""


class WrongPassphraseError(KeyManagementError):
    """The passphrase (or key file) does not open this store's master secret."""


class KeyMaterialError(KeyManagementError):
    """Key material is missing, unreadable or malformed (names the file, never its contents)."""


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters and salt; public, recorded beside the wrapped secret."""

    salt: bytes
    log2_n: int = DEFAULT_SCRYPT_LOG2N
    r: int = 8
    p: int = 1

    @classmethod
    def fresh(cls, log2_n: int | None = None) -> ScryptParams:
        """New random salt at the default cost; an explicit ``log2_n`` is for tests only."""
        if log2_n is None:
            log2_n = DEFAULT_SCRYPT_LOG2N
        if not 1 <= log2_n <= MAX_SCRYPT_LOG2N:
            raise ValueError(f"scrypt log2(n) must be in 1..{MAX_SCRYPT_LOG2N}, got {log2_n}")
        return cls(salt=secrets.token_bytes(16), log2_n=log2_n)

    def derive(self, passphrase: str) -> bytes:
        """Derive the 32-byte passphrase key."""
        kdf = Scrypt(salt=self.salt, length=32, n=2**self.log2_n, r=self.r, p=self.p)
        return kdf.derive(passphrase.encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        """Public description (salt included: it is not secret)."""
        return {
            "kdf": "scrypt",
            "n": 2**self.log2_n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(self.salt).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScryptParams:
        """Inverse of :meth:`to_json`."""
        n = int(data["n"])
        if data.get("kdf") != "scrypt" or n < 2 or n & (n - 1) or n > 2**MAX_SCRYPT_LOG2N:
            raise KeyMaterialError("unsupported KDF parameters in the wrapped master secret")
        return cls(
            salt=base64.b64decode(data["salt"]),
            log2_n=n.bit_length() - 1,
            r=int(data["r"]),
            p=int(data["p"]),
        )


def hkdf_sha256(secret: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with an empty salt and the given ``info`` label."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class MasterKey:
    """The unwrapped 32-byte master secret and its HKDF-derived subkeys.

    Holds key material in memory only; ``repr`` never shows it.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != MASTER_SECRET_BYTES:
            raise KeyMaterialError("master secret must be 32 bytes")
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random master secret from the OS CSPRNG."""
        return cls(secrets.token_bytes(MASTER_SECRET_BYTES))

    def derive(self, label: bytes, length: int = 32) -> bytes:
        """A subkey for ``label`` (HKDF-SHA256)."""
        return hkdf_sha256(self._secret, label, length)

    def wrapping_key(self) -> bytes:
        """AES-256 key that wraps every data key in the keyring."""
        return self.derive(LABEL_WRAPPING)

    def camera_token_key(self) -> bytes:
        """HMAC-SHA256 key that turns camera ids into tokens."""
        return self.derive(LABEL_CAMERA_TOKEN)

    def pseudonym_base_key(self) -> bytes:
        """HMAC-SHA256 key of the first pseudonym layer (see :mod:`privacy.pseudonym`)."""
        return self.derive(LABEL_PSEUDONYM_BASE)

    def signing_key(self) -> Ed25519PrivateKey:
        """Ed25519 key that signs the purge log, derived deterministically (nothing stored)."""
        return self.purge_signer().signing_key()

    def purge_signer(self) -> PurgeSigner:
        """The purge job's signing seed (signs the log, MACs manifests; decrypts nothing)."""
        return PurgeSigner(self.derive(LABEL_SIGNING))

    def public_key_hex(self) -> str:
        """Hex of the raw Ed25519 public key (safe to publish; recorded in store.json)."""
        return self.purge_signer().public_key_hex()

    def check_value(self) -> str:
        """A short public value that tells whether a key file holds this store's secret."""
        return self.derive(LABEL_KEY_CHECK, 16).hex()

    def raw_for_key_file(self) -> bytes:
        """The secret itself, only for writing the operator's 0600 key file."""
        return self._secret


class PurgeSigner:
    """The purge job's key: the Ed25519 seed that signs the purge log, and the HMAC key (derived
    from it) that authenticates derived-artifact manifests. It cannot unwrap any data key."""

    __slots__ = ("_seed",)

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise KeyMaterialError("a signing seed is 32 bytes")
        self._seed = bytes(seed)

    def __repr__(self) -> str:
        return "PurgeSigner(<hidden>)"

    def signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 private key."""
        return Ed25519PrivateKey.from_private_bytes(self._seed)

    def public_key_hex(self) -> str:
        """Hex of the raw Ed25519 public key."""
        from cryptography.hazmat.primitives import serialization

        raw = (
            self.signing_key()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return raw.hex()

    def manifest_mac_key(self) -> bytes:
        """HMAC-SHA256 key of derived-artifact manifests."""
        return hkdf_sha256(self._seed, LABEL_MANIFEST_MAC)

    def seed_for_wrapping(self) -> bytes:
        """The seed itself, only to wrap it under the purge key file."""
        return self._seed


class MasterSecretSource:
    """Where a force's master secret comes from: a passphrase or an operator-held key file.

    ``create`` makes a fresh secret and protects it at rest under ``keys_dir``;
    ``load`` opens an existing one. Both return a :class:`MasterKey`.
    """

    WRAPPED_NAME = "master.wrapped"

    def __init__(
        self,
        *,
        passphrase: str | None = None,
        key_file: Path | None = None,
        scrypt_log2_n: int | None = None,
    ) -> None:
        if (passphrase is None) == (key_file is None):
            raise ValueError("give exactly one of passphrase or key_file")
        self._passphrase = passphrase
        self.key_file = Path(key_file) if key_file is not None else None
        self._scrypt_log2_n = scrypt_log2_n

    def __repr__(self) -> str:
        if self.key_file is not None:
            return f"MasterSecretSource(key_file={str(self.key_file)!r})"
        return "MasterSecretSource(passphrase=<hidden>)"

    @classmethod
    def from_passphrase(
        cls, passphrase: str, scrypt_log2_n: int | None = None
    ) -> MasterSecretSource:
        """Protect/open the secret with a passphrase (scrypt-derived wrapping key)."""
        if not passphrase:
            raise KeyMaterialError("the passphrase must not be empty")
        return cls(passphrase=passphrase, scrypt_log2_n=scrypt_log2_n)

    @classmethod
    def from_key_file(cls, path: Path | str) -> MasterSecretSource:
        """Keep the raw secret in an operator-held key file (created 0600)."""
        return cls(key_file=Path(path))

    @classmethod
    def from_env(cls, prompt: Any | None = None) -> MasterSecretSource:
        """From ``ANPRFED_KEY_FILE`` or ``ANPRFED_PASSPHRASE``; else call ``prompt()`` if given."""
        key_file = os.environ.get(KEY_FILE_ENV)
        if key_file:
            return cls.from_key_file(key_file)
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if passphrase:
            return cls.from_passphrase(passphrase)
        if prompt is not None:
            return cls.from_passphrase(prompt())
        raise KeyMaterialError(
            f"no key material: set {PASSPHRASE_ENV} or {KEY_FILE_ENV} (or use a terminal prompt)"
        )

    @property
    def mode(self) -> str:
        """``"passphrase"`` or ``"key-file"``."""
        return "key-file" if self.key_file is not None else "passphrase"

    def new_master(self) -> MasterKey:
        """The master secret ``create`` protects: fresh from the OS CSPRNG."""
        return MasterKey.generate()

    def initial_epoch_key(self, master: MasterKey) -> bytes | None:
        """The first pseudonym-epoch key of a new store; None: a fresh random key."""
        return None

    def create(self, keys_dir: Path) -> tuple[MasterKey, dict[str, Any]]:
        """Generate a master secret, protect it at rest, and return it with its public metadata.

        Passphrase mode writes ``keys_dir/master.wrapped``; key-file mode writes the key file
        (refusing to overwrite an existing one) and a marker holding only a check value.
        """
        master = self.new_master()
        keys_dir.mkdir(parents=True, exist_ok=True)
        if self.key_file is not None:
            if self.key_file.exists():
                raise KeyMaterialError(f"key file {self.key_file} already exists; not overwriting")
            atomic_write_bytes(self.key_file, master.raw_for_key_file().hex().encode() + b"\n")
            meta: dict[str, Any] = {"mode": "key-file", "check": master.check_value()}
        else:
            assert self._passphrase is not None
            params = ScryptParams.fresh(self._scrypt_log2_n)
            meta = _wrap_with_passphrase(master, self._passphrase, params)
        atomic_write_bytes(keys_dir / self.WRAPPED_NAME, json.dumps(meta, indent=1).encode("utf-8"))
        return master, public_protection_info(meta)

    def load(self, keys_dir: Path) -> MasterKey:
        """Open the store's master secret; :class:`WrongPassphraseError` if it does not fit."""
        wrapped_path = keys_dir / self.WRAPPED_NAME
        try:
            meta = json.loads(read_regular_file(wrapped_path))
        except FileNotFoundError:
            raise KeyMaterialError(f"missing {wrapped_path}: not an anprfed store?") from None
        except (OSError, ValueError):
            raise KeyMaterialError(f"unreadable master-secret file {wrapped_path}") from None
        mode = meta.get("mode")
        if mode == "key-file":
            if self.key_file is None:
                raise WrongPassphraseError(
                    f"this store's secret is in a key file: set {KEY_FILE_ENV} (or --key-file)"
                )
            master = MasterKey(read_key_file(self.key_file))
            if not hmac.compare_digest(master.check_value(), str(meta.get("check", ""))):
                raise WrongPassphraseError(
                    f"key file {self.key_file} does not hold this store's master secret"
                )
            return master
        if mode != "passphrase":
            raise KeyMaterialError(f"unknown key-protection mode in {wrapped_path}")
        if self._passphrase is None:
            raise WrongPassphraseError(
                f"this store's secret is passphrase-wrapped: set {PASSPHRASE_ENV}"
            )
        try:
            params = ScryptParams.from_json(meta)
            nonce = base64.b64decode(meta["nonce"])
            ct = base64.b64decode(meta["ciphertext"])
        except (KeyError, ValueError, TypeError):
            raise KeyMaterialError(f"malformed master-secret file {wrapped_path}") from None
        wrap_key = params.derive(self._passphrase)
        try:
            secret = AESGCM(wrap_key).decrypt(nonce, ct, _MASTER_AAD)
        except InvalidTag:
            raise WrongPassphraseError(
                "wrong passphrase: it does not open this store's master secret"
            ) from None
        return MasterKey(secret)


class SimulationSecretSource(MasterSecretSource):
    """SIMULATION ONLY: a key-file source whose new secrets follow from a seed and a name.

    A simulated study must be repeatable: the held-out split follows keyed hashes of the
    vehicles' pseudonyms, so fresh random keys give a different split (and different figures)
    on every run. This source derives a new store's master secret and its first pseudonym-epoch
    key with HKDF-SHA256 from ``(seed, force)`` under ``SIMULATION-ONLY`` labels, so the same
    study seed gives the same pseudonyms, split and figures. Anyone who knows the seed and the
    force name can recompute every key: it protects nothing and must never hold real data.

    Only the study runner's simulated forces (``client_force.simulated_force``) construct it;
    ``anprfed force init`` and every deployment path use :class:`MasterSecretSource`, which
    takes its secrets from the OS CSPRNG (a test checks no deployable module names this class).
    Per-day data keys, key ids and AEAD nonces stay random: they never change a figure.
    """

    SIMULATION_ONLY = True

    def __init__(self, key_file: Path | str, *, seed: int, force: str) -> None:
        super().__init__(key_file=Path(key_file))
        self._seed_material = f"seed={int(seed)}|force={force}".encode()

    def __repr__(self) -> str:
        return f"SimulationSecretSource(key_file={str(self.key_file)!r}, SIMULATION ONLY)"

    def new_master(self) -> MasterKey:
        """The master secret of ``(seed, force)``: deterministic, SIMULATION ONLY."""
        return MasterKey(hkdf_sha256(self._seed_material, LABEL_SIMULATION_MASTER))

    def initial_epoch_key(self, master: MasterKey) -> bytes | None:
        """The first pseudonym-epoch key, derived from the (simulated) master secret."""
        return master.derive(LABEL_SIMULATION_EPOCH)


def rewrap_master_secret(
    keys_dir: Path, master: MasterKey, new_passphrase: str, scrypt_log2_n: int | None = None
) -> dict[str, Any]:
    """Re-wrap ``master`` under ``new_passphrase`` at the current scrypt cost (or the explicit,
    test-only ``scrypt_log2_n``): one atomic rewrite of ``master.wrapped``; no data is
    re-encrypted. Returns the public protection info for store.json."""
    if not new_passphrase:
        raise KeyMaterialError("the passphrase must not be empty")
    meta = _wrap_with_passphrase(master, new_passphrase, ScryptParams.fresh(scrypt_log2_n))
    atomic_write_bytes(
        keys_dir / MasterSecretSource.WRAPPED_NAME, json.dumps(meta, indent=1).encode("utf-8")
    )
    return public_protection_info(meta)


def _wrap_with_passphrase(master: MasterKey, passphrase: str, params: ScryptParams) -> dict:
    wrap_key = params.derive(passphrase)
    nonce = secrets.token_bytes(12)
    ct = AESGCM(wrap_key).encrypt(nonce, master.raw_for_key_file(), _MASTER_AAD)
    return {
        "mode": "passphrase",
        **params.to_json(),
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(ct).decode("ascii"),
    }


def read_key_file(path: Path) -> bytes:
    """Read a hex key file; errors name the file, never its content."""
    try:
        text = read_regular_file(path).decode("ascii").strip()
        secret = bytes.fromhex(text)
    except FileNotFoundError:
        raise KeyMaterialError(f"key file {path} not found") from None
    except (OSError, ValueError):
        raise KeyMaterialError(f"key file {path} is unreadable or not a hex key") from None
    if len(secret) != MASTER_SECRET_BYTES:
        raise KeyMaterialError(f"key file {path} does not hold a 32-byte key")
    return secret


def public_protection_info(meta: dict[str, Any]) -> dict[str, Any]:
    """The non-secret part of the master-secret metadata, for store.json."""
    keep = ("mode", "kdf", "n", "r", "p", "salt")
    return {k: meta[k] for k in keep if k in meta}
