"""``anprfed synth`` command line: happy path and clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from research.synth.cli import app

runner = CliRunner()


def test_generates_a_world_and_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["--vehicles", "120", "--days", "5", "--start", "2025-06-02", "--prevalence", "0.05",
            "--seed", "3", "--out", str(out), "--summary", "--quiet"]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    world = json.loads((out / "world.json").read_text())
    assert world["params"]["start"] == "2025-06-02" and world["params"]["vehicles"] == 120
    assert world["counts"]["offenders"] == 6
    for force in ("cheshire", "merseyside", "total", "county lines", "planted"):
        assert force in result.output
    assert f"{world['counts']['reads']:,}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2025-02-30"], "YYYY-MM-DD"),
        (["--start", "yesterday"], "YYYY-MM-DD"),
        (["--vehicles", "-5"], "vehicles"),
        (["--days", "0"], "days"),
        (["--preset", "atlantis"], "unknown preset"),
        (["--prevalence", "2"], "prevalence"),
        (["--format", "xlsx"], "format"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "w"), "-q"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "w").exists()


def test_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    out = tmp_path / "w"
    base = ["--vehicles", "50", "--days", "2", "--out", str(out), "-q"]
    assert runner.invoke(app, base).exit_code == 0
    again = runner.invoke(app, base)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, [*base, "--overwrite"]).exit_code == 0


def test_anprfed_entry_point_runs_synth(tmp_path: Path) -> None:
    out = tmp_path / "w"
    entry = "from research.cli import main; main()"
    cmd = [sys.executable, "-c", entry, "synth", "--vehicles", "40", "--days", "2",
           "--format", "csv", "--out", str(out), "-q"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "150"})
    assert done.returncode == 0, done.stderr
    assert (out / "forces" / "greater-manchester" / "export" / "reads.csv").exists()
