"""What a hostile national server does in these tests: instructions, run configs, crafted models."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from client_force.client_app import make_client_app
from client_force.flower_round import contract_for
from federation.features.scaling import summary_scaling
from federation.flower_settings import FlowerSettings
from federation.metrics import pr_auc, precision_at_recall
from federation.model import TrajectoryModel, example_tensors, get_weights, predict_scores

CLIPPED_LOSS = -math.log(1e-7)  # the old evaluate clipped scores to [1e-7, 1 - 1e-7]


def initial_weights(settings: FlowerSettings) -> list[np.ndarray]:
    """The global model a server would send in round 1."""
    torch.manual_seed(settings.seed)
    return get_weights(TrajectoryModel(settings.model_config()))


def instruction(
    settings: FlowerSettings,
    kind: str,
    server_round: int = 1,
    weights: list[np.ndarray] | None = None,
) -> Message:
    """A train or evaluate instruction carrying ``weights`` (default: the initial model)."""
    arrays = weights if weights is not None else initial_weights(settings)
    content = RecordDict(
        {
            "arrays": contract_for(settings).to_array_record(arrays),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    message_type = MessageType.TRAIN if kind == "train" else MessageType.EVALUATE
    message = Message(content, dst_node_id=5, message_type=message_type, group_id=str(server_round))
    message.metadata.__dict__["_message_id"] = f"ins-{kind}-{server_round}"
    return message


def ask(
    node_config: dict[str, Any],
    settings: FlowerSettings,
    run_config: dict[str, Any],
    kind: str,
    server_round: int = 1,
    weights: list[np.ndarray] | None = None,
) -> Message:
    """Send one instruction to the force's real ClientApp under a hostile ``run_config``."""
    context = Context(
        run_id=666,
        node_id=5,
        node_config=dict(node_config),
        state=RecordDict(),
        run_config=dict(run_config),
    )
    app = make_client_app(settings)
    return app(instruction(settings, kind, server_round, weights), context)


def isolating_model(
    settings: FlowerSettings, summary: np.ndarray, target: int
) -> tuple[list[np.ndarray], int]:
    """A crafted model that scores vehicle ``target`` near 1 and every other near 0.

    All weights are zero except a "bump" over one summary feature: three hidden units
    ``relu(w(s - lo)) - 2 relu(w(s - mid)) + relu(w(s - hi))`` peak at the target's value and
    vanish outside ``[lo, hi]``, a window that holds no other vehicle. The attacker needs the
    target's feature value (an outside sighting of its pattern), as in the issue's review.
    Returns the weights and the feature used.
    """
    centre, scale = summary_scaling()
    scaled = (summary - centre) / scale
    best_feature, best_gap = -1, 0.0
    for j in range(scaled.shape[1]):
        others = np.delete(scaled[:, j], target)
        gap = float(np.min(np.abs(others - scaled[target, j])))
        if gap > best_gap:
            best_feature, best_gap = j, gap
    if best_feature < 0 or best_gap <= 1e-6:
        raise ValueError("no summary feature isolates the target")
    value, half = float(scaled[target, best_feature]), best_gap / 2
    model = TrajectoryModel(settings.model_config())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        hidden = settings.model_hidden
        column = 2 * hidden + best_feature
        w = 1.0 / half
        for unit, (edge, sign) in enumerate(
            ((value - half, 1.0), (value, -2.0), (value + half, 1.0))
        ):
            model.head_hidden.weight[unit, column] = w
            model.head_hidden.bias[unit] = -w * edge
            model.head_out.weight[0, unit] = 80.0 * sign
        model.head_out.bias.fill_(-40.0)
    return get_weights(model), best_feature


def old_contract_evaluate(model: TrajectoryModel, examples: Any, labels: np.ndarray) -> dict:
    """The evaluate reply of the contract before issue 14 (exact, unaccounted, uncapped)."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = predict_scores(model, examples)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    positives = int(labels.sum())
    return {
        "num-examples": len(labels),
        "num-positives": positives,
        "eval-loss": loss,
        "pr-auc": float(pr_auc(labels, scores)) if positives else 0.0,
        "precision-at-recall-0.5": float(precision_at_recall(labels, scores, 0.5))
        if positives
        else 0.0,
    }


def label_from_reply(metrics: dict[str, Any]) -> int:
    """The attack: under the crafted model, loss x N = CLIPPED_LOSS x (positives + 1 - 2 y)."""
    total = float(metrics["eval-loss"]) * int(metrics["num-examples"])
    guess = (int(metrics["num-positives"]) + 1 - total / CLIPPED_LOSS) / 2
    return int(guess > 0.5)


def summaries(examples: Any) -> np.ndarray:
    """Per-vehicle summary features of ``examples`` (raw, before the model's scaling)."""
    return example_tensors(examples)[2].numpy().astype(np.float64)
