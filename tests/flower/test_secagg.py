"""SecAgg+: the same result as FedAvg within quantisation error; the server sees only masks.

The SecAgg+ run uses a fresh copy of the same stores and the same settings (seeded DP noise)
as the session's FedAvg run, so both first rounds train identical updates. A test-only mod
inside ``secaggplus_mod`` saves each force's cleartext update (before masking) to disk, and
the server app's recorder keeps what the server received: the masked vectors, and what the
strategy's aggregation step was given.

Tolerance: with K forces, clipping range C, quantisation range Q and example counts n_i
(weight W), force i's weight is quantised to q_i = round(n_i Q / W) and each coordinate of its
scaled update to a step of 2C/Q (stochastic rounding: error below one step). The dequantised
sum is divided by sum(q_i)/Q, so the aggregate differs from the exact weighted mean by at most
(2 C K + K max|w|) / sum(q_i): the first term from value quantisation, the second from weight
rounding. A float32 rounding allowance of 1e-6 is added.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import ray.cloudpickle
from flower_world import BACKEND_CONFIG, SIMULATION_SETTINGS, FedAvgRun, FlowerWorld
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.simulation import run_simulation

from client_force.secagg_client import make_secagg_client_app
from server_national.checkpoint import load_checkpoint
from server_national.secagg_app import make_secagg_server_app
from server_national.secagg_guard import SecAggRecorder

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _recording_mod(directory: Path):
    """Inside secaggplus_mod: save the cleartext fit result of each force (test only)."""

    def record(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(message, context)
        if message.metadata.message_type == MessageType.TRAIN and reply.has_content():
            fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
            server_round = int(message.content["fitins.config"]["server-round"])
            np.savez(
                directory / f"round{server_round}-node{context.node_id}.npz",
                *parameters_to_ndarrays(fitres.parameters),
                num_examples=np.array(fitres.num_examples),
            )
        return reply

    return record


def _cleartext(directory: Path, server_round: int) -> dict[int, tuple[list[np.ndarray], int]]:
    out = {}
    for path in sorted(directory.glob(f"round{server_round}-node*.npz")):
        node = int(path.stem.split("-node")[1])
        with np.load(path) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(data.files) - 1)]
            out[node] = (arrays, int(data["num_examples"]))
    return out


def test_secagg_matches_fedavg_and_the_server_never_sees_an_update(
    world: FlowerWorld, fedavg_run: FedAvgRun, tmp_path: Path
) -> None:
    settings = world.settings(**SIMULATION_SETTINGS)
    assert settings.replace(results_dir="", node_config_dir="") == fedavg_run.settings.replace(
        results_dir="", node_config_dir=""
    )
    clear_dir = tmp_path / "cleartext"
    clear_dir.mkdir()
    recorder = SecAggRecorder()
    run_simulation(
        make_secagg_server_app(settings, recorder),
        make_secagg_client_app(settings, inner_mods=[_recording_mod(clear_dir)]),
        num_supernodes=len(world.forces),
        backend_config=BACKEND_CONFIG,
    )
    results = Path(settings.results_dir)
    status = json.loads((results / "status.json").read_text())
    assert (status["status"], status["rounds_completed"]) == ("completed", 2)
    assert json.loads((results / "rejections.json").read_text()) == []
    train = json.loads((results / "metrics.json").read_text())["rounds"][1]["train"]
    assert (train["sampled"], train["accepted"], train["aggregated"]["num-replies"]) == (3, 3, 3)

    updates = _cleartext(clear_dir, 1)
    assert len(updates) == 3
    n = {node: count for node, (_, count) in updates.items()}
    names = list(load_checkpoint(results / "checkpoints" / "round-0001.npz"))
    exact = [
        sum(updates[node][0][i].astype(np.float64) * n[node] for node in updates) / sum(n.values())
        for i in range(len(names))
    ]
    C, Q, W, K = (
        settings.secagg_clipping_range,
        settings.secagg_quantization_range,
        settings.secagg_max_weight,
        len(updates),
    )
    sum_q = sum(round(count / W * Q) for count in n.values())
    max_w = max(float(np.abs(a).max()) for arrays, _ in updates.values() for a in arrays)
    tolerance = (2 * C * K + K * max_w) / sum_q + 1e-6
    assert tolerance < 1e-3  # meaningful next to the size of a round's update

    secagg_round1 = load_checkpoint(results / "checkpoints" / "round-0001.npz")
    fedavg_round1 = load_checkpoint(fedavg_run.results / "checkpoints" / "round-0001.npz")
    start = load_checkpoint(results / "checkpoints" / "round-0000.npz")
    for i, name in enumerate(names):
        assert np.abs(secagg_round1[name] - exact[i]).max() <= tolerance
        assert np.abs(secagg_round1[name] - fedavg_round1[name]).max() <= tolerance
    moved = max(float(np.abs(secagg_round1[k] - start[k]).max()) for k in names)
    assert moved > 100 * tolerance

    # What the server received from each force: masked integers spread over [0, 2^32), not the
    # force's quantised update (which lies in [0, Q]).
    masked = recorder.masked_vectors[1]
    assert set(masked) == set(updates)
    for node, vectors in masked.items():
        weight_factor, *arrays = vectors
        assert weight_factor.shape == (1,) and len(arrays) == len(names)
        values = np.concatenate([a.ravel() for a in arrays])
        assert (values > Q).mean() > 0.9
        d = round(n[node] / W * Q) / Q
        clear = np.concatenate([(d * a.ravel() + C) * Q / (2 * C) for a in updates[node][0]])
        assert np.abs(values - clear).mean() > 1e6

    # What the strategy's aggregation step received: the same aggregate for every force, which
    # is no single force's update.
    inputs = recorder.aggregate_inputs[1]
    assert set(inputs) == set(updates)
    first = next(iter(inputs.values()))
    for arrays in inputs.values():
        assert all(np.array_equal(a, b) for a, b in zip(arrays, first, strict=True))
    for i in range(len(names)):
        assert np.abs(first[i] - exact[i]).max() <= tolerance
    for arrays, _ in updates.values():
        gap = max(float(np.abs(a - b).max()) for a, b in zip(first, arrays, strict=True))
        assert gap > 10 * tolerance
