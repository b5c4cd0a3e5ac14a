"""Regressions of issue 15: the store under planted files, races and crashes.

Each test reproduces one finding of the review against a real store and fails on the code
before the fix (the finding is named in each docstring).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from retention_helpers import PASSPHRASE, BuiltStore, as_of_expiring, day, open_store
from typer.testing import CliRunner

from retention.cli import PurgeExit, app
from retention.keyring import Keyring, day_scope
from retention.partitions import PARTITION_NAME, days_under
from retention.policy import RetentionPolicy
from retention.purge import run_purge
from retention.purge_log import PurgeLog, verify_log
from retention.store import ForceStore, StoreError, UnsafePathError

runner = CliRunner()
POLICY = RetentionPolicy(365)
AS_OF_15 = as_of_expiring(15)


def _purge_cli(root: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["purge", str(root), "--as-of", AS_OF_15.isoformat()])
    return result.exit_code, result.stdout + result.stderr


def _wrapped_day_keys(root: Path, days: list) -> list[str]:
    ring = json.loads((root / "keys" / "keyring.json").read_text())
    scopes = {day_scope(d) for d in days}
    return [e["wrapped"] for e in ring["keys"] if e["scope"] in scopes]


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.usefixtures("passphrase_env")
def test_purge_refuses_a_symlinked_derived_folder(built: BuiltStore, tmp_path: Path) -> None:
    """Finding 1: a symlink at derived/<name> made the purge delete a file outside the store,
    then fail (exit 1) on every re-run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("not the store's")
    link = built.root / "derived" / "evil"
    link.symlink_to(outside, target_is_directory=True)
    code, out = _purge_cli(built.root)
    assert code == PurgeExit.UNSAFE == 3, out
    assert str(link) in out and "symbolic link" in out
    assert victim.read_text() == "not the store's"
    assert days_under(built.root / "partitions", PARTITION_NAME) == built.days  # none purged
    link.unlink()  # the operator removes the named path: retention runs again
    code, out = _purge_cli(built.root)
    assert code == PurgeExit.PURGED, out
    assert victim.exists()
    assert verify_log(built.root, open_store(built.root).signing_key().public_key()).ok


@pytest.mark.usefixtures("passphrase_env")
def test_purge_never_deletes_through_a_symlinked_day_folder(
    built: BuiltStore, tmp_path: Path
) -> None:
    """Finding 1: a symlinked quarantine/day=... folder would have its target's files deleted."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "rejects-x.parquet.enc").write_bytes(b"someone else's file")
    qday = built.root / "quarantine" / f"day={day(2).isoformat()}"
    assert not qday.exists()
    qday.symlink_to(outside, target_is_directory=True)
    code, out = _purge_cli(built.root)
    assert code == 3 and str(qday) in out
    assert (outside / "rejects-x.parquet.enc").read_bytes() == b"someone else's file"
    qday.unlink()
    assert _purge_cli(built.root)[0] == PurgeExit.PURGED


def test_every_open_erases_keyring_temp_files_holding_a_purged_key(built: BuiltStore) -> None:
    """Finding 2: a .keyring.json.tmp-* left by a killed rewrite survived the purge and still
    held the purged day's key."""
    root = built.root
    leftover = root / "keys" / ".keyring.json.tmp-deadbeef"
    leftover.write_bytes((root / "keys" / "keyring.json").read_bytes())
    expired = built.days[:15]
    wrapped = _wrapped_day_keys(root, expired)
    assert wrapped and _files_containing(root, wrapped[0])
    run_purge(open_store(root), AS_OF_15, POLICY)
    assert not leftover.exists()
    for w in wrapped:
        assert not _files_containing(root, w), "a purged day's wrapped key survived"
    # and a plain open (status, a training worker) removes one too
    leftover.write_bytes(b"{}")
    open_store(root)
    assert not leftover.exists()


class _Crash(BaseException):
    pass


