"""DP-SGD settings for one study at one force, and the rules they must satisfy.

The unit of privacy is a vehicle: one training example is one vehicle's reads, and Poisson
sampling includes each vehicle in each step independently with probability ``sample_rate``.
The study plan (rounds x local epochs x steps per epoch) is known up front, so the noise
multiplier is calibrated once so that the whole study spends at most ``target_epsilon`` at
``target_delta`` (see ``accountant.calibrate_noise_multiplier``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]
)
"""RDP orders: Opacus's ``RDPAccountant.DEFAULT_ALPHAS``, stored in every ledger entry and
used unchanged by the independent dp-accounting cross-check."""

DELTA_FACTOR = 10
"""delta must be at most 1 / (DELTA_FACTOR x number of vehicles)."""


class DPConfigError(ValueError):
    """A DP setting that is invalid or unsafe (e.g. delta too large for the dataset)."""


def max_delta(n_vehicles: int) -> float:
    """The largest delta allowed for a dataset of ``n_vehicles`` examples: 1 / (10 n)."""
    if n_vehicles < 1:
        raise DPConfigError("a DP dataset needs at least one vehicle")
    return 1.0 / (DELTA_FACTOR * n_vehicles)


def check_delta(delta: float, n_vehicles: int) -> None:
    """Raise ``DPConfigError`` unless ``0 < delta <= 1 / (10 x n_vehicles)``."""
    cap = max_delta(n_vehicles)
    if not 0.0 < delta <= cap:
        raise DPConfigError(
            f"delta={delta:.3g} is not allowed for {n_vehicles} vehicles: it must be positive "
            f"and at most 1/(10 x vehicles) = {cap:.3g}"
        )


@dataclass(frozen=True)
class DPConfig:
    """Vehicle-level DP-SGD settings for one study at one force.

    Attributes:
        target_epsilon: epsilon the whole study may spend at this force (at ``target_delta``).
        target_delta: delta of the guarantee; must be <= 1/(10 x vehicles) when training.
        sample_rate: Poisson sampling probability q per step. 1/q must be a whole number of
            steps per epoch (Opacus runs int(1/q) steps per epoch); use ``DPConfig.plan``.
        total_rounds: federated rounds the study will run.
        local_epochs: local epochs per round.
        max_grad_norm: per-vehicle gradient clipping norm C.
        noise_multiplier: sigma; None means calibrate from the plan (the normal case).
        orders: RDP orders of the accountant.
    """

    target_epsilon: float
    target_delta: float
    sample_rate: float
    total_rounds: int = 1
    local_epochs: int = 1
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    orders: tuple[float, ...] = field(default=DEFAULT_ORDERS)

    def __post_init__(self) -> None:
        if not (self.target_epsilon > 0 and math.isfinite(self.target_epsilon)):
            raise DPConfigError(
                f"target_epsilon must be positive and finite; got {self.target_epsilon}"
            )
        if not 0.0 < self.target_delta < 1.0:
            raise DPConfigError(f"target_delta must be in (0, 1); got {self.target_delta}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise DPConfigError(f"sample_rate must be in (0, 1]; got {self.sample_rate}")
        steps = round(1.0 / self.sample_rate)
        if abs(steps - 1.0 / self.sample_rate) > 1e-6 * steps:
            raise DPConfigError(
                f"1/sample_rate must be a whole number of steps per epoch; got sample_rate="
                f"{self.sample_rate} (use DPConfig.plan to derive it from a batch size)"
            )
        object.__setattr__(self, "sample_rate", 1.0 / steps)
        for name in ("total_rounds", "local_epochs"):
            if getattr(self, name) < 1:
                raise DPConfigError(f"{name} must be at least 1")
        if not self.max_grad_norm > 0:
            raise DPConfigError(f"max_grad_norm must be positive; got {self.max_grad_norm}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise DPConfigError(f"noise_multiplier must be positive; got {self.noise_multiplier}")
        object.__setattr__(self, "orders", tuple(float(a) for a in self.orders))
        if min(self.orders) <= 1.0:
            raise DPConfigError("RDP orders must all be greater than 1")

    @classmethod
    def plan(
        cls,
        *,
        n_vehicles: int,
        target_epsilon: float,
        expected_batch_size: int = 256,
        total_rounds: int = 1,
        local_epochs: int = 1,
        max_grad_norm: float = 1.0,
        target_delta: float | None = None,
    ) -> DPConfig:
        """A config for a dataset of ``n_vehicles``: q = 1/round(n / batch), delta default 1/(10n).

        The default delta is the largest the rules allow; pass a smaller one for a stronger
        guarantee.
        """
        steps = max(1, round(n_vehicles / max(1, expected_batch_size)))
        return cls(
            target_epsilon=target_epsilon,
            target_delta=max_delta(n_vehicles) if target_delta is None else target_delta,
            sample_rate=1.0 / steps,
            total_rounds=total_rounds,
            local_epochs=local_epochs,
            max_grad_norm=max_grad_norm,
        )

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per local epoch: 1 / sample_rate."""
        return round(1.0 / self.sample_rate)

    @property
    def steps_per_round(self) -> int:
        """Optimiser steps per round: local epochs x steps per epoch."""
        return self.local_epochs * self.steps_per_epoch

    @property
    def planned_steps(self) -> int:
        """Steps in the whole study: rounds x local epochs x steps per epoch."""
        return self.total_rounds * self.steps_per_round
