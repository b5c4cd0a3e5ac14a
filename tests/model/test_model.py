"""Trajectory model: weight contract, Opacus compatibility, masking, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from federation.features import align_labels, build_examples, split_examples
from federation.metrics import pr_auc
from federation.model import (
    ModelConfig,
    SummaryLogistic,
    TemporalConv,
    TrajectoryModel,
    example_tensors,
    get_weights,
    predict_scores,
    set_weights,
    weight_spec,
)
from research.synth.toyworld import make_toy_world


def _examples(n_cameras: int, max_reads: int, seed: int = 0):
    w = make_toy_world(n_vehicles=80, n_cameras=n_cameras, seed=seed)
    return build_examples(w.reads, w.cameras, w.window_start, w.window_end, max_reads=max_reads)


def test_no_parameter_shape_depends_on_cameras_vehicles_or_reads():
    small = _examples(n_cameras=4, max_reads=16, seed=1)
    large = _examples(n_cameras=400, max_reads=96, seed=2)
    specs = []
    for ex in (small, large):
        config = ModelConfig(
            n_read_features=ex.n_read_features, n_summary_features=ex.n_summary_features
        )
        model = TrajectoryModel(config)
        logits = model(*example_tensors(ex))
        assert logits.shape == (len(ex),)
        specs.append(weight_spec(config))
        assert [
            (n, tuple(a.shape), str(a.dtype))
            for n, a in zip([s[0] for s in specs[-1]], get_weights(model), strict=True)
        ] == specs[-1]
    assert specs[0] == specs[1]
    assert all(dtype == "float32" for _, _, dtype in specs[0])


def test_weight_spec_is_fixed_by_the_config_alone():
    spec = weight_spec(ModelConfig(hidden=8, kernel_size=3, n_conv_layers=1))
    assert spec == [
        ("read_embed.weight", (8, 19), "float32"),
        ("read_embed.bias", (8,), "float32"),
        ("conv_blocks.0.window.weight", (8, 24), "float32"),
        ("conv_blocks.0.window.bias", (8,), "float32"),
        ("attn_score.weight", (1, 8), "float32"),
        ("attn_score.bias", (1,), "float32"),
        ("head_hidden.weight", (8, 16 + 24), "float32"),
        ("head_hidden.bias", (8,), "float32"),
        ("head_out.weight", (1, 8), "float32"),
        ("head_out.bias", (1,), "float32"),
    ]


@pytest.mark.parametrize("model", [TrajectoryModel(ModelConfig()), SummaryLogistic()])
def test_opacus_module_validator_passes(model):
    assert ModuleValidator.validate(model, strict=False) == []
    ModuleValidator.validate(model, strict=True)  # raises if unsupported


def test_get_set_weights_round_trip_and_checks():
    a, b = TrajectoryModel(ModelConfig(hidden=8)), TrajectoryModel(ModelConfig(hidden=8))
    set_weights(b, get_weights(a))
    for x, y in zip(get_weights(a), get_weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    arrays = get_weights(a)
    with pytest.raises(ValueError, match="shape"):
        set_weights(b, [arrays[0][:, :3], *arrays[1:]])
    with pytest.raises(ValueError, match="dtype"):
        set_weights(b, [arrays[0].astype(np.float64), *arrays[1:]])
    with pytest.raises(ValueError, match="expected"):
        set_weights(b, arrays[:-1])
    bad = [a.copy() for a in arrays]
    bad[2][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        set_weights(b, bad)


def test_temporal_conv_is_a_same_padded_conv1d():
    torch.manual_seed(0)
    layer = TemporalConv(6, 5)
    conv = nn.Conv1d(6, 6, 5, padding=2)
    with torch.no_grad():
        # window weight [out, k*in] laid out as k blocks of `in` -> Conv1d [out, in, k]
        conv.weight.copy_(layer.window.weight.view(6, 5, 6).permute(0, 2, 1))
        conv.bias.copy_(layer.window.bias)
    h = torch.randn(3, 11, 6)
    np.testing.assert_allclose(
        layer(h).detach().numpy(),
        conv(h.transpose(1, 2)).transpose(1, 2).detach().numpy(),
        atol=1e-5,
    )


def test_padding_length_does_not_change_a_vehicles_score():
    short = _examples(n_cameras=20, max_reads=200)
    long = _examples(n_cameras=20, max_reads=400)
    assert short.mask.sum() == long.mask.sum()  # no vehicle hits the cap
    model = TrajectoryModel(ModelConfig(hidden=8))
    np.testing.assert_allclose(predict_scores(model, short), predict_scores(model, long), rtol=1e-5)


def test_the_sequence_model_learns_a_planted_pattern_from_reads_alone():
    """Summary features off: the model must find the nightly shuttle in the read sequence."""
    torch.manual_seed(0)
    w = make_toy_world(n_vehicles=500, n_cameras=30, days=21, prevalence=0.1, seed=5)
    ex = build_examples(w.reads, w.cameras, w.window_start, w.window_end, max_reads=48)
    y = align_labels(ex.vehicles, w.labels)
    train, test = split_examples(y, test_fraction=0.4, seed=0)
    model = TrajectoryModel(ModelConfig(hidden=16, use_summary=False))
    untrained = pr_auc(y[test], predict_scores(model, ex.subset(test)))
    seqs, mask, summary = example_tensors(ex.subset(train))
    target = torch.from_numpy(y[train])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(
            model(seqs, mask, summary), target
        ).backward()
        optimizer.step()
    trained = pr_auc(y[test], predict_scores(model, ex.subset(test)))
    prevalence = y[test].mean()
    assert trained > 0.85 > 3 * prevalence
    assert trained > untrained + 0.2


def test_reference_scaling_covers_every_feature_and_is_not_a_weight():
    from federation.features import READ_FEATURES, SUMMARY_FEATURES
    from federation.features.scaling import read_scaling, summary_scaling

    (rc, rs), (sc, ss) = read_scaling(), summary_scaling()
    assert rc.shape == rs.shape == (len(READ_FEATURES),)
    assert sc.shape == ss.shape == (len(SUMMARY_FEATURES),)
    assert (rs >= 0.1).all() and (ss >= 0.1).all()
    names = [n for n, _, _ in weight_spec(ModelConfig())]
    assert names == [n for n, _ in TrajectoryModel(ModelConfig()).named_parameters()]
    assert not list(TrajectoryModel(ModelConfig()).buffers())
    # standardisation changes the output, so it is really applied
    ex = _examples(n_cameras=10, max_reads=16)
    torch.manual_seed(0)
    a = TrajectoryModel(ModelConfig(hidden=8))
    b = TrajectoryModel(ModelConfig(hidden=8, standardise=False))
    set_weights(b, get_weights(a))
    assert not np.allclose(predict_scores(a, ex), predict_scores(b, ex))


def test_output_starts_at_the_prior_prevalence():
    model = TrajectoryModel(ModelConfig(hidden=8, prior_prevalence=0.02))
    assert torch.sigmoid(model.head_out.bias).item() == pytest.approx(0.02)
    with pytest.raises(ValueError, match="feature counts"):
        ModelConfig(n_read_features=5)
    assert TrajectoryModel(ModelConfig(n_read_features=5, standardise=False, hidden=4))
