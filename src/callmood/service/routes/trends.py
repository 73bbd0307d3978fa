"""Trends: calls, durations, negativity and alerts per day, week, agent or queue (issue 18),
as JSON for the /trends page and as a CSV download of the same table."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Literal, get_args

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from callmood.exports import spreadsheet_safe
from callmood.results import Severity
from callmood.service.deps import get_db, require_api_token
from callmood.service.routes.calls import CallListQuery, call_list_query
from callmood.store import trends as store_trends

router = APIRouter(prefix="/api", tags=["trends"], dependencies=[Depends(require_api_token)])

TrendGrouping = Literal["day", "week", "agent", "queue"]
SEVERITIES = get_args(Severity)


class TrendGroupOut(BaseModel):
    """One row of the trends table."""

    key: str | None = Field(
        description="Day or week: its first local date (a week starts on Monday); agent or "
        "queue: the name, null for calls without one."
    )
    first_day: date | None = Field(None, description="Day or week: the first local date.")
    last_day: date | None = Field(None, description="Day or week: the last local date.")
    calls: int
    duration_seconds: float = Field(description="Total duration of the calls.")
    scored_calls: int = Field(description="Calls with a negativity score (analysed speech).")
    mean_negativity: float | None = Field(
        description="Mean of the calls' negativity as the call list shows it (the customer's; "
        "the mix for mono calls), over the scored calls; null when none is scored."
    )
    calls_with_alerts: int = Field(description="Calls with at least one alert (any state).")
    alerts: int = Field(description="All alerts of the calls, whatever their state.")
    open_alerts: int = Field(description="Alerts not yet acknowledged or resolved.")
    alerts_by_severity: dict[str, int]
    alerts_by_rule: dict[str, int]

    @classmethod
    def from_group(cls, group: store_trends.TrendGroup) -> TrendGroupOut:
        return cls(
            key=group.key,
            first_day=group.first_day,
            last_day=group.last_day,
            calls=group.calls,
            duration_seconds=round(group.duration_seconds, 3),
            scored_calls=group.scored_calls,
            mean_negativity=None
            if group.mean_negativity is None
            else round(group.mean_negativity, 6),
            calls_with_alerts=group.calls_with_alerts,
            alerts=group.alerts,
            open_alerts=group.open_alerts,
            alerts_by_severity=dict(sorted(group.alerts_by_severity.items())),
            alerts_by_rule=dict(sorted(group.alerts_by_rule.items())),
        )


class TrendsOut(BaseModel):
    """Trends of the calls matching the filters, started within the range."""

    by: TrendGrouping
    tz: str
    date_from: date
    date_to: date
    groups: list[TrendGroupOut]
    totals: TrendGroupOut


def trends_query(
    selection: CallListQuery = Depends(call_list_query),
    by: TrendGrouping = Query("day", description="Group by local day, ISO week, agent or queue."),
    tz: str = Query("UTC", max_length=64, description="IANA time zone of days and weeks."),
    date_from: date | None = Query(
        None, description="First local day (by started_at); default: 29 days before date_to."
    ),
    date_to: date | None = Query(
        None,
        description=f"Last local day, inclusive; default today. At most "
        f"{store_trends.MAX_TREND_DAYS} days in all.",
    ),
    session: Session = Depends(get_db),
) -> store_trends.Trends:
    """The trends of a request; bad zones and ranges are a 422 (store_trends.TrendsError)."""
    zone = store_trends.time_zone(tz)
    chosen = store_trends.trend_range(date_from, date_to, zone)
    return store_trends.compute_trends(session, selection.filters, by, chosen)


@router.get(
    "/trends", response_model=TrendsOut, summary="Calls and alerts per day, week, agent or queue"
)
def get_trends(result: store_trends.Trends = Depends(trends_query)) -> TrendsOut:
    """Calls matching the filters of `/api/calls`, that started on the local days
    `date_from`..`date_to` in `tz` (default: the last 30 days), grouped `by` day, week,
    agent or queue.

    Days and weeks come in order, empty ones included; agents and queues with the most
    calls first. `totals` adds up the groups (a week at either end may reach outside the
    range; only its days inside are counted).
    """
    return TrendsOut(
        by=result.by,  # type: ignore[arg-type]
        tz=result.range.zone.key,
        date_from=result.range.first_day,
        date_to=result.range.last_day,
        groups=[TrendGroupOut.from_group(group) for group in result.groups],
        totals=TrendGroupOut.from_group(result.totals),
    )


TRENDS_CSV_COLUMNS = (
    "group",
    "first_day",
    "last_day",
    "calls",
    "duration_seconds",
    "scored_calls",
    "mean_negativity",
    "calls_with_alerts",
    "alerts",
    "open_alerts",
    *(f"alerts_{severity}" for severity in SEVERITIES),
    "alerts_by_rule",
)


def trends_csv(result: store_trends.Trends) -> str:
    """The trends table as CSV: one row per group, then a "total" row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRENDS_CSV_COLUMNS)
    for group, label in [
        *((group, group.key) for group in result.groups),
        (result.totals, "total"),
    ]:
        writer.writerow(
            [
                # Agent and queue names are typed by people: never a formula in a spreadsheet.
                spreadsheet_safe(label or ""),
                group.first_day.isoformat() if group.first_day else "",
                group.last_day.isoformat() if group.last_day else "",
                group.calls,
                f"{group.duration_seconds:.3f}",
                group.scored_calls,
                "" if group.mean_negativity is None else f"{group.mean_negativity:.4f}",
                group.calls_with_alerts,
                group.alerts,
                group.open_alerts,
                *(group.alerts_by_severity.get(severity, 0) for severity in SEVERITIES),
                spreadsheet_safe(
                    ";".join(
                        f"{rule}={count}" for rule, count in sorted(group.alerts_by_rule.items())
                    )
                ),
            ]
        )
    return buffer.getvalue()


@router.get(
    "/trends.csv",
    summary="The trends table as a CSV download",
    responses={200: {"content": {"text/csv": {}}, "description": "One row per group, then total."}},
)
def get_trends_csv(result: store_trends.Trends = Depends(trends_query)) -> Response:
    """The rows of `/api/trends` (same parameters) as CSV, with a last row "total"."""
    filename = f"trends-{result.by}-{result.range.first_day}-{result.range.last_day}.csv"
    return Response(
        content=trends_csv(result),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
