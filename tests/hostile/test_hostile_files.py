"""A local user plants things in a store: each gets a clear error, loses nothing, and retention
runs again once the cause is removed (issue 15, item 3; figures in docs/force-store.md)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from retention_helpers import BuiltStore, as_of_expiring, open_store, tree_digest
from typer.testing import CliRunner

from client_force.cli import app as force_app
from retention.cli import PurgeExit
from retention.cli import app as retention_app
from retention.policy import RetentionPolicy
from retention.purge import run_purge
from retention.store import PartitionIntegrityError, StoreIOError, UnsafePathError

runner = CliRunner()
POLICY = RetentionPolicy(365)
AS_OF = as_of_expiring(5)  # days 0..4 expire

#: every folder of a store, and a file of each kind
FOLDERS = [
    ".",
    "keys",
    "partitions",
    "partitions/day=2024-01-10",
    "quarantine",
    "quarantine/day=2024-01-04",
    "cameras",
    "labels",
    "derived",
    "derived/features-late",
    "logs",
    "privacy",
]


def _purge(root: Path) -> tuple[int, str]:
    r = runner.invoke(retention_app, ["purge", str(root), "--as-of", AS_OF.isoformat()])
    return r.exit_code, r.stdout + r.stderr


def _reads(root: Path) -> dict:
    store = open_store(root)
    return {d: store.read_day(d).num_rows for d in store.days()}


def _retention_runs_again(built: BuiltStore, before: dict) -> None:
    """After the cause is removed: the purge completes and only expired days went."""
    code, out = _purge(built.root)
    assert code == PurgeExit.PURGED, out
    after = _reads(built.root)
    assert after == {d: n for d, n in before.items() if d >= built.days[5]}


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("folder", FOLDERS)
def test_a_symlink_in_any_folder_is_refused(built: BuiltStore, tmp_path: Path, folder: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("someone else's")
    before = tree_digest(built.root)
    link = built.root / folder / "planted"
    link.symlink_to(outside)
    code, out = _purge(built.root)
    assert code == 3 and str(link) in out and "symbolic link" in out
    assert outside.read_text() == "someone else's"
    r = runner.invoke(force_app, ["status", str(built.root)])
    assert r.exit_code == 3 and str(link) in r.stdout + r.stderr
    link.unlink()
    assert tree_digest(built.root) == before  # the refusal changed nothing
    _retention_runs_again(built, _reads(built.root))


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    "rel", ["keys/keyring.json", "store.json", "partitions/day=2024-01-02/reads.parquet.enc"]
)
def test_a_store_file_replaced_by_a_symlink_is_refused(built: BuiltStore, rel: str) -> None:
    target = built.root / rel
    moved = built.root.parent / "moved-away"
    shutil.move(target, moved)
    target.symlink_to(moved)
    assert _purge(built.root)[0] == 3
    target.unlink()
    shutil.move(moved, target)
    _retention_runs_again(built, _reads(built.root))


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    "rel",
    [
        "keys/keyring.json",
        "keys/master.wrapped",
        "partitions/day=2024-01-02/reads.parquet.enc",
        "derived/features-early/data.parquet.enc",
        "logs/purge.jsonl",
    ],
)
def test_a_hard_link_to_a_store_file_is_refused(
    built: BuiltStore, tmp_path: Path, rel: str
) -> None:
    """A second name for a key-holding file would outlive its rewrite (crypto-erase)."""
    target = built.root / rel
    if not target.exists():  # no purge yet: make the log
        run_purge(open_store(built.root), as_of_expiring(1), POLICY)
    before = _reads(built.root)
    twin = tmp_path / "twin"
    os.link(target, twin)
    code, out = _purge(built.root)
    assert code == 3 and "hard link" in out and str(target) in out
    twin.unlink()
    _retention_runs_again(built, before)


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    "rel", ["store.json", "keys/keyring.json", "partitions/day=2024-01-08/reads.parquet.enc"]
)
def test_a_file_replaced_by_a_folder(built: BuiltStore, rel: str) -> None:
    before = _reads(built.root)
    target = built.root / rel
    saved = target.read_bytes()
    target.unlink()
    target.mkdir()
    code, out = _purge(built.root)
    assert code in (2, 3) and str(target) in out, out
    target.rmdir()
    target.write_bytes(saved)
    os.chmod(target, 0o600)
    _retention_runs_again(built, before)


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("rel", ["partitions/day=2024-01-08", "derived/features-late", "labels"])
def test_a_folder_replaced_by_a_file(built: BuiltStore, rel: str) -> None:
    before = _reads(built.root)
    target = built.root / rel
    aside = built.root.parent / "aside"
    shutil.move(target, aside)
    target.write_bytes(b"not a folder")
    code, out = _purge(built.root)
    assert code == 3 and str(target) in out and "folder" in out
    target.unlink()
    shutil.move(aside, target)
    _retention_runs_again(built, before)


@pytest.mark.usefixtures("cli_env")
def test_a_fifo_never_blocks_a_reader(built: BuiltStore) -> None:
    fifo = built.root / "cameras" / "register.parquet.enc"
    os.mkfifo(fifo)
    code, out = _purge(built.root)
    assert code == 3 and "FIFO" in out
    fifo.unlink()
    _retention_runs_again(built, _reads(built.root))


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("size", ["zero", "half"])
def test_truncated_files_are_named_and_retention_still_runs(built: BuiltStore, size: str) -> None:
    """A truncated partition is an integrity error naming it; the purge (which never needs to
    decrypt a partition) still runs with the damage in place."""
    part = built.root / "partitions" / "day=2024-01-12" / "reads.parquet.enc"
    data = part.read_bytes()
    part.write_bytes(b"" if size == "zero" else data[: len(data) // 2])
    with pytest.raises(PartitionIntegrityError) as exc:
        open_store(built.root).read_day(built.days[11])
    assert exc.value.path == part
    code, out = _purge(built.root)
    assert code == PurgeExit.PURGED, out
    part.write_bytes(data)
    assert open_store(built.root).read_day(built.days[11]).num_rows == 12


@pytest.mark.usefixtures("cli_env")
def test_truncated_keyring_or_metadata_is_a_clear_error(built: BuiltStore) -> None:
    before = _reads(built.root)
    for rel in ("keys/keyring.json", "store.json", "keys/master.wrapped"):
        path = built.root / rel
        saved = path.read_bytes()
        path.write_bytes(saved[:0])
        code, out = _purge(built.root)
        assert code == 2 and str(path) in out, (rel, out)
        path.write_bytes(saved)
    _retention_runs_again(built, before)


def test_a_truncated_manifest_makes_the_artifact_untrusted_and_purged(built: BuiltStore) -> None:
    manifest = built.root / "derived" / "features-late" / "manifest.json"
    manifest.write_bytes(b"")
    store = open_store(built.root)
    (art,) = [a for a in store.derived_artifacts() if a.name == "features-late"]
    assert not art.authenticated
    result = run_purge(store, AS_OF, POLICY)
    assert "features-late" in result.plan.derived


def test_widened_permissions_are_tightened_on_open(built: BuiltStore) -> None:
    part = built.root / "partitions" / "day=2024-01-12" / "reads.parquet.enc"
    os.chmod(part, 0o644)
    os.chmod(part.parent, 0o755)
    os.chmod(built.root / "keys", 0o777)
    open_store(built.root)
    assert stat.S_IMODE(part.stat().st_mode) == 0o600
    assert stat.S_IMODE(part.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((built.root / "keys").stat().st_mode) == 0o700


def test_a_file_owned_by_someone_else_is_refused(built: BuiltStore) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    planted = built.root / "labels" / "truth.parquet.enc"
    planted.write_bytes(b"x")
    os.chown(planted, 65534, 65534)
    with pytest.raises(UnsafePathError, match="owned by uid 65534"):
        open_store(built.root)
    planted.unlink()
    open_store(built.root)


def test_permission_denied_is_a_clear_error(
    built: BuiltStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores file modes, so the kernel's EACCES is injected at the open."""
    part = built.root / "partitions" / "day=2024-01-12" / "reads.parquet.enc"
    real_open = os.open

    def deny(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path) == part:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    store = open_store(built.root)
    with pytest.raises(StoreIOError, match="Permission denied") as exc:
        store.read_day(built.days[11])
    assert exc.value.path == part
    monkeypatch.undo()
    assert store.read_day(built.days[11]).num_rows == 12


