"""A study stopped mid-run leaves no process behind, and no results folder that looks complete.

The study runs as a new user would run it (``anprfed study run``, its own process and session),
with a local-only design (a worker pool) and a federated one (the study's Ray head node, its
``gcs_server``, ``raylet`` and Ray workers). While the federated run trains, the test records
every process the study started (its descendants, its session, anything naming its Ray
folder), stops the study with a signal, and checks that none of them survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from research.study.ray_cluster import processes_naming

REPO = Path(__file__).resolve().parents[2]
SPEC = """
name = "interrupt"
seed = 3
designs = ["local-only", "federated"]
[world]
vehicles = 240
days = 40
start = 2025-03-01
prevalence = 0.06
seed = 3
[training]
rounds = 6
batch_size = 32
max_reads = 16
round_timeout_s = 300
[dp]
epsilon = 50.0
[retention]
max_age_days = 30
"""

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid reused later is not ours


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _started_by(study: int, ray_tag: str | None) -> dict[Proc, str]:
    """Live processes of the study: descendants, same session, or naming its Ray folder."""
    stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
    children: dict[int, list[int]] = {}
    for pid, s in stats.items():
        children.setdefault(int(s[1]), []).append(pid)
    found = set()
    queue = [study]
    while queue:
        pid = queue.pop()
        found.add(pid)
        queue.extend(children.get(pid, []))
    found |= {pid for pid, s in stats.items() if int(s[3]) == study}  # session id
    if ray_tag:
        found |= set(processes_naming(ray_tag))
    return {
        (pid, int(stats[pid][19])): _cmdline(pid)
        for pid in found
        if pid in stats and pid != os.getpid()
    }


def _alive(proc: Proc) -> bool:
    s = _stat(proc[0])
    return s is not None and int(s[19]) == proc[1] and s[0] != "Z"


def _ray_tag(procs: dict[Proc, str]) -> str | None:
    for cmd in procs.values():
        for part in cmd.split():
            if part.startswith("--temp-dir=") and "anprfed-ray-" in part:
                return part.removeprefix("--temp-dir=")
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_a_stopped_study_leaves_no_process(tmp_path: Path, sig: signal.Signals) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    with open(tmp_path / "study.log", "wb") as log:
        study = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from research.cli import main; main()",
                "study",
                "run",
                str(spec),
                "--out",
                str(out),
            ],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen: dict[Proc, str] = {}
    tag = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and study.poll() is None:
            seen.update(_started_by(study.pid, tag))
            tag = tag or _ray_tag(seen)
            training = list(out.glob("server/federated-*/checkpoints/round-*.npz"))
            if training and any("default_worker" in c for c in seen.values()):
                break
            time.sleep(0.3)
        assert study.poll() is None, (tmp_path / "study.log").read_text()[-3000:]
        assert training, "the federated design never started training"
        seen.update(_started_by(study.pid, tag))
        os.kill(study.pid, sig)
        code = study.wait(timeout=120)
    finally:
        if study.poll() is None:
            study.kill()
    log_text = (tmp_path / "study.log").read_text(errors="replace")
    if sig != signal.SIGKILL:
        assert code == 128 + sig, log_text[-3000:]
    commands = " ".join(seen.values())
    for part in ("gcs_server", "raylet", "default_worker", "ray_supervisor", "spawn_main"):
        assert part in commands, f"{part} was never seen; the test did not exercise it"
    survivors: dict[Proc, str] = {}
    deadline = time.monotonic() + 60  # after SIGKILL the supervisor needs its grace periods
    while time.monotonic() < deadline:
        survivors = {p: c for p, c in seen.items() if p[0] != study.pid and _alive(p)}
        survivors.update(_started_by(study.pid, tag))
        if not survivors:
            break
        time.sleep(0.5)
    assert not survivors, "\n".join(f"{p[0]}: {c[:160]}" for p, c in survivors.items())
    # No results folder that looks complete.
    assert not (out / "manifest.json").exists()


TINY_RESUME = {
    "name": "resume",
    "seed": 4,
    "designs": ["local-only", "pooled"],
    "world": {"vehicles": 200, "days": 40, "start": "2025-03-01", "prevalence": 0.06, "seed": 4},
    "training": {"rounds": 1, "batch_size": 32, "max_reads": 16},
    "dp": {"epsilon": 8.0},
    "retention": {"max_age_days": 30},
}


@pytest.mark.slow
def test_a_rerun_reuses_stores_and_finished_designs(tmp_path: Path) -> None:
    """Same world, a different spec: no second ingest, finished design runs loaded, not re-run."""
    from research.study import store_reuse
    from research.study.runner import run_study
    from research.study.spec import spec_from_dict

    out = tmp_path / "run"
    first = run_study(spec_from_dict(TINY_RESUME), out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    markers = sorted((out / "stores").glob(f"*/*{store_reuse.MARKER_SUFFIX}"))
    assert len(markers) == 6
    records = sorted((out / "designs").glob("*.npz"))
    assert len(records) == 2  # local-only and pooled at the one sweep point
    stamps = {p: p.stat().st_mtime_ns for p in [*markers, *records]}

    wider = {**TINY_RESUME, "name": "resume", "dp": {"epsilon": 8.0, "epsilon_sweep": [2.0]}}
    second = run_study(spec_from_dict(wider), out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # reused, not rewritten
    assert len(list((out / "designs").glob("*.npz"))) == 3  # only eps=2 local-only was new
    assert second.timings["ingest+purge"] < first.timings["ingest+purge"] / 3
    shared = [m for m in first.metrics]
    again = [m for m in second.metrics if m["epsilon"] in (8.0, float("inf"))]
    assert json.dumps(again, default=str) == json.dumps(shared, default=str)
    assert [r["epsilon"] for r in second.ledger if r["target_epsilon"] == 8.0] == [
        r["epsilon"] for r in first.ledger
    ]

    # Asked to, it ingests and trains everything again.
    run_study(spec_from_dict(wider), out, rerun=True)
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())


def test_an_unfinished_store_is_rebuilt(tmp_path: Path) -> None:
    """A store without its marker (ingest interrupted) or with another key is not reused."""
    from research.study import store_reuse

    store, key_file = tmp_path / "stores" / "cheshire", tmp_path / "cheshire.key"
    store.mkdir(parents=True)
    key_file.write_text("k")
    assert store_reuse.ready_store(store, key_file, "abc") is None
    store_reuse.mark_store_ready(store, "abc", {"force": "cheshire", "stored": 5})
    assert store_reuse.ready_store(store, key_file, "abc") == {"force": "cheshire", "stored": 5}
    assert store_reuse.ready_store(store, key_file, "other") is None
    store_reuse.forget_store(store)
    assert store_reuse.ready_store(store, key_file, "abc") is None
    with pytest.raises(ValueError, match="scoped"):
        store_reuse.reset_scoped_ledger(store / "privacy" / "ledger.json")
