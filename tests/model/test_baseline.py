"""The logistic-regression baseline fits its optimum and ranks a planted signal."""

from __future__ import annotations

import numpy as np
import pytest

from federation.features import align_labels, build_examples, split_examples
from federation.metrics import pr_auc
from research.baseline import fit_logistic, train_baseline
from research.synth.toyworld import make_toy_world


def test_fit_reaches_the_penalised_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, 0, 0, 2]
    true_w = np.array([1.5, -0.2, 4.0, 0.0, 0.5])
    y = (rng.random(400) < 1 / (1 + np.exp(-(x @ true_w - 1)))).astype(float)
    model = fit_logistic(x, y, l2=2.0)
    z = (x - model.mean) / model.scale
    p = 1 / (1 + np.exp(-(z @ model.coef + model.intercept)))
    grad_w = z.T @ (p - y) + 2.0 * model.coef
    grad_b = (p - y).sum()
    assert np.abs(grad_w).max() < 1e-6 and abs(grad_b) < 1e-6
    assert np.sign(model.coef[0]) == 1 and np.sign(model.coef[2]) == 1


def test_baseline_ranks_the_toy_world_well_above_prevalence():
    w = make_toy_world(n_vehicles=400, seed=8)
    ex = build_examples(w.reads, w.cameras, w.window_start, w.window_end, max_reads=32)
    y = align_labels(ex.vehicles, w.labels)
    train, test = split_examples(y, test_fraction=0.5, seed=1)
    scores = train_baseline(ex.subset(train), y[train], eval_examples=ex.subset(test))
    assert pr_auc(y[test], scores) > 0.7 > 5 * y[test].mean()


def test_baseline_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(np.zeros((3, 2)), np.zeros(3))
