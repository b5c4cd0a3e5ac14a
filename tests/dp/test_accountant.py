"""The force's RDP accountant: Opacus-exact, composable, calibrated, and cross-checked."""

from __future__ import annotations

import pytest

from privacy.dp.accountant import calibrate_noise_multiplier, epsilon_for, make_accountant
from privacy.dp.config import DEFAULT_ORDERS
from privacy.dp.crosscheck import dp_accounting_epsilon

HISTORY = [(1.1, 0.01, 100), (0.9, 1 / 93, 930), (2.5, 0.05, 40)]


def test_epsilon_equals_opacus_rdp_accountant():
    for delta in (1e-5, 1e-7):
        ours = epsilon_for(HISTORY, delta)
        theirs = make_accountant(HISTORY).get_privacy_spent(
            delta=delta, alphas=list(DEFAULT_ORDERS)
        )
        assert ours == pytest.approx(theirs, rel=1e-12)


def test_composition_does_not_depend_on_how_steps_are_split():
    split = [(1.1, 0.01, 40), (0.9, 1 / 93, 930), (1.1, 0.01, 60), (2.5, 0.05, 40)]
    assert epsilon_for(split, 1e-5)[0] == pytest.approx(epsilon_for(HISTORY, 1e-5)[0], rel=1e-12)
    assert epsilon_for([], 1e-5)[0] == 0.0
    # more steps never cost less
    assert epsilon_for([*HISTORY, (5.0, 0.01, 1)], 1e-5)[0] > epsilon_for(HISTORY, 1e-5)[0]


@pytest.mark.parametrize("target", [0.5, 2.0, 8.0])
def test_calibration_spends_at_most_the_target_and_not_much_less(target):
    sigma = calibrate_noise_multiplier(target, 1e-5, 0.02, 500)
    spent = epsilon_for([(sigma, 0.02, 500)], 1e-5)[0]
    assert spent <= target
    assert spent > 0.98 * target
    assert epsilon_for([(sigma * 0.99, 0.02, 500)], 1e-5)[0] > spent


@pytest.mark.parametrize("delta", [1e-5, 1e-8])
def test_dp_accounting_agrees_within_one_percent(delta):
    ours = epsilon_for(HISTORY, delta)[0]
    independent = dp_accounting_epsilon(HISTORY, delta, DEFAULT_ORDERS)
    assert abs(ours - independent) / independent < 0.01


@pytest.mark.parametrize(
    ("target", "sample_rate", "steps"),
    [(1.0, 0.046, 66), (4.0, 0.046, 66), (8.0, 0.046, 66), (0.3, 0.005, 2000), (20.0, 0.2, 30)],
)
def test_two_stage_calibration_matches_a_search_over_every_order(target, sample_rate, steps):
    """The fast path (integer orders first) lands where a plain search over all orders does."""
    from privacy.dp.accountant import _search

    fast = calibrate_noise_multiplier(target, 1e-5, sample_rate, steps)
    direct = _search(target, 1e-5, sample_rate, steps, DEFAULT_ORDERS)
    assert epsilon_for([(fast, sample_rate, steps)], 1e-5)[0] <= target
    assert fast == pytest.approx(direct, rel=2e-3)
