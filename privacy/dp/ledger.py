"""A force's persistent privacy ledger: every DP mechanism ever run on its data, and its budget.

The ledger is one JSON file in the force store (by convention ``STORE/privacy/ledger.json``,
see ``default_ledger_path``). It lives outside the day partitions, so a retention purge, a
re-ingest or deleting examples never touches it: deleting data never gives budget back.

Each mechanism is written *before* it runs (status ``reserved``, write-ahead) with its full
description -- noise multiplier, sample rate, steps, clipping norm, RDP orders, and its ``kind``:
``train`` (a DP-SGD round), ``release`` (a Gaussian release of a round's scalars) or
``evaluate`` (a Gaussian release of held-out metrics) -- beside the cumulative epsilon it brings
the force to, and marked ``completed`` afterwards. A reserved mechanism that crashed still
counts. Anyone can recompute the spend from the entries (``privacy.dp.crosscheck``).

The header fixes, once, at creation: the lifetime epsilon budget and **the delta** at which
every spend is computed. ``reserve`` checks the cumulative epsilon of the whole history at that
delta and refuses, with ``PrivacyBudgetExceeded``, any mechanism that would exceed the budget;
a caller asking for a larger delta is refused (``DeltaRaisedError``): raising delta would make
the same history look cheaper.

Integrity: with a ``key`` (derived from the force's master secret, see
``client_force.private_training``), the header carries an HMAC-SHA256 over every header field
(budget and delta included) and each entry an HMAC over all of its fields chained to the
previous one, starting from the header's. An edited budget, an edited or removed entry, or a
ledger from another force fails to load. An *anchor* kept outside the ledger file
(:class:`LedgerAnchors`: the entry count and chain head per ledger, itself HMAC'd) detects a
truncated or rolled-back ledger and a ledger deleted to start afresh. Opening without a key
(read-only inspection) checks the chain's structure but cannot authenticate it.

Writes are atomic (``safefiles``) and serialised between processes with an advisory lock on
``<ledger>.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
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

FORMAT = "anprfed-privacy-ledger/2"
ANCHOR_FORMAT = "anprfed-ledger-anchors/1"
GENESIS = "0" * 64
BUDGET_TOLERANCE = 1e-9
DELTA_TOLERANCE = 1e-12
KINDS = ("train", "release", "evaluate")
HEADER_FIELDS = (
    "format",
    "unit_of_privacy",
    "accountant",
    "epsilon_budget",
    "delta",
    "scope",
    "simulation",
    "keyed",
    "created_at",
)


class LedgerError(RuntimeError):
    """A ledger file that is missing, unreadable, tampered with, or used inconsistently."""


class DeltaRaisedError(LedgerError):
    """A mechanism asked to be accounted at a larger delta than the ledger's fixed delta."""


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


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes | None, payload: bytes) -> str:
    """HMAC-SHA256 under ``key``; without a key, a plain SHA-256 (structure only)."""
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    """One DP mechanism run on the force's data, and the cumulative spend it brings."""

    seq: int
    status: str  # "reserved" (written before running) or "completed"
    kind: str  # "train" | "release" | "evaluate"
    study_id: str
    run_id: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    delta: float  # the ledger's fixed delta
    epsilon_after: float  # cumulative epsilon of entries 0..seq at ``delta``
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


def _entry_mac(key: bytes | None, prev_hash: str, fields: dict[str, Any]) -> str:
    """MAC over every field but ``status`` (a completion marker) and the MAC itself."""
    chained = {k: v for k, v in fields.items() if k not in ("status", "entry_hash")}
    chained["orders"] = list(chained["orders"])
    return _mac(key, prev_hash.encode() + _canonical(chained))


def _render(data: dict[str, Any]) -> str:
    """JSON with one line per header field and one line per entry (readable, diffable)."""
    header = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "entries"]
    entries = ",\n".join(f"  {json.dumps(e, separators=(',', ':'))}" for e in data["entries"])
    body = "[\n" + entries + "\n ]" if entries else "[]"
    return "{\n" + ",\n".join([*header, f' "entries": {body}']) + "\n}\n"


