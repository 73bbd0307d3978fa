"""Persistence of calls, alerts and jobs (SQLAlchemy; SQLite by default, PostgreSQL by URL).

Typical use::

    engine = create_database_engine(settings.resolved_database_url)
    upgrade_database(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        save_call_result(session, result, name="Call 42", tags=["billing"])
"""

from callmood.store.database import (
    DatabaseError,
    create_database_engine,
    make_session_factory,
    session_scope,
    upgrade_database,
)
from callmood.store.models import (
    ALERT_STATES,
    JOB_STATES,
    AlertRecord,
    CallRecord,
    JobRecord,
    SegmentRecord,
    SpeakerRecord,
    WindowRecord,
)
from callmood.store.repository import (
    CALL_SORT_KEYS,
    CALL_SORTS,
    CallFilter,
    NotFoundError,
    StoreConflictError,
    alert_rule_names,
    call_metadata,
    call_result,
    create_job,
    delete_call,
    delete_jobs_older_than,
    get_alert,
    get_call,
    get_job,
    iter_calls,
    list_alerts,
    list_calls,
    mark_job_done,
    mark_job_failed,
    mark_job_running,
    new_id,
    normalise_tags,
    open_alert_counts,
    purge_calls,
    referenced_audio_paths,
    save_call_result,
    set_alert_state,
    unfinished_jobs,
    update_call,
)

__all__ = [
    "ALERT_STATES",
    "JOB_STATES",
    "AlertRecord",
    "CALL_SORT_KEYS",
    "CALL_SORTS",
    "CallFilter",
    "CallRecord",
    "DatabaseError",
    "JobRecord",
    "NotFoundError",
    "SegmentRecord",
    "SpeakerRecord",
    "StoreConflictError",
    "WindowRecord",
    "call_metadata",
    "call_result",
    "create_database_engine",
    "create_job",
    "delete_call",
    "delete_jobs_older_than",
    "get_alert",
    "get_call",
    "get_job",
    "alert_rule_names",
    "list_alerts",
    "open_alert_counts",
    "list_calls",
    "iter_calls",
    "make_session_factory",
    "mark_job_done",
    "mark_job_failed",
    "mark_job_running",
    "new_id",
    "normalise_tags",
    "purge_calls",
    "referenced_audio_paths",
    "save_call_result",
    "session_scope",
    "set_alert_state",
    "unfinished_jobs",
    "update_call",
    "upgrade_database",
]
