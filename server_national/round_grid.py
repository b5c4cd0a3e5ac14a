"""A ``Grid`` that gives every round its own reply timeout.

Flower's strategies and legacy workflows pass one timeout to every ``send_and_receive``. Round 1
is slower than the rest (each force's process starts, imports its libraries and builds its
features), so ``first-round-timeout`` may give it longer than ``round-timeout``; the legacy
evaluate workflow passes no timeout at all and would wait forever. ``RoundTimeoutGrid`` wraps
the ServerApp's grid and applies ``timeout_for_round(round)`` (the round is the messages'
``group_id``) to every call, so no wait is ever unbounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid


class RoundTimeoutGrid(Grid):
    """Delegates to ``inner``; ``send_and_receive`` waits ``timeout_for_round(round)`` seconds."""

    def __init__(self, inner: Grid, timeout_for_round: Callable[[int], float]) -> None:
        self._inner = inner
        self._timeout_for_round = timeout_for_round

    def set_run(self, run: Any) -> None:
        """Delegate to the wrapped grid."""
        self._inner.set_run(run)

    @property
    def run(self) -> Any:
        """The wrapped grid's run."""
        return self._inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        """Delegate to the wrapped grid."""
        return self._inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        """Delegate to the wrapped grid."""
        return self._inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate to the wrapped grid."""
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate to the wrapped grid."""
        return self._inner.pull_messages(message_ids)

    def timeout_for(self, messages: list[Message]) -> float:
        """The wait for a batch of instructions: that of the latest round they belong to."""
        rounds = [int(m.metadata.group_id) for m in messages if m.metadata.group_id.isdigit()]
        return self._timeout_for_round(max(rounds, default=0))

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send and collect replies for at most this round's timeout (``timeout`` is ignored)."""
        batch = list(messages)
        return self._inner.send_and_receive(batch, timeout=self.timeout_for(batch))
