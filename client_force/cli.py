"""``anprfed force``: a force's node commands (store, ingest, status, key rotation, labels).

Human output is a rich table; ``--json`` prints one JSON object on stdout instead. Outputs
hold counts, row numbers, days and key ids only: never a VRM, camera id or coordinate.

Over 400 lines on purpose: one Typer group, whose commands share the option definitions, the
key-material prompts and the one error-to-exit-code mapping (``_run``) documented above.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from client_force.export_reader import ExportReadError
from client_force.ingest import DEFAULT_MAX_AGE_DAYS, IngestError, IngestReport, ingest_export
from client_force.labels import ingest_labels
from client_force.quarantine_export import (
    QuarantineExport,
    QuarantineExportError,
    export_quarantine,
)
from client_force.status import store_status
from privacy.keys import (
    KEY_FILE_ENV,
    NEW_PASSPHRASE_ENV,
    PASSPHRASE_ENV,
    KeyManagementError,
    KeyMaterialError,
    MasterSecretSource,
    WrongPassphraseError,
)
from retention.lock import StoreLockedError
from retention.policy import AsOfError, check_not_future, parse_as_of
from retention.store import (
    ForceStore,
    PartitionIntegrityError,
    RotationIncompleteError,
    StoreError,
)

EXIT_OK = 0
EXIT_INPUT = 2  # bad input or key: wrong passphrase, missing key, unreadable/corrupt export
EXIT_STORE = 3  # store problem: not a store, integrity failure, interrupted rotation
EXIT_LOCKED = 4  # another command holds the store lock; retry later
EXIT_NOTHING_STORED = 5  # ingest: the export had rows but none was stored or deduplicated
EXIT_TOO_MANY_REJECTED = 6  # ingest: rejected rows passed --max-rejected-fraction

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 2 bad input or key material (wrong passphrase, missing key, "
    "unreadable or corrupt export, bad option, future --as-of); 3 store problem (not a store, "
    "tampered or truncated file, interrupted key rotation, a symlink or special file planted in "
    "the store, permission, read-only or full disk: the message names the path); 4 store "
    "locked by another command; ingest only: 5 nothing stored (every row rejected: check "
    "--as-of against the data's dates), 6 rejected rows above --max-rejected-fraction."
)

app = typer.Typer(
    no_args_is_help=True,
    help=(
        "A force's node: create its encrypted store, ingest raw exports (validated, "
        "pseudonymised, day-partitioned), show status, rotate the pseudonym key, load "
        f"labels. Key material: {PASSPHRASE_ENV} (or a prompt) or {KEY_FILE_ENV} / --key-file. "
        + EXIT_CODES_HELP
    ),
)

_console = Console()

STORE_ARG = typer.Argument(..., help="Store directory.")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of tables.")
KEY_FILE_OPT = typer.Option(
    None,
    "--key-file",
    help=f"Key file holding the master secret (else {KEY_FILE_ENV}, else a passphrase).",
)
AS_OF_OPT = typer.Option(
    None,
    "--as-of",
    help=(
        "Reference instant: YYYY-MM-DD means the END of that UTC day (data up to that day), "
        "or an ISO-8601 datetime with offset. Default: now."
    ),
)


def _fail(code: int, message: str, as_json: bool) -> NoReturn:
    """Report an error without a traceback and exit with ``code``."""
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message, "exit_code": code}))
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(as_json: bool, fn: Callable[[], Any]) -> Any:
    """Run a command body, mapping known errors to exit codes (messages carry no raw values)."""
    try:
        return fn()
    except WrongPassphraseError as exc:
        _fail(EXIT_INPUT, str(exc), as_json)
    except (
        KeyMaterialError,
        KeyManagementError,
        ExportReadError,
        IngestError,
        AsOfError,
        QuarantineExportError,
    ) as exc:
        _fail(EXIT_INPUT, str(exc), as_json)
    except StoreLockedError as exc:
        _fail(EXIT_LOCKED, str(exc), as_json)
    except (PartitionIntegrityError, RotationIncompleteError, StoreError) as exc:
        _fail(EXIT_STORE, str(exc), as_json)
    except OSError as exc:  # permission, read-only mount, full disk ... (names the file)
        where = exc.filename or "the store"
        _fail(EXIT_STORE, f"{where}: {exc.strerror or exc}; fix the cause and run again", as_json)


def _prompt_passphrase(confirm: bool) -> str:
    passphrase = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    if not passphrase:
        raise KeyMaterialError("the passphrase must not be empty")
    return str(passphrase)


def _secret_for(store: Path, key_file: Path | None) -> MasterSecretSource:
    """Key material for an existing store, asking only for what its protection mode needs."""
    if key_file is not None:
        return MasterSecretSource.from_key_file(key_file)
    mode = ForceStore.read_meta(store).get("key_protection", {}).get("mode")
    if mode == "key-file":
        env = os.environ.get(KEY_FILE_ENV)
        if not env:
            raise KeyMaterialError(
                f"this store's master secret is in a key file: pass --key-file or set "
                f"{KEY_FILE_ENV}"
            )
        return MasterSecretSource.from_key_file(env)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return MasterSecretSource.from_passphrase(passphrase)
    return MasterSecretSource.from_passphrase(_prompt_passphrase(confirm=False))


def _open(store: Path, key_file: Path | None) -> ForceStore:
    return ForceStore.open(store, _secret_for(store, key_file))


def parse_ingest_as_of(text: str | None) -> datetime:
    """``--as-of`` for ingest: a date means the end of that UTC day; default now (UTC).

    An instant later than the clock (beyond the end of today) is refused: it would shift the
    retention window forward and reject rows that are still within it."""
    if text is None:
        return datetime.now(UTC)
    value = text.strip()
    if len(value) == 10:
        instant = parse_as_of(value) + timedelta(days=1)
        today_end = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
        check_not_future(instant, now=today_end + timedelta(days=1))
        return instant
    return check_not_future(parse_as_of(value))


def _table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def _print_report(report: IngestReport, title: str) -> None:
    d = report.to_dict()
    rows = [
        ("input rows", d["input_rows"]),
        ("stored", d["stored"]),
        ("deduplicated", d["duplicates"]),
        ("rejected", d["rejected"]),
    ]
    _console.print(_table(title, rows))
    if d["rejected"]:
        t = Table(title="rejected rows by reason", title_justify="left")
        t.add_column("reason")
        t.add_column("rows", justify="right")
        t.add_column("first row numbers")
        for reason, count in d["rejected_by_reason"].items():
            if count:
                nums = d["rejected_row_numbers"].get(reason, [])
                more = " ..." if count > len(nums) else ""
                t.add_row(reason, str(count), ", ".join(map(str, nums)) + more)
        _console.print(t)
    verdict = "[green]yes[/]" if d["accounted"] else "[red]NO[/]"
    _console.print(
        f"accounted for: {verdict} ({d['input_rows']} = {d['stored']} stored + "
        f"{d['duplicates']} deduplicated + {d['rejected']} rejected); "
        f"days written: {len(d['days_written'])}; quarantine files: {d['quarantine_files']}; "
        f"{d['seconds']} s"
    )


@app.command("init")
def init_cmd(
    store: Path = STORE_ARG,
    force: str = typer.Option(..., "--force", help="The force's name (letters, digits, _-.)."),
    key_file: Path | None = typer.Option(
        None,
        "--key-file",
        help="Keep the master secret raw in this NEW key file (mode 0600) instead of a passphrase.",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Create STORE and a per-force master secret (passphrase-wrapped, or in a key file)."""

    def body() -> dict[str, Any]:
        if key_file is not None:
            secret = MasterSecretSource.from_key_file(key_file)
        elif os.environ.get(PASSPHRASE_ENV):
            secret = MasterSecretSource.from_passphrase(os.environ[PASSPHRASE_ENV])
        else:
            secret = MasterSecretSource.from_passphrase(_prompt_passphrase(confirm=True))
        s = ForceStore.create(store, force, secret)
        meta = s.meta
        return {
            "ok": True,
            "store": str(store),
            "force": s.force,
            "key_epoch": s.key_epoch,
            "key_protection": meta["key_protection"]["mode"],
            "kdf": {k: v for k, v in meta["key_protection"].items() if k in ("kdf", "n", "r", "p")},
            "signing_public_key": meta["signing"]["public_key"],
        }

    out = _run(as_json, body)
    if as_json:
        typer.echo(json.dumps(out))
    else:
        rows = [
            ("force", out["force"]),
            ("key protection", out["key_protection"]),
            ("key epoch", out["key_epoch"]),
        ]
        _console.print(_table(f"created store {store}", rows))


