"""Retention checks of a run's force stores, as the DPIA receives them.

Checking a store (is it compliant with its retention policy, does its signed purge log
verify?) needs the retention package, which ``privacy`` must not import. The caller (the
``anprfed dpia`` command, ``research.dpia.cli``) runs the checks and passes a
:data:`StoreChecker`; the DPIA only reports what it returns, citing the store files checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class StoreCheck:
    """One force store's retention status as of the study date."""

    force: str
    retention_days: int
    as_of: str
    compliant: bool  # no expired day partition held, no interrupted purge
    days_held: int
    expired_days_held: int
    log_ok: bool  # chain, signatures and signed head verify
    log_entries: int
    problems: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default_factory=tuple)  # paths relative to the run folder


StoreChecker = Callable[[Path, datetime], list[StoreCheck]]
"""``checker(run_dir, as_of)`` -> one :class:`StoreCheck` per store in the run folder."""
