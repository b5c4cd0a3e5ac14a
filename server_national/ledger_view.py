"""The server's view of each force's privacy spend, round by round.

Forces own their privacy ledgers (``STORE/privacy/ledger.json``, composed across rounds and
runs by the force's accountant). Each train reply reports the force's cumulative
``(epsilon, delta)``; this view records those reports per node and round so the study can
plot spend against rounds and flag anything odd: a report above the study's target budget,
or an epsilon that went *down* (a reset or replaced ledger).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LedgerEntry:
    """One force's reported spend after one round."""

    server_round: int
    node_id: int
    epsilon: float
    delta: float
    num_examples: int
    over_budget: bool
    epsilon_decreased: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "round": self.server_round,
            "node_id": self.node_id,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "num_examples": self.num_examples,
            "over_budget": self.over_budget,
            "epsilon_decreased": self.epsilon_decreased,
        }


class LedgerView:
    """Epsilon and delta per node per round, as reported in accepted train replies."""

    def __init__(self, target_epsilon: float, target_delta: float = 0.0) -> None:
        """``target_delta`` 0 means each force picks its own (1 / (10 x vehicles))."""
        self.target_epsilon = float(target_epsilon)
        self.target_delta = float(target_delta)
        self.entries: list[LedgerEntry] = []
        self._latest: dict[int, LedgerEntry] = {}

    def record(
        self, server_round: int, node_id: int, epsilon: float, delta: float, num_examples: int
    ) -> LedgerEntry:
        """Record a node's report for a round and return the entry (with its flags)."""
        previous = self._latest.get(node_id)
        entry = LedgerEntry(
            server_round=int(server_round),
            node_id=int(node_id),
            epsilon=float(epsilon),
            delta=float(delta),
            num_examples=int(num_examples),
            over_budget=float(epsilon) > self.target_epsilon * (1 + 1e-9)
            or (self.target_delta > 0 and float(delta) > self.target_delta * (1 + 1e-9)),
            epsilon_decreased=previous is not None and float(epsilon) < previous.epsilon - 1e-12,
        )
        self.entries.append(entry)
        self._latest[entry.node_id] = entry
        return entry

    def latest(self) -> dict[int, LedgerEntry]:
        """Each node's most recent entry."""
        return dict(self._latest)

    def to_json(self) -> dict[str, Any]:
        """The whole view: targets, every entry, and each node's latest spend."""
        return {
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "entries": [e.to_json() for e in self.entries],
            "latest": {str(n): e.to_json() for n, e in sorted(self._latest.items())},
        }
