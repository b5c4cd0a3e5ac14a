"""Recompute a ledger's epsilons with an independent accountant (Google's dp-accounting).

For every entry, the rounds up to and including it are composed in dp-accounting's
``RdpAccountant`` as ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)),
steps)`` with the entry's RDP orders, and epsilon is read at the entry's delta. This uses
only the mechanism fields of the ledger -- nothing from Opacus -- so it is a check on both the
arithmetic and on what was recorded.

Command line: ``python -m privacy.dp.crosscheck STORE/privacy/ledger.json``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dp_accounting
from dp_accounting.rdp import RdpAccountant

from privacy.dp.ledger import LedgerEntry, PrivacyLedger

DEFAULT_TOLERANCE = 0.01


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Silence dp-accounting's per-order convergence warnings (absl logger) while composing.

    At large sample rates it gives up on some small fractional orders and excludes them, which
    can only make its epsilon larger (see docs/residual-risks.md, R5).
    """
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def dp_accounting_epsilon(
    mechanisms: Sequence[tuple[float, float, int]], delta: float, orders: Sequence[float]
) -> float:
    """Epsilon at ``delta`` of composed Poisson-subsampled Gaussian mechanisms (dp-accounting)."""
    accountant = RdpAccountant(orders=list(orders))
    with _quiet_absl():
        for sigma, q, steps in mechanisms:
            event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
            accountant.compose(dp_accounting.SelfComposedDpEvent(event, int(steps)))
        return float(accountant.get_epsilon(delta))


@dataclass(frozen=True)
class CrosscheckRow:
    """One ledger entry: the recorded cumulative epsilon and the independent recomputation."""

    seq: int
    recorded: float
    recomputed: float

    @property
    def relative_difference(self) -> float:
        """|recorded - recomputed| / recomputed (0 when both are 0)."""
        if self.recomputed == 0:
            return 0.0 if self.recorded == 0 else float("inf")
        return abs(self.recorded - self.recomputed) / self.recomputed


@dataclass(frozen=True)
class CrosscheckReport:
    """Per-entry comparison and the worst relative difference."""

    rows: tuple[CrosscheckRow, ...]
    tolerance: float

    @property
    def max_relative_difference(self) -> float:
        return max((r.relative_difference for r in self.rows), default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_relative_difference <= self.tolerance


def crosscheck_entries(
    entries: Sequence[LedgerEntry], tolerance: float = DEFAULT_TOLERANCE
) -> CrosscheckReport:
    """Recompute every entry's cumulative epsilon with dp-accounting."""
    rows = []
    for i, entry in enumerate(entries):
        mechanisms = [e.mechanism for e in entries[: i + 1]]
        recomputed = dp_accounting_epsilon(mechanisms, entry.delta, entry.orders)
        rows.append(CrosscheckRow(entry.seq, entry.epsilon_after, recomputed))
    return CrosscheckReport(tuple(rows), tolerance)


def crosscheck_ledger(
    ledger: PrivacyLedger, tolerance: float = DEFAULT_TOLERANCE
) -> CrosscheckReport:
    """``crosscheck_entries`` over a ledger's recorded rounds."""
    return crosscheck_entries(ledger.entries, tolerance)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the per-entry comparison; exit 1 if any entry differs by more than the tolerance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    args = parser.parse_args(argv)
    ledger = PrivacyLedger.open(args.ledger)
    report = crosscheck_ledger(ledger, args.tolerance)
    print(f"budget epsilon={ledger.epsilon_budget:g}; {len(report.rows)} round(s)")
    print("seq  recorded_eps  dp_accounting_eps  rel_diff")
    for r in report.rows:
        print(f"{r.seq:3d}  {r.recorded:12.6f}  {r.recomputed:17.6f}  {r.relative_difference:8.2e}")
    print(
        f"max relative difference {report.max_relative_difference:.2e} "
        f"({'OK' if report.ok else 'FAIL'} at tolerance {args.tolerance:g})"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
