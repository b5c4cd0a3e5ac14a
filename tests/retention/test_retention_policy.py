"""The retention boundary: no read inside the window is ever removed, for any as-of."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.policy import (
    AsOfError,
    RetentionPolicy,
    check_not_future,
    cutoff,
    day_expires_at,
    day_start,
    days_until_expiry,
    expired_days,
    is_compliant,
    is_day_expired,
    last_expired_day,
    parse_as_of,
)

LONDON = ZoneInfo("Europe/London")
WINDOWS = st.integers(min_value=1, max_value=800)
INSTANTS = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
# Local Europe/London wall-clock times clustered around the DST changes (last Sunday of
# March and October), including the repeated hour (fold=1) and the skipped hour.
DST_EDGES = [
    datetime(y, m, d, 1, 0)
    for y, m, d in [(2024, 3, 31), (2024, 10, 27), (2025, 3, 30), (2025, 10, 26), (2026, 3, 29)]
]


@st.composite
def london_instants(draw: st.DrawFn) -> datetime:
    edge = draw(st.sampled_from(DST_EDGES))
    offset = draw(st.integers(min_value=-36 * 3600, max_value=36 * 3600))
    fold = draw(st.integers(min_value=0, max_value=1))
    local = (edge + timedelta(seconds=offset)).replace(tzinfo=LONDON, fold=fold)
    return local


def _reads_around(as_of: datetime, window: timedelta, offsets: list[int]) -> list[datetime]:
    """Read instants near the cutoff (seconds relative to it), where the boundary matters."""
    c = as_of - window
    return [c + timedelta(seconds=s) for s in offsets]


@settings(max_examples=300, deadline=None)
@given(
    as_of=INSTANTS,
    max_age=WINDOWS,
    offsets=st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=1, max_size=20),
)
def test_no_read_inside_window_is_ever_removed(
    as_of: datetime, max_age: int, offsets: list[int]
) -> None:
    policy = RetentionPolicy(max_age)
    reads = _reads_around(as_of, policy.window, offsets)
    days = {r.astimezone(UTC).date() for r in reads}
    removed = set(expired_days(days, as_of, policy))
    for r in reads:
        age = as_of - r
        if r.date() in removed:
            assert age > policy.window, (r, as_of, max_age)
    # Tightness: a day is kept only if some instant of it is within the window.
    for d in days - removed:
        assert as_of - day_start(d) <= policy.window + timedelta(days=1)
        assert not is_day_expired(d, as_of, policy)
    for d in removed:
        assert is_day_expired(d, as_of, policy)


@settings(max_examples=300, deadline=None)
@given(local=london_instants(), max_age=WINDOWS, seconds=st.integers(-3 * 86400, 3 * 86400))
def test_dst_local_as_of_is_normalised_and_safe(
    local: datetime, max_age: int, seconds: int
) -> None:
    policy = RetentionPolicy(max_age)
    text = local.isoformat()  # carries the local offset (+00:00 or +01:00)
    as_of = parse_as_of(text)
    assert as_of.tzinfo is UTC
    assert as_of == local.astimezone(UTC)
    read = as_of - policy.window + timedelta(seconds=seconds)
    removed = expired_days([read.date()], as_of, policy)
    if removed:
        assert as_of - read > policy.window
    # The same instant written in UTC or in London time gives the same plan.
    assert expired_days([read.date()], parse_as_of(as_of.isoformat()), policy) == removed


@settings(max_examples=200, deadline=None)
@given(as_of=INSTANTS, earlier=st.integers(0, 5000), max_age=WINDOWS)
def test_an_as_of_in_the_past_never_removes_more(
    as_of: datetime, earlier: int, max_age: int
) -> None:
    policy = RetentionPolicy(max_age)
    days = [as_of.date() - timedelta(days=k) for k in range(0, 900, 7)]
    past = as_of - timedelta(hours=earlier)
    assert set(expired_days(days, past, policy)) <= set(expired_days(days, as_of, policy))


def test_boundary_examples() -> None:
    policy = RetentionPolicy(365)
    # As of 2026-01-01 00:00Z the cutoff is 2025-01-01 00:00Z: 2024-12-31 is the last expired day.
    as_of = parse_as_of("2026-01-01")
    assert cutoff(as_of, policy) == datetime(2025, 1, 1, tzinfo=UTC)
    assert last_expired_day(as_of, policy) == date(2024, 12, 31)
    assert expired_days([date(2024, 12, 31), date(2025, 1, 1)], as_of, policy) == [
        date(2024, 12, 31)
    ]
    # One microsecond earlier, 2024-12-31 still holds a read within the window.
    assert not is_day_expired(date(2024, 12, 31), as_of - timedelta(microseconds=1), policy)
    assert day_expires_at(date(2025, 1, 1), policy) == datetime(2026, 1, 2, tzinfo=UTC)
    assert days_until_expiry(date(2025, 1, 1), as_of, policy) == 1
    assert days_until_expiry(date(2024, 1, 1), as_of, policy) == 0


def test_dst_spring_forward_and_fall_back_as_of() -> None:
    policy = RetentionPolicy(365)
    # 2025-03-30 02:30 does not exist in London; 2025-10-26 01:30 exists twice.
    bst = parse_as_of("2025-10-26T01:30:00+01:00")
    gmt = parse_as_of("2025-10-26T01:30:00+00:00")
    assert gmt - bst == timedelta(hours=1)
    assert bst == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    assert last_expired_day(bst, policy) == date(2024, 10, 25)
    # Local midnight in summer is 23:00Z the day before: the UTC day is what counts.
    assert parse_as_of("2025-07-01T00:00:00+01:00") == datetime(2025, 6, 30, 23, tzinfo=UTC)
    assert last_expired_day(parse_as_of("2025-07-01T00:00:00+01:00"), policy) == date(2024, 6, 29)


@pytest.mark.parametrize(
    "text", ["2025-13-01", "yesterday", "2025-06-01T10:00:00", "2025-06-01 10:00", ""]
)
def test_bad_or_naive_as_of_is_refused(text: str) -> None:
    with pytest.raises(AsOfError):
        parse_as_of(text)


def test_future_as_of_is_refused_unless_allowed() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    with pytest.raises(AsOfError, match="in the future"):
        check_not_future(now + timedelta(days=1), now=now)
    assert check_not_future(now + timedelta(days=1), now=now, allow_future=True) > now
    assert check_not_future(now - timedelta(days=400), now=now) < now


def test_policy_validation_and_compliance() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetentionPolicy(0)
    with pytest.raises(ValueError, match="integer"):
        RetentionPolicy(1.5)  # type: ignore[arg-type]

    class Held:
        def days(self) -> list[date]:
            return [date(2025, 1, 1), date(2025, 6, 1)]

    policy = RetentionPolicy(365)
    # 2025-01-01 expires at 2026-01-02T00:00Z (end of the day plus 365 days).
    assert is_compliant(Held(), parse_as_of("2026-01-01T23:59:59Z"), policy)
    assert not is_compliant(Held(), parse_as_of("2026-01-02"), policy)