class LedgerAnchors:
    """Where each ledger's chain ended, kept outside the ledger files (one small JSON file).

    Maps a ledger's name (its scope; ``""`` for the lifetime ledger) to ``{"entries": n,
    "head": mac}``, the whole file HMAC'd under the ledger key. A ledger with fewer entries or a
    different head than its anchor was truncated or rolled back; a missing ledger with an
    anchor was deleted. Rolling back this file *and* the ledger together is not detected (see
    docs/residual-risks.md).
    """

    def __init__(self, path: str | os.PathLike[str], key: bytes) -> None:
        self.path = Path(path)
        self.key = key

    def read(self) -> dict[str, dict[str, Any]]:
        """Every anchor (empty if the file does not exist yet)."""
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            anchors = data["anchors"]
            mac = data["mac"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise LedgerError(f"{self.path}: unreadable ledger anchors ({exc})") from None
        if data.get("format") != ANCHOR_FORMAT or not hmac.compare_digest(
            str(mac), _mac(self.key, _canonical(anchors))
        ):
            raise LedgerError(f"{self.path}: ledger anchors fail authentication; altered")
        return dict(anchors)

    def get(self, name: str) -> dict[str, Any] | None:
        """The anchor of ledger ``name``, or None."""
        return self.read().get(name)

    def set(self, name: str, entries: int, head: str) -> None:
        """Record that ledger ``name`` now has ``entries`` entries ending in ``head``."""
        anchors = self.read()
        anchors[name] = {"entries": int(entries), "head": str(head)}
        body = {
            "format": ANCHOR_FORMAT,
            "anchors": anchors,
            "mac": _mac(self.key, _canonical(anchors)),
        }
        atomic_write_text(self.path, json.dumps(body, indent=1, sort_keys=True) + "\n")


class PrivacyLedger:
    """The persistent accountant history, budget and fixed delta of one force (module docstring)."""

    def __init__(
        self,
        path: Path,
        header: dict[str, Any],
        entries: Sequence[LedgerEntry],
        *,
        key: bytes | None = None,
        anchors: LedgerAnchors | None = None,
    ) -> None:
        self.path = path
        self._header = dict(header)
        self._entries = list(entries)
        self._key = key
        self._anchors = anchors

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        epsilon_budget: float | None = None,
        delta: float | None = None,
        key: bytes | None = None,
        anchors: LedgerAnchors | None = None,
        scope: str = "",
        simulation: bool = False,
    ) -> PrivacyLedger:
        """Open the ledger at ``path``, creating it (with ``epsilon_budget``, ``delta``) if absent.

        Budget and delta are set once, at creation. Opening an existing ledger with a different
        budget, or with a larger delta, is an error rather than a silent change of the force's
        policy. With ``key`` every MAC is verified; with ``anchors`` the chain's end is checked
        against its anchor (truncation, rollback, deletion) and kept up to date.
        """
        path = Path(path)
        with cls._locked(path):
            if path.exists():
                ledger = cls._load(path, key=key, anchors=anchors, scope=scope)
                if epsilon_budget is not None and not math.isclose(
                    epsilon_budget, ledger.epsilon_budget, rel_tol=0, abs_tol=1e-12
                ):
                    raise LedgerError(
                        f"{path}: the ledger's epsilon budget is {ledger.epsilon_budget:g}; "
                        f"refusing to open it with a different budget ({epsilon_budget:g})"
                    )
                fixed = ledger._header["delta"]
                if (
                    delta is not None
                    and fixed is not None
                    and delta > fixed * (1 + DELTA_TOLERANCE)
                ):
                    raise DeltaRaisedError(
                        f"{path}: the ledger's delta is fixed at {ledger.delta:.3g}; refusing "
                        f"a larger delta ({delta:.3g})"
                    )
                return ledger
            if anchors is not None:
                anchor = anchors.get(scope)
                if anchor is not None and int(anchor.get("entries", 0)) > 0:
                    raise LedgerError(
                        f"{path}: this ledger recorded {anchor['entries']} mechanism(s) and has "
                        "been deleted; refusing to start a fresh one (restore it from backup)"
                    )
            if epsilon_budget is None:
                raise LedgerError(f"{path}: no ledger here; give epsilon_budget to create one")
            if not (epsilon_budget > 0 and math.isfinite(epsilon_budget)):
                raise LedgerError(
                    f"epsilon_budget must be positive and finite; got {epsilon_budget}"
                )
            if delta is not None and not 0.0 < delta < 1.0:
                raise LedgerError(f"delta must be in (0, 1); got {delta}")
            header = {
                "format": FORMAT,
                "unit_of_privacy": "vehicle",
                "accountant": "rdp",
                "epsilon_budget": float(epsilon_budget),
                "delta": None if delta is None else float(delta),
                "scope": str(scope),
                "simulation": bool(simulation),
                "keyed": key is not None,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            ledger = cls(path, header, [], key=key, anchors=anchors)
            ledger._write()
            return ledger

    @classmethod
    def _load(
        cls,
        path: Path,
        *,
        key: bytes | None = None,
        anchors: LedgerAnchors | None = None,
        scope: str = "",
    ) -> PrivacyLedger:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LedgerError(f"{path}: cannot read the privacy ledger ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LedgerError(
                f"{path}: not a privacy ledger of this version (expected format {FORMAT!r})"
            )
        try:
            header = {name: data[name] for name in HEADER_FIELDS}
            entries = [LedgerEntry.from_dict(e) for e in data["entries"]]
            float(header["epsilon_budget"])
            if header["delta"] is None and entries:
                raise ValueError("a ledger with entries must have a fixed delta")
            if header["delta"] is not None:
                float(header["delta"])
            header_mac = str(data["header_mac"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"{path}: malformed ledger ({exc})") from None
        if key is not None and not header["keyed"]:
            raise LedgerError(f"{path}: the ledger is not keyed but this force expects a key")
        check_key = key if header["keyed"] else None
        authentic = key is not None or not header["keyed"]
        if authentic and not hmac.compare_digest(header_mac, _mac(check_key, _canonical(header))):
            raise LedgerError(f"{path}: header authentication failed; the ledger was altered")
        prev = header_mac
        for i, e in enumerate(entries):
            expected = _entry_mac(check_key, prev, e.to_dict())
            if (
                e.seq != i
                or e.prev_hash != prev
                or (authentic and not hmac.compare_digest(expected, e.entry_hash))
            ):
                raise LedgerError(f"{path}: hash chain broken at entry {i}; the ledger was altered")
            if e.kind not in KINDS:
                raise LedgerError(f"{path}: entry {i} has an unknown kind")
            prev = e.entry_hash
        if anchors is not None:
            anchor = anchors.get(scope)
            if anchor is None:
                if entries:
                    raise LedgerError(
                        f"{path}: the ledger has no anchor outside its file; refusing it "
                        "(a planted or copied ledger)"
                    )
            elif int(anchor["entries"]) > len(entries) or (
                int(anchor["entries"]) > 0
                and entries[int(anchor["entries"]) - 1].entry_hash != anchor["head"]
            ):
                raise LedgerError(
                    f"{path}: the ledger ends before its anchor ({len(entries)} of "
                    f"{anchor['entries']} entries, or a different chain): truncated or rolled back"
                )
        ledger = cls(path, header, entries, key=key, anchors=anchors)
        return ledger

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

    @property
    def header_mac(self) -> str:
        """The header's MAC (the chain's genesis)."""
        return _mac(self._key if self._header["keyed"] else None, _canonical(self._header))

    def _write(self) -> None:
        header_mac = self.header_mac
        atomic_write_text(
            self.path,
            _render(
                {
                    **self._header,
                    "header_mac": header_mac,
                    "entries": [e.to_dict() for e in self._entries],
                },
            ),
        )
        if self._anchors is not None:
            head = self._entries[-1].entry_hash if self._entries else header_mac
            self._anchors.set(self.scope, len(self._entries), head)

    def refresh(self) -> None:
        """Re-read the file (another process may have recorded rounds)."""
        fresh = self._load(self.path, key=self._key, anchors=self._anchors, scope=self.scope)
        self._header, self._entries = fresh._header, fresh._entries

    # -- reading ---------------------------------------------------------------------------

    @property
    def epsilon_budget(self) -> float:
        """The lifetime epsilon budget fixed at creation."""
        return float(self._header["epsilon_budget"])

    @property
    def delta(self) -> float:
        """The fixed delta every spend is computed at (set at creation, or by the first
        mechanism of a ledger created without one)."""
        if self._header["delta"] is None:
            raise LedgerError(f"{self.path}: the ledger has no delta yet (no mechanism recorded)")
        return float(self._header["delta"])

    @property
    def scope(self) -> str:
        """``""`` for the force's lifetime ledger, else the simulation scope's name."""
        return str(self._header["scope"])

    @property
    def simulation(self) -> bool:
        """True for a ledger created under simulation-only settings."""
        return bool(self._header["simulation"])

    @property
    def header(self) -> dict[str, Any]:
        """A copy of the header fields."""
        return dict(self._header)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """All recorded mechanisms, oldest first."""
        return tuple(self._entries)

    def count(self, kind: str) -> int:
        """How many mechanisms of ``kind`` were recorded (reserved or completed)."""
        return sum(1 for e in self._entries if e.kind == kind)

    def history(self) -> list[Mechanism]:
        """The accountant history: one (noise_multiplier, sample_rate, steps) per mechanism."""
        return [e.mechanism for e in self._entries]

    def epsilon_spent(
        self, delta: float | None = None, orders: Sequence[float] = DEFAULT_ORDERS
    ) -> float:
        """Cumulative epsilon of every mechanism so far (0 if none), at the ledger's delta.

        A ``delta`` other than the ledger's is for reports only (never for the budget).
        """
        if not self._entries:
            return 0.0
        return epsilon_for(self.history(), self.delta if delta is None else delta, orders)[0]

    # -- writing ---------------------------------------------------------------------------

    def reserve(
        self,
        *,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        max_grad_norm: float,
        study_id: str,
        round_id: int,
        delta: float | None = None,
        run_id: str = "",
        examples: int = 0,
        orders: Sequence[float] = DEFAULT_ORDERS,
        kind: str = "train",
        recipe: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Check the budget at the ledger's delta and record a mechanism before it runs.

        ``delta`` is what the caller's guarantee assumes; it may not exceed the ledger's fixed
        delta (else :class:`DeltaRaisedError`). The budget is always checked at the ledger's
        delta, whatever the caller asks. A ledger created without a delta takes the first
        mechanism's ``delta`` as its fixed delta.

        Raises:
            PrivacyBudgetExceeded: the cumulative epsilon after this mechanism would exceed the
                force's budget; nothing is recorded.
            DeltaRaisedError: ``delta`` is larger than the ledger's; nothing is recorded.
        """
        if kind not in KINDS:
            raise LedgerError(f"unknown mechanism kind {kind!r}; expected one of {KINDS}")
        orders = tuple(float(a) for a in orders)
        with self._locked(self.path):
            self.refresh()
            if self._header["delta"] is None:
                if self._entries or delta is None or not 0.0 < delta < 1.0:
                    raise LedgerError(f"{self.path}: the first mechanism must give a delta")
                self._header["delta"] = float(delta)
            fixed = self.delta
            if delta is not None and delta > fixed * (1 + DELTA_TOLERANCE):
                raise DeltaRaisedError(
                    f"{self.path}: the ledger's delta is fixed at {fixed:.3g}; a mechanism "
                    f"accounted at delta={delta:.3g} is refused (raising delta would make the "
                    "same history look cheaper)"
                )
            history = self.history()
            planned, best = epsilon_for(
                [*history, (noise_multiplier, sample_rate, steps)], fixed, orders
            )
            if planned > self.epsilon_budget + BUDGET_TOLERANCE:
                raise PrivacyBudgetExceeded(
                    spent=epsilon_for(history, fixed, orders)[0],
                    planned=planned,
                    budget=self.epsilon_budget,
                    delta=fixed,
                    rounds=len(history),
                    detail=(
                        f"{kind}: noise multiplier {noise_multiplier:.4g}, sample rate "
                        f"{sample_rate:.4g}, {steps} steps"
                    ),
                )
            prev = self._entries[-1].entry_hash if self._entries else self.header_mac
            fields: dict[str, Any] = {
                "seq": len(self._entries),
                "status": "reserved",
                "kind": kind,
                "study_id": str(study_id),
                "run_id": str(run_id),
                "round": int(round_id),
                "noise_multiplier": float(noise_multiplier),
                "sample_rate": float(sample_rate),
                "steps": int(steps),
                "max_grad_norm": float(max_grad_norm),
                "delta": fixed,
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
            key = self._key if self._header["keyed"] else None
            entry = LedgerEntry(**fields, entry_hash=_entry_mac(key, prev, fields))
            self._entries.append(entry)
            self._write()
            return entry

    def complete(self, seq: int) -> LedgerEntry:
        """Mark a reserved mechanism as completed (its description is unchanged)."""
        with self._locked(self.path):
            self.refresh()
            if not 0 <= seq < len(self._entries):
                raise LedgerError(f"{self.path}: no entry {seq} to complete")
            entry = replace(self._entries[seq], status="completed")
            self._entries[seq] = entry
            self._write()
            return entry
