"""``anprfed retention``: purge expired days, report retention status, verify the purge log.

Exit codes (also in docs/retention.md)::

    purge       0  nothing to do (no expired day held; also --dry-run with nothing to do)
               10  purged (with --dry-run: something would be purged, nothing was changed)
               75  refused: the store is locked by another holder (e.g. an ingest); retry later
                3  refused: the store holds something it did not create (a symlink, FIFO,
                   hard link, a folder where a file belongs ...); the message names the path.
                   Nothing was changed; remove the path and run again
                1  failed (I/O error, the purge log does not verify, ...); nothing is half-done
                   that the next run does not complete
                2  usage / bad input (bad --as-of, future --as-of, no store, wrong passphrase)
    status      0  compliant (no expired day held, no interrupted purge)
                3  not compliant
                2  usage / bad input
    verify-log  0  log intact
                1  tampering detected (edited, deleted, reordered or truncated entries)
                2  usage / bad input

The store's master secret comes from ANPRFED_PASSPHRASE or ANPRFED_KEY_FILE (purge, status);
purge runs with ANPRFED_PURGE_KEY_FILE alone (the purge job's key from `anprfed force
purge-key`: it signs the log and erases keys but cannot decrypt anything);
verify-log needs only the public key recorded in store.json (or pinned with --public-key).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacy.keys import KeyManagementError
from retention.lock import StoreLockedError
from retention.policy import (
    DEFAULT_MAX_AGE_DAYS,
    AsOfError,
    RetentionPolicy,
    check_not_future,
    day_expires_at,
    days_until_expiry,
    expired_days,
    parse_as_of,
    utc_now,
)
from retention.purge import check_consistency, last_purge, pending_intents, run_purge
from retention.purge_log import PurgeLog, PurgeLogError, verify_log
from retention.store import ForceStore, StoreError, UnsafePathError, open_store_from_env


class PurgeExit(IntEnum):
    """Exit codes of ``anprfed retention purge``."""

    NOTHING_TO_DO = 0
    FAILED = 1
    USAGE = 2
    UNSAFE = 3
    PURGED = 10
    REFUSED = 75  # EX_TEMPFAIL (sysexits.h): try again later


class StatusExit(IntEnum):
    """Exit codes of ``anprfed retention status``."""

    COMPLIANT = 0
    USAGE = 2
    NOT_COMPLIANT = 3


class VerifyExit(IntEnum):
    """Exit codes of ``anprfed retention verify-log``."""

    OK = 0
    TAMPERED = 1
    USAGE = 2


app = typer.Typer(
    name="retention",
    help=(
        "Rolling deletion of force-store days past the retention window, crypto-erase of their "
        "keys, and the signed purge log. Exit codes: purge 0 nothing to do, 10 purged, "
        "75 refused (store locked), 3 refused (unsafe path in the store), 1 failed, "
        "2 bad input; status 0 compliant, 3 not compliant (or unsafe path); "
        "verify-log 0 intact, 1 tampered. See docs/retention.md."
    ),
    no_args_is_help=True,
    add_completion=False,
)

STORE_ARG = typer.Argument(..., help="Path of the force store.", show_default=False)
MAX_AGE_OPT = typer.Option(
    DEFAULT_MAX_AGE_DAYS, "--max-age-days", min=1, help="Retention window in days."
)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, indent=1, sort_keys=True, default=str) if as_json else text)


def _fail(as_json: bool, status: str, message: str, code: int) -> typer.Exit:
    """Report an error (stderr; also stdout as JSON with --json) and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    if as_json:
        typer.echo(json.dumps({"status": status, "error": message, "exit_code": code}))
    return typer.Exit(code)


def _open_store(root: Path, purge_only: bool = False) -> ForceStore:
    if not root.is_dir():
        raise StoreError(f"store directory not found: {root}")
    return open_store_from_env(root, purge_only=purge_only)


def _day_range(days: list[Any]) -> str:
    if not days:
        return "none"
    return f"{min(days)}..{max(days)}" if len(days) > 1 else str(days[0])


