"""A study results folder with both privacy audits run, shared by the DPIA tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).parent))

from run_fixture import build_run_folder

from research.audit.cli import app as privacy_app
from research.dpia.cli import app as dpia_app


@pytest.fixture(scope="session")
def audited_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture run folder after `privacy audit` and `privacy reid-demo` (via the CLIs)."""
    run = build_run_folder(tmp_path_factory.mktemp("dpia-run"))
    runner = CliRunner()
    audit = runner.invoke(privacy_app, ["audit", str(run), "--shadows", "2", "--json"])
    assert audit.exit_code == 0, audit.output
    reid = runner.invoke(
        privacy_app,
        [
            "reid-demo",
            "--sample",
            "8",
            "--prefix",
            "MA2",
            "--workers",
            "1",
            "--seed",
            "4",
            "--out",
            str(run / "privacy"),
        ],
    )
    assert reid.exit_code == 0, reid.output
    return run


@pytest.fixture(scope="session")
def dpia_dir(audited_run: Path) -> Path:
    """`anprfed dpia report RUN_DIR` written to RUN_DIR/dpia."""
    result = CliRunner().invoke(dpia_app, ["report", str(audited_run)])
    assert result.exit_code == 0, result.output
    return audited_run / "dpia"