def test_rotation_finishes_an_interrupted_erase_of_the_old_key(
    built: BuiltStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3: a crash after recording the new epoch left the old pseudonym key in place
    with no warning and no pending rotation to finish."""
    store = open_store(built.root)
    real = Keyring.destroy_many

    def crash_on_epoch_keys(self: Keyring, key_ids: list[str]) -> list[str]:
        if any(k.startswith("epoch") for k in key_ids):
            raise _Crash
        return real(self, key_ids)

    monkeypatch.setattr(Keyring, "destroy_many", crash_on_epoch_keys)
    monkeypatch.setattr(Keyring, "destroy", lambda self, k: crash_on_epoch_keys(self, [k]))
    with pytest.raises(_Crash):
        store.rotate_pseudonym_key()
    monkeypatch.undo()
    again = open_store(built.root)
    assert again.keyring.key_ids_for_scope("epoch:1"), "the crash left the old key"
    assert again.rotation_pending is not None or again.stale_epoch_key_ids()
    report = again.rotate_pseudonym_key()
    assert report.resumed and report.new_epoch == 2
    assert not again.keyring.key_ids_for_scope("epoch:1")
    assert again.rotation_pending is None and again.key_epoch == 2
    assert again.read_day(built.days[0]).num_rows > 0


def test_keyring_rewrites_are_serialised_across_handles(built: BuiltStore) -> None:
    """Finding 4: two handles' read-modify-writes interleaved and a crypto-erased day key came
    back into keyring.json."""
    a, b = open_store(built.root), open_store(built.root)
    victim = a.day_key_ids(built.days[0])[0]
    real_save = Keyring._save
    fired = {"done": False}
    other: dict[str, object] = {}

    def save_with_interleaving(self: Keyring) -> None:
        if self is a.keyring and not fired["done"]:
            fired["done"] = True
            t = threading.Thread(target=lambda: other.setdefault("gone", b.destroy_key(victim)))
            t.start()
            t.join(timeout=1.0)  # with the lock, b waits for a's rewrite
            other["blocked"] = t.is_alive()
            real_save(self)
            other["thread"] = t
            return
        real_save(self)

    Keyring._save = save_with_interleaving  # type: ignore[method-assign]
    try:
        new_id, _ = a.keyring.new_key("derived:race")
    finally:
        Keyring._save = real_save  # type: ignore[method-assign]
    thread = other["thread"]
    assert isinstance(thread, threading.Thread)
    thread.join(timeout=10)
    assert other["blocked"], "the second handle's rewrite did not wait for the first"
    fresh = open_store(built.root)
    assert not fresh.has_key(victim), "a destroyed key was written back"
    assert fresh.has_key(new_id), "a new key was lost"


def test_log_reader_never_deletes_a_signed_entry(built: BuiltStore) -> None:
    """Finding 5: stripping the final newline made the next purge trim a validly signed
    entry as a 'torn tail'."""
    store = open_store(built.root)
    run_purge(store, as_of_expiring(5), POLICY)
    log = PurgeLog(built.root)
    before = log.entries()
    assert len(before) == 2
    data = log.path.read_bytes()
    log.path.write_bytes(data.rstrip(b"\n"))
    report = verify_log(built.root, store.signing_key().public_key())
    assert report.ok and report.entries == 2, report.problems
    run_purge(store, AS_OF_15, POLICY)
    after = log.entries()
    assert [e.hash for e in after[:2]] == [e.hash for e in before]
    assert len(after) == 4
    assert verify_log(built.root, store.signing_key().public_key()).ok


def test_everything_in_a_store_is_owner_only(built: BuiltStore) -> None:
    """Finding 5: purge.head, logs/*.jsonl and store.json took the umask (0644); folders 0755."""
    old = os.umask(0o022)
    try:
        store = open_store(built.root)
        run_purge(store, AS_OF_15, POLICY)
        store.append_log("ingest", {"rows": 1})
        store.write_derived("fresh", pa.table({"x": [1]}), [built.days[-1]])
        store.write_quarantine(built.days[-1], "b2", pa.table({"row": [1]}))
    finally:
        os.umask(old)
    for p in [built.root, *built.root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        assert mode == want, f"{p.relative_to(built.root)} is {oct(mode)}"


def test_manifest_days_are_authenticated_and_an_edited_one_is_purged(built: BuiltStore) -> None:
    """Finding 5: the purge trusted manifest.json's source days; an edit hid an expired day."""
    manifest = built.root / "derived" / "features-early" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["source_days"] = [built.days[-1].isoformat()]  # pretend it holds only a recent day
    manifest.write_text(json.dumps(m))
    store = open_store(built.root)
    run_purge(store, as_of_expiring(1), POLICY)  # purges only day 0
    assert "features-early" not in {a.name for a in store.derived_artifacts()}


def test_a_cache_built_from_an_already_purged_day_is_purged(built: BuiltStore) -> None:
    """A derived artifact written (without the store lock) from a day purged meanwhile: its
    source day is no longer held, but the next purge still removes it."""
    store = open_store(built.root)
    run_purge(store, AS_OF_15, POLICY)
    store.write_derived("late-cache", pa.table({"x": [1]}), [built.days[0], built.days[20]])
    result = run_purge(store, AS_OF_15, POLICY)
    assert "late-cache" in result.plan.derived
    assert "late-cache" not in {a.name for a in store.derived_artifacts()}


def test_purge_key_signs_and_erases_but_cannot_decrypt(
    built: BuiltStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 5 / item 4: the purge job needed the whole master secret only to sign."""
    key_file = tmp_path / "purge.key"
    open_store(built.root).create_purge_key(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    monkeypatch.delenv("ANPRFED_PASSPHRASE", raising=False)
    monkeypatch.delenv("ANPRFED_KEY_FILE", raising=False)
    monkeypatch.setenv("ANPRFED_PURGE_KEY_FILE", str(key_file))
    code, out = _purge_cli(built.root)
    assert code == PurgeExit.PURGED, out
    purge_only = ForceStore.open_for_purge(built.root, key_file)
    with pytest.raises(StoreError, match="cannot decrypt"):
        purge_only.master  # noqa: B018
    with pytest.raises(Exception):  # noqa: B017 - no wrapping key: nothing unwraps
        purge_only.read_day(built.days[20])
    full = open_store(built.root)
    assert verify_log(built.root, full.signing_key().public_key()).ok
    assert full.days() == built.days[15:]


def test_passphrase_change_rewraps_without_reencrypting(built: BuiltStore) -> None:
    """Item 4: no way to change the passphrase; scrypt cost recorded so it can be raised."""
    store = open_store(built.root)
    partition = store.partition_path(built.days[0])
    before = partition.read_bytes()
    store.change_passphrase("a new passphrase", scrypt_log2_n=5)
    from privacy.keys import MasterSecretSource, WrongPassphraseError

    with pytest.raises(WrongPassphraseError):
        ForceStore.open(built.root, MasterSecretSource.from_passphrase(PASSPHRASE))
    again = ForceStore.open(built.root, MasterSecretSource.from_passphrase("a new passphrase"))
    assert again.read_day(built.days[0]).num_rows > 0
    assert partition.read_bytes() == before  # nothing re-encrypted
    assert again.meta["key_protection"]["n"] == 2**5
    wrapped = json.loads((built.root / "keys" / "master.wrapped").read_text())
    assert wrapped["n"] == 2**5 and wrapped["r"] == 8


def test_unsafe_path_error_names_the_path(built: BuiltStore) -> None:
    """A FIFO planted as a partition would block a reader forever: refused, named."""
    fifo = built.root / "partitions" / f"day={built.days[1].isoformat()}" / "stray"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="FIFO") as exc:
        open_store(built.root)
    assert exc.value.path == fifo


def _churn(root: str, tag: str, rounds: int, out: str) -> None:
    """In its own process: add a key, destroy the previous one, ``rounds`` times."""
    store = open_store(Path(root))
    previous = None
    for i in range(rounds):
        key_id, _ = store.keyring.new_key(f"derived:{tag}-{i}")
        if previous:
            store.keyring.destroy(previous)
        previous = key_id
    Path(out).write_text(previous or "")


def test_keyring_rewrites_from_two_processes_lose_nothing(built: BuiltStore) -> None:
    """Finding 4, across real processes: two writers interleave 40 rewrites each; every key
    destroyed stays destroyed and the last key of each survives."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    outs = [str(built.root.parent / f"last-{t}") for t in ("a", "b")]
    procs = [
        ctx.Process(target=_churn, args=(str(built.root), t, 20, o))
        for t, o in zip(("a", "b"), outs, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    store = open_store(built.root)
    churned = [e for e in store.keyring.entries() if e.scope.startswith("derived:a-")]
    churned += [e for e in store.keyring.entries() if e.scope.startswith("derived:b-")]
    assert sorted(e.key_id for e in churned) == sorted(Path(o).read_text() for o in outs)
