"""Keyed, re-keyable pseudonyms for VRMs and keyed tokens for camera ids.

A vehicle's pseudonym in key epoch ``e`` is::

    pseudonym = hex( AES-256_{k_e}( HMAC-SHA256(k_base, normalise(vrm))[:16] ) )   # 32 hex chars

* ``k_base`` is HKDF-derived from the force master secret; HMAC-SHA256 is the keyed hash
  (RFC 2104, tested against the RFC 4231 vectors). Without ``k_base`` nobody can enumerate the
  ~1.4e9 UK plate space to reverse a pseudonym, unlike the unkeyed MD5 of the founding report.
* ``k_e`` is a random per-epoch key. AES on exactly one 16-byte block is a keyed pseudorandom
  permutation, so a stored pseudonym can be *re-keyed without the raw VRM*:
  ``AES_{k_new}(AES^-1_{k_old}(p))``. Once ``k_old`` is destroyed, an old pseudonym cannot be
  linked to a new one (that needs ``AES^-1_{k_old}``), nor recomputed from the remaining keys.
* Truncating the HMAC to 128 bits keeps collisions negligible: for N distinct vehicles the
  probability of any collision is below N^2 / 2^129 (about 1.5e-23 for N = 1e8).

Camera tokens are ``hex(HMAC-SHA256(k_camera, camera_id)[:8])`` (16 hex chars); for the ~15,000
UK cameras the collision probability is below 15000^2 / 2^65 (about 6e-12), and the register
loader checks for collisions anyway.

Hot path: each *distinct* value of a chunk is hashed once (dictionary encoding), with a
precomputed HMAC state, then all blocks go through one batched AES-ECB call.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privacy.plates import normalise_vrm, normalise_vrms

__all__ = [
    "PSEUDONYM_HEX_CHARS",
    "TOKEN_HEX_CHARS",
    "CameraTokeniser",
    "KeyedHash",
    "VrmPseudonymiser",
    "hex_to_blocks",
    "hmac_sha256",
    "normalise_vrm",
    "normalise_vrms",
    "rekey_pseudonym_blocks",
    "rekey_pseudonyms",
]

try:  # CPython's built-in SHA-256: its state copy is ~2x cheaper than OpenSSL 3's EVP copy.
    from _sha256 import sha256 as _sha256  # Python 3.11
except ImportError:  # pragma: no cover - other versions / implementations
    try:
        from _sha2 import sha256 as _sha256  # Python 3.12+
    except ImportError:
        _sha256 = hashlib.sha256

BLOCK = 16
PSEUDONYM_HEX_CHARS = 2 * BLOCK
TOKEN_BYTES = 8
TOKEN_HEX_CHARS = 2 * TOKEN_BYTES
_SHA256_BLOCK = 64


class KeyedHash:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pad states precomputed.

    Each message then costs two ``hashlib`` state copies and two short compressions, which is
    what makes hashing hundreds of thousands of distinct VRMs per chunk cheap.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\x00")
        self._inner = _sha256(bytes(b ^ 0x36 for b in key))
        self._outer = _sha256(bytes(b ^ 0x5C for b in key))

    def __repr__(self) -> str:
        return "KeyedHash(<hidden>)"

    def digest(self, message: bytes) -> bytes:
        """The 32-byte HMAC-SHA256 of ``message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def digest_many(self, messages: Iterable[bytes], length: int = 32) -> bytes:
        """Concatenated HMACs of ``messages``, each truncated to ``length`` bytes."""

        def one(m: bytes, inner_copy=self._inner.copy, outer_copy=self._outer.copy) -> bytes:
            inner = inner_copy()
            inner.update(m)
            outer = outer_copy()
            outer.update(inner.digest())
            return outer.digest()

        joined = b"".join(map(one, messages))  # map keeps the per-item overhead in C
        if length == 32:
            return joined
        return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 32)[:, :length].tobytes()


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 via :class:`KeyedHash` (the implementation the pseudonyms use)."""
    return KeyedHash(key).digest(message)


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def blocks_to_hex(blocks: bytes, width: int) -> pa.Array:
    """Split ``blocks`` into ``width``-byte items and hex-encode them into a string array."""
    n = len(blocks) // width
    if n * width != len(blocks):
        raise ValueError("byte length is not a multiple of the item width")
    chars = 2 * width
    offsets = np.arange(0, n * chars + 1, chars, dtype=np.int64)
    data = pa.py_buffer(binascii.hexlify(blocks))
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), data]).cast(
        pa.string()
    )


def hex_to_blocks(values: pa.Array | pa.ChunkedArray, width: int) -> bytes:
    """Inverse of :func:`blocks_to_hex`: ``ValueError`` on nulls or a wrong-length/non-hex item."""
    arr = _as_array(values)
    if arr.null_count:
        raise ValueError("pseudonym column contains nulls")
    if len(arr) == 0:
        return b""
    arr = arr.cast(pa.large_string())
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    if not np.all(np.diff(offs) == 2 * width):
        raise ValueError(f"pseudonyms must all be {2 * width} hex characters")
    data = arr.buffers()[2]
    try:
        return binascii.unhexlify(memoryview(data)[offs[0] : offs[-1]])
    except (binascii.Error, ValueError):
        raise ValueError("pseudonym column contains non-hex characters") from None


def _binary_items(arr: pa.Array) -> list[bytes]:
    """The (non-null) items of a string array as Python bytes, without a per-item encode."""
    return arr.cast(pa.binary()).to_pylist()


def _aes_ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


class VrmPseudonymiser:
    """Turns normalised VRMs into epoch pseudonyms (see the module docstring)."""

    def __init__(self, base_key: bytes, epoch_key: bytes) -> None:
        if len(epoch_key) != 32:
            raise ValueError("epoch key must be 32 bytes (AES-256)")
        self._hash = KeyedHash(base_key)
        self._epoch_key = epoch_key

    def __repr__(self) -> str:
        return "VrmPseudonymiser(<hidden>)"

    def pseudonym_blocks(self, normalised: pa.Array) -> bytes:
        """Raw 16-byte pseudonyms, concatenated, of a null-free array of normalised VRMs.

        One HMAC per item (callers pass distinct values) and one batched AES call.
        """
        if len(normalised) == 0:
            return b""
        blocks = self._hash.digest_many(_binary_items(normalised), BLOCK)
        return _aes_ecb(self._epoch_key, blocks)

    def pseudonymise_unique(self, normalised: pa.Array) -> pa.Array:
        """Hex pseudonyms of a null-free array of normalised VRMs (one hash per item)."""
        if len(normalised) == 0:
            return pa.array([], type=pa.string())
        return blocks_to_hex(self.pseudonym_blocks(normalised), BLOCK)

    def pseudonymise_normalised(
        self, normalised: pa.Array | pa.ChunkedArray, as_dictionary: bool = False
    ) -> pa.Array:
        """Pseudonyms of already-normalised VRMs, hashing each distinct value once.

        Nulls stay null. With ``as_dictionary`` the result is a DictionaryArray whose
        dictionary holds each distinct pseudonym once (cheap to dedupe and to ``take``).
        """
        enc = pc.dictionary_encode(_as_array(normalised))
        uniques = enc.dictionary
        if uniques.null_count:  # pragma: no cover - dictionary_encode masks nulls by default
            raise ValueError("unexpected null in dictionary")
        pseudo = self.pseudonymise_unique(uniques)
        if as_dictionary:
            return pa.DictionaryArray.from_arrays(enc.indices, pseudo)
        return pseudo.take(enc.indices)

    def pseudonymise(self, vrms: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Normalise (upper case, separators removed) and pseudonymise raw VRMs."""
        return self.pseudonymise_normalised(normalise_vrms(_as_array(vrms)))

    def pseudonymise_one(self, vrm: str) -> str:
        """The pseudonym of one raw VRM (convenience; not for hot paths)."""
        return str(self.pseudonymise(pa.array([vrm], type=pa.string()))[0])


