"""Trends: the calls of a filter aggregated per day, week, agent or queue (issue 18).

Everything is counted by the database in two GROUP BY queries (calls, then their alerts), on
SQLite and PostgreSQL alike. Days and weeks are those of a time zone (IANA name): a call
belongs to the local day on which it started (`calls.started_at`).

Why the bucketing is SQL and not Python: a local day is `(utc_seconds + utc_offset) // 86400`,
and inside a range of at most 366 days the zone's UTC offset changes only at a few known
instants (its daylight-saving transitions), which zoneinfo gives us. So the offset is a small
`CASE` over those instants, and the only backend-specific piece is "seconds since 1970 of a
timestamp" (`_epoch_seconds`). Fetching the rows and bucketing them in Python was the
alternative; it reads every call (and every alert) of the range into the server instead of
one row per bucket, see docs/dashboard.md for the measurement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, ColumnElement, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from callmood.errors import CallmoodError
from callmood.store.models import AlertRecord, CallRecord
from callmood.store.repository import CallFilter, matching_calls

TREND_GROUPS = ("day", "week", "agent", "queue")
#: The longest range: a year of day buckets (a leap year has 366 days).
MAX_TREND_DAYS = 366
DEFAULT_TREND_DAYS = 30
_DAY_SECONDS = 86400
_EPOCH = date(1970, 1, 1)
# How finely the zone's offset is sampled to find its transitions (none is closer than that).
_OFFSET_SAMPLE = timedelta(hours=6)


class TrendsError(CallmoodError):
    """A trends request that cannot be answered: unknown grouping or zone, bad range."""

    status_code = 422


class _epoch_seconds(FunctionElement[int]):  # noqa: N801 (an SQL function's name)
    """Whole seconds since 1970-01-01 UTC of a timestamp column."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(_epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: _epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps UTC times as text ('2026-11-03 08:00:00.000000'); strftime('%s') reads it.
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(_epoch_seconds, "postgresql")
def _epoch_seconds_postgresql(element: _epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Berlin", "UTC").

    Raises
    ------
    TrendsError
        Not a time zone zoneinfo knows.
    """
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TrendsError(
            f"tz {name[:60]!r}: not an IANA time zone name (e.g. UTC, Europe/Berlin)"
        ) from None


@dataclass(frozen=True)
class TrendRange:
    """Local days `first_day`..`last_day` (inclusive) of a zone, and their UTC bounds."""

    first_day: date
    last_day: date
    zone: ZoneInfo

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def start_utc(self) -> datetime:
        return local_midnight(self.first_day, self.zone)

    @property
    def end_utc(self) -> datetime:
        """Exclusive: the local midnight after the last day."""
        return local_midnight(self.last_day + timedelta(days=1), self.zone)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which `day` begins in `zone` (where a DST change skips midnight,
    the first local time that exists)."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def trend_range(
    first_day: date | None, last_day: date | None, zone: ZoneInfo, *, today: date | None = None
) -> TrendRange:
    """The requested days, by default the last 30 ending today (in `zone`).

    Raises
    ------
    TrendsError
        The range is reversed or longer than 366 days.
    """
    today = today or datetime.now(zone).date()
    if last_day is None:
        last_day = max(today, first_day) if first_day else today
    if first_day is None:
        first_day = last_day - timedelta(days=DEFAULT_TREND_DAYS - 1)
    if first_day > last_day:
        raise TrendsError(
            f"date_to {last_day.isoformat()} is before date_from {first_day.isoformat()}"
        )
    chosen = TrendRange(first_day, last_day, zone)
    if chosen.days > MAX_TREND_DAYS:
        raise TrendsError(
            f"{chosen.days} days from {first_day.isoformat()} to {last_day.isoformat()}: "
            f"at most {MAX_TREND_DAYS} days (one bucket per day)"
        )
    return chosen


def utc_offsets(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset in seconds from `start` to `end` (UTC): `(since, offset)` pairs,
    the first at `start`, then one per transition (to the second)."""

    def offset_at(moment: datetime) -> int:
        return int(moment.astimezone(zone).utcoffset().total_seconds())  # type: ignore[union-attr]

    changes = [(start, offset_at(start))]
    sample = start
    while sample < end:
        following = min(sample + _OFFSET_SAMPLE, end)
        if offset_at(following) != changes[-1][1]:
            # The first second with the new offset: bisect the sampled interval.
            low, high = sample, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if offset_at(middle) == changes[-1][1]:
                    low = middle
                else:
                    high = middle
            changes.append((high.replace(microsecond=0), offset_at(high)))
        sample = following
    return changes


def _local_seconds(started_at: ColumnElement[Any], offsets: list[tuple[datetime, int]]) -> Any:
    """Seconds since 1970 of the local wall-clock time (UTC seconds + the offset then)."""
    if len(offsets) == 1:
        offset: Any = literal(offsets[0][1], BigInteger())
    else:
        # Newest transition first: the first instant the call is not before wins.
        offset = case(
            *[
                (started_at >= since, literal(seconds, BigInteger()))
                for since, seconds in offsets[:0:-1]
            ],
            else_=literal(offsets[0][1], BigInteger()),
        )
    return _epoch_seconds(started_at) + offset


def _bucket_origin(by: str, chosen: TrendRange) -> date:
    # Weeks are ISO weeks: they start on Monday, also when the range does not.
    if by == "week":
        return chosen.first_day - timedelta(days=chosen.first_day.weekday())
    return chosen.first_day


@dataclass
class TrendGroup:
    """What one day, week, agent or queue adds up to."""

    key: str | None
    calls: int = 0
    duration_seconds: float = 0.0
    #: Calls with a negativity score (those with analysed speech): the mean's base.
    scored_calls: int = 0
    negativity_sum: float = 0.0
    calls_with_alerts: int = 0
    alerts: int = 0
    open_alerts: int = 0
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    alerts_by_rule: dict[str, int] = field(default_factory=dict)
    #: Days and weeks: the local dates the bucket covers (a week's may reach out of the range).
    first_day: date | None = None
    last_day: date | None = None

    @property
    def mean_negativity(self) -> float | None:
        """The mean of the calls' negativity (as the calls list shows it), None without any."""
        return self.negativity_sum / self.scored_calls if self.scored_calls else None

    def add(self, other: TrendGroup) -> None:
        """Count `other` in too (for the totals)."""
        for name in (
            "calls",
            "duration_seconds",
            "scored_calls",
            "negativity_sum",
            "calls_with_alerts",
            "alerts",
            "open_alerts",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in (
            (self.alerts_by_severity, other.alerts_by_severity),
            (self.alerts_by_rule, other.alerts_by_rule),
        ):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count


@dataclass
class Trends:
    """The groups of a trends request, in order, and their totals."""

    by: str
    range: TrendRange
    groups: list[TrendGroup]
    totals: TrendGroup


def compute_trends(session: Session, filters: CallFilter, by: str, chosen: TrendRange) -> Trends:
    """Calls matching `filters` that started within `chosen`, grouped `by` day, week (in
    the range's zone), agent or queue.

    Days and weeks come out in order, every one of the range (empty ones as zeros); agents
    and queues with the most calls first (calls without one as the key None, last).

    Raises
    ------
    TrendsError
        `by` is not one of :data:`TREND_GROUPS`.
    """
    if by not in TREND_GROUPS:
        raise TrendsError(f"by {by!r}: must be one of {', '.join(TREND_GROUPS)}")
    filters = dataclasses.replace(
        filters, started_from=chosen.start_utc, started_before=chosen.end_utc
    )
    origin = _bucket_origin(by, chosen)
    if by in ("day", "week"):
        offsets = utc_offsets(chosen.zone, chosen.start_utc, chosen.end_utc)
        origin_seconds = (origin - _EPOCH).days * _DAY_SECONDS
        bucket_seconds = _DAY_SECONDS * (7 if by == "week" else 1)
        # Never negative (every call started after the origin), so // is a floor everywhere.
        key: Any = (
            _local_seconds(CallRecord.started_at, offsets) - origin_seconds
        ) // bucket_seconds
    else:
        key = CallRecord.agent if by == "agent" else CallRecord.queue
    # The key is computed in a subquery and grouped by name: PostgreSQL does not see that
    # the same expression with its own bound parameters in GROUP BY is the selected one.
    keyed = (
        matching_calls(filters)
        .with_only_columns(
            CallRecord.id,
            key.label("key"),
            CallRecord.duration_seconds,
            CallRecord.negativity,
            CallRecord.alert_count,
        )
        .subquery()
    )
    groups: dict[Any, TrendGroup] = {}
    call_rows = session.execute(
        select(
            keyed.c.key,
            func.count(),
            func.coalesce(func.sum(keyed.c.duration_seconds), 0.0),
            func.count(keyed.c.negativity),
            func.coalesce(func.sum(keyed.c.negativity), 0.0),
            func.sum(case((keyed.c.alert_count > 0, 1), else_=0)),
        ).group_by(keyed.c.key)
    )
    for found, calls, duration, scored, negativity, with_alerts in call_rows:
        groups[found] = TrendGroup(
            key=None,
            calls=calls,
            duration_seconds=float(duration),
            scored_calls=scored,
            negativity_sum=float(negativity),
            calls_with_alerts=int(with_alerts or 0),
        )
    alert_rows = session.execute(
        select(
            keyed.c.key,
            AlertRecord.severity,
            AlertRecord.rule,
            func.count(),
            func.sum(case((AlertRecord.state == "open", 1), else_=0)),
        )
        .join(AlertRecord, AlertRecord.call_id == keyed.c.id)
        .group_by(keyed.c.key, AlertRecord.severity, AlertRecord.rule)
    )
    for found, severity, rule, count, still_open in alert_rows:
        group = groups[found]
        group.alerts += count
        group.open_alerts += int(still_open or 0)
        group.alerts_by_severity[severity] = group.alerts_by_severity.get(severity, 0) + count
        group.alerts_by_rule[rule] = group.alerts_by_rule.get(rule, 0) + count
    ordered = _ordered_groups(by, groups, origin, chosen)
    totals = TrendGroup(key=None, first_day=chosen.first_day, last_day=chosen.last_day)
    for group in ordered:
        totals.add(group)
    return Trends(by=by, range=chosen, groups=ordered, totals=totals)


def _ordered_groups(
    by: str, groups: dict[Any, TrendGroup], origin: date, chosen: TrendRange
) -> list[TrendGroup]:
    if by in ("agent", "queue"):
        for name, group in groups.items():
            group.key = name
        return sorted(groups.values(), key=lambda g: (g.key is None, -g.calls, g.key or ""))
    step = 7 if by == "week" else 1
    count = ((chosen.last_day - origin).days // step) + 1
    ordered = []
    for index in range(count):
        group = groups.get(index) or TrendGroup(key=None)
        group.first_day = origin + timedelta(days=index * step)
        group.last_day = group.first_day + timedelta(days=step - 1)
        group.key = group.first_day.isoformat()
        ordered.append(group)
    unexpected = set(groups) - set(range(count))
    assert not unexpected, f"calls outside the range's buckets: {unexpected}"
    return ordered