@app.command("purge")
def purge_command(
    store: Path = STORE_ARG,
    max_age_days: int = MAX_AGE_OPT,
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Purge as of this date (YYYY-MM-DD = 00:00Z) or ISO datetime with offset; "
        "default now. A future as-of is refused.",
    ),
    allow_future_as_of: bool = typer.Option(
        False, "--allow-future-as-of", help="Allow an --as-of later than now (deletes early)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; change nothing."),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, help="Seconds to wait for the store lock before refusing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Remove every day partition past the window, its derived artifacts and its keys.

    Exit 0 nothing to do, 10 purged (dry run: would purge), 75 refused (store locked),
    1 failed, 2 bad input.
    """
    try:
        instant = parse_as_of(as_of) if as_of is not None else utc_now()
        instant = check_not_future(instant, allow_future=allow_future_as_of)
        policy = RetentionPolicy(max_age_days)
        force_store = _open_store(store, purge_only=True)
    except UnsafePathError as exc:
        raise _fail(as_json, "unsafe", str(exc), PurgeExit.UNSAFE) from None
    except (AsOfError, ValueError, StoreError, KeyManagementError) as exc:
        raise _fail(as_json, "usage", str(exc), PurgeExit.USAGE) from None
    try:
        result = run_purge(force_store, instant, policy, dry_run=dry_run, lock_timeout=wait)
    except UnsafePathError as exc:
        raise _fail(as_json, "unsafe", str(exc), PurgeExit.UNSAFE) from None
    except StoreLockedError as exc:
        raise _fail(as_json, "refused", str(exc), PurgeExit.REFUSED) from None
    except PurgeLogError as exc:
        msg = (
            f"{exc}. No further deletion happens until the log verifies; investigate with "
            "`anprfed retention verify-log` (see docs/retention.md)."
        )
        raise _fail(as_json, "failed", msg, PurgeExit.FAILED) from None
    except (OSError, StoreError, KeyManagementError) as exc:
        msg = f"purge failed: {exc}; re-run to complete it (the purge is resumable)"
        raise _fail(as_json, "failed", msg, PurgeExit.FAILED) from None

    plan = result.plan
    if result.status == "nothing-to-do":
        code = PurgeExit.NOTHING_TO_DO
        text = f"nothing to do: no day held is older than {max_age_days} days as of {instant}"
    elif dry_run:
        code = PurgeExit.PURGED
        pending = (
            f"; would first complete interrupted purge(s) {result.pending_intents}"
            if result.pending_intents
            else ""
        )
        text = (
            f"dry run (nothing changed): would remove {len(plan.days)} day(s) "
            f"{_day_range(plan.days)}, {len(plan.files)} file(s), {plan.bytes} bytes, "
            f"{len(plan.derived)} derived artifact(s), {len(plan.key_ids)} key(s){pending}"
        )
    else:
        code = PurgeExit.PURGED
        resumed = (
            f"; completed interrupted purge(s) {result.completed_intents}"
            if result.completed_intents
            else ""
        )
        text = (
            f"purged {len(result.days_removed)} day(s) {_day_range(result.days_removed)}: "
            f"{result.files_removed} file(s), {result.bytes_removed} bytes, "
            f"{result.derived_removed} derived artifact(s), {result.keys_destroyed} key(s) "
            f"destroyed; logged as entries {result.intent_seq}-{result.commit_seq}{resumed}"
        )
    _emit(as_json, {**result.to_dict(), "exit_code": int(code), "dry_run": dry_run}, text)
    raise typer.Exit(int(code))


def _public_key(store: Path, pinned: str | None) -> Ed25519PublicKey:
    hex_key = pinned or ForceStore.read_meta(store).get("signing", {}).get("public_key")
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(hex_key)))
    except ValueError:
        raise StoreError("the purge-log public key is missing or malformed") from None


@app.command("verify-log")
def verify_log_command(
    store: Path = STORE_ARG,
    public_key: str | None = typer.Option(
        None,
        "--public-key",
        help="Expected Ed25519 public key (hex), recorded out of band; default: store.json's.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Check the purge log's chain, signatures and head. Exit 0 intact, 1 tampered, 2 bad input.

    Needs no passphrase: only the public key in store.json (pin it with --public-key).
    """
    try:
        key = _public_key(store, public_key)
    except StoreError as exc:
        raise _fail(as_json, "usage", str(exc), VerifyExit.USAGE) from None
    report = verify_log(store, key)
    lines = [f"purge log: {report.entries} entries, head seq {report.head_seq}"]
    lines += [f"TAMPERED: {p}" for p in report.problems]
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append("OK: chain, signatures and head verify" if report.ok else "FAILED")
    _emit(as_json, report.to_dict(), "\n".join(lines))
    raise typer.Exit(int(VerifyExit.OK if report.ok else VerifyExit.TAMPERED))