@app.command("ingest")
def ingest_cmd(
    store: Path = STORE_ARG,
    export: Path = typer.Argument(
        ..., help="Raw export: CSV or Parquet (vrm, camera_id, read_at)."
    ),
    cameras: Path | None = typer.Option(
        None,
        "--cameras",
        help="Camera register (camera_id, lat, lon, road_class); default cameras.* beside EXPORT.",
    ),
    as_of: str | None = AS_OF_OPT,
    max_age_days: int = typer.Option(
        DEFAULT_MAX_AGE_DAYS, "--max-age-days", help="Retention window in days."
    ),
    max_rejected_fraction: float = typer.Option(
        1.0,
        "--max-rejected-fraction",
        min=0.0,
        max=1.0,
        help="Exit 6 when more than this fraction of the rows was rejected (default 1.0: never).",
    ),
    key_file: Path | None = KEY_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Validate, pseudonymise and store EXPORT. Every row is stored, deduplicated or rejected.

    Exit 5 when the export had rows but none was stored or deduplicated (e.g. every row
    ``past_retention`` because --as-of does not fit the data), 6 when the rejected fraction
    passes --max-rejected-fraction; the report is printed either way.
    """

    def body() -> IngestReport:
        instant = parse_ingest_as_of(as_of)
        return ingest_export(
            _open(store, key_file),
            export,
            cameras=cameras,
            as_of=instant,
            max_age_days=max_age_days,
        )

    report = _run(as_json, body)
    code, problem = ingest_exit_code(report, max_rejected_fraction)
    if as_json:
        typer.echo(json.dumps({"ok": code == EXIT_OK, "exit_code": code, **report.to_dict()}))
    else:
        _print_report(report, f"ingest of {report.export}")
    if problem:
        typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(code)


def ingest_exit_code(report: IngestReport, max_rejected_fraction: float) -> tuple[int, str]:
    """The exit code of an ingest and, when not 0, why (counts only)."""
    d = report.to_dict()
    rows = int(d["input_rows"])
    if rows and not d["stored"] and not d["duplicates"]:
        reasons = {k: v for k, v in d["rejected_by_reason"].items() if v}
        return EXIT_NOTHING_STORED, (
            f"nothing stored: all {rows} rows were rejected ({reasons}); if they are "
            "past_retention, pass --as-of to match the export's dates"
        )
    if rows and d["rejected"] / rows > max_rejected_fraction:
        return EXIT_TOO_MANY_REJECTED, (
            f"{d['rejected']} of {rows} rows rejected, above --max-rejected-fraction "
            f"{max_rejected_fraction}"
        )
    return EXIT_OK, ""


@app.command("labels")
def labels_cmd(
    store: Path = STORE_ARG,
    file: Path = typer.Argument(
        ..., help="Intelligence log: vrm, offence_start, offence_end, conviction_date."
    ),
    as_of: str | None = AS_OF_OPT,
    key_file: Path | None = KEY_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Load a conviction log, pseudonymised (same validation and reporting as ingest)."""

    def body() -> IngestReport:
        return ingest_labels(_open(store, key_file), file, as_of=parse_ingest_as_of(as_of))

    report = _run(as_json, body)
    if as_json:
        typer.echo(json.dumps({"ok": True, **report.to_dict()}))
    else:
        _print_report(report, f"labels from {report.export}")


@app.command("status")
def status_cmd(
    store: Path = STORE_ARG,
    key_file: Path | None = KEY_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Days held, oldest and newest read, reads, vehicles, bytes, key epoch (all verified)."""
    st = _run(as_json, lambda: store_status(_open(store, key_file)))
    d = st.to_dict()
    ledgers_ok = all(row["state"] == "ok" for row in d["privacy_ledgers"])
    if as_json:
        typer.echo(json.dumps({"ok": ledgers_ok, **d}))
        if not ledgers_ok:
            raise typer.Exit(code=2)
        return
    rows = [
        ("force", d["force"]),
        ("days held", d["days_held"]),
        ("first / last day", f"{d['first_day']} / {d['last_day']}"),
        ("oldest read", d["oldest_read"]),
        ("newest read", d["newest_read"]),
        ("reads", f"{d['reads']:,}"),
        ("vehicles (distinct pseudonyms)", f"{d['vehicles']:,}"),
        ("cameras in register", d["cameras"]),
        ("quarantine days / files", f"{d['quarantine_days']} / {d['quarantine_files']}"),
        ("labels", d["labels"]),
        ("derived artifacts", d["derived_artifacts"]),
        ("keys in keyring", d["keys_in_keyring"]),
        ("bytes on disk", f"{d['bytes']:,}"),
        ("key epoch", d["key_epoch"]),
    ]
    for row in d["privacy_ledgers"]:
        name = f"privacy ledger {row['scope'] or '(lifetime)'}"
        if row["state"] == "ok":
            rows.append(
                (
                    name,
                    f"ok: epsilon {row['epsilon_spent']:.3f} of {row['epsilon_budget']:g} at "
                    f"delta {row['delta']}, {row['entries']} mechanism(s), "
                    f"{row['evaluate_rounds']} evaluate round(s)"
                    + (" [simulation]" if row["simulation"] else ""),
                )
            )
        else:
            rows.append((name, f"{row['state'].upper()}: {row['detail']}"))
    _console.print(_table(f"store {store}", rows))
    if d["stale_epoch_keys"]:
        _console.print(
            f"[yellow]warning: {d['stale_epoch_keys']} old pseudonym key(s) survived an "
            "interrupted rotation; run `anprfed force rotate-key` to finish erasing them[/]"
        )
    if not ledgers_ok:
        raise typer.Exit(code=2)


@app.command("privacy-policy")
def privacy_policy_cmd(
    store: Path = STORE_ARG,
    key_file: Path | None = KEY_FILE_OPT,
    install: Path | None = typer.Option(
        None,
        "--install",
        help="A policy TOML file (kebab-case keys) to install as the store's authenticated "
        "policy (STORE/privacy/policy.toml).",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Show (or install) the force's privacy policy: what any run config may ask of it."""
    from dataclasses import asdict

    from client_force.privacy_policy import PolicyError, PrivacyPolicy, load_policy
    from client_force.private_training import install_policy, ledger_key

    def body() -> PrivacyPolicy:
        opened = _open(store, key_file)
        if install is not None:
            install_policy(opened, PrivacyPolicy.read(install))
        return load_policy(opened.root, None, ledger_key(opened.master))

    try:
        policy = _run(as_json, body)
    except PolicyError as exc:
        _fail(EXIT_INPUT, str(exc), as_json)
    values = {k.replace("_", "-"): v for k, v in asdict(policy).items()}
    if as_json:
        typer.echo(json.dumps({"ok": True, **values}))
        return
    _console.print(_table(f"privacy policy of {store}", list(values.items())))


@app.command("quarantine")
def quarantine_cmd(
    store: Path = STORE_ARG,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="CSV to write the rows to (created owner-only, never overwritten). It holds RAW "
        "VRMs and camera ids: keep it inside the force and delete it after re-ingest. "
        "Without --out only the counts are shown.",
    ),
    kind: str = typer.Option("reads", "--kind", help="reads (from ingest) or labels."),
    first: str | None = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
    last: str | None = typer.Option(None, "--to", help="Last day (YYYY-MM-DD)."),
    key_file: Path | None = KEY_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Rejected rows held in quarantine: counts by reason and day, or export them to correct.

    Correct the exported rows' vrm, camera_id and read_at, then ingest the file again.
    """

    def body() -> QuarantineExport:
        days = [_parse_day(text, name) for text, name in ((first, "--from"), (last, "--to"))]
        return export_quarantine(_open(store, key_file), out, kind, days[0], days[1])

    result = _run(as_json, body)
    if as_json:
        typer.echo(json.dumps({"ok": True, **result.to_dict()}))
        return
    _console.print(f"quarantined {kind} rows: {result.rows}")
    t = Table()
    t.add_column("reason")
    t.add_column("rows", justify="right")
    for reason, count in sorted(result.by_reason.items()):
        t.add_row(reason, str(count))
    _console.print(t)
    if result.by_day:
        days = sorted(result.by_day)
        _console.print(f"days: {len(days)} ({days[0]} to {days[-1]})")
    if out is not None:
        _console.print(f"written: {out} (mode 0600; holds raw values: delete after re-ingest)")


def _parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise QuarantineExportError(f"{option} must be a date YYYY-MM-DD") from None


@app.command("rotate-key")
def rotate_key_cmd(
    store: Path = STORE_ARG,
    key_file: Path | None = KEY_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Re-key every stored pseudonym to a new epoch and destroy the old epoch key.

    Needs no raw VRMs. Afterwards old pseudonyms cannot be linked to new ones without the
    destroyed key. Derived artifacts (caches keyed by pseudonyms) are removed. Rerun to finish
    an interrupted rotation.
    """

    def body() -> dict[str, Any]:
        s = _open(store, key_file)
        with s.lock("rotate-key"):
            s.refresh()
            s.check_tree()
            s.clean_interrupted_writes()
            rep = s.rotate_pseudonym_key()
        s.append_log(
            "keys",
            {
                "event": "rotate-key",
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "old_epoch": rep.old_epoch,
                "new_epoch": rep.new_epoch,
                "partitions_rekeyed": rep.partitions_rekeyed,
                "destroyed_key_ids": list(rep.destroyed_key_ids),
                "finished_interrupted": rep.resumed,
            },
        )
        return {
            "ok": True,
            "finished_interrupted_rotation": rep.resumed,
            "old_epoch": rep.old_epoch,
            "new_epoch": rep.new_epoch,
            "partitions_rekeyed": rep.partitions_rekeyed,
            "reads_rekeyed": rep.reads_rekeyed,
            "labels_rekeyed": rep.labels_rekeyed,
            "derived_removed": rep.derived_removed,
            "destroyed_key_ids": list(rep.destroyed_key_ids),
        }

    out = _run(as_json, body)
    if as_json:
        typer.echo(json.dumps(out))
    else:
        if out["finished_interrupted_rotation"]:
            _console.print(
                "[yellow]an earlier rotation was interrupted; it is now finished "
                f"(old epoch key(s) erased: {len(out['destroyed_key_ids'])})[/]"
            )
        rows = [(k.replace("_", " "), v) for k, v in out.items() if k != "ok"]
        _console.print(_table(f"rotated pseudonym key of {store}", rows))


@app.command("passphrase")
def passphrase_cmd(
    store: Path = STORE_ARG,
    as_json: bool = JSON_OPT,
) -> None:
    """Change the store's passphrase (re-wraps the master secret only; no data is re-encrypted).

    The current passphrase comes from ANPRFED_PASSPHRASE (or a prompt), the new one from
    ANPRFED_NEW_PASSPHRASE (or a prompt). The new wrap uses the current scrypt cost (n = 2**17,
    r = 8, p = 1), recorded in keys/master.wrapped and store.json, so this also raises the cost
    of a store made with a lower one.
    """

    def body() -> dict[str, Any]:
        s = _open(store, None)
        new = os.environ.get(NEW_PASSPHRASE_ENV) or str(
            typer.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
        )
        with s.lock("passphrase"):
            s.change_passphrase(new)
        prot = s.meta["key_protection"]
        return {"ok": True, "kdf": {k: prot[k] for k in ("kdf", "n", "r", "p") if k in prot}}

    out = _run(as_json, body)
    typer.echo(json.dumps(out) if as_json else f"passphrase changed; kdf {out['kdf']}")


@app.command("purge-key")
def purge_key_cmd(
    store: Path = STORE_ARG,
    out: Path = typer.Option(..., "--out", help="NEW key file for the purge job (mode 0600)."),
    key_file: Path | None = KEY_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Give the purge job a key of its own: it signs the purge log and erases expired days'
    keys, but cannot decrypt anything. Run the purge with ANPRFED_PURGE_KEY_FILE=OUT."""

    def body() -> dict[str, Any]:
        s = _open(store, key_file)
        with s.lock("purge-key"):
            s.create_purge_key(out)
        return {"ok": True, "purge_key_file": str(out)}

    result = _run(as_json, body)
    typer.echo(
        json.dumps(result)
        if as_json
        else f"purge key written to {out} (mode 0600); "
        "run `anprfed retention purge` with ANPRFED_PURGE_KEY_FILE set to it"
    )


__all__ = ["EXIT_CODES_HELP", "app", "parse_ingest_as_of"]
