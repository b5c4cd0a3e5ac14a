"""Bootstrap intervals over held-out vehicles: a random ranking shows no skill, a good one does."""

from __future__ import annotations

import numpy as np

from research.study.resampling import (
    NO_SKILL,
    SKILL,
    paired_difference,
    pr_auc_interval,
    random_ranking_pr_auc,
    skill_label,
    unpaired_difference,
)


def _world(seed: int, n: int = 1500, prevalence: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < prevalence).astype(np.float64)
    strata = rng.integers(0, 4, n)
    return truth, strata


def test_a_random_scorer_is_read_as_no_skill() -> None:
    """Across seeds, the interval of a random ranking reaches down to chance (the expected
    PR-AUC of a random ranking) in about 97.5% of runs; the prevalence alone would call
    about one random ranking in five skilled."""
    clear_of_expected = clear_of_prevalence = 0
    for seed in range(20):
        truth, strata = _world(seed)
        scores = np.random.default_rng(100 + seed).random(len(truth))
        auc, _ = pr_auc_interval(scores, truth, strata, replicates=300, seed=seed)
        expected = random_ranking_pr_auc(int(truth.sum()), len(truth))
        clear_of_expected += skill_label(auc, expected) != NO_SKILL
        clear_of_prevalence += skill_label(auc, truth.mean()) != NO_SKILL
    assert clear_of_expected <= 2
    assert clear_of_prevalence >= clear_of_expected


def test_the_expected_pr_auc_of_a_random_ranking_matches_simulation() -> None:
    from federation.metrics import pr_auc

    rng = np.random.default_rng(0)
    for positives, vehicles in ((5, 300), (20, 400)):
        y = np.zeros(vehicles)
        y[:positives] = 1
        simulated = np.mean([pr_auc(y, rng.random(vehicles)) for _ in range(3000)])
        expected = random_ranking_pr_auc(positives, vehicles)
        assert abs(simulated - expected) < 0.05 * expected
        assert expected > positives / vehicles  # above the prevalence with few positives
    assert random_ranking_pr_auc(5, 300) > 1.9 * 5 / 300


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
