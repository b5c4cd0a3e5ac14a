"""Reference baseline: L2-regularised logistic regression on the hand-built summary features.

This is the model a reviewer would ask the sequence model to beat: it sees the same vehicles,
but only their per-vehicle regularity features (top-camera shares, entropy, periodicity,
night share, distances, road mix, ...; ``federation.features.SUMMARY_FEATURES``), not the
read sequence. Features are standardised with the training set's mean and standard
deviation, and the weights are fitted by Newton's method (IRLS) to the exact optimum.

It is a non-private reference: its standardisation statistics and weights are not DP. For a
DP version of the same model, train ``federation.model.SummaryLogistic`` with the force's
DP-SGD (see ``benchmarks/bench_utility.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from federation.features.schema import ExampleSet


@dataclass(frozen=True)
class LogisticBaseline:
    """A fitted baseline: standardisation and logistic weights."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def decision_function(self, summary: np.ndarray) -> np.ndarray:
        """Logits for ``summary [N, S]``."""
        z = (np.asarray(summary, dtype=np.float64) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def predict_scores(self, examples: ExampleSet) -> np.ndarray:
        """Probabilities for an example set."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(examples.summary)))


def fit_logistic(
    summary: np.ndarray,
    labels: np.ndarray,
    *,
    l2: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> LogisticBaseline:
    """Fit L2-penalised logistic regression (penalty ``l2/2 * |w|^2``, intercept unpenalised)."""
    x = np.asarray(summary, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"summary must be [N, S] with N = len(labels); got {x.shape}, {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("the baseline needs both classes in its training labels")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    w = np.zeros(z.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < tol:
            break
    return LogisticBaseline(mean=mean, scale=scale, coef=w[:-1], intercept=float(w[-1]))


def train_baseline(
    examples: ExampleSet,
    labels: np.ndarray,
    *,
    eval_examples: ExampleSet | None = None,
    l2: float = 1.0,
) -> np.ndarray:
    """Fit on ``examples``; return scores for ``eval_examples`` (default: ``examples``)."""
    model = fit_logistic(examples.summary, labels, l2=l2)
    return model.predict_scores(eval_examples if eval_examples is not None else examples)
