"""MD5 (RFC 1321) of many short messages at once, vectorised with numpy.

An attacker reversing unkeyed MD5 pseudonyms hashes every candidate plate. ``hashlib`` costs
one Python call per candidate; this evaluates the 64 MD5 steps once per *batch*, as numpy
operations on ``uint32`` columns, for messages of at most 55 bytes (one padded block -- every
UK plate is 2 to 7 characters). Measured against ``hashlib`` in ``benchmarks/bench_reid.py``
(``docs/benchmarks/reid.md``); every recovered plate is re-checked with ``hashlib``.

Batches of about 64k messages keep the working set in the CPU cache and were fastest here.
"""

from __future__ import annotations

import math

import numpy as np

_SHIFTS = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
_SINES = tuple(int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64))
_WORD = tuple(
    i if i < 16 else (5 * i + 1) % 16 if i < 32 else (3 * i + 5) % 16 if i < 48 else (7 * i) % 16
    for i in range(64)
)
_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
MAX_MESSAGE_BYTES = 55
BATCH = 1 << 16


def _compress(variable: dict[int, np.ndarray], constant: dict[int, int], n: int) -> np.ndarray:
    """One MD5 compression from the IV; message words are arrays or constants (0 if absent)."""
    a = np.full(n, _IV[0], np.uint32)
    b = np.full(n, _IV[1], np.uint32)
    c = np.full(n, _IV[2], np.uint32)
    d = np.full(n, _IV[3], np.uint32)
    f = np.empty(n, np.uint32)
    t = np.empty(n, np.uint32)
    for i in range(64):
        if i < 16:  # F = (b & c) | (~b & d)
            np.bitwise_and(b, c, out=f)
            np.invert(b, out=t)
            np.bitwise_and(t, d, out=t)
            np.bitwise_or(f, t, out=f)
        elif i < 32:  # G = (d & b) | (~d & c)
            np.bitwise_and(d, b, out=f)
            np.invert(d, out=t)
            np.bitwise_and(t, c, out=t)
            np.bitwise_or(f, t, out=f)
        elif i < 48:  # H = b ^ c ^ d
            np.bitwise_xor(b, c, out=f)
            np.bitwise_xor(f, d, out=f)
        else:  # I = c ^ (b | ~d)
            np.invert(d, out=t)
            np.bitwise_or(t, b, out=t)
            np.bitwise_xor(c, t, out=f)
        g = _WORD[i]
        np.add(f, a, out=f)
        np.add(f, np.uint32((_SINES[i] + constant.get(g, 0)) & 0xFFFFFFFF), out=f)
        if g in variable:
            np.add(f, variable[g], out=f)
        s = _SHIFTS[i]
        np.left_shift(f, np.uint32(s), out=t)
        np.right_shift(f, np.uint32(32 - s), out=f)
        np.bitwise_or(f, t, out=f)
        np.add(f, b, out=f)
        a, d, c, b, f = d, c, b, f, a  # rotate, reusing a's buffer as the next scratch
    out = np.empty((n, 4), np.uint32)
    for j, (word, iv) in enumerate(zip((a, b, c, d), _IV, strict=True)):
        np.add(word, np.uint32(iv), out=out[:, j])
    return out


def md5_words(messages: np.ndarray) -> np.ndarray:
    """MD5 of each row of ``uint8 [n, length]`` as ``uint32 [n, 4]`` (little-endian words).

    ``out.astype('<u4').tobytes()`` is the concatenated 16-byte digests. All rows share one
    length (<= 55 bytes).
    """
    msgs = np.ascontiguousarray(messages, dtype=np.uint8)
    if msgs.ndim != 2:
        raise ValueError("messages must be a 2-D uint8 array [n, length]")
    n, length = msgs.shape
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"messages longer than {MAX_MESSAGE_BYTES} bytes need two MD5 blocks")
    words = (length + 4) // 4  # words holding the message and its 0x80 terminator
    block = np.zeros((n, 4 * words), np.uint8)
    block[:, :length] = msgs
    block[:, length] = 0x80
    view = block.view("<u4")
    variable = {j: np.ascontiguousarray(view[:, j]) for j in range(words)}
    return _compress(variable, {14: 8 * length}, n)


def md5_first64(messages: np.ndarray) -> np.ndarray:
    """The first 8 digest bytes of each row as ``uint64`` (for fast matching against targets)."""
    w = md5_words(messages).astype(np.uint64)
    return w[:, 0] | (w[:, 1] << np.uint64(32))


def digest_first64(digests: list[bytes]) -> np.ndarray:
    """The same ``uint64`` key for 16-byte digests given as bytes."""
    if any(len(d) != 16 for d in digests):
        raise ValueError("MD5 digests are 16 bytes")
    raw = np.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, 4).astype(np.uint64)
    return raw[:, 0] | (raw[:, 1] << np.uint64(32))
