"""Benchmark the supervisor's dashboard with 10,000 calls: every list page and API request,
without and with the dashboard indexes (migration 0006), on SQLite and PostgreSQL.

Seeds a real database (support.seed_calls: 10,000 calls started over 90 days, 40 agents,
3 queues, tags, about 50,000 alerts, and 20 calls stored through `save_call_result` with a
10-minute result of windows and segments), then times the routes through the real app
(FastAPI TestClient, logged in: server time plus an in-process client, no network). Each
route is asked `--repeats` times; the baseline is the same database with the 0006 indexes
dropped (the schema of migration 0005), then the indexes are created and everything is
timed again. Prints p50 and p95 milliseconds per route and the ratio of the medians.

`--explain` prints the query plans of the list queries (EXPLAIN QUERY PLAN on SQLite,
EXPLAIN ANALYZE on PostgreSQL), with the indexes.

Usage: python benchmarks/dashboard.py [--calls 10000] [--repeats 20] [--explain]
       [--postgres postgresql+psycopg://user:password@host/db]  (an empty schema is made there)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select, text
from support import DAYS, LAST_DAY, seed_calls

from callmood import store
from callmood.store.models import DASHBOARD_INDEXES, AlertRecord, Base, CallRecord

TOKEN = "benchmark-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIRST_DAY = LAST_DAY.fromordinal(LAST_DAY.toordinal() - DAYS + 1)
TRENDS = f"/api/trends?tz=Europe/Berlin&date_from={FIRST_DAY}&date_to={LAST_DAY}"
SLOW_MS = 3000
SORTS = ["-date", "date", "-started_at", "-duration", "duration", "-negativity", "-alerts"]


def routes(call_id: str, calls: int, alerts: int) -> list[tuple[str, str]]:
    """(label, path) of what a supervisor's browser asks for."""
    late_calls, late_alerts = max(0, calls - 50), max(0, alerts - 50)
    listed = [
        ("GET /calls (page)", "/calls"),
        ("GET /calls?agent&sort=-alerts (page)", "/calls?agent=agent7&sort=-alerts"),
        (f"GET /calls?offset={late_calls} (page)", f"/calls?offset={late_calls}"),
        ("GET /api/calls", "/api/calls"),
        ("GET /api/calls?agent=agent7", "/api/calls?agent=agent7"),
        ("GET /api/calls?queue=billing", "/api/calls?queue=billing"),
        ("GET /api/calls?tag=vip", "/api/calls?tag=vip"),
        (
            "GET /api/calls?created 2 weeks",
            "/api/calls?created_from=2026-11-01T00:00:00Z&created_to=2026-11-14T23:59:59Z",
        ),
        *[(f"GET /api/calls?sort={sort}", f"/api/calls?sort={sort}") for sort in SORTS],
        (f"GET /api/calls?offset={late_calls}", f"/api/calls?offset={late_calls}"),
        (
            f"GET /api/calls?sort=-alerts&offset={late_calls}",
            f"/api/calls?sort=-alerts&offset={late_calls}",
        ),
        ("GET /api/calls.csv (all calls)", "/api/calls.csv"),
        ("GET /api/calls.csv?agent=agent7", "/api/calls.csv?agent=agent7"),
        ("GET /alerts (page)", "/alerts"),
        ("GET /alerts?state=open (page)", "/alerts?state=open"),
        (f"GET /alerts?offset={late_alerts} (page)", f"/alerts?offset={late_alerts}"),
        ("GET /api/alerts", "/api/alerts"),
        ("open-alert badge: ?state=open&limit=1", "/api/alerts?state=open&limit=1"),
        ("GET /api/alerts?severity=critical", "/api/alerts?severity=critical"),
        ("GET /api/alerts?rule=silence", "/api/alerts?rule=silence"),
        ("GET /api/alerts?call_id=...", f"/api/alerts?call_id={call_id}"),
        (
            "GET /api/alerts?created 2 weeks",
            "/api/alerts?created_from=2026-11-01T00:00:00Z&created_to=2026-11-14T23:59:59Z",
        ),
        (f"GET /api/alerts?offset={late_alerts}", f"/api/alerts?offset={late_alerts}"),
        (
            f"GET /api/alerts?state=open&offset={late_alerts // 3}",
            f"/api/alerts?state=open&offset={late_alerts // 3}",
        ),
        ("GET /api/trends by=day, 90 days", f"{TRENDS}&by=day"),
        ("GET /api/trends by=week", f"{TRENDS}&by=week"),
        ("GET /api/trends by=agent", f"{TRENDS}&by=agent"),
        ("GET /api/trends by=queue", f"{TRENDS}&by=queue"),
        ("GET /api/trends by=day&agent=agent7", f"{TRENDS}&by=day&agent=agent7"),
        ("GET /calls/{id} (call page, 398 windows)", f"/calls/{call_id}"),
        ("GET /api/calls/{id}/timeline", f"/api/calls/{call_id}/timeline"),
    ]
    return listed


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[round(share * (len(ordered) - 1))]


def time_routes(client: TestClient, chosen: list[tuple[str, str]], repeats: int) -> dict:
    """Milliseconds of each route, `repeats` times (after one untimed request)."""
    timings = {}
    for label, path in chosen:
        started = time.perf_counter()
        client.get(path, headers=AUTH).raise_for_status()  # warm: templates, plan caches
        warm = (time.perf_counter() - started) * 1000
        # A route that takes seconds (the baseline's sort by alerts) is measured once.
        samples = [warm] if warm > SLOW_MS else []
        for _ in range(0 if samples else repeats):
            started = time.perf_counter()
            response = client.get(path, headers=AUTH)
            response.raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
        timings[label] = samples
        print(f"  {label}: median {statistics.median(samples):.1f} ms", flush=True)
    return timings


