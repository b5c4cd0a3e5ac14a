"""The keyed hash (HMAC-SHA256, RFC 4231 vectors) and the re-keyable pseudonyms built on it."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.pseudonym import (
    CameraTokeniser,
    KeyedHash,
    VrmPseudonymiser,
    hmac_sha256,
    rekey_pseudonyms,
)

# RFC 4231, section 4: (key, data, HMAC-SHA-256, truncate-to-bytes or None)
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", None),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", None),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", None),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", None),
    (b"\x0c" * 20, b"Test With Truncation",
     "a3b6167473100ee06e0c796c2955552b", 16),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", None),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", None),
]  # fmt: skip

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
KEY_C = bytes(range(64, 96))


@pytest.mark.parametrize(("key", "data", "expected", "trunc"), RFC4231)
def test_rfc4231_vectors(key: bytes, data: bytes, expected: str, trunc: int | None) -> None:
    kh = KeyedHash(key)
    digest = kh.digest(data)
    assert (digest[:trunc] if trunc else digest).hex() == expected
    assert hmac_sha256(key, data) == digest
    # the batched path the pseudonyms use gives the same bytes
    assert kh.digest_many([data, data], 16) == digest[:16] * 2


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=200), msgs=st.lists(st.binary(max_size=80), max_size=8))
def test_keyed_hash_matches_stdlib_hmac(key: bytes, msgs: list[bytes]) -> None:
    expected = b"".join(hmac.new(key, m, hashlib.sha256).digest() for m in msgs)
    assert KeyedHash(key).digest_many(msgs) == expected


def test_key_is_not_in_repr() -> None:
    assert KEY_A.hex() not in repr(KeyedHash(KEY_A))
    assert "hidden" in repr(VrmPseudonymiser(KEY_A, KEY_B))


plate_chars = st.sampled_from("ABCDEFGHJKLMNOPRSTUVWXY0123456789")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(plate_chars, min_size=2, max_size=8), min_size=1, max_size=30))
def test_pseudonyms_are_injective_deterministic_and_spelling_invariant(vrms: list[str]) -> None:
    p = VrmPseudonymiser(KEY_A, KEY_B)
    out = p.pseudonymise(pa.array(vrms)).to_pylist()
    assert all(len(x) == 32 and int(x, 16) >= 0 for x in out)
    # same VRM -> same pseudonym; different normalised VRMs -> different pseudonyms
    assert len(set(out)) == len(set(vrms))
    spelled = [f" {v[:2].lower()} {v[2:]}-" for v in vrms]
    assert p.pseudonymise(pa.array(spelled)).to_pylist() == out
    # another force (other keys) gets unrelated pseudonyms
    other = VrmPseudonymiser(KEY_C, KEY_B).pseudonymise(pa.array(vrms)).to_pylist()
    assert not set(other) & set(out)


def test_pseudonym_is_keyed_hmac_then_aes_block() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    block = hmac.new(KEY_A, b"AB12CDE", hashlib.sha256).digest()[:16]
    enc = Cipher(algorithms.AES(KEY_B), modes.ECB()).encryptor()
    expected = (enc.update(block) + enc.finalize()).hex()
    assert VrmPseudonymiser(KEY_A, KEY_B).pseudonymise_one("ab12 cde") == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(plate_chars, min_size=2, max_size=8), min_size=1, max_size=30))
def test_rekey_equals_fresh_pseudonyms_under_the_new_epoch_key(vrms: list[str]) -> None:
    old = VrmPseudonymiser(KEY_A, KEY_B).pseudonymise(pa.array(vrms))
    new = VrmPseudonymiser(KEY_A, KEY_C).pseudonymise(pa.array(vrms))
    assert rekey_pseudonyms(old, KEY_B, KEY_C).to_pylist() == new.to_pylist()
    assert rekey_pseudonyms(new, KEY_C, KEY_B).to_pylist() == old.to_pylist()


def test_nulls_stay_null_and_camera_tokens_are_16_hex() -> None:
    p = VrmPseudonymiser(KEY_A, KEY_B)
    out = p.pseudonymise(pa.array(["AB12CDE", None, "AB12CDE"]))
    assert out[1].as_py() is None and out[0] == out[2]
    toks = CameraTokeniser(KEY_C).tokens(pa.array(["CAM-1", " CAM-1 ", "CAM-2", None]))
    vals = toks.to_pylist()
    assert vals[0] == vals[1] != vals[2] and vals[3] is None
    assert all(len(v) == 16 for v in vals[:3])
    assert vals[0] == hmac.new(KEY_C, b"CAM-1", hashlib.sha256).hexdigest()[:16]