def build_status(store: ForceStore, as_of: datetime, policy: RetentionPolicy) -> dict[str, Any]:
    """The retention status of a store as of ``as_of`` (see ``anprfed retention status``)."""
    held = store.held_days()
    expired = expired_days(held, as_of, policy)
    keep = [d for d in held if d not in set(expired)]
    report = verify_log(store.root, store.signing_key().public_key())
    try:
        entries = PurgeLog(store.root).entries()
    except PurgeLogError:
        entries = []
    pending = [e.seq for e in pending_intents(entries)]
    next_day = keep[0] if keep else None
    return {
        "as_of": as_of.isoformat(),
        "policy": policy.to_dict(),
        "days_held": len(held),
        "oldest_day": held[0].isoformat() if held else None,
        "newest_day": held[-1].isoformat() if held else None,
        "expired_days_held": len(expired),
        "oldest_expired_day": expired[0].isoformat() if expired else None,
        "next_expiry_day": next_day.isoformat() if next_day else None,
        "next_expiry_at": day_expires_at(next_day, policy).isoformat() if next_day else None,
        "days_until_next_expiry": days_until_expiry(next_day, as_of, policy) if next_day else None,
        "compliant": not expired and not pending,
        "interrupted_purges": pending,
        "last_purge": last_purge(entries),
        "log": {
            "ok": report.ok,
            "entries": report.entries,
            "head_seq": report.head_seq,
            "last_hash": report.last_hash,
            "problems": report.problems,
        },
        "consistency_problems": check_consistency(store, entries) if report.ok else [],
    }


def _compliance_line(status: dict[str, Any]) -> str:
    if status["compliant"]:
        return "compliant: yes"
    why = f"{status['expired_days_held']} expired day(s) held"
    if status["interrupted_purges"]:
        why += f", interrupted purge(s) {status['interrupted_purges']}"
    return f"compliant: NO ({why}); run `anprfed retention purge`"


@app.command("status")
def status_command(
    store: Path = STORE_ARG,
    max_age_days: int = MAX_AGE_OPT,
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Report as of this date or ISO datetime with offset (default now; may be future).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Oldest day held, days until the next expiry, compliance today, the last purge.

    Exit 0 compliant, 3 not compliant (an expired day is held or a purge was interrupted),
    2 bad input.
    """
    try:
        instant = parse_as_of(as_of) if as_of is not None else utc_now()
        force_store = _open_store(store, purge_only=True)
        status = build_status(force_store, instant, RetentionPolicy(max_age_days))
    except UnsafePathError as exc:
        raise _fail(as_json, "unsafe", str(exc), StatusExit.NOT_COMPLIANT) from None
    except (AsOfError, StoreError, KeyManagementError, ValueError) as exc:
        raise _fail(as_json, "usage", str(exc), StatusExit.USAGE) from None
    last = status["last_purge"]
    lines = [
        f"store {store}: {status['days_held']} day(s) held, "
        f"oldest {status['oldest_day']}, newest {status['newest_day']}",
        f"window {max_age_days} days; "
        + (
            f"next expiry: {status['next_expiry_day']} at {status['next_expiry_at']} "
            f"(in {status['days_until_next_expiry']} day(s))"
            if status["next_expiry_day"]
            else "no day within the window"
        ),
        _compliance_line(status),
        "last purge: "
        + (
            f"{last['committed_at']}, {last['day_count']} day(s) "
            f"{last['first_day']}..{last['last_day']}"
            if last
            else "never"
        ),
        "purge log: " + ("ok" if status["log"]["ok"] else "DOES NOT VERIFY (run verify-log)"),
    ]
    _emit(as_json, status, "\n".join(lines))
    code = StatusExit.COMPLIANT if status["compliant"] else StatusExit.NOT_COMPLIANT
    raise typer.Exit(int(code))


def main() -> None:
    """Run the retention group on its own (``python -m retention.cli``)."""
    app(prog_name="anprfed retention")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
