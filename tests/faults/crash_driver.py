"""Kill a store command at every file-system step and check what survives (tests/faults).

Run as ``python crash_driver.py COMMAND WORKDIR``; prints one JSON summary line. COMMAND is
``ingest``, ``purge``, ``rotate-key`` or ``labels``. The driver builds a small real store (key
material at a test-only scrypt cost), then:

1. runs the command once in a forked child with step tracing on (:mod:`safefiles.faults`), to
   enumerate its K step boundaries (every write, fsync, rename, unlink, rmdir, append) and to
   record the reference end state;
2. for every k in 1..K: copies the starting store, runs the command in a forked child that
   SIGKILLs itself just before step k, then (in the parent) reopens the store and checks the
   crash state, reruns the command in another child (no kill) and checks the end state
   against the reference.

Children are forked from this process (imports done once), so each crash point costs
milliseconds instead of a Python start-up; the kill is a real SIGKILL of a real process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "force"))

from force_export_factory import PASSPHRASE, make_export  # noqa: E402

from client_force.ingest import ingest_export  # noqa: E402
from client_force.labels import ingest_labels  # noqa: E402
from privacy.keys import MasterSecretSource  # noqa: E402
from retention.keyring import day_scope  # noqa: E402
from retention.policy import RetentionPolicy  # noqa: E402
from retention.purge import check_consistency, purged_days, run_purge  # noqa: E402
from retention.purge_log import PurgeLog, verify_log  # noqa: E402
from retention.store import ForceStore  # noqa: E402
from safefiles import faults  # noqa: E402
from safefiles.atomic import stale_temp_files  # noqa: E402

INGEST_AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
START = date(2024, 5, 1)
DAYS = 3
POLICY = RetentionPolicy(365)
PURGE_AS_OF = datetime.combine(START + timedelta(days=2), datetime.min.time(), UTC) + timedelta(
    days=365
)  # days 0 and 1 expired, day 2 kept


def secret() -> MasterSecretSource:
    return MasterSecretSource.from_passphrase(PASSPHRASE, scrypt_log2_n=4)


def open_store(root: Path) -> ForceStore:
    return ForceStore.open(root, secret())


# --- the commands (run in a forked child) ------------------------------------------------


def cmd_ingest(root: Path, inputs: dict[str, Path]) -> None:
    ingest_export(open_store(root), inputs["export"], as_of=INGEST_AS_OF)


def cmd_purge(root: Path, inputs: dict[str, Path]) -> None:
    run_purge(open_store(root), PURGE_AS_OF, POLICY)


def cmd_rotate(root: Path, inputs: dict[str, Path]) -> None:
    store = open_store(root)
    with store.lock("rotate-key"):
        store.refresh()
        store.check_tree()
        store.clean_interrupted_writes()
        store.rotate_pseudonym_key()


def cmd_labels(root: Path, inputs: dict[str, Path]) -> None:
    ingest_labels(open_store(root), inputs["labels"], as_of=INGEST_AS_OF)


COMMANDS: dict[str, Callable[[Path, dict[str, Path]], None]] = {
    "ingest": cmd_ingest,
    "purge": cmd_purge,
    "rotate-key": cmd_rotate,
    "labels": cmd_labels,
}


# --- set-up ------------------------------------------------------------------------------


def build(workdir: Path, command: str) -> tuple[Path, dict[str, Path]]:
    """The starting store and the inputs of ``command``."""
    export = make_export(
        workdir / "export", n_vehicles=40, reads_per_vehicle=4, n_cameras=6, start=START, days=DAYS
    )
    labels = workdir / "labels.csv"
    pd.DataFrame(
        {
            "vrm": list(export.vrms[:12]),
            "offence_start": ["2024-05-01T08:00:00Z"] * 12,
            "offence_end": ["2024-05-01T09:00:00Z"] * 12,
            "conviction_date": ["2024-05-20"] * 12,
        }
    ).to_csv(labels, index=False)
    inputs = {"export": export.path, "labels": labels}
    base = workdir / "base"
    store = ForceStore.create(base, "faultforce", secret())
    if command != "ingest":
        ingest_export(store, export.path, as_of=INGEST_AS_OF)
    if command in ("purge", "rotate-key"):
        ingest_labels(store, labels, as_of=INGEST_AS_OF)
        days = store.days()
        store.write_derived("cache-old", store.read_day(days[0]).slice(0, 5), days[:1])
        store.write_derived("cache-new", store.read_day(days[-1]).slice(0, 5), days[-1:])
    return base, inputs


# --- observation -------------------------------------------------------------------------


def snapshot(root: Path) -> dict:
    """What the checks compare: per-day reads (as sorted rows), labels, epoch, days."""
    store = open_store(root)
    reads = {}
    for d in store.days():
        t = store.read_day(d).to_pydict()
        rows = sorted(
            zip(t["vehicle"], t["camera"], [x.isoformat() for x in t["read_at"]], strict=True)
        )
        if len(set(rows)) != len(rows):
            raise AssertionError(f"day {d}: duplicated reads")
        reads[d.isoformat()] = rows
    labels = store.read_labels()
    return {
        "days": sorted(reads),
        "reads": reads,
        "labels": None if labels is None else sorted(map(str, labels.to_pylist())),
        "epoch": store.key_epoch,
        "derived": sorted(a.name for a in store.derived_artifacts()),
    }


def wrapped_keys(root: Path, days: list[str]) -> list[str]:
    """The wrapped (base64) day keys of ``days`` in the keyring: their presence anywhere in the
    store means the key survived."""
    ring = json.loads((root / "keys" / "keyring.json").read_text())
    scopes = {day_scope(date.fromisoformat(d)) for d in days}
    return [e["wrapped"] for e in ring["keys"] if e["scope"] in scopes]


def files_holding(root: Path, needles: list[str]) -> list[str]:
    out = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            out += [str(p.relative_to(root)) for n in needles if n.encode() in data]
    return out


def check_crash_state(
    command: str, root: Path, ref: dict, start: dict, purge_keys: list[str], expired: list[str]
) -> None:
    """Right after the kill, before anything reopens the store (except the checks)."""
    log = PurgeLog(root)
    committed = {d.isoformat() for d in purged_days(log.entries())} if log.path.exists() else set()
    # no key of a day the log calls purged, anywhere (temp files included), before any reopen
    if committed:
        held = files_holding(root, wrapped_keys_for(purge_keys, expired, committed))
        assert not held, f"key of a purged day survives in {held}"
    store = open_store(root)
    if log.path.exists() or log.head_path.exists():
        rep = verify_log(root, store.signing_key().public_key())
        assert rep.ok, rep.problems
    if command == "rotate-key":
        if store.rotation_pending:
            return  # reads are refused until the rotation is finished (by design)
        stale = store.stale_epoch_key_ids()
        assert not stale, f"old pseudonym key left with no pending rotation: {stale}"
    snap = snapshot(root)
    for d in committed:
        assert d not in snap["days"], f"purged day {d} still readable"
    for d, rows in snap["reads"].items():
        if command == "ingest":
            assert set(rows) <= set(ref["reads"].get(d, [])), f"day {d}: reads not in the export"
        elif command == "rotate-key":
            assert _shape(rows) in (_shape(start["reads"][d]), _shape(ref["reads"][d]))
        else:
            assert rows == start["reads"][d], f"day {d}: reads changed"


def wrapped_keys_for(all_keys: list[str], expired: list[str], committed: set[str]) -> list[str]:
    return [k for k, d in zip(all_keys, expired, strict=True) if d in committed]


def _shape(rows: list) -> list:
    """Reads without the pseudonym (which a rotation changes): camera and time, sorted."""
    return sorted((c, t) for _, c, t in rows)


def check_end_state(
    command: str, root: Path, ref: dict, purge_keys: list[str], done_before_rerun: bool
) -> None:
    snap = snapshot(root)
    if command == "rotate-key":
        # killed after the rotation was durably complete: the rerun is a new rotation
        want = ref["epoch"] + (1 if done_before_rerun else 0)
        assert snap["epoch"] == want, f"epoch {snap['epoch']}, expected {want}"
        assert snap["days"] == ref["days"]
        for d in snap["days"]:
            assert _shape(snap["reads"][d]) == _shape(ref["reads"][d]), f"day {d}: reads lost"
            vs = {v for v, _, _ in snap["reads"][d]}
            assert len(vs) == len({v for v, _, _ in ref["reads"][d]})
        store = open_store(root)
        old = [e.scope for e in store.keyring.entries() if e.scope.startswith("epoch:")]
        assert old == [f"epoch:{want}"], f"epoch keys left: {old}"
        assert (snap["labels"] is None) == (ref["labels"] is None)
    else:
        assert snap == ref, "end state differs from the uninterrupted run"
    store = open_store(root)
    assert not stale_temp_files(root), "temp files left after the rerun"
    if PurgeLog(root).path.exists():
        rep = verify_log(root, store.signing_key().public_key())
        assert rep.ok and not rep.warnings, (rep.problems, rep.warnings)
    if command == "purge":
        assert not files_holding(root, purge_keys), "a purged day's key survives"
        assert check_consistency(store, PurgeLog(root).entries()) == []


# --- the loop ----------------------------------------------------------------------------


def run_child(fn: Callable[[], None], kill_at: int = 0, trace: str | None = None) -> int:
    """Fork; the child arms fault injection, runs ``fn`` and exits 0 (or 1 on an exception).
    Returns the child's wait status as ``-signal`` or the exit code."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            faults.configure(kill_at, trace)
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main() -> None:
    command, workdir = sys.argv[1], Path(sys.argv[2])
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    fn = COMMANDS[command]
    base, inputs = build(workdir, command)
    start = snapshot(base)
    expired = (
        [
            d
            for d in start["days"]
            if date.fromisoformat(d) < PURGE_AS_OF.date() - timedelta(days=365)
        ]
        if command == "purge"
        else []
    )
    purge_keys = wrapped_keys(base, expired)
    if command == "purge":
        purge_keys_days = []
        ring = json.loads((base / "keys" / "keyring.json").read_text())
        for e in ring["keys"]:
            if e["scope"] in {day_scope(date.fromisoformat(d)) for d in expired}:
                purge_keys_days.append(e["scope"][4:])
    else:
        purge_keys_days = []

    # warm-up in this process (lazy imports, caches), so each forked child starts warm
    warm = workdir / "warm-up"
    shutil.copytree(base, warm)
    fn(warm, inputs)
    snapshot(warm)
    shutil.rmtree(warm)
    ref_root = workdir / "reference"
    shutil.copytree(base, ref_root)
    trace = workdir / "trace.txt"
    status = run_child(lambda: fn(ref_root, inputs), trace=str(trace))
    assert status == 0, f"reference run failed ({status})"
    steps = trace.read_text().splitlines()
    ref = snapshot(ref_root)
    kinds: dict[str, int] = {}
    for line in steps:
        kinds[line.split()[1]] = kinds.get(line.split()[1], 0) + 1
    survived, failures = 0, []
    total = len(steps) if not limit else min(limit, len(steps))
    for k in range(1, total + 1):
        root = workdir / f"k{k}"
        shutil.copytree(base, root)
        try:
            got = run_child(lambda root=root: fn(root, inputs), kill_at=k)
            assert got == -signal.SIGKILL, f"child was not killed at step {k} (status {got})"
            check_crash_state(command, root, ref, start, purge_keys, purge_keys_days)
            crashed = ForceStore.read_meta(root)
            done = crashed["key_epoch"] == ref["epoch"] and not crashed.get("rotation")
            again = run_child(lambda root=root: fn(root, inputs))
            assert again == 0, f"rerun after the crash failed (status {again})"
            check_end_state(command, root, ref, purge_keys, done)
            survived += 1
        except AssertionError as exc:
            failures.append({"k": k, "step": steps[k - 1], "error": str(exc)[:300]})
        except Exception as exc:
            failures.append({"k": k, "step": steps[k - 1], "error": repr(exc)[:300]})
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "command": command,
                "steps": len(steps),
                "crash_points": total,
                "survived": survived,
                "failures": failures,
                "step_kinds": kinds,
            }
        )
    )


if __name__ == "__main__":
    main()
