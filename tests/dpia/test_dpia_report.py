"""The DPIA evidence pack: ICO structure, figures, person fields, traceability, store checks."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from research.dpia import write_dpia
from research.dpia.blocks import SECTION_IDS, SECTION_TITLES
from research.dpia.cli import app as dpia_app
from research.dpia.cli import check_run_stores
from research.dpia.render import PERSON_LABEL

FIGURES = (
    "fig-dataflow",
    "fig-pr-curves",
    "fig-utility-vs-epsilon",
    "fig-disparity",
    "fig-retention",
    "fig-membership",
    "fig-epsilon",
)
PNG = b"\x89PNG\r\n\x1a\n"


def _evidence(dpia_dir: Path) -> dict:
    return json.loads((dpia_dir / "evidence.json").read_text())


# ------------------------------------------------------------------------ the privacy audit
def test_audit_results_are_in_the_run_folder(audited_run: Path) -> None:
    rows = pd.read_csv(audited_run / "privacy" / "membership_inference.csv")
    assert set(rows["design"]) == {"federated", "pooled"}
    assert set(rows["attack"]) == {"loss-threshold", "lira-online", "lira-offline"}
    assert len(rows) == 2 * 3 * 3  # designs x forces x attacks
    for col in (
        "auc",
        "tpr_at_fpr_0_1pct",
        "tpr_at_fpr_1pct",
        "eps_lower_bound",
        "eps_ci_low",
        "eps_ci_high",
        "claimed_epsilon",
        "members",
        "nonmembers",
    ):
        assert col in rows.columns
    fed = rows[rows["design"] == "federated"]
    assert fed["bound_within_claim"].all()
    assert (fed["claimed_epsilon"].astype(float) > 0).all()
    assert (rows[rows["design"] == "pooled"]["shadow_recipe"] == "non-private").all()
    assert all((audited_run / p).is_file() for p in rows["model_file"])
    assert (audited_run / "plots" / "membership_inference_roc.png").read_bytes()[:8] == PNG
    # Counts and rates only: no 32-hex pseudonym anywhere in the audit outputs.
    for path in (audited_run / "privacy").glob("membership*"):
        assert not re.search(r"\b[0-9a-f]{32}\b", path.read_text()), path.name


# ------------------------------------------------------------------------ structure
def test_pack_has_the_seven_ico_sections_in_both_formats(dpia_dir: Path) -> None:
    evidence = _evidence(dpia_dir)
    assert [s["id"] for s in evidence["sections"]] == list(SECTION_IDS)
    html = (dpia_dir / "dpia.html").read_text()
    md = (dpia_dir / "dpia.md").read_text()
    for number, (sid, title) in enumerate(zip(SECTION_IDS, SECTION_TITLES, strict=True), 1):
        assert f'<section class="dpia-section" id="{sid}">' in html
        assert f"<h2>{number}. {title}</h2>" in html
        assert f"## {number}. {title}" in md
    for sub in (
        "Nature of the processing",
        "Scope of the processing",
        "Context of the processing",
        "Purposes of the processing",
    ):
        assert sub in html and sub in md


def test_figures_are_embedded_png_and_written_next_to_the_markdown(dpia_dir: Path) -> None:
    evidence = _evidence(dpia_dir)
    assert [f["id"] for f in evidence["figures"]] == list(FIGURES)
    html = (dpia_dir / "dpia.html").read_text()
    md = (dpia_dir / "dpia.md").read_text()
    embedded = re.findall(r'<figure id="([^"]+)"><img src="data:image/png;base64,([^"]+)"', html)
    assert [e[0] for e in embedded] == list(FIGURES)
    for (_fig_id, data), fig in zip(embedded, evidence["figures"], strict=True):
        png = base64.b64decode(data)
        assert png[:8] == PNG
        assert (dpia_dir / fig["file"]).read_bytes() == png
        assert f"]({fig['file']})" in md
        assert fig["sources"] and all(not s.startswith("/") for s in fig["sources"])
    assert "http://" not in html and "https://" not in html  # self-contained


def test_fields_for_a_person_are_marked_as_theirs(dpia_dir: Path) -> None:
    evidence = _evidence(dpia_dir)
    person = evidence["person_fields"]
    by_section: dict[str, list] = {}
    for field in person:
        by_section.setdefault(field["section"], []).append(field)
        assert field["role"] and field["prompt"]
    assert len(by_section["consultation"]) >= 4
    assert len(by_section["signoff"]) == 6  # the ICO sign-off table
    assert "lawful-basis" in {f["id"] for f in by_section["necessity"]}
    html = (dpia_dir / "dpia.html").read_text()
    md = (dpia_dir / "dpia.md").read_text()
    assert html.count('class="person-field"') == len(person)
    assert html.count(PERSON_LABEL) >= len(person)
    assert md.count(f"**{PERSON_LABEL}:") == len(person)
    consultation = html.split('id="consultation"')[1].split("</section>")[0]
    assert "data-evidence" not in consultation  # nothing in it pretends to be a measurement


def test_measured_facts_are_present(dpia_dir: Path, audited_run: Path) -> None:
    evidence = _evidence(dpia_dir)
    labels = {i["label"]: i for i in evidence["items"]}
    metrics = pd.read_csv(audited_run / "metrics.csv")
    fed_all = metrics[(metrics["design"] == "federated") & (metrics["force"] == "all forces")]
    for column, label in (
        ("alerts_per_tp_realistic", "federated: alerts per true positive"),
        ("false_alerts_per_million_realistic", "federated: false alerts per million vehicles"),
        ("chance", "federated: chance (held-out prevalence)"),
        ("pr_auc_low", "federated: PR-AUC 95% interval, low"),
        ("lift", "federated: lift over chance"),
    ):
        assert labels[label]["value"] == pytest.approx(float(fed_all[column].iloc[0]))
    ledger = pd.read_csv(audited_run / "privacy_ledger.csv")
    for force, rows in ledger.groupby("force"):
        last = rows.sort_values("round").iloc[-1]
        assert labels[f"federated {force}: epsilon"]["value"] == pytest.approx(last["epsilon"])
        assert labels[f"federated {force}: delta"]["value"] == pytest.approx(last["delta"])
        assert labels[f"federated {force}: accountant"]["value"] == "rdp"
    reid = json.loads((audited_run / "privacy" / "reid.json").read_text())
    assert labels["MD5: plates recovered"]["value"] == reid["md5"]["recovered"] == 8
    assert labels["keyed: recovered"]["value"] == 0
    assert labels["keyed: key bits"]["value"] == 256
    assert "MI on DP models: highest epsilon lower bound" in labels
    assert "MI on non-private models: highest AUC" in labels
    assert "false-alert ratio urban / rural" in labels
    html = (dpia_dir / "dpia.html").read_text()
    for text in ("not deployable", "secure mode", "Residual risks", "144,366"):
        assert text in html
    assert [c["force"] for c in evidence["store_checks"]] == ["force0", "force1", "force2"]
    assert all(c["compliant"] and c["log_ok"] for c in evidence["store_checks"])


# ------------------------------------------------------------------------ traceability
def _value_at(run: Path, source: str, locator: str):
    """Re-read a value from its source file by the locator forms the DPIA writes."""
    if locator.startswith("JSON pointer "):
        data = json.loads((run / source).read_text())
        for key in locator.removeprefix("JSON pointer ").strip("/").split("/"):
            data = data[int(key)] if isinstance(data, list) else data[key]
        return data
    m = re.fullmatch(r"row (.+); column (\w+)", locator)
    if not m or not source.endswith(".csv"):
        return None
    frame = pd.read_csv(run / source)
    for cond in m.group(1).split(", "):
        key, value = cond.split("=", 1)
        value = value.split(" (")[0]  # drop a trailing note such as "(the last round)"
        column = frame[key]
        if key in ("epsilon", "target_epsilon"):
            frame = frame[column.astype(float) == float(value)]
        elif pd.api.types.is_numeric_dtype(column):
            frame = frame[column == float(value)]
        else:
            frame = frame[column.astype(str) == value]
    assert len(frame) == 1, locator
    return frame[m.group(2)].iloc[0]


def test_every_number_is_traceable_to_a_run_file(dpia_dir: Path, audited_run: Path) -> None:
    evidence = _evidence(dpia_dir)
    items = evidence["items"]
    assert len(items) > 100
    for path, info in evidence["source_files"].items():
        data = (audited_run / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], path
    checked = 0
    for item in items:
        assert item["locator"], item["id"]
        if item["source"].startswith("reference:"):
            continue
        assert item["source"] in evidence["source_files"], item["id"]
        value = _value_at(audited_run, item["source"], item["locator"])
        if value is None:
            continue
        checked += 1
        if isinstance(item["value"], str) or isinstance(value, str):
            assert str(item["value"]) == str(value), item
        elif isinstance(value, float) and math.isnan(value):
            assert item["value"] in ("nan", None) or math.isnan(item["value"])
        else:
            assert float(item["value"]) == pytest.approx(float(value)), item
    assert checked > 0.6 * len(items)
    for fig in evidence["figures"]:
        assert all(s in evidence["source_files"] for s in fig["sources"]), fig["id"]
    html = (dpia_dir / "dpia.html").read_text()
    cited = set(re.findall(r'data-evidence="(E\d+)"', html))
    ids = {i["id"] for i in items}
    assert cited == ids  # every value shown is in the index, and every index entry is shown
    assert all(f'id="ev-{i}"' in html for i in ids)


# ------------------------------------------------------------------------ store checks
def test_a_tampered_purge_log_is_reported(audited_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(audited_run, run, ignore=shutil.ignore_patterns("dpia"))
    log = run / "stores" / "retention-50d" / "force1" / "logs" / "purge.jsonl"
    text = log.read_bytes()
    assert b'"bytes":' in text
    log.write_bytes(text.replace(b'"bytes":', b'"bytes":1', 1))  # an edited entry
    checks = {c.force: c for c in check_run_stores(run, datetime.now(UTC))}
    assert not checks["force1"].log_ok and checks["force1"].problems
    assert checks["force0"].log_ok
    pack = write_dpia(run, checker=check_run_stores)
    evidence = json.loads(pack.evidence.read_text())
    bad = next(c for c in evidence["store_checks"] if c["force"] == "force1")
    assert bad["log_ok"] is False
    html = pack.html.read_text()
    risk_row = html.split("Reads kept beyond the retention period")[1].split("</tr>")[0]
    assert "probable" in risk_row


def test_missing_audits_are_flagged_not_invented(audited_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(
        audited_run, run, ignore=shutil.ignore_patterns("dpia", "privacy", "membership_*")
    )
    pack = write_dpia(run, tmp_path / "out", checker=None)
    html = pack.html.read_text()
    assert html.count('class="missing"') >= 3  # MI audit, re-identification, store checks
    assert "anprfed privacy audit RUN_DIR" in html and "reid-demo" in html
    ids = [f["id"] for f in json.loads(pack.evidence.read_text())["figures"]]
    assert "fig-membership" not in ids


def test_dpia_command_rejects_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(dpia_app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.json" in result.output.replace("\n", "")  # rich wraps long paths


# ------------------------------------------------------------------------ against chance
def _with_skill(run: Path, dest: Path, low_above_chance: bool) -> Path:
    """A copy of the run's files (no stores) whose deployable designs do or do not clear
    chance; nothing else changed."""
    copy = dest / ("skilled" if low_above_chance else "no-skill")
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("stores", "keys", "dpia"))
    metrics = pd.read_csv(copy / "metrics.csv")
    # skilled: every design clears chance; else the deployable ones do not (pooled unchanged)
    deployable = metrics["design"].isin(["local-only", "federated"]) | low_above_chance
    chance = metrics["chance"]
    metrics.loc[deployable, "pr_auc_low"] = chance[deployable] * (1.5 if low_above_chance else 0.5)
    metrics.loc[deployable, "skill"] = "above chance" if low_above_chance else "no skill"
    metrics.to_csv(copy / "metrics.csv", index=False)
    return copy


@pytest.mark.parametrize("skilled", [False, True])
def test_necessity_says_plainly_when_no_deployable_design_beats_chance(
    audited_run: Path, tmp_path: Path, skilled: bool
) -> None:
    run = _with_skill(audited_run, tmp_path, skilled)
    write_dpia(run, tmp_path / f"out-{skilled}", checker=None)
    html = (tmp_path / f"out-{skilled}" / "dpia.html").read_text()
    necessity = html.split('id="necessity"')[1].split("</section>")[0]
    statement = "This run does not show that the processing achieves its purpose"
    assert (statement in necessity) is (not skilled)
    assert ("<td>no skill" in necessity) is (not skilled)  # the verdict column
    assert "A random ranking raises" in necessity  # alert burden always read against chance
    assert "vehicles processed per true positive" not in html
