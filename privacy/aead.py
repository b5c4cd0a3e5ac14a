"""Sealed blobs: AES-256-GCM with a self-describing, authenticated header.

Format (all integers big-endian)::

    magic      8 bytes  b"ANPRFSE1"
    version    1 byte   1
    epoch      4 bytes  pseudonym key epoch of the content (0 if not applicable)
    key_id_len 1 byte
    key_id     key_id_len bytes (ASCII)
    nonce      12 bytes (random per seal)
    body       AES-256-GCM ciphertext || 16-byte tag

The associated data is the whole header followed by a caller-chosen *context* (for a store file:
force name, file kind and scope such as ``day:2024-05-01``). So a flipped bit anywhere, a
truncated file, a header edited to claim another key or epoch, or a file moved to another day's
place all fail authentication; nothing unauthenticated is ever returned.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"ANPRFSE1"
VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_FIXED = struct.Struct(">8sBIB")  # magic, version, epoch, key_id_len


class SealedBlobError(Exception):
    """A sealed blob is malformed or fails authentication (message never holds contents)."""


@dataclass(frozen=True)
class SealedHeader:
    """The authenticated (but not secret) header of a sealed blob."""

    key_id: str
    epoch: int
    nonce: bytes
    length: int  # header length in bytes


def seal(key: bytes, key_id: str, context: bytes, plaintext: bytes, epoch: int = 0) -> bytes:
    """Encrypt ``plaintext`` under ``key`` (32 bytes), binding header and ``context``."""
    kid = key_id.encode("ascii")
    if not 0 < len(kid) < 256:
        raise ValueError("key_id must be 1..255 ASCII characters")
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = _FIXED.pack(MAGIC, VERSION, epoch, len(kid)) + kid + nonce
    return header + AESGCM(key).encrypt(nonce, plaintext, header + context)


def read_header(blob: bytes | memoryview) -> SealedHeader:
    """Parse the header; :class:`SealedBlobError` if the blob is not a sealed blob."""
    if len(blob) < _FIXED.size:
        raise SealedBlobError("too short to be a sealed blob (truncated?)")
    magic, version, epoch, kid_len = _FIXED.unpack_from(blob, 0)
    if magic != MAGIC:
        raise SealedBlobError("bad magic: not an anprfed sealed file")
    if version != VERSION:
        raise SealedBlobError(f"unsupported sealed-file version {version}")
    end = _FIXED.size + kid_len + NONCE_BYTES
    if len(blob) < end + TAG_BYTES:
        raise SealedBlobError("truncated sealed blob")
    try:
        key_id = bytes(blob[_FIXED.size : _FIXED.size + kid_len]).decode("ascii")
    except UnicodeDecodeError:
        raise SealedBlobError("corrupt key id in sealed-blob header") from None
    nonce = bytes(blob[end - NONCE_BYTES : end])
    return SealedHeader(key_id=key_id, epoch=epoch, nonce=nonce, length=end)


def open_sealed(key: bytes, blob: bytes, context: bytes) -> tuple[SealedHeader, bytes]:
    """Authenticate and decrypt; :class:`SealedBlobError` on any tampering or wrong context."""
    header = read_header(blob)
    head = bytes(blob[: header.length])
    try:
        plain = AESGCM(key).decrypt(header.nonce, bytes(blob[header.length :]), head + context)
    except InvalidTag:
        raise SealedBlobError(
            "authentication failed (tampered, truncated, moved, or wrong key)"
        ) from None
    return header, plain


def wrap_key(wrapping_key: bytes, key: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM key wrap: returns ``(nonce, ciphertext)``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce, AESGCM(wrapping_key).encrypt(nonce, key, aad)


def unwrap_key(wrapping_key: bytes, nonce: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`wrap_key`; :class:`SealedBlobError` if it does not authenticate."""
    try:
        return AESGCM(wrapping_key).decrypt(nonce, wrapped, aad)
    except InvalidTag:
        raise SealedBlobError("wrapped key failed authentication") from None
