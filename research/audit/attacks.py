"""Membership-inference attacks on a binary classifier, as arrays in and scores out.

The unit is a whole vehicle: one example is one vehicle's reads, a *member* is a vehicle the
model was trained on. Every attack returns one score per vehicle, higher meaning "more likely a
member"; ``research.audit.roc`` and ``research.audit.bounds`` judge the scores.

* **Loss threshold** (Yeom et al., CSF 2018): members tend to have lower loss; the score is the
  negative binary cross-entropy of the vehicle's label under the model. One global threshold.
* **Likelihood-ratio attack, LiRA** (Carlini et al., IEEE S&P 2022): train *shadow* models on
  random halves of the population, so each vehicle is IN for half of them and OUT for the
  other half; model the vehicle's logit-scaled confidence ``phi = log(p / (1 - p))`` of its
  true label as Gaussian under IN and under OUT; score the target model's ``phi`` by the log
  likelihood ratio (online) or by a one-sided test against OUT only (offline). Per-vehicle
  calibration is what lets LiRA find members at very low false-positive rates. With few shadows
  the variance is pooled across vehicles ("fixed variance"), as the paper recommends.

Training and scoring models is the caller's business (it needs the force's data and model
code): :func:`run_shadows` takes a callable that trains on a subset and returns ``phi`` for
every vehicle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import norm

MIN_STD = 1e-3
"""Floor on the Gaussian standard deviations, so a shadow set with identical phi cannot
produce an infinite likelihood ratio."""


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``phi = log(p_true / (1 - p_true))`` from the model's logits: ``z`` if y=1 else ``-z``.

    Computing it from logits (not from probabilities) keeps it exact for confident models,
    where ``sigmoid`` rounds to 1 and the probability form saturates.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.shape != y.shape:
        raise ValueError(f"logits and labels differ in shape: {z.shape} vs {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1")
    return np.where(y == 1.0, z, -z)


def loss_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss-threshold attack: minus the binary cross-entropy of each example's label.

    ``-BCE = log sigmoid(phi) = -log1p(exp(-phi))``, computed stably.
    """
    phi = logit_confidence(logits, labels)
    return -np.logaddexp(0.0, -phi)


def shadow_assignment(n_examples: int, n_shadows: int, rng: np.random.Generator) -> np.ndarray:
    """``bool [n_shadows, n_examples]``: which shadow trains on which example.

    Every example is IN for exactly ``n_shadows // 2`` shadows (a balanced design, so every
    vehicle has both an IN and an OUT distribution), and each shadow trains on about half of
    the examples.
    """
    if n_shadows < 2 or n_shadows % 2:
        raise ValueError(f"LiRA needs an even number of shadow models >= 2; got {n_shadows}")
    if n_examples < 2:
        raise ValueError("need at least two examples")
    order = rng.random((n_shadows, n_examples)).argsort(axis=0)
    return order < n_shadows // 2


def run_shadows(
    train_and_score: Callable[[np.ndarray, int], np.ndarray],
    assignment: np.ndarray,
) -> np.ndarray:
    """Train one shadow per row of ``assignment`` and collect ``phi [n_shadows, n_examples]``.

    ``train_and_score(in_mask, shadow_index)`` must train a fresh model on the examples where
    ``in_mask`` is True, with the audited model's recipe, and return ``phi`` for *every*
    example (see :func:`logit_confidence`).
    """
    k, n = assignment.shape
    out = np.empty((k, n), dtype=np.float64)
    for i in range(k):
        phi = np.asarray(train_and_score(assignment[i].copy(), i), dtype=np.float64)
        if phi.shape != (n,):
            raise ValueError(f"shadow {i}: expected {n} scores, got shape {phi.shape}")
        if not np.isfinite(phi).all():
            raise ValueError(f"shadow {i}: non-finite confidence (training diverged?)")
        out[i] = phi
    return out


def _masked_moments(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of ``values`` over rows where ``mask`` (ddof 1 if possible)."""
    count = mask.sum(axis=0)
    if np.any(count == 0):
        raise ValueError("every example needs at least one shadow on each side (IN and OUT)")
    mean = np.where(mask, values, 0.0).sum(axis=0) / count
    sq = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0)
    var = sq / np.maximum(count - 1, 1)
    return mean, var


def lira_scores(
    target_phi: np.ndarray,
    shadow_phi: np.ndarray,
    shadow_in: np.ndarray,
    *,
    online: bool = True,
    fixed_variance: bool = True,
) -> np.ndarray:
    """LiRA scores of the target model's ``phi`` (higher = more likely a member).

    Args:
        target_phi: ``[N]`` logit-scaled confidence of each example under the audited model.
        shadow_phi: ``[K, N]`` the same under each shadow model.
        shadow_in: ``bool [K, N]`` whether shadow k trained on example n.
        online: likelihood ratio of IN against OUT (needs IN shadows); else the offline
            one-sided test against OUT only.
        fixed_variance: one pooled standard deviation per side (recommended below ~64 shadows)
            instead of one per example.
    """
    target = np.asarray(target_phi, dtype=np.float64)
    phi = np.asarray(shadow_phi, dtype=np.float64)
    is_in = np.asarray(shadow_in, dtype=bool)
    if phi.shape != is_in.shape or phi.shape[1:] != target.shape:
        raise ValueError(
            f"shapes disagree: target {target.shape}, shadow phi {phi.shape}, "
            f"assignment {is_in.shape}"
        )
    mu_out, var_out = _masked_moments(phi, ~is_in)
    if fixed_variance:
        var_out = np.full_like(var_out, var_out.mean())
    sd_out = np.maximum(np.sqrt(var_out), MIN_STD)
    if not online:
        return norm.logcdf(target, loc=mu_out, scale=sd_out)
    mu_in, var_in = _masked_moments(phi, is_in)
    if fixed_variance:
        var_in = np.full_like(var_in, var_in.mean())
    sd_in = np.maximum(np.sqrt(var_in), MIN_STD)
    return norm.logpdf(target, loc=mu_in, scale=sd_in) - norm.logpdf(
        target, loc=mu_out, scale=sd_out
    )
