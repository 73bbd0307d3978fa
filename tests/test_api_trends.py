"""Trends, `GET /api/trends` and `/api/trends.csv` (issue 18), against a hand count.

Thirteen stored calls of agents Ana and Bo (and one without an agent) in queues sales and
billing, started around the end of summer time in Berlin (Sunday 25 October 2026, 03:00 CEST
-> 02:00 CET, i.e. 01:00 UTC). The range is Monday 19 October to Sunday 1 November 2026 in
Europe/Berlin: two ISO weeks. Every number below was counted by hand from this table:

call  started (UTC)  Berlin day   agent  queue    negativity  duration  alerts
c01   10-18 22:30    10-19        Ana    sales    0.2         4         -
c02   10-18 21:30    (10-18)      Ana    sales    0.8         4         angry critical
c03   10-24 22:30    10-25        Bo     sales    0.8         7         angry critical (acked)
c04   10-25 00:30    10-25 CEST   Bo     billing  0.5         7         angry warning, loud info
c05   10-25 01:30    10-25 CET    Ana    billing  0.2         4         -
c06   10-25 22:30    10-25 CET    -      -        0.6         10        loud warning
c07   10-25 23:30    10-26        Ana    sales    0.8         7         angry critical,
                                                                        loud warning (resolved)
c08   10-28 10:00    10-28        Bo     sales    0.2         4         -
c09   10-28 15:00    10-28        Bo     -        0.5         7         angry critical
c10   11-01 22:59    11-01        Ana    billing  0.6         10        silence info
c11   11-01 23:00    (11-02)      Ana    billing  0.8         7         angry critical
c12   10-21 09:00    10-21        Ana    sales    0.8         7         angry critical
c13   10-21 12:00    10-21        Bo     billing  (none)      4         -

c06 tells the offsets apart: 22:30 UTC is 23:30 CET on the 25th, but would be 00:30 on the
26th (the next week) with the summer offset. c02 and c11 are outside the Berlin range.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from test_api import AUTH, client, make_client  # noqa: F401 (fixtures)

from callmood import store
from callmood.call_metadata import CallMetadata
from callmood.service.routes.trends import TRENDS_CSV_COLUMNS

BERLIN = {"tz": "Europe/Berlin", "date_from": "2026-10-19", "date_to": "2026-11-01"}
NEUTRAL, ANGRY2, MIXED, SAD_MIX = (
    ("neutral",),
    ("angry", "angry"),
    ("neutral", "angry"),
    (
        "sad",
        "neutral",
        "angry",
    ),
)
# id, started (UTC), agent, queue, customer's emotions (-> negativity), alerts (rule, severity)
CALLS = [
    ("c01", (10, 18, 22, 30), "Ana", "sales", NEUTRAL, []),
    ("c02", (10, 18, 21, 30), "Ana", "sales", ("angry",), [("angry_customer", "critical")]),
    ("c03", (10, 24, 22, 30), "Bo", "sales", ANGRY2, [("angry_customer", "critical")]),
    (
        "c04",
        (10, 25, 0, 30),
        "Bo",
        "billing",
        MIXED,
        [("angry_customer", "warning"), ("loud_customer", "info")],
    ),
    ("c05", (10, 25, 1, 30), "Ana", "billing", NEUTRAL, []),
    ("c06", (10, 25, 22, 30), None, None, SAD_MIX, [("loud_customer", "warning")]),
    (
        "c07",
        (10, 25, 23, 30),
        "Ana",
        "sales",
        ANGRY2,
        [("angry_customer", "critical"), ("loud_customer", "warning")],
    ),
    ("c08", (10, 28, 10, 0), "Bo", "sales", NEUTRAL, []),
    ("c09", (10, 28, 15, 0), "Bo", None, MIXED, [("angry_customer", "critical")]),
    ("c10", (11, 1, 22, 59), "Ana", "billing", SAD_MIX, [("silence", "info")]),
    ("c11", (11, 1, 23, 0), "Ana", "billing", ANGRY2, [("angry_customer", "critical")]),
    ("c12", (10, 21, 9, 0), "Ana", "sales", ANGRY2, [("angry_customer", "critical")]),
    ("c13", (10, 21, 12, 0), "Bo", "billing", NEUTRAL, []),  # no analysed speaker
]


def store_fixture(session_factory) -> None:
    """The thirteen calls of the table, c03's alert acknowledged, c07's loud one resolved."""
    with store.session_scope(session_factory) as session:
        for call_id, (month, day, hour, minute), agent, queue, emotions, alerts in CALLS:
            result = make_call_result(
                call_id, customer_emotions=emotions, alert_rules=tuple(r for r, _ in alerts)
            )
            result = result.model_copy(
                update={
                    "alerts": [
                        alert.model_copy(update={"severity": severity})
                        for alert, (_, severity) in zip(result.alerts, alerts, strict=True)
                    ]
                }
            )
            if call_id == "c13":  # no analysed speaker: no negativity
                result = result.model_copy(update={"analyzed_speakers": []})
            started = datetime(2026, month, day, hour, minute, tzinfo=UTC)
            store.save_call_result(
                session,
                result,
                name=f"Call {call_id}",
                metadata=CallMetadata(agent=agent, queue=queue, started_at=started),
                created_at=datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
            )
    with store.session_scope(session_factory) as session:
        for call_id, rule, state in (("c03", "angry_customer", "acknowledged"),):
            (alert,) = [a for a in store.list_alerts(session, call_id=call_id)[0] if a.rule == rule]
            store.set_alert_state(session, alert.id, state)
        (loud,) = [
            a for a in store.list_alerts(session, call_id="c07")[0] if a.rule != "angry_customer"
        ]
        store.set_alert_state(session, loud.id, "resolved")


@pytest.fixture
def seeded(client):  # noqa: F811
    store_fixture(client.app.state.session_factory)
    return client


def trends(client, **params) -> dict:  # noqa: F811
    response = client.get("/api/trends", headers=AUTH, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def numbers(group: dict) -> tuple:
    """calls, duration, scored calls, mean negativity (4 places), calls with alerts, alerts,
    open alerts."""
    mean = group["mean_negativity"]
    return (
        group["calls"],
        group["duration_seconds"],
        group["scored_calls"],
        None if mean is None else round(mean, 4),
        group["calls_with_alerts"],
        group["alerts"],
        group["open_alerts"],
    )


TOTALS = (11, 71.0, 10, 0.52, 7, 9, 7)
TOTAL_SEVERITIES = {"critical": 4, "info": 2, "warning": 3}
TOTAL_RULES = {"angry_customer": 5, "loud_customer": 3, "silence": 1}


def test_per_day_in_berlin_across_the_end_of_summer_time(seeded):
    found = trends(seeded, by="day", **BERLIN)
    assert (found["by"], found["tz"], found["date_from"], found["date_to"]) == (
        "day",
        "Europe/Berlin",
        "2026-10-19",
        "2026-11-01",
    )
    days = {group["key"]: group for group in found["groups"]}
    assert list(days) == [f"2026-10-{d}" for d in range(19, 32)] + ["2026-11-01"], "every day"
    assert numbers(days["2026-10-19"]) == (1, 4.0, 1, 0.2, 0, 0, 0)
    assert numbers(days["2026-10-20"]) == (0, 0.0, 0, None, 0, 0, 0)
    assert numbers(days["2026-10-21"]) == (2, 11.0, 1, 0.8, 1, 1, 1)
    # c03 (00:30 CEST), c04 (02:30 CEST), c05 (02:30 CET, again) and c06 (23:30 CET).
    assert numbers(days["2026-10-25"]) == (4, 28.0, 4, 0.525, 3, 4, 3)
    assert days["2026-10-25"]["alerts_by_severity"] == {"critical": 1, "info": 1, "warning": 2}
    assert days["2026-10-25"]["alerts_by_rule"] == {"angry_customer": 2, "loud_customer": 2}
    assert numbers(days["2026-10-26"]) == (1, 7.0, 1, 0.8, 1, 2, 1)
    assert numbers(days["2026-10-28"]) == (2, 11.0, 2, 0.35, 1, 1, 1)
    assert numbers(days["2026-11-01"]) == (1, 10.0, 1, 0.6, 1, 1, 1)
    assert days["2026-11-01"]["alerts_by_severity"] == {"info": 1}
    empty = {"2026-10-20", "2026-10-22", "2026-10-23", "2026-10-24", "2026-10-27"}
    empty |= {"2026-10-29", "2026-10-30", "2026-10-31"}
    assert {key for key, group in days.items() if group["calls"] == 0} == empty
    assert numbers(found["totals"]) == TOTALS
    assert found["totals"]["alerts_by_severity"] == TOTAL_SEVERITIES
    assert found["totals"]["alerts_by_rule"] == TOTAL_RULES


def test_per_iso_week_starting_monday(seeded):
    found = trends(seeded, by="week", **BERLIN)
    weeks = found["groups"]
    assert [(w["key"], w["first_day"], w["last_day"]) for w in weeks] == [
        ("2026-10-19", "2026-10-19", "2026-10-25"),
        ("2026-10-26", "2026-10-26", "2026-11-01"),
    ]
    # c06 is in the first week: with the summer offset it would be Monday 00:30.
    assert numbers(weeks[0]) == (7, 43.0, 6, round(3.1 / 6, 4), 4, 5, 4)
    assert weeks[0]["alerts_by_severity"] == {"critical": 2, "info": 1, "warning": 2}
    assert weeks[0]["alerts_by_rule"] == {"angry_customer": 3, "loud_customer": 2}
    assert numbers(weeks[1]) == (4, 28.0, 4, 0.525, 3, 4, 3)
    assert weeks[1]["alerts_by_severity"] == {"critical": 2, "info": 1, "warning": 1}
    assert weeks[1]["alerts_by_rule"] == {"angry_customer": 2, "loud_customer": 1, "silence": 1}
    assert numbers(found["totals"]) == TOTALS


def test_a_week_reaching_outside_the_range_counts_only_the_days_inside(seeded):
    # Wednesday 21 October to Tuesday 27: the weeks of the 19th and the 26th, partly.
    found = trends(
        seeded, by="week", tz="Europe/Berlin", date_from="2026-10-21", date_to="2026-10-27"
    )
    assert [w["key"] for w in found["groups"]] == ["2026-10-19", "2026-10-26"]
    assert [w["calls"] for w in found["groups"]] == [6, 1]  # not c01 (the 19th); c07


def test_per_agent_and_per_queue(seeded):
    agents = trends(seeded, by="agent", **BERLIN)["groups"]
    assert [group["key"] for group in agents] == ["Ana", "Bo", None]
    assert numbers(agents[0]) == (5, 32.0, 5, 0.52, 3, 4, 3)
    assert numbers(agents[1]) == (5, 29.0, 4, 0.5, 3, 4, 3)
    assert numbers(agents[2]) == (1, 10.0, 1, 0.6, 1, 1, 1)
    assert agents[1]["alerts_by_severity"] == {"critical": 2, "info": 1, "warning": 1}
    queues = trends(seeded, by="queue", **BERLIN)
    assert [group["key"] for group in queues["groups"]] == ["sales", "billing", None]
    by_queue = [numbers(group) for group in queues["groups"]]
    assert by_queue == [
        (5, 29.0, 5, 0.56, 3, 4, 2),
        (4, 25.0, 3, round(1.3 / 3, 4), 2, 3, 3),
        (2, 17.0, 2, 0.55, 2, 2, 2),
    ]
    assert numbers(queues["totals"]) == TOTALS


def test_the_zone_decides_the_days(seeded):
    # In UTC, c01 started on the 18th (out) and c11 on 1 November (in); c03 on the 24th.
    found = trends(seeded, by="day", tz="UTC", date_from="2026-10-19", date_to="2026-11-01")
    days = {group["key"]: group["calls"] for group in found["groups"]}
    assert (days["2026-10-19"], days["2026-10-24"], days["2026-10-25"]) == (0, 1, 4)
    assert days["2026-11-01"] == 2
    assert found["totals"]["calls"] == 11 and found["totals"]["duration_seconds"] == 74.0


def test_the_filters_of_the_call_list_apply(seeded):
    weeks = trends(seeded, by="week", agent="Bo", **BERLIN)["groups"]
    assert [numbers(w) for w in weeks] == [(3, 18.0, 2, 0.65, 2, 3, 2), (2, 11.0, 2, 0.35, 1, 1, 1)]
    queues = trends(seeded, by="queue", has_alerts="true", **BERLIN)["groups"]
    assert [(g["key"], g["calls"]) for g in queues] == [("sales", 3), ("billing", 2), (None, 2)]
    assert trends(seeded, by="agent", queue="billing", q="c1", **BERLIN)["totals"]["calls"] == 2


def test_the_csv_is_the_table_with_a_total_row(seeded):
    response = seeded.get("/api/trends.csv", headers=AUTH, params={"by": "agent", **BERLIN})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "trends-agent-2026-10-19-2026-11-01.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == TRENDS_CSV_COLUMNS
    assert [(r["group"], r["calls"], r["open_alerts"]) for r in rows] == [
        ("Ana", "5", "3"),
        ("Bo", "5", "3"),
        ("", "1", "1"),
        ("total", "11", "7"),
    ]
    assert rows[-1]["mean_negativity"] == "0.5200" and rows[-1]["duration_seconds"] == "71.000"
    assert (rows[-1]["alerts_critical"], rows[-1]["alerts_warning"], rows[-1]["alerts_info"]) == (
        "4",
        "3",
        "2",
    )
    assert rows[-1]["alerts_by_rule"] == "angry_customer=5;loud_customer=3;silence=1"


def test_agent_names_that_look_like_formulas_are_neutralised_in_the_csv(client):  # noqa: F811
    with store.session_scope(client.app.state.session_factory) as session:
        store.save_call_result(
            session,
            make_call_result("x"),
            metadata=CallMetadata(agent="=cmd|'/c calc'!A1", started_at=datetime.now(UTC)),
        )
    response = client.get("/api/trends.csv", headers=AUTH, params={"by": "agent"})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[0]["group"] == "'=cmd|'/c calc'!A1"


def test_the_default_range_is_the_last_30_days_in_the_zone(client):  # noqa: F811
    found = trends(client, tz="Pacific/Auckland")
    today = datetime.now(ZoneInfo("Pacific/Auckland")).date()
    assert (found["date_from"], found["date_to"]) == (
        (today - timedelta(days=29)).isoformat(),
        today.isoformat(),
    )
    assert len(found["groups"]) == 30 and found["tz"] == "Pacific/Auckland"
    assert numbers(found["totals"]) == (0, 0.0, 0, None, 0, 0, 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"by": "month"}, "by"),
        ({"tz": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({"tz": "../../etc/passwd"}, "not an IANA time zone"),
        ({"date_from": "2026-11-02", "date_to": "2026-11-01"}, "is before date_from"),
        ({"date_from": "2025-01-01", "date_to": "2026-01-02"}, "at most 366 days"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"min_negativity": "2"}, "min_negativity"),
    ],
)
def test_bad_parameters_get_a_clear_422(client, params, message):  # noqa: F811
    response = client.get("/api/trends", headers=AUTH, params=params)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert client.get("/api/trends.csv", headers=AUTH, params=params).status_code == 422


def test_a_leap_year_is_allowed_and_trends_need_the_token(client):  # noqa: F811
    year = trends(client, date_from="2028-01-01", date_to="2028-12-31")
    assert len(year["groups"]) == 366
    assert client.get("/api/trends").status_code == 401
    assert client.get("/api/trends.csv").status_code == 401
