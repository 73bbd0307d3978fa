"""Benchmark trends bucketing: in SQL (callmood.store.trends) against fetching the rows and
bucketing them in Python, on SQLite and PostgreSQL.

Seeds N calls (default 10,000, no windows: trends never read them) started over 90 days and
5 alerts per call on average, then times `compute_trends(by="day", tz="Europe/Berlin")` over
the 90 days, and the Python way: read every call's (id, started_at, duration, negativity,
alert_count) and every alert's (call_id, severity, rule, state), bucket by local day with
zoneinfo. Both must give the same numbers (checked). Prints median milliseconds.

Usage: python benchmarks/trends.py [--calls 10000] [--repeats 5]
       [--postgres postgresql+psycopg://user:password@host/db]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from callmood import store
from callmood.store import trends
from callmood.store.models import AlertRecord, CallRecord

ZONE = "Europe/Berlin"
LAST_DAY = date(2026, 11, 30)
DAYS = 90


def seed(session_factory, calls: int) -> None:
    rng = random.Random(7)
    start = datetime.combine(LAST_DAY - timedelta(days=DAYS - 1), datetime.min.time(), UTC)
    call_rows, alert_rows = [], []
    for number in range(calls):
        started = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        alerts = rng.choice([0, 0, 0, 5, 10, 10])
        call_rows.append(
            {
                "id": f"call{number:06d}",
                "name": f"Call {number}",
                "source": "bench",
                "created_at": started,
                "started_at": started,
                "agent": f"agent{rng.randrange(40)}",
                "queue": rng.choice(["sales", "billing", "support", None]),
                "duration_seconds": rng.uniform(30, 900),
                "has_speech": True,
                "main_speaker": "customer",
                "negativity": rng.random(),
                "alert_count": alerts,
                "model_name": "bench",
                "result_json": "{}",
            }
        )
        for index in range(alerts):
            alert_rows.append(
                {
                    "call_id": f"call{number:06d}",
                    "alert_key": f"a{index}",
                    "rule": rng.choice(["angry_customer", "loud_customer", "silence"]),
                    "kind": "sustained",
                    "speaker": "customer",
                    "severity": rng.choice(["info", "warning", "critical"]),
                    "opened_at": 1.0,
                    "value": 0.5,
                    "message": "bench",
                    "evidence": [],
                    "created_at": started,
                    "state": rng.choice(["open", "acknowledged", "resolved"]),
                }
            )
    with store.session_scope(session_factory) as session:
        session.execute(insert(CallRecord), call_rows)
        session.execute(insert(AlertRecord), alert_rows)


def in_python(session, chosen: trends.TrendRange) -> dict[date, tuple[int, int, int]]:
    """(calls, alerts, open alerts) per local day, read row by row and bucketed here."""
    calls = session.execute(
        select(CallRecord.id, CallRecord.started_at, CallRecord.duration_seconds).where(
            CallRecord.started_at >= chosen.start_utc, CallRecord.started_at < chosen.end_utc
        )
    ).all()
    day_of = {call_id: started.astimezone(chosen.zone).date() for call_id, started, _ in calls}
    counts: dict[date, Counter] = defaultdict(Counter)
    for call_id, _, _ in calls:
        counts[day_of[call_id]]["calls"] += 1
    alerts = session.execute(
        select(AlertRecord.call_id, AlertRecord.severity, AlertRecord.rule, AlertRecord.state)
        .join(CallRecord, CallRecord.id == AlertRecord.call_id)
        .where(CallRecord.started_at >= chosen.start_utc, CallRecord.started_at < chosen.end_utc)
    ).all()
    for call_id, _, _, state in alerts:
        counts[day_of[call_id]]["alerts"] += 1
        counts[day_of[call_id]]["open"] += state == "open"
    return {day: (c["calls"], c["alerts"], c["open"]) for day, c in counts.items()}


def median_ms(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def run(url: str, calls: int, repeats: int, label: str) -> None:
    engine = store.create_database_engine(url)
    store.upgrade_database(engine)
    session_factory = store.make_session_factory(engine)
    seed(session_factory, calls)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    zone = trends.time_zone(ZONE)
    chosen = trends.trend_range(LAST_DAY - timedelta(days=DAYS - 1), LAST_DAY, zone)
    with session_factory() as session:
        sql_ms, found = median_ms(
            lambda: trends.compute_trends(session, store.CallFilter(), "day", chosen), repeats
        )
        python_ms, counted = median_ms(lambda: in_python(session, chosen), repeats)
    by_sql = {
        date.fromisoformat(g.key): (g.calls, g.alerts, g.open_alerts)
        for g in found.groups  # type: ignore[attr-defined]
        if g.calls
    }
    assert by_sql == counted, "SQL and Python bucketing disagree"
    total = found.totals  # type: ignore[attr-defined]
    print(
        f"{label}: {total.calls} calls, {total.alerts} alerts, {DAYS} days in {ZONE}: "
        f"SQL {sql_ms:.1f} ms, Python {python_ms:.1f} ms (median of {repeats})"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", help="an empty PostgreSQL database's URL (tables added)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{Path(folder) / 'bench.db'}", options.calls, options.repeats, "SQLite")
    if options.postgres:
        run(options.postgres, options.calls, options.repeats, "PostgreSQL")


if __name__ == "__main__":
    main()
