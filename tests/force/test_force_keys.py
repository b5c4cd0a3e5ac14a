"""Master secret protection (scrypt-wrapped or key file), subkeys and the keyring."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from privacy.keys import (
    DEFAULT_SCRYPT_LOG2N,
    KeyMaterialError,
    MasterKey,
    MasterSecretSource,
    ScryptParams,
    WrongPassphraseError,
)
from retention.keyring import Keyring, KeyringError, MissingKeyError
from retention.store import ForceStore


def test_default_scrypt_cost_is_strong(monkeypatch: pytest.MonkeyPatch) -> None:
    # no environment variable lowers it (the old test-only one is ignored)
    monkeypatch.setenv("ANPRFED_INSECURE_TEST_SCRYPT_LOG2N", "4")
    params = ScryptParams.fresh()
    assert params.log2_n == DEFAULT_SCRYPT_LOG2N >= 17
    assert params.to_json()["n"] >= 2**17 and params.r == 8 and params.p == 1


def test_passphrase_wraps_and_reopens(tmp_path: Path) -> None:
    src = MasterSecretSource.from_passphrase("s3cret", scrypt_log2_n=4)
    master, info = src.create(tmp_path / "keys")
    assert info["mode"] == "passphrase" and info["n"] == 16
    assert "ciphertext" not in info and "nonce" not in info
    again = MasterSecretSource.from_passphrase("s3cret").load(tmp_path / "keys")
    assert again.wrapping_key() == master.wrapping_key()
    wrapped = (tmp_path / "keys" / "master.wrapped").read_bytes()
    assert master.raw_for_key_file() not in wrapped
    assert master.raw_for_key_file().hex().encode() not in wrapped
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "master.wrapped").st_mode) == 0o600


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    MasterSecretSource.from_passphrase("right", scrypt_log2_n=4).create(tmp_path / "k")
    with pytest.raises(WrongPassphraseError, match="wrong passphrase") as exc:
        MasterSecretSource.from_passphrase("wrong").load(tmp_path / "k")
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_key_file_mode(tmp_path: Path) -> None:
    key_file = tmp_path / "force.key"
    src = MasterSecretSource.from_key_file(key_file)
    master, info = src.create(tmp_path / "keys")
    assert info == {"mode": "key-file"}
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    marker = (tmp_path / "keys" / "master.wrapped").read_text()
    assert master.raw_for_key_file().hex() not in marker
    assert src.load(tmp_path / "keys").wrapping_key() == master.wrapping_key()
    with pytest.raises(KeyMaterialError, match="already exists"):
        src.create(tmp_path / "keys2")
    other = tmp_path / "other.key"
    MasterSecretSource.from_key_file(other).create(tmp_path / "keys3")
    with pytest.raises(WrongPassphraseError, match="does not hold this store"):
        MasterSecretSource.from_key_file(other).load(tmp_path / "keys")
    with pytest.raises(WrongPassphraseError, match="key file"):
        MasterSecretSource.from_passphrase("x").load(tmp_path / "keys")
    (tmp_path / "junk.key").write_text("not hex at all")
    with pytest.raises(KeyMaterialError, match=r"junk\.key") as exc:
        MasterSecretSource.from_key_file(tmp_path / "junk.key").load(tmp_path / "keys")
    assert "not hex at all" not in str(exc.value)


def test_subkeys_are_distinct_and_signing_key_is_deterministic() -> None:
    m = MasterKey.generate()
    keys = {m.wrapping_key(), m.camera_token_key(), m.pseudonym_base_key(), m.derive(b"x")}
    assert len(keys) == 4 and all(len(k) == 32 for k in keys)
    raw = m.signing_key().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    again = MasterKey(m.raw_for_key_file()).signing_key()
    assert raw == again.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    sig = m.signing_key().sign(b"purge")
    m.signing_key().public_key().verify(sig, b"purge")
    assert "hidden" in repr(m)


def test_store_publishes_the_signing_public_key(store: ForceStore) -> None:
    meta = json.loads((store.root / "store.json").read_text())
    assert meta["signing"]["public_key"] == store.master.public_key_hex()
    pub = store.signing_key().public_key()
    assert (
        pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        == meta["signing"]["public_key"]
    )
    text = json.dumps(meta)
    for secret in (store.master.raw_for_key_file(), store.master.wrapping_key()):
        assert secret.hex() not in text


def test_keyring_wrap_destroy_and_tamper(tmp_path: Path) -> None:
    wk = os.urandom(32)
    ring = Keyring.create(tmp_path / "keyring.json", wk)
    kid, key = ring.new_key("day:2024-05-01")
    assert ring.key_ids_for_scope("day:2024-05-01") == [kid]
    assert key.hex() not in (tmp_path / "keyring.json").read_text()
    fresh = Keyring(tmp_path / "keyring.json", wk)
    assert fresh.unwrap(kid) == key
    # relabelling an entry to another scope breaks its authentication
    data = json.loads((tmp_path / "keyring.json").read_text())
    data["keys"][0]["scope"] = "day:2024-05-02"
    (tmp_path / "keyring.json").write_text(json.dumps(data))
    with pytest.raises(KeyringError, match="failed authentication"):
        Keyring(tmp_path / "keyring.json", wk).unwrap(kid)
    data["keys"][0]["scope"] = "day:2024-05-01"
    (tmp_path / "keyring.json").write_text(json.dumps(data))
    assert fresh.destroy(kid) and not fresh.has_key(kid)
    with pytest.raises(MissingKeyError):
        Keyring(tmp_path / "keyring.json", wk).unwrap(kid)
    assert kid not in (tmp_path / "keyring.json").read_text()


def test_keyring_handles_see_each_others_keys(tmp_path: Path) -> None:
    """Two handles on one keyring (two processes in a study): a key added through one is found
    through the other, and a key destroyed through one is not resurrected by the other."""
    wk = os.urandom(32)
    first = Keyring.create(tmp_path / "keyring.json", wk)
    second = Keyring(tmp_path / "keyring.json", wk)
    kid, key = second.new_key("derived:cache")
    assert first.scope_of(kid) == "derived:cache"
    assert first.unwrap(kid) == key
    other, _ = first.new_key("day:2024-05-01")
    assert second.destroy(kid)
    first.new_key("day:2024-05-02")  # a stale handle writing must not bring kid back
    reread = Keyring(tmp_path / "keyring.json", wk)
    assert not reread.has_key(kid) and reread.has_key(other)
    with pytest.raises(MissingKeyError):
        first.scope_of(kid)
