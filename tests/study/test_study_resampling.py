"""Bootstrap intervals over held-out vehicles: a random ranking shows no skill, a good one does."""

from __future__ import annotations

import numpy as np

from research.study.resampling import (
    NO_SKILL,
    SKILL,
    paired_difference,
    pr_auc_interval,
    skill_label,
    unpaired_difference,
)


def _world(seed: int, n: int = 1500, prevalence: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < prevalence).astype(np.float64)
    strata = rng.integers(0, 4, n)
    return truth, strata


def test_a_random_scorer_is_read_as_no_skill() -> None:
    """Across seeds, the interval of a random ranking covers chance (about 95% of the time)."""
    covered = lift_covered = 0
    for seed in range(20):
        truth, strata = _world(seed)
        scores = np.random.default_rng(100 + seed).random(len(truth))
        auc, lift = pr_auc_interval(scores, truth, strata, replicates=300, seed=seed)
        chance = truth.mean()
        covered += auc.low <= chance <= auc.high
        lift_covered += lift.low <= 1.0 <= lift.high  # a random ranking's lift is about 1
    # (a random ranking's average precision sits slightly above the prevalence when positives
    # are few, so lift's interval misses 1 a little more often than PR-AUC's misses chance)
    assert covered >= 17 and lift_covered >= 15


def test_an_informative_scorer_beats_chance_with_its_interval_clear() -> None:
    truth, strata = _world(1)
    scores = truth * 1.5 + np.random.default_rng(2).normal(size=len(truth))
    auc, lift = pr_auc_interval(scores, truth, strata, replicates=300)
    chance = truth.mean()
    assert auc.low > chance and skill_label(auc, chance) == SKILL
    assert lift.low > 1 and auc.low <= auc.estimate <= auc.high


def test_no_positive_gives_no_interval_and_no_skill() -> None:
    auc, lift = pr_auc_interval(np.arange(10.0), np.zeros(10))
    assert np.isnan(auc.estimate) and np.isnan(lift.low)
    assert skill_label(auc, 0.0) == NO_SKILL


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    truth, strata = _world(3)
    scores = np.random.default_rng(4).random(len(truth))
    diff = paired_difference(scores, scores, truth, strata, replicates=200)
    assert diff.estimate == diff.low == diff.high == 0.0


def test_pairing_narrows_the_interval_of_two_related_models() -> None:
    """Two models that share most of their signal: the paired interval is the narrower one,
    because which vehicles were held out affects both alike."""
    truth, strata = _world(5)
    rng = np.random.default_rng(6)
    base = truth * 1.2 + rng.normal(size=len(truth))
    better = base + truth * 0.4
    paired = paired_difference(better, base, truth, strata, replicates=300)
    unpaired = unpaired_difference((better, truth, strata), (base, truth, strata), replicates=300)
    assert paired.estimate == unpaired.estimate > 0
    assert paired.high - paired.low < 0.6 * (unpaired.high - unpaired.low)
    assert paired.excludes(0.0)


def test_paired_difference_refuses_different_held_out_sets() -> None:
    import pytest

    with pytest.raises(ValueError, match="same held-out vehicles"):
        paired_difference(np.zeros(5), np.zeros(6), np.zeros(5))


def test_a_replicate_scores_exactly_as_pr_auc_on_the_resampled_vehicles() -> None:
    """The O(n) replicate (counts over vehicles sorted once) equals pr_auc of the resample,
    ties of drawn copies included."""
    from federation.metrics import pr_auc
    from research.study.resampling import _SortedScores, resample_indices

    truth, strata = _world(8, n=400, prevalence=0.1)
    scores = np.round(np.random.default_rng(9).random(len(truth)), 2)  # many ties
    model = _SortedScores(scores, truth)
    for idx in resample_indices(strata, 25, np.random.default_rng(10)):
        counts = np.bincount(idx, minlength=len(truth))
        assert abs(model.average_precision(counts) - pr_auc(truth[idx], scores[idx])) < 1e-12
