"""The purge engine: rolling deletion of expired day partitions, crash-safe and idempotent.

A purge, under the store lock (holder ``"purge"``):

1. completes any earlier purge whose ``intent`` has no ``commit`` (a crash), re-running that
   intent's plan idempotently;
2. computes the plan: every held day that is expired (:mod:`retention.policy`), the files of
   those days (reads partitions, quarantine), every derived artifact built from any of them, and
   the data keys of those days and artifacts;
3. appends a signed ``intent`` entry to the purge log;
4. deletes the files (an already-missing file is fine);
5. destroys the keys (each an atomic keyring rewrite): a cryptographic erase, so copies of the
   files kept in backups can no longer be decrypted;
6. appends a signed ``commit`` entry naming the intent's seq and hash.

Before step 1 the purge refuses a store holding anything it did not create (a symlink, FIFO,
hard link or misplaced folder; :mod:`retention.store_guard`) and erases temp files crashed writers
left (they may hold a day's key). It never follows a link: files are unlinked by name and folders
removed only when empty. A derived artifact is removed when any of its source days is expired
(held or not: a cache built from a day purged meanwhile is caught) or when its manifest does not
authenticate.

A crash at any point leaves a state the next run completes; afterwards the store, the keyring and
the log agree (see :func:`check_consistency`). Log entries carry days, counts, bytes, key ids and
the policy only: never a VRM, a pseudonym or a camera token.

Tests kill the purge at each step: in-process with ``fault_at=<step>`` (raises
:class:`SimulatedCrash`) or, for a real process kill, with the environment variable
``ANPRFED_TEST_PURGE_CRASH_AT=<step>`` which makes the process ``os._exit`` at that step.

Over 400 lines on purpose: the plan, the steps, crash recovery and the consistency check are one
algorithm whose ordering is the crash-safety argument; split, it would be read in pieces.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from retention.keyring import derived_scope
from retention.lock import store_lock
from retention.policy import RetentionPolicy, expired_days, to_utc
from retention.purge_log import LogEntry, PurgeLog
from safefiles.atomic import fsync_dir, remove_empty_dir, remove_file

#: The steps at which a test can kill a purge, in execution order.
FAULT_STEPS = (
    "after_lock",
    "after_intent",
    "mid_delete",
    "after_delete",
    "mid_destroy",
    "before_commit",
    "after_commit",
)
CRASH_ENV = "ANPRFED_TEST_PURGE_CRASH_AT"
CRASH_EXIT_CODE = 86
LOCK_HOLDER = "purge"
DAY_SCOPE_PREFIX = "day:"


class SimulatedCrash(BaseException):
    """Raised at a chosen step when a test passes ``fault_at``; never caught by the engine."""


class PurgeStore(Protocol):
    """What the purge needs from a store (implemented by :class:`retention.store.ForceStore`)."""

    root: Path
    keyring: Any

    def held_days(self) -> list[date]: ...
    def day_files(self, day: date) -> list[Path]: ...
    def day_dirs(self, day: date) -> list[Path]: ...
    def derived_artifacts(self) -> list[Any]: ...
    def delete_derived(self, name: str) -> None: ...
    def day_key_ids(self, day: date) -> list[str]: ...
    def has_key(self, key_id: str) -> bool: ...
    def signing_key(self) -> Any: ...
    def check_tree(self) -> int: ...
    def clean_interrupted_writes(self) -> int: ...


@functools.cache
def tool_version() -> str:
    """The installed anprfed version recorded in every log entry."""
    try:
        return version("anprfed")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


@dataclass
class PurgePlan:
    """What one purge removes. Paths are relative to the store root."""

    as_of: datetime
    policy: RetentionPolicy
    days: list[date]
    files: list[str]
    bytes: int
    derived: list[str]
    key_ids: list[str]

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing at all to remove."""
        return not (self.days or self.files or self.derived or self.key_ids)

    def to_payload(self) -> dict[str, Any]:
        """The intent entry's payload: days, counts, bytes, key ids and the policy."""
        return {
            "as_of": self.as_of.isoformat(),
            "policy": self.policy.to_dict(),
            "days": [d.isoformat() for d in self.days],
            "day_count": len(self.days),
            "file_count": len(self.files),
            "bytes": self.bytes,
            "derived": sorted(self.derived),
            "key_ids": sorted(self.key_ids),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for ``--json`` and ``--dry-run``)."""
        return {**self.to_payload(), "files": sorted(self.files)}


@dataclass
class PurgeResult:
    """The outcome of :func:`run_purge`."""

    status: str  # "nothing-to-do" | "purged" | "dry-run"
    plan: PurgePlan
    completed_intents: list[int] = field(default_factory=list)
    pending_intents: list[int] = field(default_factory=list)
    files_removed: int = 0
    bytes_removed: int = 0
    keys_destroyed: int = 0
    derived_removed: int = 0
    days_removed: list[date] = field(default_factory=list)
    intent_seq: int | None = None
    commit_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "status": self.status,
            "plan": self.plan.to_dict(),
            "completed_interrupted_intents": self.completed_intents,
            "pending_interrupted_intents": self.pending_intents,
            "days_removed": [d.isoformat() for d in self.days_removed],
            "files_removed": self.files_removed,
            "bytes_removed": self.bytes_removed,
            "keys_destroyed": self.keys_destroyed,
            "derived_removed": self.derived_removed,
            "intent_seq": self.intent_seq,
            "commit_seq": self.commit_seq,
        }


def _fault(step: str, fault_at: str | None) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os._exit(CRASH_EXIT_CODE)
    if fault_at == step:
        raise SimulatedCrash(step)


def _rel(store: PurgeStore, path: Path) -> str:
    return Path(path).relative_to(store.root).as_posix()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def plan_purge(store: PurgeStore, as_of: datetime, policy: RetentionPolicy) -> PurgePlan:
    """Compute (without changing anything) what a purge as of ``as_of`` removes."""
    as_of = to_utc(as_of)
    days = expired_days(store.held_days(), as_of, policy)
    return _plan_for_days(store, days, as_of, policy)


def _plan_for_days(
    store: PurgeStore, days: list[date], as_of: datetime, policy: RetentionPolicy
) -> PurgePlan:
    day_set = set(days)
    files: list[Path] = []
    key_ids: list[str] = []
    for day in days:
        files.extend(store.day_files(day))
        key_ids.extend(store.day_key_ids(day))
    derived: list[str] = []
    for artifact in store.derived_artifacts():
        # An artifact whose manifest is missing (a crash mid-write) or does not authenticate
        # has untrusted source days: it may be built from an expired day, so it goes too.
        untrusted = not getattr(artifact, "authenticated", True) or not artifact.source_days
        expired_source = bool(expired_days(list(artifact.source_days), as_of, policy))
        if day_set.intersection(artifact.source_days) or expired_source or untrusted:
            derived.append(artifact.name)
            files.extend(_artifact_files(artifact))
            key_ids.extend(store.keyring.key_ids_for_scope(derived_scope(artifact.name)))
    unique_files = sorted({_rel(store, f) for f in files})
    return PurgePlan(
        as_of=as_of,
        policy=policy,
        days=sorted(day_set),
        files=unique_files,
        bytes=sum(_size(store.root / f) for f in unique_files),
        derived=sorted(derived),
        key_ids=sorted(set(key_ids)),
    )


def _artifact_files(artifact: Any) -> list[Path]:
    """Every file of a derived artifact (its data file's directory: data and manifest).

    Walks without following links; a link inside is listed as a file (unlinked, never its
    target)."""
    directory = Path(artifact.path).parent
    if directory.is_symlink() or not directory.is_dir():
        return [directory] if directory.is_symlink() else []
    out = []
    for dirpath, dirs, files in os.walk(directory, followlinks=False):
        out += [Path(dirpath) / f for f in files]
        out += [Path(dirpath) / d for d in dirs if (Path(dirpath) / d).is_symlink()]
    return sorted(out)


def pending_intents(entries: list[LogEntry]) -> list[LogEntry]:
    """Intent entries that no commit entry references (purges interrupted by a crash)."""
    committed = {e.payload.get("intent_seq") for e in entries if e.type == "commit"}
    return [e for e in entries if e.type == "intent" and e.seq not in committed]


def _plan_from_intent(store: PurgeStore, intent: LogEntry) -> PurgePlan:
    """Re-derive an interrupted intent's plan from what is still on disk and in the keyring."""
    payload = intent.payload
    policy = RetentionPolicy(int(payload["policy"]["max_age_days"]))
    as_of = datetime.fromisoformat(payload["as_of"])
    days = [date.fromisoformat(d) for d in payload["days"]]
    plan = _plan_for_days(store, days, as_of, policy)
    # Keys the intent named that are still present (e.g. of derived artifacts whose files
    # were already removed), so the crash cannot leave an orphan key behind.
    extra = [k for k in payload.get("key_ids", []) if store.has_key(k)]
    plan.key_ids = sorted(set(plan.key_ids) | set(extra))
    plan.derived = sorted(set(plan.derived) | set(payload.get("derived", [])))
    return plan


def _execute(
    store: PurgeStore,
    log: PurgeLog,
    plan: PurgePlan,
    intent: LogEntry,
    result: PurgeResult,
    fault_at: str | None,
    resumed: bool,
) -> LogEntry:
    """Steps 4-6 for one intent: delete files, destroy keys, commit."""
    sizes = {rel: _size(store.root / rel) for rel in plan.files if (store.root / rel).exists()}
    keys_present = [k for k in plan.key_ids if store.has_key(k)]
    derived_present = {a.name for a in store.derived_artifacts()} & set(plan.derived)
    # Step 4: files (derived artifacts sort first: "derived/" < "partitions/" < "quarantine/").
    half = max(1, len(plan.files) // 2)
    for i, rel in enumerate(plan.files, start=1):
        remove_file(store.root / rel)
        if i == half:
            _fault("mid_delete", fault_at)
    _remove_emptied_dirs(store, plan)
    gone = [rel for rel in sizes if not (store.root / rel).exists()]
    files_removed = len(gone)
    bytes_removed = sum(sizes[rel] for rel in gone)
    _fault("after_delete", fault_at)
    # Step 5: keys, in two atomic keyring rewrites (one per half, so a crash between them is a
    # real intermediate state the tests exercise); the cost does not grow with keys x keyring.
    cut = max(1, len(keys_present) // 2)
    store.keyring.destroy_many(keys_present[:cut])
    _fault("mid_destroy", fault_at)
    store.keyring.destroy_many(keys_present[cut:])
    for name in plan.derived:
        store.delete_derived(name)  # already keyless and empty: removes any leftover state
    keys_destroyed = sum(1 for k in keys_present if not store.has_key(k))
    _fault("before_commit", fault_at)
    commit = log.append(
        "commit",
        {
            "intent_seq": intent.seq,
            "intent_hash": intent.hash,
            "resumed": resumed,
            "days": [d.isoformat() for d in plan.days],
            "day_count": len(plan.days),
            "files_removed": files_removed,
            "bytes_removed": bytes_removed,
            "derived": sorted(plan.derived),
            "key_ids": sorted(plan.key_ids),
            "keys_destroyed": keys_destroyed,
        },
        store.signing_key(),
        tool_version(),
    )
    result.files_removed += files_removed
    result.bytes_removed += bytes_removed
    result.keys_destroyed += keys_destroyed
    result.derived_removed += len(derived_present)
    result.days_removed.extend(plan.days)
    return commit


def _remove_emptied_dirs(store: PurgeStore, plan: PurgePlan) -> None:
    """Remove the day and artifact directories the purge emptied; make the unlinks durable."""
    dirs = {d for day in plan.days for d in store.day_dirs(day)}
    dirs |= {store.root / "derived" / name for name in plan.derived}
    parents = {(store.root / rel).parent for rel in plan.files} | dirs
    for directory in sorted(dirs, reverse=True):
        with contextlib.suppress(OSError):
            remove_empty_dir(directory)
    for directory in sorted(parents | {d.parent for d in parents}):
        if directory.is_dir() and not directory.is_symlink():
            fsync_dir(directory)


def run_purge(
    store: PurgeStore,
    as_of: datetime,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    lock_timeout: float = 0.0,
    fault_at: str | None = None,
) -> PurgeResult:
    """Purge every day expired as of ``as_of`` (see the module docstring for the steps).

    ``dry_run`` computes and returns the plan and changes nothing (it takes no lock and writes
    nothing, not even the lock file). Raises :class:`retention.lock.StoreLockedError` when
    another holder has the store, :class:`retention.purge_log.PurgeLogError` when the log does
    not verify (nothing is deleted then).
    """
    if fault_at is not None and fault_at not in FAULT_STEPS:
        raise ValueError(f"unknown fault step {fault_at!r}; choose from {FAULT_STEPS}")
    as_of = to_utc(as_of)
    log = PurgeLog(store.root)
    if dry_run:
        plan = plan_purge(store, as_of, policy)
        pending = [e.seq for e in pending_intents(log.entries())]
        status = "dry-run" if (pending or not plan.is_empty) else "nothing-to-do"
        return PurgeResult(status=status, plan=plan, pending_intents=pending)

    with store_lock(store.root, LOCK_HOLDER, timeout=lock_timeout):
        _fault("after_lock", fault_at)
        store.check_tree()  # refuse planted links and special files before changing anything
        store.clean_interrupted_writes()  # temp files may hold a (purged) day's wrapped key
        store.keyring.reload()  # another holder may have changed it while we waited
        log.recover(store.signing_key())
        empty = PurgePlan(as_of, policy, [], [], 0, [], [])
        result = PurgeResult(status="nothing-to-do", plan=empty)
        for intent in pending_intents(log.entries()):
            plan = _plan_from_intent(store, intent)
            _execute(store, log, plan, intent, result, fault_at=None, resumed=True)
            result.completed_intents.append(intent.seq)
            result.status = "purged"
        plan = plan_purge(store, as_of, policy)
        result.plan = plan
        if plan.is_empty:
            return result
        intent = log.append("intent", plan.to_payload(), store.signing_key(), tool_version())
        result.intent_seq = intent.seq
        _fault("after_intent", fault_at)
        commit = _execute(store, log, plan, intent, result, fault_at, resumed=False)
        result.commit_seq = commit.seq
        result.status = "purged"
        _fault("after_commit", fault_at)
        return result


def last_purge(entries: list[LogEntry]) -> dict[str, Any] | None:
    """The last committed purge: when, how many days, the day range, bytes and keys."""
    commits = [e for e in entries if e.type == "commit"]
    if not commits:
        return None
    c = commits[-1]
    days = c.payload.get("days", [])
    return {
        "committed_at": c.timestamp,
        "seq": c.seq,
        "day_count": len(days),
        "first_day": min(days) if days else None,
        "last_day": max(days) if days else None,
        "files_removed": c.payload.get("files_removed"),
        "bytes_removed": c.payload.get("bytes_removed"),
        "keys_destroyed": c.payload.get("keys_destroyed"),
        "tool_version": c.tool_version,
    }


def purged_days(entries: list[LogEntry]) -> set[date]:
    """Every day named by a commit entry of the log."""
    return {date.fromisoformat(d) for e in entries if e.type == "commit" for d in e.payload["days"]}


def check_consistency(store: PurgeStore, entries: list[LogEntry]) -> list[str]:
    """Problems where the store, the keyring and the log disagree (empty list = they agree).

    No day is both committed as purged and still held (files or key); no intent is pending;
    no day held has files but no key, or a key but no files.
    """
    problems: list[str] = []
    purged = purged_days(entries)
    for day in store.held_days():
        has_files = bool(store.day_files(day))
        has_keys = bool(store.day_key_ids(day))
        if day in purged:
            problems.append(f"day {day} is logged as purged but still held")
        if has_files and not has_keys:
            problems.append(f"day {day} has files but its key is gone")
        if has_keys and not has_files:
            problems.append(f"day {day} has a key but no files")
    for intent in pending_intents(entries):
        problems.append(f"intent {intent.seq} has no commit (interrupted purge)")
    return problems
