"""Run DP training rounds against a ledger in a fresh process (used by test_training.py).

Usage: python _round_in_subprocess.py LEDGER STUDY_ID ROUNDS TARGET_EPSILON BUDGET
Prints one JSON object per round; exits 3 with the refusal message on PrivacyBudgetExceeded.
"""

from __future__ import annotations

import json
import sys

from client_force.training import TrainingConfig, train_round
from federation.features import align_labels, build_examples
from federation.model import ModelConfig, TrajectoryModel
from privacy.dp.config import DPConfig
from privacy.dp.ledger import PrivacyBudgetExceeded, PrivacyLedger
from research.synth.toyworld import make_toy_world


def main() -> int:
    ledger_path, study_id, rounds, target, budget = sys.argv[1:6]
    world = make_toy_world(n_vehicles=300, n_cameras=20, days=14, seed=11)
    ex = build_examples(
        world.reads, world.cameras, world.window_start, world.window_end, max_reads=24
    )
    y = align_labels(ex.vehicles, world.labels)
    dp = DPConfig.plan(
        n_vehicles=len(ex),
        target_epsilon=float(target),
        expected_batch_size=60,
        total_rounds=int(rounds),
    )
    ledger = PrivacyLedger.open(ledger_path, epsilon_budget=float(budget))
    model = TrajectoryModel(ModelConfig(hidden=8))
    for r in range(1, int(rounds) + 1):
        try:
            result = train_round(
                model,
                ex,
                y,
                dp,
                ledger,
                round_id=r,
                study_id=study_id,
                run_id=f"pid-{study_id}",
                training=TrainingConfig(seed=r),
            )
        except PrivacyBudgetExceeded as exc:
            print(str(exc), file=sys.stderr)
            return 3
        print(json.dumps({"round": r, **result.metrics()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
