"""Also store a batch's analysed calls in the service database (`callmood.store`), once each.

A call's id in the database is its content hash, so a call stored by a run that
was then killed before its Parquet file was written is recognised on the rerun.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from callmood.batch.options import BatchError
from callmood.results import CallResult
from callmood.store import (
    CallRecord,
    StoreConflictError,
    create_database_engine,
    make_session_factory,
    save_call_result,
    session_scope,
    upgrade_database,
)

#: Tag of every call a batch stores, so the dashboard can filter archive calls.
BATCH_TAG = "batch"
_QUERY_CHUNK = 500  # ids per IN (...) query, well under every database's parameter limit


class DatabaseSink:
    """The service database, opened (and its schema upgraded) for one batch run.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:///callmood.db`` or ``postgresql+psycopg://...``.

    Raises
    ------
    DatabaseError
        When the URL is invalid or the database cannot be reached.
    """

    def __init__(self, url: str) -> None:
        self.engine = create_database_engine(url)
        upgrade_database(self.engine)
        self.sessions = make_session_factory(self.engine)

    def save(self, result: CallResult, path: str) -> bool:
        """Store one analysed call; False when it was already stored (by an earlier run).

        Raises
        ------
        BatchError
            When the database fails: the batch stops, and a rerun resumes it.
        """
        try:
            with session_scope(self.sessions) as session:
                save_call_result(session, result, name=Path(path).name, tags=[BATCH_TAG])
        except StoreConflictError:
            return False
        except SQLAlchemyError as error:
            url = self.engine.url.render_as_string(hide_password=True)
            raise BatchError(f"database {url}: cannot store {path} ({error})") from None
        return True

    def stored_ids(self, call_ids: Iterable[str]) -> set[str]:
        """Which of ``call_ids`` the database already holds."""
        wanted = list(call_ids)
        found: set[str] = set()
        try:
            with session_scope(self.sessions) as session:
                for start in range(0, len(wanted), _QUERY_CHUNK):
                    chunk = wanted[start : start + _QUERY_CHUNK]
                    query = select(CallRecord.id).where(CallRecord.id.in_(chunk))
                    found.update(session.scalars(query))
        except SQLAlchemyError as error:
            url = self.engine.url.render_as_string(hide_password=True)
            raise BatchError(f"database {url}: cannot read stored calls ({error})") from None
        return found

    def close(self) -> None:
        self.engine.dispose()
