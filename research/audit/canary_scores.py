"""How much a released model, or a sequence of released updates, points at each canary.

Two views, both turned into one score per canary (higher = "this canary was trained on"):

* **black-box** (:func:`black_box_scores`): only the released final model's outputs. The score
  is the canary's logit-scaled confidence in its own label, ``phi = log(p / (1 - p))``, under
  the final model minus under the initial model (which the server chose and knows), so each
  canary is measured against its own starting point.
* **white-box** (:func:`white_box_scores`): what the national server sees round by round, the
  global arrays before and after each round. For round t the score adds the step
  ``w_{t-1} - w_t`` projected on the canary's loss-gradient direction at ``w_{t-1}``: training
  on a canary moves the weights down its own gradient, so an included canary's projections add
  up while an excluded canary's are noise. (Steinke, Nasr and Jagielski's white-box audit of
  DP-SGD uses the same statistic on every step; the server sees only round ends, which is what
  is audited here.)

Neither score needs the canary's inclusion bit; :mod:`research.audit.one_run` compares them
with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from federation.model import example_tensors, set_weights
from research.audit.attacks import logit_confidence
from research.audit.canaries import CanarySet

ModelFactory = Callable[[], nn.Module]


def _model(make_model: ModelFactory, weights: Sequence[np.ndarray]) -> nn.Module:
    model = make_model()
    set_weights(model, [np.asarray(w, np.float32) for w in weights])
    model.eval()
    return model


@torch.no_grad()
def canary_phi(
    make_model: ModelFactory, weights: Sequence[np.ndarray], canaries: CanarySet
) -> np.ndarray:
    """``phi`` of every canary's own label under the model with ``weights``."""
    model = _model(make_model, weights)
    seqs, mask, summary = example_tensors(canaries.examples)
    logits = model(seqs, mask, summary).double().numpy()
    return logit_confidence(logits, canaries.labels.astype(np.float64))


def black_box_scores(
    make_model: ModelFactory,
    initial: Sequence[np.ndarray],
    final: Sequence[np.ndarray],
    canaries: CanarySet,
) -> np.ndarray:
    """Confidence gained on each canary's label from the initial to the final model."""
    return canary_phi(make_model, final, canaries) - canary_phi(make_model, initial, canaries)


def canary_gradients(
    make_model: ModelFactory, weights: Sequence[np.ndarray], canaries: CanarySet
) -> np.ndarray:
    """``float64 [m, P]``: each canary's loss gradient at ``weights``, flattened in the order of
    the model's parameters (the order of ``get_weights``)."""
    model = _model(make_model, weights)
    params = {k: v.detach() for k, v in model.named_parameters()}
    seqs, mask, summary = example_tensors(canaries.examples)
    y = torch.from_numpy(canaries.labels.astype(np.float32))
    loss_fn = nn.BCEWithLogitsLoss()

    def loss_one(p: dict, s: torch.Tensor, mk: torch.Tensor, su: torch.Tensor, t: torch.Tensor):
        out = functional_call(model, p, (s[None], mk[None], su[None]))
        return loss_fn(out.reshape(1), t.reshape(1))

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0, 0, 0))(params, seqs, mask, summary, y)
    flat = [grads[name].reshape(len(y), -1) for name in params]
    return torch.cat(flat, dim=1).double().numpy()


def standardise_by_label(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scores centred (median) and scaled (standard deviation) within each label.

    A canary's label moves its score whatever its inclusion (training pushes every label-1
    canary's confidence the same way); labels are independent of the inclusion coins, so
    comparing canaries within their label removes that shift without using the coins.
    """
    out = np.asarray(scores, np.float64).copy()
    for value in np.unique(labels):
        group = labels == value
        centred = out[group] - np.median(out[group])
        out[group] = centred / max(float(np.std(centred)), 1e-12)
    return out


def white_box_scores(
    make_model: ModelFactory,
    rounds: Sequence[Sequence[np.ndarray]],
    canaries: CanarySet,
    *,
    shared_directions: int = 50,
) -> np.ndarray:
    """Sum over rounds of the round's step projected on each canary's gradient direction.

    ``rounds`` are the global arrays the server held: the initial model, then after each round.
    Canary gradients share a few directions (the output bias, say) along which every round
    moves whatever the canaries; the ``shared_directions`` leading singular directions of the
    canaries' gradient matrix are projected out of the gradients and the step first (they are
    computed from all canaries, without their coins). Each round's projections are scaled to
    unit spread before they are added, so no round dominates by its step size.
    """
    if len(rounds) < 2:
        raise ValueError("need the initial model and at least one round")
    total = np.zeros(len(canaries), np.float64)
    for before, after in itertools.pairwise(rounds):
        g = canary_gradients(make_model, before, canaries)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        step = np.concatenate(
            [
                (np.asarray(b, np.float64) - np.asarray(a, np.float64)).ravel()
                for b, a in zip(before, after, strict=True)
            ]
        )
        k = min(shared_directions, len(canaries) // 4)
        if k > 0:
            _, _, vt = np.linalg.svd(g, full_matrices=False)
            shared = vt[:k]
            g = g - (g @ shared.T) @ shared
            step = step - shared.T @ (shared @ step)
            g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        projection = g @ step
        total += projection / max(float(np.std(projection)), 1e-12)
    return total
