"""Security: no raw VRM (nor camera id) anywhere in the store, its logs, temp dirs or outputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from force_export_factory import PASSPHRASE, make_export, make_messy_export
from typer.testing import CliRunner

from client_force.cli import app
from privacy.keys import MasterSecretSource
from retention.store import ForceStore

runner = CliRunner()


def spellings(vrm: str) -> set[bytes]:
    """The ways a VRM could leak: as written, normalised, lower case, spaced."""
    norm = "".join(c for c in vrm.upper() if c.isalnum())
    out = {vrm, norm, norm.lower(), f"{norm[:-3]} {norm[-3:]}"}
    return {s.encode("utf-8") for s in out if len(s) >= 5}


def scan(paths: list[Path], needles: set[bytes]) -> list[tuple[str, str]]:
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            hits += [(str(f), n.decode()) for n in needles if n in data]
    return hits


def test_no_raw_vrm_in_store_logs_temp_or_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # current-format plates only: 7 characters, so a chance match in ciphertext is impossible
    clean = make_export(
        tmp_path / "in", n_vehicles=400, reads_per_vehicle=4, mix={"current": 1.0}, seed=11
    )
    messy = make_messy_export(tmp_path / "messy")
    labels = tmp_path / "in" / "labels.csv"
    pd.DataFrame(
        {
            "vrm": [*list(clean.vrms[:30]), "WDB1234567", "AB?2CDE"],
            "offence_start": ["2024-01-01T00:00:00Z"] * 32,
            "offence_end": ["2024-03-01T00:00:00Z"] * 32,
            "conviction_date": ["2024-05-10"] * 32,
        }
    ).to_csv(labels, index=False)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    store = tmp_path / "store"
    outputs = []
    ForceStore.create(store, "cheshire", MasterSecretSource.from_passphrase(PASSPHRASE, 4))
    for args in (
        ["ingest", str(store), str(clean.path), "--as-of", "2024-06-01"],
        ["ingest", str(store), str(messy.path), "--as-of", "2024-06-01", "--json"],
        ["ingest", str(store), str(messy.path), "--as-of", "2024-06-01"],
        ["labels", str(store), str(labels), "--as-of", "2024-06-01", "--json"],
        ["status", str(store), "--json"],
        ["rotate-key", str(store)],
        ["status", str(store)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stdout + result.stderr
        outputs.append(result.stdout + result.stderr)
    (tmp_path / "outputs.txt").write_text("\n".join(outputs))

    raw = {str(v) for v in clean.vrms} | messy.raw_vrms
    needles = set().union(*(spellings(v) for v in raw))
    assert len(needles) > 1000
    targets = [store, tmp, tmp_path / "outputs.txt"]
    assert not scan(targets, needles)
    # camera ids neither (the register is stored by token)
    assert not scan(targets, {b"CAM-0"})
    # the scan itself works: it finds the VRMs in the raw export
    assert scan([clean.path], needles)
    assert os.listdir(tmp) == []