def _remount_ro(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)


@pytest.mark.usefixtures("cli_env")
def test_a_read_only_store_is_readable_and_refuses_writes_cleanly(
    built: BuiltStore, tmpfs: Callable[[str], Path]
) -> None:
    point = tmpfs("16m")
    root = point / "store"
    shutil.copytree(built.root, root)
    before = tree_digest(root)
    _remount_ro(point)
    store = open_store(root)  # reading works on a read-only mount
    assert store.read_day(built.days[10]).num_rows == 12
    with pytest.raises(StoreIOError, match="Read-only file system"):
        store.write_quarantine(built.days[10], "ro", pa.table({"row": [1]}))
    code, out = _purge(root)
    assert code == PurgeExit.FAILED and "Read-only" in out and "Traceback" not in out
    subprocess.run(["mount", "-o", "remount,rw", str(point)], check=True)
    assert tree_digest(root) == before
    assert _purge(root)[0] == PurgeExit.PURGED


def test_a_full_disk_loses_nothing(built: BuiltStore, tmpfs: Callable[[str], Path]) -> None:
    point = tmpfs("4m")
    root = point / "store"
    shutil.copytree(built.root, root)
    before = _reads(root)
    filler = point / "filler"
    with open(filler, "wb") as fh:  # fill the disk to the last block
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    store = open_store(root)
    with pytest.raises(StoreIOError, match="No space left") as exc:
        store.write_derived("big", pa.table({"x": [os.urandom(256 * 1024)]}), [built.days[10]])
    assert "nothing was half-written" in str(exc.value)
    with pytest.raises(OSError, match="No space left"):
        run_purge(store, AS_OF, POLICY)
    filler.unlink()
    again = open_store(root)
    assert _reads(root) == before  # nothing lost
    assert not list(root.rglob(".*.tmp-*"))
    result = run_purge(again, AS_OF, POLICY)
    assert result.status == "purged"
    assert _reads(root) == {d: n for d, n in before.items() if d >= built.days[5]}


