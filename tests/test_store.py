"""The store keeps calls, alerts and jobs the same way on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from sqlalchemy import func, inspect, select

from callmood import store
from callmood.call_metadata import CallMetadata
from callmood.store.models import AlertRecord, WindowRecord


@pytest.fixture
def sessions(database_url):  # noqa: F811
    engine = store.create_database_engine(database_url)
    store.upgrade_database(engine)
    yield store.make_session_factory(engine)
    engine.dispose()


def save(sessions, result, **kwargs):
    with store.session_scope(sessions) as session:
        return store.save_call_result(session, result, **kwargs).id


def test_upgrade_creates_every_table_and_is_safe_to_repeat(database_url):  # noqa: F811
    engine = store.create_database_engine(database_url)
    store.upgrade_database(engine)
    store.upgrade_database(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"calls", "speakers", "windows", "segments", "alerts", "call_tags", "jobs"} <= tables
    assert "alembic_version" in tables
    engine.dispose()


def test_saved_call_reads_back_as_the_same_result(sessions):
    result = make_call_result("call-a")
    save(sessions, result, name="Billing complaint", tags=["Billing", " vip "])
    with sessions() as session:
        call = store.get_call(session, "call-a")
        # The same result, with the start time it fell back to (when it was stored).
        started = CallMetadata(started_at=call.created_at)
        assert store.call_result(call) == result.model_copy(update={"metadata": started})
        assert call.name == "Billing complaint"
        assert call.tag_names == ["billing", "vip"]
        assert call.dominant_emotion == "angry"
        assert call.negativity == pytest.approx(0.6)
        assert call.alert_count == 1
        assert call.created_at.tzinfo is not None
        windows = session.scalar(select(func.count()).select_from(WindowRecord))
        assert windows == 3
        assert {s.speaker: s.emotions_analyzed for s in call.speakers} == {
            "customer": True,
            "agent": False,
        }


def test_saving_the_same_call_twice_is_refused(sessions):
    save(sessions, make_call_result("call-a"))
    with pytest.raises(store.StoreConflictError, match="call-a"):
        save(sessions, make_call_result("call-a"))


def test_missing_call_is_a_clear_not_found_error(sessions):
    with sessions() as session, pytest.raises(store.NotFoundError, match="nope"):
        store.get_call(session, "nope")


def test_list_calls_filters_and_pages_newest_first(sessions):
    now = datetime.now(UTC)
    save(
        sessions,
        make_call_result("calm", customer_emotions=("neutral", "neutral"), alert_rules=()),
        name="Calm renewal",
        tags=["renewal"],
        created_at=now - timedelta(days=3),
    )
    save(sessions, make_call_result("angry"), name="Angry refund", tags=["refund"])
    save(
        sessions,
        make_call_result("sad", customer_emotions=("sad", "sad", "neutral")),
        name="Sad cancellation",
        created_at=now - timedelta(days=1),
    )
    with sessions() as session:

        def ids(**filters):
            calls, _ = store.list_calls(session, store.CallFilter(**filters))
            return [call.id for call in calls]

        assert ids() == ["angry", "sad", "calm"]
        assert ids(has_alerts=False) == ["calm"]
        assert ids(has_alerts=True) == ["angry", "sad"]
        assert ids(dominant_emotion="sad") == ["sad"]
        assert ids(min_negativity=0.5) == ["angry", "sad"]
        assert ids(created_from=now - timedelta(days=2)) == ["angry", "sad"]
        assert ids(created_to=now - timedelta(days=2)) == ["calm"]
        assert ids(search="REFUND") == ["angry"]
        assert ids(search="renewal") == ["calm"]  # the tag, and part of the name
        assert ids(tag="refund") == ["angry"]
        assert ids(search="100%") == []  # LIKE wildcards are literal
        page, total = store.list_calls(session, offset=1, limit=1)
        assert [call.id for call in page] == ["sad"] and total == 3


def test_alerts_are_listed_newest_first_and_change_state(sessions):
    save(sessions, make_call_result("first"))
    save(sessions, make_call_result("second", alert_rules=("angry_customer", "loud")))
    with store.session_scope(sessions) as session:
        alerts, total = store.list_alerts(session)
        assert total == 3
        assert [alert.call_id for alert in alerts] == ["second", "second", "first"]
        first_alert = alerts[-1].id
        acknowledged = store.set_alert_state(session, first_alert, "acknowledged")
        assert acknowledged.state == "acknowledged" and acknowledged.acknowledged_at
    with store.session_scope(sessions) as session:
        resolved = store.set_alert_state(session, first_alert, "resolved")
        assert resolved.state == "resolved" and resolved.resolved_at
        # Acknowledging a resolved alert does not reopen it.
        assert store.set_alert_state(session, first_alert, "acknowledged").state == "resolved"
    with sessions() as session:
        assert [a.id for a in store.list_alerts(session, state="resolved")[0]] == [first_alert]
        assert store.list_alerts(session, state="open")[1] == 2
        with pytest.raises(store.NotFoundError):
            store.set_alert_state(session, 999_999, "resolved")


def test_delete_call_removes_rows_and_audio_together(sessions, tmp_path):
    audio_dir = tmp_path / "audio"
    (audio_dir / "calls").mkdir(parents=True)
    audio = audio_dir / "calls" / "gone.flac"
    audio.write_bytes(b"fLaC")
    save(sessions, make_call_result("gone"), audio_path="calls/gone.flac")
    save(sessions, make_call_result("kept"))
    store.delete_call(sessions, "gone", audio_dir)
    assert not audio.exists()
    assert list(audio.parent.iterdir()) == []
    with sessions() as session:
        assert [c.id for c in store.list_calls(session)[0]] == ["kept"]
        remaining = session.scalars(select(AlertRecord.call_id)).all()
        assert remaining == ["kept"]
    with pytest.raises(store.NotFoundError):
        store.delete_call(sessions, "gone", audio_dir)


def test_failed_delete_keeps_the_audio_and_the_rows(sessions, tmp_path, monkeypatch):
    audio_dir = tmp_path / "audio"
    (audio_dir / "calls").mkdir(parents=True)
    audio = audio_dir / "calls" / "c.flac"
    audio.write_bytes(b"fLaC")
    save(sessions, make_call_result("c"), audio_path="calls/c.flac")

    def broken_commit(self, *args, **kwargs):
        raise RuntimeError("database went away")

    # The commit fails after the rows were deleted in the transaction and the file moved.
    monkeypatch.setattr("sqlalchemy.orm.session.SessionTransaction.commit", broken_commit)
    with pytest.raises(RuntimeError):
        store.delete_call(sessions, "c", audio_dir)
    monkeypatch.undo()
    assert audio.read_bytes() == b"fLaC"
    with sessions() as session:
        assert store.get_call(session, "c").audio_path == "calls/c.flac"


def test_purge_deletes_only_calls_older_than_the_cutoff(sessions, tmp_path):
    now = datetime.now(UTC)
    audio_dir = tmp_path / "audio"
    (audio_dir / "calls").mkdir(parents=True)
    (audio_dir / "calls" / "old.flac").write_bytes(b"old")
    save(
        sessions,
        make_call_result("old"),
        audio_path="calls/old.flac",
        created_at=now - timedelta(days=100),
    )
    save(sessions, make_call_result("new"))
    progress = []
    deleted = store.purge_calls(
        sessions, now - timedelta(days=90), audio_dir, on_progress=lambda *p: progress.append(p)
    )
    assert deleted == 1 and progress == [(1, 1)]
    assert not (audio_dir / "calls" / "old.flac").exists()
    with sessions() as session:
        assert [c.id for c in store.list_calls(session)[0]] == ["new"]


def test_job_goes_from_queued_to_done_with_its_call(sessions):
    with store.session_scope(sessions) as session:
        job = store.create_job(session, name="upload.wav", tags=["x"], upload_path="calls/j.wav")
        job_id = job.id
        assert job.state == "queued"
    with store.session_scope(sessions) as session:
        assert [j.id for j in store.unfinished_jobs(session)] == [job_id]
        store.mark_job_running(session, job_id)
        store.save_call_result(session, make_call_result(job_id))
        store.mark_job_done(session, job_id, job_id)
    with sessions() as session:
        job = store.get_job(session, job_id)
        assert (job.state, job.call_id) == ("done", job_id)
        assert job.started_at <= job.finished_at
        assert store.unfinished_jobs(session) == []


def test_failed_job_keeps_the_reason(sessions):
    with store.session_scope(sessions) as session:
        job_id = store.create_job(session, name="bad.wav").id
        store.mark_job_failed(session, job_id, "bad.wav: not an audio file")
    with sessions() as session:
        job = store.get_job(session, job_id)
        assert job.state == "failed" and "not an audio file" in job.error


def test_invalid_database_url_is_a_clear_error():
    with pytest.raises(store.DatabaseError, match="not a valid"):
        store.create_database_engine("not a url")
    with pytest.raises(store.DatabaseError, match="driver"):
        store.create_database_engine("nosuchdb://x/y")
