"""A call's agent, queue, external call id and real start time: checked on the way in, stored
in indexed columns, filtered and sorted on, and added to old databases by migration 0003."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from sqlalchemy import inspect, text

from callmood import store
from callmood.call_metadata import CallMetadata, CallMetadataError, parse_started_at
from callmood.store.database import alembic_config
from callmood.store.models import Base


@pytest.fixture
def sessions(database_url):  # noqa: F811
    engine = store.create_database_engine(database_url)
    store.upgrade_database(engine)
    yield store.make_session_factory(engine)
    engine.dispose()


def save(sessions, call_id: str, **metadata) -> None:
    with store.session_scope(sessions) as session:
        store.save_call_result(
            session, make_call_result(call_id), metadata=CallMetadata.parse(metadata)
        )


# ------------------------------------------------------------------------ validation


def test_metadata_is_trimmed_and_blank_means_unknown():
    parsed = CallMetadata.parse(
        {"agent": "  Ana Ruiz ", "queue": "", "external_call_id": " 7781 ", "started_at": " "}
    )
    assert parsed == CallMetadata(agent="Ana Ruiz", external_call_id="7781")
    assert CallMetadata.parse({"name": "not metadata"}).is_empty


def test_start_times_keep_their_instant_and_are_stored_in_utc():
    assert parse_started_at("2026-12-03T09:15:00+01:00") == datetime(2026, 12, 3, 8, 15, tzinfo=UTC)
    assert parse_started_at("2026-12-03T08:15:00Z") == datetime(2026, 12, 3, 8, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"started_at": "2026-12-03T09:15:00"}, "has no time zone"),
        ({"started_at": "yesterday"}, "not an ISO 8601 time"),
        ({"started_at": 1764750900}, "must be an ISO 8601 string"),
        ({"started_at": "1999-12-31T23:59:59Z"}, "implausible"),
        ({"started_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "implausible"),
        ({"agent": "ana\x00"}, "control characters"),
        ({"queue": "billing\nsupport"}, "control characters"),
        ({"agent": "a" * 201}, "longer than 200"),
        ({"external_call_id": "x" * 201}, "longer than 200"),
        ({"agent": 42}, "must be text"),
    ],
)
def test_invalid_metadata_is_a_clear_error_naming_the_field(fields, message):
    field = next(iter(fields))
    with pytest.raises(CallMetadataError, match=rf"{field}: .*{message}"):
        CallMetadata.parse(fields)


def test_a_start_time_a_little_ahead_of_this_clock_is_accepted():
    # The phone system's clock may run ahead of ours by minutes, not days.
    soon = datetime.now(UTC) + timedelta(hours=2)
    assert CallMetadata.parse({"started_at": soon.isoformat()}).started_at == soon


# ------------------------------------------------------------------------ store


def test_metadata_is_stored_and_read_back_with_the_result(sessions):
    save(
        sessions,
        "c1",
        agent="Ana",
        queue="billing",
        external_call_id="pbx-1",
        started_at="2026-12-01T09:00:00-05:00",
    )
    with sessions() as session:
        call = store.get_call(session, "c1")
        assert (call.agent, call.queue, call.external_call_id) == ("Ana", "billing", "pbx-1")
        assert call.started_at == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
        assert store.call_result(call).metadata == CallMetadata(
            agent="Ana",
            queue="billing",
            external_call_id="pbx-1",
            started_at=datetime(2026, 12, 1, 14, 0, tzinfo=UTC),
        )


def test_without_a_start_time_the_call_started_when_it_was_stored(sessions):
    stored = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with store.session_scope(sessions) as session:
        store.save_call_result(session, make_call_result("c1"), created_at=stored)
    with sessions() as session:
        call = store.get_call(session, "c1")
        assert call.started_at == stored and call.agent is None
        assert store.call_result(call).metadata.started_at == stored


def test_the_results_own_metadata_is_used_unless_given(sessions):
    result = make_call_result("c1").model_copy(
        update={"metadata": CallMetadata(agent="Bo", queue="sales")}
    )
    with store.session_scope(sessions) as session:
        store.save_call_result(session, result)
        store.save_call_result(
            session, result.model_copy(update={"call_id": "c2"}), metadata=CallMetadata()
        )
    with sessions() as session:
        assert store.get_call(session, "c1").agent == "Bo"
        assert store.get_call(session, "c2").agent is None


def test_unchecked_metadata_is_still_checked_by_the_store(sessions):
    sneaky = CallMetadata.model_construct(agent="a\x00b")
    with store.session_scope(sessions) as session, pytest.raises(CallMetadataError, match="agent"):
        store.save_call_result(session, make_call_result("c1"), metadata=sneaky)


def test_update_call_sets_and_clears_agent_and_queue(sessions):
    save(sessions, "c1", agent="Ana", queue="billing")
    with store.session_scope(sessions) as session:
        store.update_call(session, "c1", agent=" Bo ")
    with store.session_scope(sessions) as session:
        call = store.get_call(session, "c1")
        assert (call.agent, call.queue) == ("Bo", "billing")
        store.update_call(session, "c1", queue="")
    with store.session_scope(sessions) as session:
        call = store.get_call(session, "c1")
        assert (call.agent, call.queue) == ("Bo", None)
        assert store.call_result(call).metadata.agent == "Bo"
        with pytest.raises(CallMetadataError, match="agent"):
            store.update_call(session, "c1", agent="x" * 300)


def test_calls_filter_by_agent_queue_and_external_id_and_sort_by_start(sessions):
    save(sessions, "early", agent="Ana", queue="billing", started_at="2026-11-01T08:00:00Z")
    save(sessions, "late", agent="Ana", queue="sales", started_at="2026-11-03T08:00:00Z")
    save(
        sessions,
        "middle",
        agent="Bo",
        queue="billing",
        external_call_id="pbx-9",
        started_at="2026-11-02T08:00:00Z",
    )

    def ids(sort="-started_at", **filters):
        with sessions() as session:
            calls, total = store.list_calls(session, store.CallFilter(**filters), sort=sort)
        assert total == len(calls)
        return [call.id for call in calls]

    assert ids() == ["late", "middle", "early"]
    assert ids(sort="started_at") == ["early", "middle", "late"]
    assert ids(agent="Ana") == ["late", "early"]
    assert ids(agent=" Ana ", queue="billing") == ["early"]
    assert ids(queue="billing") == ["middle", "early"]
    assert ids(external_call_id="pbx-9") == ["middle"]
    assert ids(agent="ana") == []  # exact, as the phone system spells it


# ------------------------------------------------------------------------ migration


def test_migration_0003_gives_old_calls_their_stored_time_as_start(database_url):  # noqa: F811
    engine = store.create_database_engine(database_url)
    store.upgrade_database(engine, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO calls (id, name, source, created_at, duration_seconds, has_speech,"
                " alert_count, model_name, result_json) VALUES ('old', 'Old', 'old.flac',"
                " :created, 10.0, true, 0, 'm', '{}')"
            ),
            {"created": datetime(2026, 10, 1, 7, 30, tzinfo=UTC)},
        )
        connection.execute(
            text(
                "INSERT INTO alerts (call_id, alert_key, rule, kind, speaker, severity, opened_at,"
                " closed_at, value, message, evidence, created_at, state) VALUES ('old', 'k',"
                " 'angry_customer', 'sustained', 'customer', 'critical', 3.0, 9.0, 0.7, 'm',"
                " '[]', CURRENT_TIMESTAMP, 'open')"
            )
        )
    store.upgrade_database(engine)
    sessions = store.make_session_factory(engine)
    with sessions() as session:
        call = store.get_call(session, "old")
        assert call.started_at == call.created_at == datetime(2026, 10, 1, 7, 30, tzinfo=UTC)
        assert (call.agent, call.queue, call.external_call_id) == (None, None, None)
        # On SQLite a table rebuild would have dropped the alerts by cascade.
        assert len(call.alerts) == 1
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        indexes = {
            row[0]
            for row in connection.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'calls'"
                    if engine.dialect.name == "postgresql"
                    else "SELECT name FROM sqlite_master WHERE type = 'index'"
                    " AND tbl_name = 'calls'"
                )
            )
        }
    assert differences == []
    assert {
        "ix_calls_agent",
        "ix_calls_queue",
        "ix_calls_external_call_id",
        "ix_calls_started_at",
    } <= indexes
    # And back: the downgrade drops the columns again, keeping the call.
    command.downgrade(alembic_config(engine), "0002")
    with engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("calls")}
        assert connection.execute(text("SELECT id FROM calls")).scalars().all() == ["old"]
        assert connection.execute(text("SELECT count(*) FROM alerts")).scalar() == 1
    engine.dispose()
    assert not {"agent", "queue", "external_call_id", "started_at"} & columns