def test_a_real_permission_denial_names_the_file(built: BuiltStore) -> None:
    """chmod 000 on a partition, read by the store's (unprivileged) owner in a forked child:
    the kernel's EACCES becomes a StoreIOError naming the file, and nothing else fails."""
    if os.geteuid() != 0:
        pytest.skip("needs root to hand the store to an unprivileged owner")
    import tempfile

    nobody = 65534
    base = Path(tempfile.mkdtemp(prefix="anprfed-perm-"))
    try:
        os.chmod(base, 0o755)
        root = base / "store"
        shutil.copytree(built.root, root)
        for p in [root, *root.rglob("*")]:
            os.chown(p, nobody, nobody, follow_symlinks=False)
        part = root / "partitions" / "day=2024-01-12" / "reads.parquet.enc"
        os.chmod(part, 0o000)

        def as_nobody() -> str:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: drop privileges, try the read, report one line
                os.close(read_fd)
                try:
                    os.setgid(nobody)
                    os.setuid(nobody)
                    store = open_store(root)
                    try:
                        n = store.read_day(built.days[11]).num_rows
                        msg = f"read {n}"
                    except StoreIOError as exc:
                        msg = f"StoreIOError {exc.path} {exc}"
                    msg += f"|other {store.read_day(built.days[10]).num_rows}"
                except BaseException as exc:
                    msg = f"unexpected {exc!r}"
                os.write(write_fd, msg.encode())
                os._exit(0)
            os.close(write_fd)
            with os.fdopen(read_fd) as fh:
                out = fh.read()
            os.waitpid(pid, 0)
            return out

        denied = as_nobody()
        assert denied.startswith(f"StoreIOError {part} "), denied
        assert "Permission denied" in denied and denied.endswith("|other 12")
        os.chmod(part, 0o600)
        assert as_nobody() == "read 12|other 12"
    finally:
        shutil.rmtree(base, ignore_errors=True)
