"""A real deployment on 127.0.0.1: TLS, SuperNode authentication, three forces, faults.

One test, in stages (one SuperLink start and three registrations serve them all):

1. **Set-up as planned**: certificates and node keys from ``deployment``; the SuperLink
   started with ``--ssl-*`` and ``--enable-supernode-auth``; each force's public key
   registered with ``flwr supernode register``; each force's ``flower-supernode`` pointed at its
   own store through its node config. Every command line is the plan's.
2. **Strangers are refused**: a SuperNode with an unregistered key; a SuperNode and the
   ``flwr`` CLI without the CA certificate, a SuperNode trusting another CA, a plain HTTPS
   client with the system trust store. None gets a node activated or an API answer.
3. **A SuperNode dies mid-run**: ``SIGKILL`` of force2's SuperNode (and its SuperExec and
   ClientApps) once round 1 of a two-round run is checkpointed. Round 2 goes ahead with the
   other two forces after one round timeout; the results record the missing force. Meanwhile
   the Simulation Engine runs the same study on a fresh copy of the same stores.
4. **It comes back**: force2's SuperNode restarted (retried until the SuperLink has marked its
   old session offline, as a service manager would) and a new two-round ``flwr run`` of the
   federated design with all three forces. Its metrics and final model match the simulation
   (same data, same ``training-seed``, so the same sampling and DP noise per force) within
   ``TOLERANCE``; each force's reported epsilon is higher than in the simulation because its
   ledger also holds the fault run's rounds.
5. **Canaries**: no canary VRM or camera id (raw, spaced, lower-case, unkeyed MD5/SHA-256 hex,
   UTF-16), no canary pseudonym or camera token, no raw camera id of the world and no force's
   store path is in any byte the national side wrote: the SuperLink's database (with its
   ``-wal``/``-shm``), its log files, its ``FLWR_HOME`` state folder, the ServerApp's results
   and the operator's CLI folder.

Every process is started through the ``processes`` fixture and stopped by pid (its process
group and every descendant carrying the test's marker) at teardown, pass or fail; the fixture
then asserts that none survived.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from canary import files_under, scan_for
from conftest import CanaryWorld
from flower_world import BACKEND_CONFIG, FlowerWorld, copy_world
from flwr.simulation import run_simulation
from loopback import LoopbackDeployment, free_port
from processes import Processes

from client_force.client_app import make_client_app
from deployment.certs import write_tls_material
from deployment.plan import ForceNode
from federation.flower_settings import FlowerSettings
from privacy.keys import MasterSecretSource
from retention.store import ForceStore
from server_national.checkpoint import load_checkpoint
from server_national.server_app import make_server_app

TOLERANCE = 1e-3
"""Largest difference allowed between deployment and simulation, for every aggregated metric
except the privacy spend (absolute) and every final model weight. Both engines run the same
code with the same seeds; only float summation order (reply arrival, thread counts) differs,
which moves results by ~1e-7."""

FAULT_ROUND_TIMEOUT = 75.0
"""How long round 2 of the fault run waits for replies. Flower marks a killed SuperNode offline
only after two missed 30 s heartbeats, so the server's own round timeout is what bounds the
wait; it must also cover a healthy force starting a ClientApp process on a busy 2-core box."""

FORCES = ("force0", "force1", "force2")
VICTIM = "force2"
PRIVACY_METRICS = ("epsilon-max", "delta-max")


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _settings(world: FlowerWorld, results: Path, **changes: Any) -> FlowerSettings:
    """The study settings of every run here (the same for deployment and simulation)."""
    base = world.settings(
        num_server_rounds=2,
        training_seed=5,
        first_round_timeout=300.0,
        round_timeout=120.0,
        node_wait_timeout=60.0,
        dp_target_epsilon=50.0,  # budget for several runs on the same stores (sigma is fixed)
        fraction_evaluate=1.0,  # federated evaluation is off by default (a charged DP release)
        results_dir=str(results),
    )
    return base.replace(**changes)


def _run_config(settings: FlowerSettings) -> dict[str, Any]:
    """Every setting as a run-config override; deployed nodes find stores by node config."""
    return {**settings.to_run_config(), "node-config-dir": ""}


class Timings(dict):
    """Seconds per stage, printed at the end (``pytest -s``)."""

    def stage(self, name: str, started: float) -> None:
        self[name] = round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------------- stage 2
def _refuse_strangers(dep: LoopbackDeployment, processes: Processes, tmp: Path) -> None:
    """Start every stranger at once; each must exit refused, and nothing gets activated."""
    force0 = dep.plan.force("force0")
    rogue = ForceNode(
        name="rogue",
        store=force0.store,
        key_file=force0.key_file,
        private_key=str(dep.keys["rogue"].private_key),
        public_key=str(dep.keys["rogue"].public_key),
    )
    other_ca = write_tls_material(tmp / "other-ca", ["127.0.0.1"]).ca_cert
    no_ca = dep.plan.supernode_argv(force0)
    at = no_ca.index("--root-certificates")
    wrong_ca = [*no_ca[: at + 1], str(other_ca), *no_ca[at + 2 :]]
    del no_ca[at : at + 2]
    cli_home = tmp / "cli-without-ca"
    cli_home.mkdir()
    (cli_home / "config.toml").write_text(
        f'[superlink]\ndefault = "no-ca"\n\n[superlink.no-ca]\naddress = "{dep.plan.address}"\n'
    )
    # flwr folds a TLS failure into its generic message; the same CLI *with* the CA reaches
    # the same SuperLink at once (below), so the CA is what makes the difference.
    strangers = {
        "unregistered key": (dep.plan.supernode_argv(rogue), "Failed to activate SuperNode"),
        "SuperNode without CA": (no_ca, "CERTIFICATE_VERIFY_FAILED"),
        "SuperNode trusting another CA": (wrong_ca, "CERTIFICATE_VERIFY_FAILED"),
        "flwr CLI without CA": (
            ["flwr", "supernode", "ls", "no-ca"],
            "Connection to the SuperLink is unavailable",
        ),
    }
    started = time.monotonic()
    for i, (what, (argv, _)) in enumerate(strangers.items()):
        argv = list(argv)
        if argv[0] == "flower-supernode":
            argv += ["--port", str(free_port())]  # a Runtime API port of its own
        home = cli_home if argv[0] == "flwr" else tmp / f"stranger-{i}"
        processes.start(what, argv, tmp / f"stranger-{i}.log", env={"FLWR_HOME": str(home)})
    for what, (_, expected) in strangers.items():
        code, output = processes.finish(what, timeout=120)
        text = re.sub(r"[\s│╭╮╰╯─]+", " ", output)
        assert code != 0, f"{what}: not refused\n{output[-2000:]}"
        assert expected in text, f"{what}: refused for another reason\n{output[-2000:]}"
    assert time.monotonic() - started < 120
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{dep.plan.address}/health", timeout=5)  # system trust store only
    with pytest.raises(httpx.HTTPError):  # and nothing is served in clear
        httpx.get(f"http://{dep.plan.address}/health", timeout=5)
    assert dep.activations() == [], "a refused SuperNode was activated"
    log = dep.superlink_log()
    assert "[/v1/fleet/activate-node][ApiError:2004]" in log
    assert "No SuperNode found with the given public key" in log


def _operator_sees_the_forces(dep: LoopbackDeployment) -> None:
    """With the CA, the operator's CLI lists exactly the three registered forces, online."""
    done = dep.cli(["flwr", "supernode", "ls", dep.plan.connection, "--format", "json"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    nodes = json.loads(done.stdout[done.stdout.index("{") :])["nodes"]
    assert sorted(int(n["node-id"]) for n in nodes) == sorted(dep.node_ids.values())
    assert {n["status"] for n in nodes} == {"online"}


# ---------------------------------------------------------------------------- stage 3
def _kill_after_round_one(dep: LoopbackDeployment, settings: FlowerSettings) -> float:
    """Start the fault run; ``SIGKILL`` the victim's SuperNode tree after round 1."""
    results = Path(settings.results_dir)
    run = dep.start_run("flwr-run-fault", _run_config(settings))
    deadline = time.monotonic() + 400
    while not (results / "checkpoints" / "round-0001.npz").exists():
        assert run.alive(), run.log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "round 1 of the fault run never finished"
        time.sleep(0.1)
    killed = dep.processes.kill(f"supernode-{VICTIM}")
    assert len(killed) >= 2, "the SuperNode's own SuperExec was not among the killed"
    return time.time()


def _check_fault_run(dep: LoopbackDeployment, settings: FlowerSettings, killed_at: float) -> float:
    """The run finished round 2 without the victim, recorded it, in bounded time."""
    code, output = dep.processes.finish("flwr-run-fault", timeout=FAULT_ROUND_TIMEOUT + 240)
    assert code == 0 and "Successfully started run" in output, output[-3000:]
    results = Path(settings.results_dir)
    status = _json(results / "status.json")
    assert (status["status"], status["rounds_completed"]) == ("completed", 2), status["error"]
    victim = dep.node_ids[VICTIM]
    rounds = _json(results / "metrics.json")["rounds"]
    first, second = rounds[1]["train"], rounds[2]["train"]
    assert (first["sampled"], first["accepted"]) == (3, 3)
    assert str(victim) in first["nodes"]
    assert (second["sampled"], second["accepted"]) == (3, 2), second
    assert str(victim) not in second["nodes"]
    assert second["aggregated"]["num-replies"] == 2
    failures = _json(results / "failures.json")
    assert [(f["round"], f["node_id"]) for f in failures] == [(2, victim)], failures
    assert failures[0]["reason"] in ("timeout", "error-reply")
    # Bounded: the server gave up on the dead force after one round timeout, not never.
    finished_after = (results / "status.json").stat().st_mtime - killed_at
    assert 0 < finished_after < FAULT_ROUND_TIMEOUT + 90, finished_after
    return finished_after


def _restart_until_active(dep: LoopbackDeployment, force: str, timeout: float = 180.0) -> int:
    """Restart a killed SuperNode; the SuperLink re-activates a node id only once it has
    marked the old session offline (two missed 30 s heartbeats), so an early attempt exits
    refused: retry, as a service manager would. Returns the number of attempts."""
    node_id = dep.node_ids[force]
    before = dep.activations().count(node_id)
    deadline = time.monotonic() + timeout
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        started = dep.start_supernode(force)
        while started.alive() and dep.activations().count(node_id) == before:
            time.sleep(0.3)
        if dep.activations().count(node_id) > before:
            return attempts
        time.sleep(2.0)
    raise AssertionError(f"{force} was not re-activated within {timeout:g} s")


# ---------------------------------------------------------------------------- stage 4
def _run_simulation(world: FlowerWorld, settings: FlowerSettings) -> None:
    run_simulation(
        make_server_app(settings),
        make_client_app(settings),
        num_supernodes=len(world.forces),
        backend_config=BACKEND_CONFIG,
    )
    assert _json(Path(settings.results_dir) / "status.json")["status"] == "completed"


def _compare(deployed: Path, simulated: Path) -> dict[str, float]:
    """Largest differences between the two runs' aggregated metrics and final models."""
    rounds_d = _json(deployed / "metrics.json")["rounds"]
    rounds_s = _json(simulated / "metrics.json")["rounds"]
    assert [r["round"] for r in rounds_d] == [r["round"] for r in rounds_s] == [0, 1, 2]
    worst: dict[str, float] = {}
    for d, s in zip(rounds_d[1:], rounds_s[1:], strict=True):
        for phase in ("train", "evaluate"):
            assert d[phase]["sampled"] == d[phase]["accepted"] == 3, d[phase]
            assert s[phase]["accepted"] == 3
            a, b = d[phase]["aggregated"], s[phase]["aggregated"]
            assert set(a) == set(b)
            for key in set(a) - set(PRIVACY_METRICS):
                diff = abs(float(a[key]) - float(b[key]))
                worst[f"{phase}/{key}"] = max(worst.get(f"{phase}/{key}", 0.0), diff)
            if phase == "train":  # the deployed forces' ledgers also hold the fault run
                assert a["epsilon-max"] > b["epsilon-max"] > 0
                assert a["delta-max"] == pytest.approx(b["delta-max"])
    final_d = load_checkpoint(deployed / "checkpoints" / "final.npz")
    final_s = load_checkpoint(simulated / "checkpoints" / "final.npz")
    assert list(final_d) == list(final_s)
    worst["final-weights"] = max(float(np.max(np.abs(final_d[k] - final_s[k]))) for k in final_d)
    start = load_checkpoint(deployed / "checkpoints" / "round-0000.npz")
    assert any(not np.array_equal(start[k], final_d[k]) for k in final_d), "nothing was trained"
    return worst


# ---------------------------------------------------------------------------- stage 5
def _keyed_needles(world: FlowerWorld, canaries: dict[str, list[str]]) -> list[str]:
    """Each force's keyed pseudonyms of its canary VRMs, tokens of its canary cameras (the
    last two register rows) and its store path."""
    needles = []
    for force in world.forces:
        store = ForceStore.open(force.store, MasterSecretSource.from_key_file(force.key_file))
        planted = canaries[force.name]
        vrms = [c for c in planted if not c.startswith("CANARY-CAM-")]
        needles += store.pseudonymiser().pseudonymise(pa.array(vrms)).to_pylist()
        needles += [str(t) for t in store.read_cameras()["token"].to_pylist()[-2:]]
        needles.append(str(force.store))
    return needles


def _scan_national_side(dep: LoopbackDeployment, cw: CanaryWorld, world: FlowerWorld) -> int:
    """No canary in any byte the national side wrote; returns the bytes scanned."""
    national = dep.root / "national"
    files = list(files_under([national]))
    names = {p.name for p in files}
    assert {"superlink.db", "superlink.log", "status.json", "metrics.json"} <= names, names
    assert any(p.is_relative_to(Path(dep.plan.superlink_home)) for p in files), "no state folder"
    assert scan_for([national], cw.all_canaries) == []
    assert scan_for([national], _keyed_needles(world, cw.canaries)) == []
    raw_camera = re.compile(rb"FORCE\d-CAM-\d{3}")
    assert not [p for p in files if raw_camera.search(p.read_bytes())]
    # Positive controls. Message contents pass through the SuperLink's database files in
    # clear (the final global model sent for the last evaluation is still in their bytes), so
    # a canary in any message would have been found; and the same scanner finds the canary
    # cameras in a force's own register.
    final = load_checkpoint(dep.state_dir / "results" / "federated" / "checkpoints" / "final.npz")
    biggest = max(final.values(), key=lambda a: a.size).astype("<f4").tobytes()[:64]
    database = b"".join(p.read_bytes() for p in dep.state_dir.glob("superlink.db*"))
    assert biggest in database, "the SuperLink database does not hold message bytes in clear"
    control = scan_for([cw.exports["force0"] / "cameras.csv"], cw.canaries["force0"])
    assert {h.needle for h in control} == set(cw.canaries["force0"][-2:])
    return sum(p.stat().st_size for p in files)


# ---------------------------------------------------------------------------- the test
@pytest.mark.slow
def test_loopback_deployment_tls_node_auth_faults_and_canaries(
    canary_world: CanaryWorld, processes: Processes, tmp_path: Path
) -> None:
    timings = Timings()
    t = time.monotonic()
    world = copy_world(canary_world.world, tmp_path / "world")
    dep = LoopbackDeployment.create(
        tmp_path / "deploy",
        {f.name: (f.store, f.key_file) for f in world.forces},
        processes,
        extra_keys=("rogue",),
    )
    dep.start_superlink()
    dep.register_all()
    timings.stage("SuperLink up, 3 forces registered", t)

    t = time.monotonic()
    _refuse_strangers(dep, processes, tmp_path)
    for force in FORCES:
        dep.start_supernode(force)
    dep.wait_activated({n: 1 for n in dep.node_ids.values()})
    _operator_sees_the_forces(dep)
    timings.stage("strangers refused, 3 SuperNodes online", t)

    t = time.monotonic()
    results = dep.state_dir / "results"
    fault = _settings(
        world,
        results / "fault",
        min_available_nodes=2,
        min_replies=2,
        fraction_evaluate=0.0,
        round_timeout=FAULT_ROUND_TIMEOUT,
    )
    killed_at = _kill_after_round_one(dep, fault)
    timings.stage("fault run, round 1", t)

    # While round 2 waits for the dead force, run the simulation of the federated design on
    # a fresh copy of the same stores with the same settings.
    t = time.monotonic()
    sim_world = copy_world(canary_world.world, tmp_path / "sim-world")
    simulated = _settings(sim_world, tmp_path / "simulated")
    _run_simulation(sim_world, simulated)
    timings.stage("simulation (during fault round 2)", t)
    t = time.monotonic()
    timings["fault: kill -> run finished"] = round(_check_fault_run(dep, fault, killed_at), 1)
    timings.stage("fault run, rest of round 2", t)

    t = time.monotonic()
    attempts = _restart_until_active(dep, VICTIM)
    timings.stage(f"{VICTIM} restarted ({attempts} attempt(s))", t)

    t = time.monotonic()
    deployed = _settings(world, results / "federated")
    dep.start_run("flwr-run-federated", _run_config(deployed))
    code, output = processes.finish("flwr-run-federated", timeout=600)
    assert code == 0 and "Successfully started run" in output, output[-3000:]
    assert _json(results / "federated" / "status.json")["status"] == "completed"
    for r in _json(results / "federated" / "metrics.json")["rounds"][1:]:
        assert str(dep.node_ids[VICTIM]) in r["train"]["nodes"]  # it is back
    timings.stage("flwr run, federated design, 2 rounds", t)

    worst = _compare(results / "federated", tmp_path / "simulated")
    print(f"\ndeployment vs simulation, largest differences: {worst}")
    assert max(worst.values()) <= TOLERANCE, worst

    t = time.monotonic()
    scanned = _scan_national_side(dep, canary_world, world)
    timings.stage(f"canary scan ({scanned / 1e6:.1f} MB)", t)
    print(f"timings (s): {dict(timings)}")
