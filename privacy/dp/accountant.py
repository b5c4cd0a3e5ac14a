"""RDP accounting for Poisson-subsampled Gaussian DP-SGD (Opacus's accountant).

A *history* is a list of ``(noise_multiplier, sample_rate, steps)`` mechanisms, exactly the
form of ``opacus.accountants.RDPAccountant.history``. RDP composes by adding the per-order
RDP of each mechanism, so a history can be split into rounds and runs and re-assembled in any
order without changing the epsilon; the ledger persists it and this module turns it into an
(epsilon, delta) statement.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

from privacy.dp.config import DEFAULT_ORDERS, DPConfig

MAX_NOISE_MULTIPLIER = 1e4
CALIBRATION_RTOL = 1e-3

Mechanism = tuple[float, float, int]
"""(noise_multiplier, sample_rate, steps) of a run of identical DP-SGD steps."""


def make_accountant(history: Iterable[Mechanism]) -> RDPAccountant:
    """An Opacus ``RDPAccountant`` whose history is ``history`` (copied)."""
    accountant = RDPAccountant()
    accountant.history = [(float(s), float(q), int(n)) for s, q, n in history]
    return accountant


@lru_cache(maxsize=4096)
def _unit_rdp(noise_multiplier: float, sample_rate: float, orders: tuple[float, ...]) -> np.ndarray:
    """RDP of one Poisson-subsampled Gaussian step at each order (Opacus's analysis)."""
    rdp = opacus_rdp.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders)
    )
    rdp = np.asarray(rdp, dtype=np.float64)
    rdp.setflags(write=False)
    return rdp


def epsilon_for(
    history: Iterable[Mechanism], delta: float, orders: Sequence[float] = DEFAULT_ORDERS
) -> tuple[float, float]:
    """(epsilon, best RDP order) of composing ``history`` at ``delta``; (0, nan) if empty.

    Exactly what ``RDPAccountant(history).get_privacy_spent(delta, orders)`` computes (Opacus's
    ``compute_rdp`` is linear in the number of steps); the per-step RDP of each distinct
    (noise multiplier, sample rate) is cached, because a ledger repeats the same mechanism
    round after round and the fractional orders are slow to evaluate.
    """
    orders_t = tuple(float(a) for a in orders)
    total = np.zeros(len(orders_t))
    empty = True
    for sigma, q, steps in history:
        total = total + int(steps) * _unit_rdp(float(sigma), float(q), orders_t)
        empty = False
    if empty:
        return 0.0, math.nan
    with warnings.catch_warnings():
        # Opacus warns when the optimum is at the edge of the order range; the result is
        # still a valid (if looser) bound, and the cross-check uses the same orders.
        warnings.simplefilter("ignore", UserWarning)
        eps, order = opacus_rdp.get_privacy_spent(orders=list(orders_t), rdp=total, delta=delta)
    return float(eps), float(order)


def _log_ratio(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, orders: tuple[float, ...]
) -> Callable[[float], float]:
    """``f(sigma) = log(epsilon(sigma) / target)``: positive means too little noise."""

    def f(sigma: float) -> float:
        eps = epsilon_for([(sigma, sample_rate, steps)], delta, orders)[0]
        return math.log(eps / target_epsilon) if eps > 0 else -math.inf

    return f


def _illinois(
    f: Callable[[float], float], low: float, f_low: float, high: float, f_high: float
) -> float:
    """Shrink a bracket ``f(low) > 0 >= f(high)`` to ``CALIBRATION_RTOL``; returns its top.

    Illinois (modified regula falsi) on log epsilon: each RDP evaluation is slow, and this
    needs a handful where bisection needs a dozen.
    """
    side = 0
    while high - low > CALIBRATION_RTOL * high:
        if math.isfinite(f_low) and math.isfinite(f_high) and f_low != f_high:
            x = high - f_high * (high - low) / (f_high - f_low)
            margin = 0.01 * (high - low)
            x = min(max(x, low + margin), high - margin)
        else:
            x = 0.5 * (low + high)
        fx = f(x)
        if fx > 0:
            low, f_low = x, fx
            if side == -1:
                f_high *= 0.5
            side = -1
        else:
            high, f_high = x, fx
            if side == 1:
                f_low *= 0.5
            side = 1
    return high


def _search(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, orders: tuple[float, ...]
) -> float:
    """Bracket sigma by doubling from 1, then shrink the bracket."""
    f = _log_ratio(target_epsilon, delta, sample_rate, steps, orders)
    low, f_low = 0.0, math.inf
    high, f_high = 1.0, f(1.0)
    while f_high > 0:
        low, f_low = high, f_high
        high *= 2.0
        if high > MAX_NOISE_MULTIPLIER:
            raise ValueError(
                f"epsilon {target_epsilon:g} at delta {delta:.3g} is unreachable with "
                f"{steps} steps at sample rate {sample_rate:.4g}"
            )
        f_high = f(high)
    return _illinois(f, low, f_low, high, f_high)


@lru_cache(maxsize=256)
def _calibrate(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, orders: tuple[float, ...]
) -> float:
    """Two stages: a search over the integer orders, then a short one over all of them.

    Opacus evaluates integer orders in closed form and fractional ones by a slow series, so the
    first stage is cheap. Fewer orders can only give a larger epsilon, so its sigma is an upper
    end of the full bracket; stepping down a few percent finds the lower end, and the full-order
    search inside that bracket needs two or three slow evaluations instead of eight.
    """
    integer_orders = tuple(a for a in orders if float(a).is_integer())
    if not integer_orders or len(integer_orders) == len(orders):
        return _search(target_epsilon, delta, sample_rate, steps, orders)
    high = _search(target_epsilon, delta, sample_rate, steps, integer_orders)
    f = _log_ratio(target_epsilon, delta, sample_rate, steps, orders)
    f_high = f(high)  # <= 0: the full set of orders includes the integer ones
    step = 0.97
    low, f_low = high * step, f(high * step)
    while f_low <= 0:
        high, f_high = low, f_low
        step *= step
        low, f_low = high * step, f(high * step)
    return _illinois(f, low, f_low, high, f_high)


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    orders: Sequence[float] = DEFAULT_ORDERS,
) -> float:
    """The smallest sigma (to 0.1%) with which ``steps`` steps spend at most the target epsilon.

    A bracketing root search on sigma with the same RDP analysis as ``epsilon_for``; the
    returned sigma is the bracket's upper end, so it always satisfies
    ``epsilon <= target_epsilon``.
    """
    return _calibrate(
        float(target_epsilon),
        float(delta),
        float(sample_rate),
        int(steps),
        tuple(float(a) for a in orders),
    )


def study_noise_multiplier(dp: DPConfig) -> float:
    """sigma for the study: ``dp.noise_multiplier`` if set, else calibrated to the whole plan.

    Calibration covers ``dp.planned_steps`` (rounds x local epochs x steps per epoch) at
    ``dp.sample_rate``, so running the plan spends at most ``dp.target_epsilon`` at
    ``dp.target_delta`` -- on a fresh ledger. Earlier spending at the same force still counts
    against the force's budget, which the ledger enforces separately.
    """
    if dp.noise_multiplier is not None:
        return dp.noise_multiplier
    return calibrate_noise_multiplier(
        dp.target_epsilon, dp.target_delta, dp.sample_rate, dp.planned_steps, dp.orders
    )
