"""DP configuration rules: delta cap, whole steps per epoch, study plan."""

from __future__ import annotations

import pytest

from privacy.dp.config import DPConfig, DPConfigError, check_delta, max_delta


def test_delta_cap_is_one_over_ten_times_vehicles():
    assert max_delta(1000) == pytest.approx(1e-4)
    check_delta(1e-4, 1000)
    with pytest.raises(DPConfigError, match=r"1/\(10 x vehicles\)"):
        check_delta(1.01e-4, 1000)
    with pytest.raises(DPConfigError):
        check_delta(0.0, 1000)


def test_plan_derives_sample_rate_steps_and_default_delta():
    dp = DPConfig.plan(
        n_vehicles=9300, target_epsilon=2.0, expected_batch_size=100, total_rounds=3, local_epochs=2
    )
    assert dp.steps_per_epoch == 93
    assert dp.sample_rate == 1 / 93
    assert dp.steps_per_round == 186 and dp.planned_steps == 558
    assert dp.target_delta == pytest.approx(1 / 93000)


def test_sample_rate_must_give_whole_steps_per_epoch():
    assert DPConfig(target_epsilon=1, target_delta=1e-6, sample_rate=0.01).steps_per_epoch == 100
    with pytest.raises(DPConfigError, match="whole number"):
        DPConfig(target_epsilon=1, target_delta=1e-6, sample_rate=0.015)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_epsilon": 0.0},
        {"target_epsilon": float("inf")},
        {"target_delta": 1.5},
        {"max_grad_norm": 0.0},
        {"total_rounds": 0},
        {"noise_multiplier": -1.0},
        {"orders": (1.0, 2.0)},
    ],
)
def test_invalid_settings_are_rejected(kwargs):
    base = {"target_epsilon": 1.0, "target_delta": 1e-6, "sample_rate": 0.01}
    with pytest.raises(DPConfigError):
        DPConfig(**{**base, **kwargs})
