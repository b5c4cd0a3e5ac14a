"""LiRA and loss-threshold scoring on arrays (no model training)."""

from __future__ import annotations

import numpy as np
import pytest

from research.audit import (
    lira_scores,
    logit_confidence,
    loss_scores,
    roc_curve,
    run_shadows,
    shadow_assignment,
)


def test_logit_confidence_and_loss_are_exact_for_confident_models() -> None:
    logits = np.array([40.0, -40.0, 0.0, 3.0])
    labels = np.array([1.0, 1.0, 0.0, 0.0])
    assert logit_confidence(logits, labels).tolist() == [40.0, -40.0, -0.0, -3.0]
    loss = -loss_scores(logits, labels)
    assert loss[0] == pytest.approx(np.exp(-40.0))  # no saturation to 0
    assert loss[1] == pytest.approx(40.0)
    assert loss[2] == pytest.approx(np.log(2.0))
    with pytest.raises(ValueError, match="0/1"):
        logit_confidence(logits, np.array([1.0, 2.0, 0.0, 0.0]))


def test_shadow_assignment_is_balanced_per_example() -> None:
    a = shadow_assignment(1001, 8, np.random.default_rng(0))
    assert a.shape == (8, 1001)
    assert (a.sum(axis=0) == 4).all()
    assert abs(a.sum(axis=1).mean() - 500.5) < 1e-9
    with pytest.raises(ValueError, match="even number"):
        shadow_assignment(10, 3, np.random.default_rng(0))


def test_lira_uses_per_example_calibration() -> None:
    # Each example has its own difficulty (OUT mean) and membership adds +1.5 to phi. A global
    # loss threshold is swamped by the difficulty spread; LiRA, calibrated per example by the
    # shadows, separates members well, most of all at low false-positive rates.
    rng = np.random.default_rng(1)
    n, k = 2000, 16
    difficulty = rng.normal(0, 4, n)
    member = rng.random(n) < 0.5
    assignment = shadow_assignment(n, k, rng)

    def shadow(in_mask: np.ndarray, index: int) -> np.ndarray:
        return difficulty + 1.5 * in_mask + rng.normal(0, 0.5, n)

    shadow_phi = run_shadows(shadow, assignment)
    target = difficulty + 1.5 * member + rng.normal(0, 0.5, n)
    global_auc = roc_curve(target, member).auc
    online = roc_curve(lira_scores(target, shadow_phi, assignment), member)
    offline = roc_curve(lira_scores(target, shadow_phi, assignment, online=False), member)
    assert global_auc < 0.65
    assert online.auc > 0.9 and offline.auc > 0.85
    assert online.tpr_at_fpr(0.01) > 0.3 > roc_curve(target, member).tpr_at_fpr(0.01)
    per_example = lira_scores(target, shadow_phi, assignment, fixed_variance=False)
    assert roc_curve(per_example, member).auc > 0.85


def test_lira_scores_have_no_signal_without_membership_effect() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    difficulty = rng.normal(0, 2, n)
    member = rng.random(n) < 0.5
    assignment = shadow_assignment(n, 8, rng)
    shadow_phi = run_shadows(lambda m, i: difficulty + rng.normal(0, 0.5, n), assignment)
    target = difficulty + rng.normal(0, 0.5, n)
    assert abs(roc_curve(lira_scores(target, shadow_phi, assignment), member).auc - 0.5) < 0.04


def test_run_shadows_rejects_bad_shadow_output() -> None:
    assignment = shadow_assignment(4, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected 4 scores"):
        run_shadows(lambda m, i: np.zeros(3), assignment)
    with pytest.raises(ValueError, match="non-finite"):
        run_shadows(lambda m, i: np.full(4, np.nan), assignment)
