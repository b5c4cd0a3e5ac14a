"""A force's persistent privacy ledger: every DP mechanism ever run on its data, and its budget.

The ledger is one JSON file in the force store (by convention ``STORE/privacy/ledger.json``,
see ``default_ledger_path``). It lives outside the day partitions, so a retention purge, a
re-ingest or deleting examples never touches it: deleting data never gives budget back.

Each training round is written *before* it runs (status ``reserved``, write-ahead) with its
full mechanism -- noise multiplier, sample rate, steps, clipping norm, delta, RDP orders --
beside the cumulative epsilon it brings the force to, and marked ``completed`` afterwards. A
reserved round that crashed still counts: its data was touched and its noise drawn. Anyone
can recompute the spend from the entries alone (``privacy.dp.crosscheck`` does so with Google's
dp-accounting).

The force's budget (a total epsilon cap across all studies and runs) is fixed when the ledger
is created. ``reserve`` refuses, with ``PrivacyBudgetExceeded``, any round that would take the
cumulative epsilon above it. Entries carry a SHA-256 hash chain over their mechanism fields,
so an edited or removed entry is detected on load.

Writes are atomic (temp file, fsync, rename) and serialised between processes with an
advisory lock on ``<ledger>.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from privacy.dp.accountant import Mechanism, epsilon_for
from privacy.dp.config import DEFAULT_ORDERS
from safefiles import atomic_write_text

FORMAT = "anprfed-privacy-ledger/1"
GENESIS = "0" * 64
BUDGET_TOLERANCE = 1e-9


class LedgerError(RuntimeError):
    """A ledger file that is missing, unreadable, tampered with, or used inconsistently."""


class PrivacyBudgetExceeded(RuntimeError):  # noqa: N818 -- the name in the project contract
    """Training refused: the planned round would take the force past its epsilon budget."""

    def __init__(
        self, *, spent: float, planned: float, budget: float, delta: float, rounds: int, detail: str
    ) -> None:
        self.spent = spent
        self.planned = planned
        self.budget = budget
        self.delta = delta
        super().__init__(
            f"privacy budget exceeded: this force has spent epsilon={spent:.4f} "
            f"(delta={delta:.3g}) of its budget epsilon={budget:.4f} over {rounds} recorded "
            f"round(s); the planned round ({detail}) would bring it to epsilon={planned:.4f}. "
            "Training refused. The "
            "budget covers every study and run on this force's data, and deleting data does not "
            "give budget back."
        )


def default_ledger_path(store_root: str | os.PathLike[str]) -> Path:
    """The ledger's place in a force store: ``STORE/privacy/ledger.json``."""
    return Path(store_root) / "privacy" / "ledger.json"


