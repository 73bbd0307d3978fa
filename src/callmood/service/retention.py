"""Retention inside the server: a background task that purges expired calls periodically.

It runs the same `callmood.store.purge_calls` as `callmood purge` (rows and audio
deleted together, in batches), on a worker thread so the event loop never waits on
the database or the disk. The app's lifespan starts it when both `retention_days`
and `retention_interval_minutes` are set, and cancels it on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from callmood.store import purge_calls, session_scope
from callmood.store.audit import purge_events
from callmood.store.models import utc_now

logger = logging.getLogger(__name__)


def purge_expired_calls(
    session_factory: sessionmaker[Session],
    audio_dir: Path,
    retention_days: int,
    *,
    now: datetime | None = None,
) -> int:
    """Delete the calls stored more than `retention_days` days before `now`, with their audio.

    Parameters
    ----------
    now
        The reference time (timezone-aware); default: the current time.

    Returns
    -------
    int
        How many calls were deleted.
    """
    cutoff = (now or utc_now()) - timedelta(days=retention_days)
    deleted = purge_calls(session_factory, cutoff, audio_dir)
    if deleted:
        logger.info("retention: deleted %d call(s) stored before %s", deleted, cutoff.isoformat())
    return deleted


def purge_expired_audit(
    session_factory: sessionmaker[Session], audit_retention_days: int, now: datetime | None = None
) -> int:
    """Delete the audit events older than `audit_retention_days` days (a separate, usually
    longer period than the calls': the trail outlives the calls it names)."""
    cutoff = (now or utc_now()) - timedelta(days=audit_retention_days)
    with session_scope(session_factory) as session:
        deleted = purge_events(session, cutoff)
    if deleted:
        logger.info("retention: deleted %d audit event(s) before %s", deleted, cutoff.isoformat())
    return deleted


class RetentionTask:
    """Runs `purge_expired_calls` (and `purge_expired_audit` when `audit_retention_days`
    is set) once at start and then every `interval_seconds`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        audio_dir: Path,
        retention_days: int,
        interval_seconds: float,
        audit_retention_days: int | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.audio_dir = audio_dir
        self.retention_days = retention_days
        self.audit_retention_days = audit_retention_days
        self.interval_seconds = interval_seconds
        self.runs = 0  # completed passes, for status and tests
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Future[int] | None = None

    @property
    def running(self) -> bool:
        """Whether the background loop is active."""
        return self._task is not None and not self._task.done()

    async def run_once(self) -> int:
        """One purge pass on a worker thread; a failure is logged, never raised, so that
        a database hiccup does not end retention for the life of the server."""
        try:
            deleted = await run_in_threadpool(
                purge_expired_calls, self.session_factory, self.audio_dir, self.retention_days
            )
            if self.audit_retention_days is not None:
                await run_in_threadpool(
                    purge_expired_audit, self.session_factory, self.audit_retention_days
                )
            return deleted
        except Exception:
            logger.exception("retention: purge failed; trying again in %gs", self.interval_seconds)
            return 0
        finally:
            self.runs += 1

    async def _loop(self) -> None:
        while True:
            # Shielded: cancelling the loop must not abandon a pass whose thread goes on
            # using the database; `stop` waits for it instead.
            self._current = asyncio.ensure_future(self.run_once())
            await asyncio.shield(self._current)
            await asyncio.sleep(self.interval_seconds)

    def start(self) -> None:
        """Start the loop on the running event loop (the app's lifespan calls this)."""
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name="callmood-retention")

    async def stop(self) -> None:
        """Cancel the loop; a pass in progress is allowed to finish first, so the caller
        may dispose of the database engine afterwards."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if self._current is not None and not self._current.done():
            await self._current
