"""Physical chunks of a logical DP-SGD batch: bounded memory, the same mechanism and weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from client_force.dp_trainer import DPRunResult, make_generator, run_dp_sgd
from client_force.gradient_canaries import GradientCanaries
from federation.features.schema import READ_FEATURES, SUMMARY_FEATURES
from federation.model import ModelConfig, TrajectoryModel

N, READS, SAMPLE_RATE = 600, 12, 0.1  # logical batches of ~60 vehicles


@pytest.fixture(scope="module")
def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    seqs = torch.randn(N, READS, len(READ_FEATURES), generator=g)
    mask = torch.rand(N, READS, generator=g) < 0.8
    summary = torch.randn(N, len(SUMMARY_FEATURES), generator=g)
    labels = (seqs[:, :, 0].mean(1) > 0.2).float()  # something to learn
    return TensorDataset(seqs, mask, summary, labels)


def _model() -> TrajectoryModel:
    torch.manual_seed(0)
    return TrajectoryModel(ModelConfig(hidden=8, n_conv_layers=1))


def _train(
    dataset: TensorDataset,
    model: nn.Module,
    max_physical_batch: int | None,
    probes: GradientCanaries | None = None,
) -> DPRunResult:
    return run_dp_sgd(
        model,
        dataset,
        prior_history=[],
        noise_multiplier=1.0,
        sample_rate=SAMPLE_RATE,
        max_grad_norm=1.0,
        epochs=2,
        # SGD, not Adam: Adam is nearly scale-invariant and would hide a wrongly scaled step
        make_optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
        loss_fn=nn.BCEWithLogitsLoss(),
        generator=make_generator(11),
        probes=probes,
        probe_generator=make_generator(12) if probes is not None else None,
        max_physical_batch=max_physical_batch,
    )


def test_chunks_bound_the_rows_held_at_once(dataset: TensorDataset) -> None:
    model = _model()
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    try:
        # the hook stays on the deep copy run_dp_sgd trains
        result = _train(dataset, model, max_physical_batch=7)
    finally:
        handle.remove()
    assert max(sizes) <= 7
    assert sum(sizes) > 2 * N * SAMPLE_RATE * 10 * 0.8  # every sampled vehicle went through
    assert len(sizes) > result.steps * 5  # split: many more forward passes than noised steps


@pytest.mark.parametrize("with_probes", [False, True])
def test_chunked_steps_are_the_unsplit_mechanism(dataset: TensorDataset, with_probes: bool) -> None:
    probes = None
    if with_probes:  # audit canaries are added once per noised step, not once per chunk
        n_params = sum(p.numel() for p in _model().parameters())
        probes = GradientCanaries(np.arange(0, n_params, 17, dtype=np.int64))
    whole = _train(dataset, _model(), max_physical_batch=None, probes=probes)  # one pass
    chunked = _train(dataset, _model(), max_physical_batch=7, probes=probes)
    assert chunked.history == whole.history == [(1.0, SAMPLE_RATE, 20)]
    assert chunked.steps == whole.steps
    start = _model().state_dict()
    moved = max(float((whole.state_dict[k] - start[k]).abs().max()) for k in start)
    for name, value in whole.state_dict.items():
        assert torch.allclose(chunked.state_dict[name], value, atol=1e-6), name
    assert moved > 1000 * 1e-6  # the tolerance is small next to what training changed
    assert chunked.mean_loss == pytest.approx(whole.mean_loss, rel=1e-5)


def test_a_physical_batch_below_one_is_refused(dataset: TensorDataset) -> None:
    with pytest.raises(ValueError, match="max_physical_batch"):
        _train(dataset, _model(), max_physical_batch=0)