def rekey_pseudonyms(
    pseudonyms: pa.Array | pa.ChunkedArray, old_epoch_key: bytes, new_epoch_key: bytes
) -> pa.Array:
    """Re-key stored pseudonyms from one epoch to the next without the raw VRMs.

    Each distinct pseudonym is decrypted with the old epoch key and encrypted with the new one
    (two batched AES-ECB calls). Order and multiplicity are preserved.
    """
    enc = pc.dictionary_encode(_as_array(pseudonyms))
    blocks = hex_to_blocks(enc.dictionary, BLOCK)
    fresh = _aes_ecb(new_epoch_key, _aes_ecb(old_epoch_key, blocks, decrypt=True))
    return blocks_to_hex(fresh, BLOCK).take(enc.indices)


def rekey_pseudonym_blocks(blocks: bytes, old_epoch_key: bytes, new_epoch_key: bytes) -> bytes:
    """Re-key raw 16-byte pseudonyms (concatenated) from one epoch key to another."""
    if len(blocks) % BLOCK:
        raise ValueError("pseudonym bytes are not a multiple of 16")
    if not blocks:
        return b""
    return _aes_ecb(new_epoch_key, _aes_ecb(old_epoch_key, blocks, decrypt=True))


class CameraTokeniser:
    """Keyed camera tokens: ``hex(HMAC-SHA256(k_camera, camera_id)[:8])``."""

    def __init__(self, key: bytes) -> None:
        self._hash = KeyedHash(key)

    def __repr__(self) -> str:
        return "CameraTokeniser(<hidden>)"

    def token_blocks(self, camera_ids: pa.Array) -> bytes:
        """Raw 8-byte tokens, concatenated, of a null-free array of (trimmed) camera ids."""
        return self._hash.digest_many(_binary_items(camera_ids), TOKEN_BYTES)

    def tokens(self, camera_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Tokens of camera ids (whitespace-trimmed), each distinct id hashed once; nulls stay."""
        enc = pc.dictionary_encode(pc.utf8_trim_whitespace(_as_array(camera_ids)))
        if len(enc.dictionary) == 0:
            return pa.nulls(len(enc), type=pa.string())
        toks = blocks_to_hex(
            self._hash.digest_many(_binary_items(enc.dictionary), TOKEN_BYTES), TOKEN_BYTES
        )
        return toks.take(enc.indices)

    def token_one(self, camera_id: str) -> str:
        """The token of one camera id."""
        return str(self.tokens(pa.array([camera_id], type=pa.string()))[0])