@dataclass(frozen=True)
class LedgerEntry:
    """One round of DP-SGD on the force's data, and the cumulative spend it brings."""

    seq: int
    status: str  # "reserved" (written before training) or "completed"
    study_id: str
    run_id: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    delta: float
    epsilon_after: float  # cumulative epsilon of entries 0..seq at this entry's delta
    best_order: float
    examples: int
    accountant: str
    orders: tuple[float, ...]
    recorded_at: str
    prev_hash: str
    entry_hash: str
    recipe: dict[str, Any] | None = None  # the training recipe's name, version and values

    @property
    def mechanism(self) -> Mechanism:
        """(noise_multiplier, sample_rate, steps)."""
        return (self.noise_multiplier, self.sample_rate, self.steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["orders"] = list(self.orders)
        if d["recipe"] is None:
            del d["recipe"]  # entries written without a recipe keep their original form
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LedgerEntry:
        fields = dict(d)
        fields["orders"] = tuple(float(a) for a in fields["orders"])
        return cls(**fields)


def _entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    chained = {
        k: fields[k]
        for k in (
            "seq",
            "study_id",
            "run_id",
            "round",
            "noise_multiplier",
            "sample_rate",
            "steps",
            "max_grad_norm",
            "delta",
            "accountant",
            "orders",
        )
    }
    chained["orders"] = list(chained["orders"])
    if fields.get("recipe") is not None:  # chained when present; older entries have none
        chained["recipe"] = fields["recipe"]
    payload = json.dumps(chained, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def _render(data: dict[str, Any]) -> str:
    """JSON with one line per header field and one line per entry (readable, diffable)."""
    header = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "entries"]
    entries = ",\n".join(f"  {json.dumps(e, separators=(',', ':'))}" for e in data["entries"])
    body = "[\n" + entries + "\n ]" if entries else "[]"
    return "{\n" + ",\n".join([*header, f' "entries": {body}']) + "\n}\n"


class PrivacyLedger:
    """The persistent accountant history and budget of one force (see module docstring)."""

    def __init__(self, path: Path, epsilon_budget: float, entries: Sequence[LedgerEntry]) -> None:
        self.path = path
        self.epsilon_budget = epsilon_budget
        self._entries = list(entries)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, epsilon_budget: float | None = None
    ) -> PrivacyLedger:
        """Open the ledger at ``path``, creating it (with ``epsilon_budget``) if absent.

        The budget is set once, at creation. Opening an existing ledger with a different
        ``epsilon_budget`` is an error rather than a silent change of the force's policy.
        """
        path = Path(path)
        with cls._locked(path):
            if path.exists():
                ledger = cls._load(path)
                if epsilon_budget is not None and not math.isclose(
                    epsilon_budget, ledger.epsilon_budget, rel_tol=0, abs_tol=1e-12
                ):
                    raise LedgerError(
                        f"{path}: the ledger's epsilon budget is {ledger.epsilon_budget:g}; "
                        f"refusing to open it with a different budget ({epsilon_budget:g})"
                    )
                return ledger
            if epsilon_budget is None:
                raise LedgerError(f"{path}: no ledger here; give epsilon_budget to create one")
            if not (epsilon_budget > 0 and math.isfinite(epsilon_budget)):
                raise LedgerError(
                    f"epsilon_budget must be positive and finite; got {epsilon_budget}"
                )
            ledger = cls(path, float(epsilon_budget), [])
            ledger._write()
            return ledger

    @classmethod
    def _load(cls, path: Path) -> PrivacyLedger:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LedgerError(f"{path}: cannot read the privacy ledger ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LedgerError(f"{path}: not a privacy ledger (expected format {FORMAT!r})")
        try:
            entries = [LedgerEntry.from_dict(e) for e in data["entries"]]
            budget = float(data["epsilon_budget"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"{path}: malformed ledger ({exc})") from None
        prev = GENESIS
        for i, e in enumerate(entries):
            if e.seq != i or e.prev_hash != prev or _entry_hash(prev, e.to_dict()) != e.entry_hash:
                raise LedgerError(f"{path}: hash chain broken at entry {i}; the ledger was altered")
            prev = e.entry_hash
        return cls(path, budget, entries)

    @staticmethod
    @contextlib.contextmanager
    def _locked(path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self) -> None:
        atomic_write_text(
            self.path,
            _render(
                {
                    "format": FORMAT,
                    "unit_of_privacy": "vehicle",
                    "accountant": "rdp",
                    "epsilon_budget": self.epsilon_budget,
                    "entries": [e.to_dict() for e in self._entries],
                },
            ),
        )

    def refresh(self) -> None:
        """Re-read the file (another process may have recorded rounds)."""
        fresh = self._load(self.path)
        self.epsilon_budget, self._entries = fresh.epsilon_budget, fresh._entries

    # -- reading ---------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """All recorded rounds, oldest first."""
        return tuple(self._entries)

    def history(self) -> list[Mechanism]:
        """The accountant history: one (noise_multiplier, sample_rate, steps) per round."""
        return [e.mechanism for e in self._entries]

    def epsilon_spent(self, delta: float, orders: Sequence[float] = DEFAULT_ORDERS) -> float:
        """Cumulative epsilon at ``delta`` of every round recorded so far (0 if none)."""
        return epsilon_for(self.history(), delta, orders)[0]

    # -- writing ---------------------------------------------------------------------------

    def reserve(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        max_grad_norm: float,
        delta: float,
        study_id: str,
        round_id: int,
        run_id: str = "",
        examples: int = 0,
        orders: Sequence[float] = DEFAULT_ORDERS,
        recipe: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Check the budget and record a round before it runs (write-ahead).

        ``recipe`` (the training recipe's name, version and every value, JSON-serialisable)
        is stored in the entry and covered by its hash.

        Raises:
            PrivacyBudgetExceeded: the cumulative epsilon at ``delta`` after this round would
                exceed the force's budget; nothing is recorded.
        """
        orders = tuple(float(a) for a in orders)
        with self._locked(self.path):
            self.refresh()
            history = self.history()
            planned, best = epsilon_for(
                [*history, (noise_multiplier, sample_rate, steps)], delta, orders
            )
            if planned > self.epsilon_budget + BUDGET_TOLERANCE:
                raise PrivacyBudgetExceeded(
                    spent=epsilon_for(history, delta, orders)[0],
                    planned=planned,
                    budget=self.epsilon_budget,
                    delta=delta,
                    rounds=len(history),
                    detail=(
                        f"noise multiplier {noise_multiplier:.4g}, sample rate {sample_rate:.4g}, "
                        f"{steps} steps"
                    ),
                )
            prev = self._entries[-1].entry_hash if self._entries else GENESIS
            fields: dict[str, Any] = {
                "seq": len(self._entries),
                "status": "reserved",
                "study_id": str(study_id),
                "run_id": str(run_id),
                "round": int(round_id),
                "noise_multiplier": float(noise_multiplier),
                "sample_rate": float(sample_rate),
                "steps": int(steps),
                "max_grad_norm": float(max_grad_norm),
                "delta": float(delta),
                "epsilon_after": float(planned),
                "best_order": float(best),
                "examples": int(examples),
                "accountant": "rdp",
                "orders": orders,
                "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "prev_hash": prev,
            }
            if recipe is not None:
                fields["recipe"] = json.loads(json.dumps(dict(recipe), sort_keys=True))
            entry = LedgerEntry(**fields, entry_hash=_entry_hash(prev, fields))
            self._entries.append(entry)
            self._write()
            return entry

    def complete(self, seq: int) -> LedgerEntry:
        """Mark a reserved round as completed (its mechanism is unchanged)."""
        with self._locked(self.path):
            self.refresh()
            if not 0 <= seq < len(self._entries):
                raise LedgerError(f"{self.path}: no entry {seq} to complete")
            entry = replace(self._entries[seq], status="completed")
            self._entries[seq] = entry
            self._write()
            return entry
