"""``anprfed retention`` commands: exit codes, messages, JSON, and real process kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from retention_helpers import PASSPHRASE, BuiltStore, as_of_expiring, day, open_store, tree_digest
from typer.testing import CliRunner

from retention.cli import PurgeExit, StatusExit, VerifyExit, app
from retention.lock import store_lock
from retention.policy import RetentionPolicy
from retention.purge import CRASH_ENV, CRASH_EXIT_CODE, run_purge
from retention.purge_log import PurgeLog

runner = CliRunner()
AS_OF_15 = as_of_expiring(15).isoformat()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("passphrase_env")
def test_purge_exit_codes_and_json(built: BuiltStore) -> None:
    root = str(built.root)
    code, out, _ = _run("purge", root, "--as-of", AS_OF_15, "--json")
    assert code == PurgeExit.PURGED == 10
    report = json.loads(out)
    assert report["status"] == "purged" and len(report["days_removed"]) == 15
    assert report["exit_code"] == 10 and report["commit_seq"] == 2
    code, out, _ = _run("purge", root, "--as-of", AS_OF_15)
    assert code == PurgeExit.NOTHING_TO_DO == 0
    assert "nothing to do" in out


@pytest.mark.usefixtures("passphrase_env")
def test_dry_run_lists_and_changes_nothing(built: BuiltStore) -> None:
    digest = tree_digest(built.root)
    code, out, _ = _run("purge", str(built.root), "--as-of", AS_OF_15, "--dry-run", "--json")
    assert code == PurgeExit.PURGED
    plan = json.loads(out)["plan"]
    assert plan["days"][0] == "2024-01-01" and plan["day_count"] == 15
    assert "partitions/day=2024-01-01/reads.parquet.enc" in plan["files"]
    code, out, _ = _run("purge", str(built.root), "--as-of", "2024-06-01", "--dry-run")
    assert code == PurgeExit.NOTHING_TO_DO
    assert tree_digest(built.root) == digest


@pytest.mark.usefixtures("passphrase_env")
def test_lock_held_by_ingest_is_refused_with_its_name(built: BuiltStore) -> None:
    with store_lock(built.root, "ingest"):
        digest = tree_digest(built.root)
        code, _, err = _run("purge", str(built.root), "--as-of", AS_OF_15)
        assert tree_digest(built.root) == digest
    assert code == PurgeExit.REFUSED == 75
    assert f"store is locked by ingest (pid {os.getpid()}); try again later" in err
    assert open_store(built.root).days() == built.days


@pytest.mark.usefixtures("passphrase_env")
def test_lock_held_by_another_process(built: BuiltStore) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from retention.lock import store_lock\n"
            "with store_lock(Path(sys.argv[1]), 'ingest'):\n"
            "    print('held', flush=True); time.sleep(30)",
            str(built.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = _run("purge", str(built.root), "--as-of", AS_OF_15, "--wait", "0.2")
        assert code == PurgeExit.REFUSED
        assert f"locked by ingest (pid {holder.pid})" in err
    finally:
        holder.kill()
        holder.wait()
    code, _, _ = _run("purge", str(built.root), "--as-of", AS_OF_15)
    assert code == PurgeExit.PURGED


@pytest.mark.usefixtures("passphrase_env")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "2999-01-01"], "in the future"),
        (["--as-of", "2025-02-30"], "not a valid date"),
        (["--as-of", "2025-06-01T10:00:00"], "no UTC offset"),
    ],
)
def test_bad_input_exits_2(built: BuiltStore, args: list[str], message: str) -> None:
    digest = tree_digest(built.root)
    code, _, err = _run("purge", str(built.root), *args)
    assert code == PurgeExit.USAGE == 2
    assert message in err
    assert tree_digest(built.root) == digest


def test_missing_store_and_wrong_passphrase_exit_2(
    built: BuiltStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANPRFED_PASSPHRASE", PASSPHRASE)
    code, _, err = _run("purge", str(tmp_path / "nope"))
    assert code == 2 and "not found" in err
    monkeypatch.setenv("ANPRFED_PASSPHRASE", "wrong")
    code, _, err = _run("purge", str(built.root), "--as-of", AS_OF_15)
    assert code == 2 and "wrong passphrase" in err


@pytest.mark.usefixtures("passphrase_env")
def test_future_as_of_allowed_only_explicitly(built: BuiltStore) -> None:
    code, out, _ = _run("purge", str(built.root), "--as-of", "2999-01-01", "--dry-run")
    assert code == 2
    code, out, _ = _run(
        "purge", str(built.root), "--as-of", "2999-01-01", "--allow-future-as-of", "--dry-run"
    )
    assert code == PurgeExit.PURGED and "would remove 40 day(s)" in out


@pytest.mark.usefixtures("passphrase_env")
def test_tampered_log_fails_the_purge_and_verify_log(built: BuiltStore) -> None:
    root = str(built.root)
    assert _run("purge", root, "--as-of", as_of_expiring(5).isoformat())[0] == PurgeExit.PURGED
    code, out, _ = _run("verify-log", root)
    assert code == VerifyExit.OK and "OK" in out
    log = PurgeLog(built.root)
    log.path.write_bytes(log.path.read_bytes().replace(b'"day_count":5', b'"day_count":4'))
    code, out, _ = _run("verify-log", root, "--json")
    assert code == VerifyExit.TAMPERED == 1
    assert any("bad signature" in p for p in json.loads(out)["problems"])
    digest = tree_digest(built.root)
    code, _, err = _run("purge", root, "--as-of", AS_OF_15)
    assert code == PurgeExit.FAILED == 1 and "does not verify" in err
    assert tree_digest(built.root) == digest


def test_verify_log_needs_no_passphrase_and_honours_a_pinned_key(
    built: BuiltStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(built.root)
    run_purge(store, as_of_expiring(3), RetentionPolicy(365))
    monkeypatch.delenv("ANPRFED_PASSPHRASE", raising=False)
    monkeypatch.delenv("ANPRFED_KEY_FILE", raising=False)
    assert _run("verify-log", str(built.root))[0] == VerifyExit.OK
    right = store.signing_public_key_hex()
    assert _run("verify-log", str(built.root), "--public-key", right)[0] == VerifyExit.OK
    wrong = "00" * 32
    assert _run("verify-log", str(built.root), "--public-key", wrong)[0] == VerifyExit.TAMPERED


@pytest.mark.usefixtures("passphrase_env")
def test_status_reports_retention_state(built: BuiltStore) -> None:
    root = str(built.root)
    code, out, _ = _run("status", root, "--as-of", AS_OF_15, "--json")
    assert code == StatusExit.NOT_COMPLIANT == 3
    status = json.loads(out)
    assert status["oldest_day"] == "2024-01-01" and status["newest_day"] == "2024-02-09"
    assert status["expired_days_held"] == 15 and status["last_purge"] is None
    assert _run("purge", root, "--as-of", AS_OF_15)[0] == PurgeExit.PURGED
    code, out, _ = _run("status", root, "--as-of", AS_OF_15, "--json")
    assert code == StatusExit.COMPLIANT
    status = json.loads(out)
    assert status["compliant"] and status["oldest_day"] == str(day(15))
    assert status["next_expiry_day"] == str(day(15))
    assert status["days_until_next_expiry"] == 1
    assert status["last_purge"]["day_count"] == 15
    assert status["last_purge"]["first_day"] == "2024-01-01"
    assert status["log"]["ok"] and status["consistency_problems"] == []
    code, out, _ = _run("status", root, "--as-of", AS_OF_15)
    assert "compliant: yes" in out and "last purge:" in out


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ANPRFED_PASSPHRASE": PASSPHRASE, **(env or {})}
    full_env.pop("ANPRFED_KEY_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "retention.cli", *args, str(root)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("step", ["after_intent", "mid_delete", "before_commit"])
def test_killed_process_then_rerun(built: BuiltStore, step: str) -> None:
    """A real kill (os._exit) mid-purge; the lock dies with the process and a rerun completes."""
    killed = _cli(built.root, "purge", "--as-of", AS_OF_15, env={CRASH_ENV: step})
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    status = _cli(built.root, "status", "--as-of", AS_OF_15, "--json")
    assert status.returncode == StatusExit.NOT_COMPLIANT
    assert json.loads(status.stdout)["interrupted_purges"] == [1]
    rerun = _cli(built.root, "purge", "--as-of", AS_OF_15, "--json")
    assert rerun.returncode == PurgeExit.PURGED, rerun.stderr
    assert json.loads(rerun.stdout)["completed_interrupted_intents"] == [1]
    assert _cli(built.root, "verify-log").returncode == VerifyExit.OK
    status = _cli(built.root, "status", "--as-of", AS_OF_15, "--json")
    assert status.returncode == StatusExit.COMPLIANT
    assert json.loads(status.stdout)["consistency_problems"] == []
