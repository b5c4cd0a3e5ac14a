"""Starting from a public pre-trained file: the encoder only, or every weight, checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from federation.model import (
    ENCODER_PREFIXES,
    ModelConfig,
    TrajectoryModel,
    get_weights,
    load_initial_weights,
    weight_spec,
    weights_npz_bytes,
)


def _public_file(tmp_path, config):
    torch.manual_seed(123)
    model = TrajectoryModel(config)
    path = tmp_path / "public.npz"
    path.write_bytes(weights_npz_bytes(model))
    return path, get_weights(model)


def test_encoder_only_takes_the_encoder_and_keeps_the_seeded_head(tmp_path):
    config = ModelConfig(hidden=8, n_conv_layers=1)
    path, public = _public_file(tmp_path, config)
    torch.manual_seed(5)
    seeded = get_weights(TrajectoryModel(config))
    loaded = load_initial_weights(config, path, seed=5, encoder_only=True)
    names = [n for n, _, _ in weight_spec(config)]
    assert any(n.startswith(ENCODER_PREFIXES) for n in names)
    assert any(not n.startswith(ENCODER_PREFIXES) for n in names)
    for name, got, pub, own in zip(names, loaded, public, seeded, strict=True):
        expected = pub if name.startswith(ENCODER_PREFIXES) else own
        np.testing.assert_array_equal(got, expected, err_msg=name)
    full = load_initial_weights(config, path, seed=5)
    for got, pub in zip(full, public, strict=True):
        np.testing.assert_array_equal(got, pub)


def test_a_file_for_another_model_is_refused_naming_the_array(tmp_path):
    path, _ = _public_file(tmp_path, ModelConfig(hidden=8, n_conv_layers=1))
    with pytest.raises(ValueError, match=r"read_embed\.weight"):
        load_initial_weights(ModelConfig(hidden=16, n_conv_layers=1), path, seed=0)
