"""The retention rule: which UTC day partitions have passed the retention window.

Reads are stored by **UTC calendar day**. A day partition ``D`` holds reads with
``D 00:00Z <= read_at < (D + 1 day) 00:00Z``. Given the instant ``T`` (the *as-of* instant,
always normalised to UTC) and a window of ``W = max_age_days`` days, define the
**cutoff** ``C = T - W`` (exact 24-hour days, so DST never shortens the window).

A day ``D`` is **expired** as of ``T`` iff ``(D + 1 day) 00:00Z <= C``.

Every read ``r`` of an expired day has ``r < (D + 1) 00:00Z <= C``, hence age ``T - r > W``:
no read that is at most ``W`` days old is ever removed. The rule is also tight: the first
day not expired contains instants whose age is at most ``W``. Equivalently, the last expired
day is ``date(C) - 1 day``.

``--as-of`` may be a calendar date (taken as ``00:00Z`` at the start of that date, the
conservative reading) or an ISO-8601 datetime **with** a UTC offset (``Z``, ``+01:00`` for
Europe/London summer time, ...). A naive datetime is refused: across a DST change a local
wall-clock time can be ambiguous or non-existent. An as-of later than now is refused unless
explicitly allowed, so a purge cannot be tricked into deleting early.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

DEFAULT_MAX_AGE_DAYS = 365
ONE_DAY = timedelta(days=1)
#: How far an as-of may lie ahead of the clock before it counts as "in the future"
#: (absorbs clock skew between the caller and this process; never enough to expire a day).
FUTURE_TOLERANCE = timedelta(seconds=60)


class AsOfError(ValueError):
    """An as-of value that cannot be used (unparseable, naive, or in the future)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """How long reads are kept: ``max_age_days`` whole days of 24 hours (default 365)."""

    max_age_days: int = DEFAULT_MAX_AGE_DAYS

    def __post_init__(self) -> None:
        if isinstance(self.max_age_days, bool) or not isinstance(self.max_age_days, int):
            raise ValueError(f"max_age_days must be an integer, got {self.max_age_days!r}")
        if self.max_age_days < 1:
            raise ValueError(f"max_age_days must be at least 1, got {self.max_age_days}")

    @property
    def window(self) -> timedelta:
        """The retention window as an exact duration."""
        return timedelta(days=self.max_age_days)

    def to_dict(self) -> dict[str, int | str]:
        """A JSON-ready description of the policy (recorded in the purge log)."""
        return {"max_age_days": self.max_age_days, "rule": "utc-day-end<=as_of-max_age"}


class _HasDays(Protocol):
    def days(self) -> list[date]: ...


def utc_now() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)


def day_start(day: date) -> datetime:
    """``00:00Z`` at the start of the UTC day ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def to_utc(instant: datetime) -> datetime:
    """Normalise an aware datetime to UTC; refuse a naive one."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise AsOfError(
            f"as-of datetime {instant.isoformat()} has no UTC offset; give one "
            "(e.g. 2025-03-30T09:00:00+01:00 or ...Z) or a plain date"
        )
    return instant.astimezone(UTC)


def parse_as_of(text: str) -> datetime:
    """Parse an ``--as-of`` value: a date (``YYYY-MM-DD`` = 00:00Z) or an offset-aware datetime.

    Returns an aware UTC datetime. Raises :class:`AsOfError` naming the bad value.
    """
    value = text.strip()
    if len(value) == 10:
        try:
            return day_start(date.fromisoformat(value))
        except ValueError as exc:
            raise AsOfError(f"--as-of {text!r} is not a valid date (YYYY-MM-DD)") from exc
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise AsOfError(
            f"--as-of {text!r} is neither a date (YYYY-MM-DD) nor an ISO-8601 datetime with offset"
        ) from exc
    return to_utc(parsed)


def check_not_future(
    as_of: datetime, now: datetime | None = None, allow_future: bool = False
) -> datetime:
    """Return ``as_of`` in UTC, refusing one later than ``now`` (+60 s skew) unless allowed."""
    as_of = to_utc(as_of)
    now = to_utc(now) if now is not None else utc_now()
    if not allow_future and as_of > now + FUTURE_TOLERANCE:
        now_text = now.isoformat(timespec="seconds")
        raise AsOfError(
            f"as-of {as_of.isoformat()} is in the future (now {now_text}); "
            "a purge must not delete early. Pass --allow-future-as-of to override deliberately."
        )
    return as_of


def cutoff(as_of: datetime, policy: RetentionPolicy) -> datetime:
    """``as_of - window``: reads strictly before it are past retention."""
    return to_utc(as_of) - policy.window


def is_read_expired(read_at: datetime, as_of: datetime, policy: RetentionPolicy) -> bool:
    """Whether one read is past retention (older than the window) as of ``as_of``."""
    return to_utc(read_at) < cutoff(as_of, policy)


def last_expired_day(as_of: datetime, policy: RetentionPolicy) -> date:
    """The latest UTC day that is expired as of ``as_of`` (every earlier day is expired too)."""
    return cutoff(as_of, policy).date() - ONE_DAY


def is_day_expired(day: date, as_of: datetime, policy: RetentionPolicy) -> bool:
    """Whether every read of UTC day ``day`` is older than the window as of ``as_of``."""
    return day_start(day) + ONE_DAY <= cutoff(as_of, policy)


def expired_days(days: Iterable[date], as_of: datetime, policy: RetentionPolicy) -> list[date]:
    """The sorted subset of ``days`` that is expired as of ``as_of``."""
    last = last_expired_day(as_of, policy)
    return sorted(d for d in set(days) if d <= last)


def day_expires_at(day: date, policy: RetentionPolicy) -> datetime:
    """The first instant at which ``day`` is expired: end of the day plus the window."""
    return day_start(day) + ONE_DAY + policy.window


def days_until_expiry(day: date, as_of: datetime, policy: RetentionPolicy) -> int:
    """Whole days (rounded up) from ``as_of`` until ``day`` expires; 0 if already expired."""
    seconds = (day_expires_at(day, policy) - to_utc(as_of)).total_seconds()
    return max(0, math.ceil(seconds / 86400))


def is_compliant(store: _HasDays, as_of: datetime, policy: RetentionPolicy) -> bool:
    """True iff the store holds no day partition that is expired as of ``as_of``."""
    return not expired_days(store.days(), as_of, policy)
