"""Migration 0006: the dashboard's indexes exist, and the list queries use them on SQLite.

The queries are the ones the store really runs (captured as they execute), explained with
EXPLAIN QUERY PLAN; without the indexes SQLite reads every open alert for each listed call
(benchmarks/dashboard.py: 3 s for one agent's calls sorted by alerts at 50,000 alerts).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from service_support import make_call_result
from sqlalchemy import event, inspect, text

from callmood import store
from callmood.call_metadata import CallMetadata
from callmood.store.database import alembic_config
from callmood.store.models import DASHBOARD_INDEXES, Base


@pytest.fixture
def engine(tmp_path):
    engine = store.create_database_engine(f"sqlite:///{tmp_path / 'callmood.db'}")
    store.upgrade_database(engine)
    sessions = store.make_session_factory(engine)
    with store.session_scope(sessions) as session:
        for number in range(3):
            result = make_call_result(f"call-{number}", alert_rules=("angry_customer", "loud"))
            started = datetime(2026, 11, number + 1, 9, tzinfo=UTC)
            store.save_call_result(
                session, result, metadata=CallMetadata(agent="ann", started_at=started)
            )
    yield engine
    engine.dispose()


def executed_plans(engine, run) -> list[tuple[str, str]]:
    """(statement, its EXPLAIN QUERY PLAN as text) of every SELECT that `run(session)` sent."""
    statements: list[tuple[str, object]] = []

    def capture(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with store.make_session_factory(engine)() as session:
            run(session)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        for statement, parameters in statements:
            rows = raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            plans.append((statement, "\n".join(row[-1] for row in rows)))
    return plans


def plan_mentioning(plans: list[tuple[str, str]], table_text: str) -> str:
    chosen = [plan for statement, plan in plans if table_text in statement]
    assert chosen, f"no statement with {table_text!r} ran: {[s for s, _ in plans]}"
    return "\n".join(chosen)


def test_migration_creates_the_dashboard_indexes_as_the_models_declare(engine):
    found = {
        index["name"]: index["column_names"] for index in inspect(engine).get_indexes("alerts")
    }
    assert found["ix_alerts_call_id_state"] == ["call_id", "state"]
    assert found["ix_alerts_state_created_at"] == ["state", "created_at"]
    assert set(DASHBOARD_INDEXES) <= set(found)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_downgrade_drops_them_and_keeps_the_alerts(engine):
    command.downgrade(alembic_config(engine), "0005")
    names = {index["name"] for index in inspect(engine).get_indexes("alerts")}
    assert not names & set(DASHBOARD_INDEXES)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM alerts")) == 6
    store.upgrade_database(engine)
    names = {index["name"] for index in inspect(engine).get_indexes("alerts")}
    assert set(DASHBOARD_INDEXES) <= names


def test_calls_sorted_by_open_alerts_count_them_through_the_index(engine):
    plans = executed_plans(
        engine,
        lambda session: store.list_calls(session, store.CallFilter(agent="ann"), sort="-alerts"),
    )
    plan = plan_mentioning(plans, "ORDER BY (SELECT count(alerts.id)")
    assert "CORRELATED SCALAR SUBQUERY" in plan
    assert "ix_alerts_call_id_state (call_id=? AND state=?)" in plan, plan


def test_open_alert_badges_of_a_page_use_the_index(engine):
    plans = executed_plans(
        engine, lambda session: store.open_alert_counts(session, ["call-0", "call-1"])
    )
    assert "ix_alerts_call_id_state (call_id=? AND state=?)" in plan_mentioning(plans, "alerts")


def test_alerts_of_one_state_newest_first_use_the_index(engine):
    plans = executed_plans(engine, lambda session: store.list_alerts(session, state="open"))
    page = plan_mentioning(plans, "ORDER BY alerts.created_at DESC")
    assert "ix_alerts_state_created_at (state=?)" in page, page
    assert "ix_alerts_state_created_at" in plan_mentioning(plans, "count(*)")
