"""Stored alerts keep confirmed_at (when the rule fired), and migration 0002 adds it to old
databases, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from sqlalchemy import text
from test_api import AUTH, TOKEN, client, make_client, store_result  # noqa: F401 (fixtures)

from callmood import store
from callmood.store.models import Base


def confirmed_result(call_id: str = "confirmed"):
    """A call whose two alerts began at 3 s and were confirmed at 4.5 s and 5.5 s."""
    result = make_call_result(call_id, alert_rules=("angry_customer", "loud"))
    # The condition began at 3 s; the rules fired later, each at its own time.
    return result.model_copy(
        update={
            "alerts": [
                alert.model_copy(update={"confirmed_at": 4.5 + index})
                for index, alert in enumerate(result.alerts)
            ]
        }
    )


def test_api_alerts_give_the_confirmed_at_of_the_analysis_result(client):  # noqa: F811
    result = confirmed_result()
    store_result(client, result, name="Confirmed")
    items = client.get("/api/alerts", headers=AUTH).json()["items"]
    got = {item["alert_key"]: (item["opened_at"], item["confirmed_at"]) for item in items}
    assert got == {alert.id: (alert.opened_at, alert.confirmed_at) for alert in result.alerts}
    assert sorted(confirmed for _, confirmed in got.values()) == [4.5, 5.5]


def test_alerts_page_shows_the_confirmed_time_next_to_the_opened_time(client):  # noqa: F811
    store_result(client, confirmed_result(), name="Confirmed")
    store_result(client, make_call_result("old-style"), name="Old style")
    assert (
        client.post(
            "/login", data={"token": TOKEN, "next": "/alerts"}, follow_redirects=False
        ).status_code
        == 303
    )
    page = client.get("/alerts").text
    assert "confirmed 0:04" in page and "confirmed 0:05" in page
    # The old-style alert (confirmed_at NULL) shows its opened–closed time only.
    assert page.count("confirmed 0:") == 2


def test_results_without_confirmed_at_are_stored_as_null(client):  # noqa: F811
    store_result(client, make_call_result("old-style"), name="Old style")
    items = client.get("/api/alerts", headers=AUTH).json()["items"]
    assert [(item["opened_at"], item["confirmed_at"]) for item in items] == [(3.0, None)]


def test_migration_0002_keeps_old_alerts_with_a_null_confirmed_at(database_url):  # noqa: F811
    engine = store.create_database_engine(database_url)
    store.upgrade_database(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO calls (id, name, source, created_at, duration_seconds, has_speech,"
                " alert_count, model_name, result_json) VALUES ('c1', 'Old', 'old.flac',"
                " CURRENT_TIMESTAMP, 10.0, true, 1, 'm', '{}')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO alerts (call_id, alert_key, rule, kind, speaker, severity, opened_at,"
                " closed_at, value, message, evidence, created_at, state) VALUES ('c1', 'k',"
                " 'angry_customer', 'sustained', 'customer', 'critical', 3.0, 9.0, 0.7, 'm',"
                " '[]', CURRENT_TIMESTAMP, 'open')"
            )
        )
    store.upgrade_database(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT opened_at, confirmed_at FROM alerts")).all()
        # The migrated schema is the one the models describe (no missing or extra columns).
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert [tuple(row) for row in rows] == [(3.0, None)]
    assert differences == []