def set_indexes(engine: Engine, present: bool) -> None:
    """Drop or (re)create the dashboard indexes of migration 0006 (the models declare them)."""
    indexes = [
        index
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if index.name in DASHBOARD_INDEXES
    ]
    with engine.begin() as connection:
        for index in indexes:
            index.drop(connection, checkfirst=True)
            if present:
                index.create(connection)
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE"))


def explain(engine: Engine, call_id: str) -> None:
    """Print the plans of the list queries the slow routes run."""
    from sqlalchemy.dialects import postgresql, sqlite

    queries = {
        "calls, default order (-date)": store.repository._sorted_calls(
            store.repository.matching_calls(), "-date"
        ).limit(50),
        "calls, sort=-alerts": store.repository._sorted_calls(
            store.repository.matching_calls(), "-alerts"
        ).limit(50),
        "calls, agent=agent7 sort=-negativity": store.repository._sorted_calls(
            store.repository.matching_calls(store.CallFilter(agent="agent7")), "-negativity"
        ).limit(50),
        "alerts, newest first": select(AlertRecord)
        .order_by(AlertRecord.created_at.desc(), AlertRecord.id.desc())
        .limit(50),
        "alerts, state=open newest first": select(AlertRecord)
        .where(AlertRecord.state == "open")
        .order_by(AlertRecord.created_at.desc(), AlertRecord.id.desc())
        .limit(50),
        "count of open alerts (badge)": select(func.count())
        .select_from(AlertRecord)
        .where(AlertRecord.state == "open"),
        "open alerts of 50 calls (list badges)": select(AlertRecord.call_id, func.count())
        .where(
            AlertRecord.call_id.in_([f"call{n:06d}" for n in range(50)]),
            AlertRecord.state == "open",
        )
        .group_by(AlertRecord.call_id),
        "calls started in 90 days": select(func.count())
        .select_from(CallRecord)
        .where(CallRecord.started_at >= text("'2026-09-02'")),
    }
    dialect = postgresql.dialect() if engine.dialect.name == "postgresql" else sqlite.dialect()
    prefix = "EXPLAIN ANALYZE" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    with engine.connect() as connection:
        for label, query in queries.items():
            compiled = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
            print(f"\n-- {label}\n{prefix} {compiled}")
            for row in connection.execute(text(f"{prefix} {compiled}")):
                print("   ", row[-1])


def run(url: str, options: argparse.Namespace, label: str) -> dict:
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    engine = store.create_database_engine(url)
    store.upgrade_database(engine)
    started = time.perf_counter()
    detailed = seed_calls(store.make_session_factory(engine), options.calls, detailed=20)
    with engine.connect() as connection:
        alerts = connection.scalar(select(func.count()).select_from(AlertRecord)) or 0
    print(
        f"{label}: seeded {options.calls} calls, {alerts} alerts in "
        f"{time.perf_counter() - started:.0f} s"
    )
    chosen = routes(detailed[0], options.calls, alerts)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(data_dir=Path(folder), auth_token=TOKEN, database_url=url)
        app = create_app(settings)
        with TestClient(app) as client:
            client.post("/login", data={"token": TOKEN}).raise_for_status()
            set_indexes(engine, present=False)
            before = time_routes(client, chosen, options.repeats)
            set_indexes(engine, present=True)
            after = time_routes(client, chosen, options.repeats)
    if options.explain:
        explain(engine, detailed[0])
    engine.dispose()
    return {"before": before, "after": after, "alerts": alerts}


def print_table(label: str, timings: dict, repeats: int) -> None:
    print(
        f"\n{label}: {repeats} requests per route; baseline = without the 0006 indexes\n"
        f"{'route':<48}{'base p50':>9}{'base p95':>9}{'p50':>8}{'p95':>8}{'p50 ratio':>10}"
    )
    misses = []
    for route, after in timings["after"].items():
        before = timings["before"][route]
        p50, p95 = statistics.median(after), percentile(after, 0.95)
        print(
            f"{route:<48}{statistics.median(before):>9.1f}{percentile(before, 0.95):>9.1f}"
            f"{p50:>8.1f}{p95:>8.1f}{statistics.median(before) / p50:>10.2f}"
            + (" (baseline: 1 request)" if len(before) == 1 else "")
        )
        if p95 >= 300:
            misses.append(route)
    print(f"p95 >= 300 ms: {', '.join(misses) if misses else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--postgres", help="a PostgreSQL URL; a schema is made and dropped there")
    options = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        results["SQLite"] = run(url, options, "SQLite")
    if options.postgres:
        schema = f"dashboard_{uuid.uuid4().hex[:8]}"
        admin = create_engine(options.postgres)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in options.postgres else "?"
        url = f"{options.postgres}{separator}options={quote(f'-csearch_path={schema}')}"
        try:
            results["PostgreSQL"] = run(url, options, "PostgreSQL")
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    for label, timings in results.items():
        print_table(
            f"{label}, {options.calls} calls, {timings['alerts']} alerts", timings, options.repeats
        )


if __name__ == "__main__":
    main()
