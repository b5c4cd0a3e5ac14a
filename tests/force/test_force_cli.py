"""``anprfed force`` commands: JSON output, exit codes, clean errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from force_export_factory import PASSPHRASE, Export
from typer.testing import CliRunner

from client_force.cli import (
    EXIT_INPUT,
    EXIT_LOCKED,
    EXIT_NOTHING_STORED,
    EXIT_STORE,
    EXIT_TOO_MANY_REJECTED,
    app,
)
from privacy.keys import MasterSecretSource
from retention.lock import store_lock
from retention.store import ForceStore

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.stdout + result.stderr
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def init_store(path: str | Path, force: str = "cheshire") -> None:
    """A store made in-process at a test-only scrypt cost (``init`` itself is tested once at
    the real cost, n = 2**17, in test_init_ingest_status_rotate_json)."""
    ForceStore.create(Path(path), force, MasterSecretSource.from_passphrase(PASSPHRASE, 4))


def test_init_ingest_status_rotate_json(tmp_path: Path, export: Export) -> None:
    store = str(tmp_path / "s")
    code, out, _ = run("init", store, "--force", "cheshire", "--json")
    assert code == 0 and json.loads(out)["key_protection"] == "passphrase"
    code, out, _ = run("ingest", store, str(export.path), "--as-of", "2024-06-01", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["accounted"] and rep["stored"] == export.rows
    code, out, _ = run("status", store, "--json")
    st = json.loads(out)
    assert code == 0
    assert (st["days_held"], st["reads"], st["vehicles"]) == (3, export.rows, len(export.vrms))
    assert st["oldest_read"].startswith("2024-05-01") and st["newest_read"].startswith("2024-05-03")
    assert st["key_epoch"] == 1 and st["bytes"] > 0
    code, out, _ = run("rotate-key", store, "--json")
    assert code == 0 and json.loads(out)["new_epoch"] == 2
    code, out, _ = run("status", store, "--json")
    st2 = json.loads(out)
    assert st2["key_epoch"] == 2 and st2["reads"] == st["reads"]
    assert st2["vehicles"] == st["vehicles"]
    code, out, _ = run("status", store)  # human table
    assert code == 0 and "key epoch" in out


def test_wrong_passphrase_exit_2_no_traceback(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    init_store(store)
    code, out, err = run("status", store, env={"ANPRFED_PASSPHRASE": "not it"})
    assert code == EXIT_INPUT
    assert "wrong passphrase" in err
    code, out, _ = run("status", store, "--json", env={"ANPRFED_PASSPHRASE": "not it"})
    assert code == EXIT_INPUT and json.loads(out)["ok"] is False


def test_key_file_mode(tmp_path: Path, export: Export) -> None:
    store, key = str(tmp_path / "s"), tmp_path / "k" / "force.key"
    code, out, _ = run("init", store, "--force", "lancs", "--key-file", str(key), "--json")
    assert code == 0 and json.loads(out)["key_protection"] == "key-file"
    assert key.stat().st_mode & 0o777 == 0o600
    code, _, err = run("status", store)
    assert code == EXIT_INPUT and "--key-file" in err
    code, out, _ = run(
        "ingest", store, str(export.path), "--as-of", "2024-06-01", "--json",
        env={"ANPRFED_KEY_FILE": str(key)},
    )  # fmt: skip
    assert code == 0 and json.loads(out)["stored"] == export.rows


def test_corrupt_export_and_tampered_store_exit_codes(tmp_path: Path, export: Export) -> None:
    store = tmp_path / "s"
    init_store(store)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage" * 100)
    code, _, err = run("ingest", str(store), str(bad), "--cameras", str(export.cameras))
    assert code == EXIT_INPUT and "bad.parquet" in err
    code, _, err = run("ingest", str(store), str(export.path), "--as-of", "not-a-date")
    assert code == EXIT_INPUT and "not-a-date" in err
    assert run("ingest", str(store), str(export.path), "--as-of", "2024-06-01")[0] == 0
    part = next(store.glob("partitions/*/reads.parquet.enc"))
    part.write_bytes(part.read_bytes()[:-10])
    code, _, err = run("status", str(store))
    assert code == EXIT_STORE and "integrity check failed" in err and part.parent.name in err
    code, _, err = run("status", str(tmp_path / "nowhere"))
    assert code == EXIT_STORE


def test_locked_store_exit_4(tmp_path: Path, export: Export) -> None:
    store = tmp_path / "s"
    init_store(store)
    with store_lock(store, "purge"):
        code, _, err = run("ingest", str(store), str(export.path), "--as-of", "2024-06-01")
    assert code == EXIT_LOCKED and "purge" in err


def test_help_documents_exit_codes() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "Exit codes" in out


@pytest.mark.parametrize("cmd", ["ingest", "status", "rotate-key", "labels"])
def test_commands_have_json(cmd: str) -> None:
    assert "--json" in run(cmd, "--help")[1]


def test_ingest_exits_5_when_nothing_was_stored(tmp_path: Path, export: Export) -> None:
    """Issue 15 (operator): every row past_retention (no --as-of) exited 0; cron never noticed."""
    store = str(tmp_path / "s")
    init_store(store)
    code, out, err = run("ingest", store, str(export.path), "--json")  # 2024 data, now = 2026
    assert code == EXIT_NOTHING_STORED == 5
    report = json.loads(out)
    assert report["stored"] == 0 and report["rejected"] == export.rows
    assert "--as-of" in err


def test_ingest_exits_6_past_the_operators_reject_threshold(tmp_path: Path, export: Export) -> None:
    store = str(tmp_path / "s")
    init_store(store)
    # --as-of inside the data: the last day's reads are in the future and rejected
    code, out, _ = run(
        "ingest",
        store,
        str(export.path),
        "--as-of",
        "2024-05-02",
        "--max-rejected-fraction",
        "0.1",
        "--json",
    )
    report = json.loads(out)
    assert report["rejected"] > 0 and report["stored"] > 0
    assert code == (
        EXIT_TOO_MANY_REJECTED if report["rejected"] / report["input_rows"] > 0.1 else 0
    )


def test_ingest_refuses_a_future_as_of(tmp_path: Path, export: Export) -> None:
    """Issue 15: --as-of was not checked against the clock."""
    store = str(tmp_path / "s")
    init_store(store)
    code, _, err = run("ingest", store, str(export.path), "--as-of", "2999-01-01")
    assert code == EXIT_INPUT and "future" in err


def test_passphrase_command_changes_the_passphrase(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    init_store(store)
    code, out, _ = run("passphrase", store, "--json", env={"ANPRFED_NEW_PASSPHRASE": "fresh one"})
    assert code == 0 and json.loads(out)["kdf"]["n"] == 2**17
    assert run("status", store, env={"ANPRFED_PASSPHRASE": "fresh one"})[0] == 0
    assert run("status", store)[0] == EXIT_INPUT  # the old passphrase no longer opens it
