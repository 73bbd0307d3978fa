"""Reading and writing calls, alerts and jobs: the only code that knows the tables.

Functions take an open :class:`~sqlalchemy.orm.Session` and leave committing to the
caller (use :func:`callmood.store.database.session_scope`), except the few that also
touch files (`delete_call`, `purge_calls`), which own their transaction so that rows
and audio go together.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ScalarSelect, Select, delete, func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from callmood.call_metadata import (
    MAX_AGENT_LENGTH,
    MAX_QUEUE_LENGTH,
    CallMetadata,
    CallMetadataError,
    clean_label,
)
from callmood.errors import CallmoodError
from callmood.results import CallResult
from callmood.store.database import session_scope
from callmood.store.models import (
    ALERT_STATES,
    AlertRecord,
    CallRecord,
    CallTag,
    JobRecord,
    SegmentRecord,
    SpeakerRecord,
    WindowRecord,
    utc_now,
)

logger = logging.getLogger(__name__)

MAX_TAG_LENGTH = 100
MAX_NAME_LENGTH = 300


class NotFoundError(CallmoodError):
    """No call, alert or job with the given id."""


class StoreConflictError(CallmoodError):
    """The write contradicts what is stored (e.g. a call id that is already taken)."""


def new_id() -> str:
    """A fresh random id for a call or job (32 hex digits)."""
    return uuid.uuid4().hex


def normalise_tags(tags: list[str] | tuple[str, ...]) -> list[str]:
    """Tags as stored: stripped, lower case, unique, sorted, none empty.

    Raises
    ------
    CallmoodError
        A tag is longer than 100 characters.
    """
    cleaned = {tag.strip().lower() for tag in tags if tag and tag.strip()}
    for tag in cleaned:
        if len(tag) > MAX_TAG_LENGTH:
            raise CallmoodError(f"tag {tag[:20]!r}...: longer than {MAX_TAG_LENGTH} characters")
    return sorted(cleaned)


def _main_speaker(result: CallResult) -> str | None:
    # The customer is whom the call list is about; a mono call has only the mix.
    for speaker in ("customer", "mixed", "agent"):
        if speaker in result.analyzed_speakers and speaker in result.speakers:
            return speaker
    return None


# ---------------------------------------------------------------------------- calls


def save_call_result(
    session: Session,
    result: CallResult,
    *,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    audio_path: str | None = None,
    audio_media_type: str | None = None,
    created_at: datetime | None = None,
    metadata: CallMetadata | None = None,
) -> CallRecord:
    """Add a finished call (its result, speakers, windows, segments, alerts and tags).

    Parameters
    ----------
    session
        An open session; the caller commits (all rows go in one transaction).
    result
        The analysis; `result.call_id` becomes the call's id.
    name
        Display name; default: the result's source file name.
    tags
        Free-form labels for search (normalised to lower case).
    audio_path
        Where the recording is kept, relative to the settings' `audio_dir` (None: not kept).
    audio_media_type
        MIME type of the kept recording, for the player.
    created_at
        When the call was stored (timezone-aware); default: now.
    metadata
        Agent, queue, external call id and start time; default: the result's own
        (`result.metadata`). A missing start time becomes `created_at`.

    Raises
    ------
    StoreConflictError
        A call with this id is already stored.
    """
    if session.get(CallRecord, result.call_id) is not None:
        raise StoreConflictError(f"call {result.call_id}: already stored")
    main_speaker = _main_speaker(result)
    main_scores = result.speakers[main_speaker].scores if main_speaker else None
    created_at = created_at or utc_now()
    # Validated again: a CallMetadata built with model_construct or mutated skips its checks.
    known = CallMetadata.parse((metadata or result.metadata or CallMetadata()).model_dump())
    known = known.model_copy(update={"started_at": known.started_at or created_at})
    result = result.model_copy(update={"metadata": known})
    call = CallRecord(
        id=result.call_id,
        name=(name or Path(result.source).name or result.call_id)[:MAX_NAME_LENGTH],
        source=result.source[:500],
        created_at=created_at,
        agent=known.agent,
        queue=known.queue,
        external_call_id=known.external_call_id,
        started_at=known.started_at,
        duration_seconds=result.duration_seconds,
        has_speech=result.has_speech,
        main_speaker=main_speaker,
        dominant_emotion=main_scores.dominant_emotion if main_scores else None,
        negativity=main_scores.negativity if main_scores else None,
        alert_count=len(result.alerts),
        model_name=result.model.name,
        audio_path=audio_path,
        audio_media_type=audio_media_type,
        result_json=result.model_dump_json(),
    )
    call.tags = [CallTag(tag=tag) for tag in normalise_tags(tags)]
    for speaker, speaker_result in result.speakers.items():
        scores = speaker_result.scores
        call.speakers.append(
            SpeakerRecord(
                speaker=speaker,
                channel=speaker_result.channel,
                emotions_analyzed=scores.emotions_analyzed,
                talk_seconds=scores.talk_seconds,
                silence_share=scores.silence_share,
                window_count=scores.window_count,
                dominant_emotion=scores.dominant_emotion,
                negativity=scores.negativity,
                negativity_shift=scores.negativity_shift,
            )
        )
        call.windows.extend(
            WindowRecord(
                speaker=window.speaker,
                start_seconds=window.start,
                end_seconds=window.end,
                emotion=window.emotion,
                confidence=window.confidence,
                probabilities=window.probabilities,
                rms_dbfs=window.rms_dbfs,
                peak_dbfs=window.peak_dbfs,
            )
            for window in speaker_result.windows
        )
        call.segments.extend(
            SegmentRecord(
                speaker=segment.speaker,
                start_seconds=segment.start,
                end_seconds=segment.end,
                emotion=segment.emotion,
                confidence=segment.confidence,
                window_count=segment.window_count,
            )
            for segment in speaker_result.segments
        )
    call.alerts = [
        AlertRecord(
            alert_key=alert.id[:200],
            rule=alert.rule,
            kind=alert.kind,
            speaker=alert.speaker,
            severity=alert.severity,
            opened_at=alert.opened_at,
            confirmed_at=alert.confirmed_at,
            closed_at=alert.closed_at,
            value=alert.value,
            message=alert.message,
            evidence=[window.model_dump() for window in alert.evidence],
            # Raised when the call was stored (a backdated import's alerts are as old).
            created_at=call.created_at,
            state="open",
        )
        for alert in result.alerts
    ]
    session.add(call)
    session.flush()
    return call


def get_call(session: Session, call_id: str) -> CallRecord:
    """The stored call `call_id`.

    Raises
    ------
    NotFoundError
        No such call.
    """
    call = session.get(CallRecord, call_id)
    if call is None:
        raise NotFoundError(f"call {call_id!r}: not found")
    return call


def update_call(
    session: Session,
    call_id: str,
    *,
    name: str | None = None,
    tags: list[str] | None = None,
    agent: str | None = None,
    queue: str | None = None,
) -> CallRecord:
    """Rename a call, replace its tags, set its agent or queue (None leaves that part as
    it is; a blank agent or queue clears it).

    Raises
    ------
    NotFoundError
        No such call.
    CallmoodError
        A tag is longer than 100 characters.
    CallMetadataError
        The agent or queue is too long or holds a control character.
    """
    call = get_call(session, call_id)
    try:
        if agent is not None:
            call.agent = clean_label(agent, "agent", MAX_AGENT_LENGTH)
        if queue is not None:
            call.queue = clean_label(queue, "queue", MAX_QUEUE_LENGTH)
    except ValueError as error:
        raise CallMetadataError(str(error)) from None
    if name is not None:
        call.name = name.strip()[:MAX_NAME_LENGTH]
    if tags is not None:
        wanted = normalise_tags(tags)
        call.tags = [tag for tag in call.tags if tag.tag in wanted] + [
            CallTag(call_id=call.id, tag=tag)
            for tag in wanted
            if tag not in {kept.tag for kept in call.tags}
        ]
    session.flush()
    return call


def call_metadata(call: CallRecord) -> CallMetadata:
    """The stored call's agent, queue, external call id and start time."""
    # model_construct: the columns were checked on the way in, and a start time that was
    # "at most a day ahead" then must not fail now.
    return CallMetadata.model_construct(
        agent=call.agent,
        queue=call.queue,
        external_call_id=call.external_call_id,
        started_at=call.started_at or call.created_at,
    )


def call_result(call: CallRecord) -> CallResult:
    """The full analysis of a stored call, as a :class:`CallResult`, with the call's
    current metadata (the columns, which PATCH may have changed since the analysis)."""
    result = CallResult.model_validate_json(call.result_json)
    return result.model_copy(update={"metadata": call_metadata(call)})


@dataclass(frozen=True)
class CallFilter:
    """What `list_calls` selects; every field is optional.

    Dates are timezone-aware; `created_*` compare with the time the call was stored,
    `started_from` (inclusive) and `started_before` (exclusive) with the time it really
    started (trends bucket by it); `search` matches part of the name (case-insensitive) or
    a whole tag; agent, queue and external call id match exactly (after trimming).
    """

    created_from: datetime | None = None
    created_to: datetime | None = None
    has_alerts: bool | None = None
    dominant_emotion: str | None = None
    min_negativity: float | None = None
    search: str | None = None
    tag: str | None = None
    agent: str | None = None
    queue: str | None = None
    external_call_id: str | None = None
    started_from: datetime | None = None
    started_before: datetime | None = None


def _filtered_calls(filters: CallFilter) -> Select[tuple[CallRecord]]:
    query = select(CallRecord)
    if filters.created_from is not None:
        query = query.where(CallRecord.created_at >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(CallRecord.created_at <= filters.created_to)
    if filters.started_from is not None:
        query = query.where(CallRecord.started_at >= filters.started_from)
    if filters.started_before is not None:
        query = query.where(CallRecord.started_at < filters.started_before)
    if filters.has_alerts is True:
        query = query.where(CallRecord.alert_count > 0)
    elif filters.has_alerts is False:
        query = query.where(CallRecord.alert_count == 0)
    if filters.dominant_emotion:
        query = query.where(CallRecord.dominant_emotion == filters.dominant_emotion.lower())
    if filters.min_negativity is not None:
        query = query.where(CallRecord.negativity >= filters.min_negativity)
    # Exact matches, so that the indexes on these columns serve them.
    for column, wanted in (
        (CallRecord.agent, filters.agent),
        (CallRecord.queue, filters.queue),
        (CallRecord.external_call_id, filters.external_call_id),
    ):
        if wanted and wanted.strip():
            query = query.where(column == wanted.strip())
    if filters.tag:
        tagged = select(CallTag.call_id).where(CallTag.tag == filters.tag.strip().lower())
        query = query.where(CallRecord.id.in_(tagged))
    if filters.search and filters.search.strip():
        term = filters.search.strip()
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        tagged = select(CallTag.call_id).where(CallTag.tag == term.lower())
        query = query.where(
            or_(
                func.lower(CallRecord.name).like(f"%{escaped.lower()}%", escape="\\"),
                CallRecord.id.in_(tagged),
            )
        )
    return query


def matching_calls(filters: CallFilter | None = None) -> Select[tuple[CallRecord]]:
    """The SELECT of the calls matching `filters`, unordered (to aggregate or join on)."""
    return _filtered_calls(filters or CallFilter())


def _open_alerts_of_call() -> ScalarSelect[int]:
    return (
        select(func.count(AlertRecord.id))
        .where(AlertRecord.call_id == CallRecord.id, AlertRecord.state == "open")
        .scalar_subquery()
    )


#: What `list_calls` can sort by: name -> the column (or expression) compared.
CALL_SORT_KEYS: dict[str, Callable[[], Any]] = {
    "date": lambda: CallRecord.created_at,
    "started_at": lambda: CallRecord.started_at,
    "duration": lambda: CallRecord.duration_seconds,
    "negativity": lambda: CallRecord.negativity,
    "alerts": _open_alerts_of_call,  # open ones, as the list's badge counts them
}
#: Sort orders: a key ascending, or descending with a leading "-" ("-date": newest first).
CALL_SORTS = tuple(f"{sign}{key}" for key in CALL_SORT_KEYS for sign in ("-", ""))


def list_calls(
    session: Session,
    filters: CallFilter | None = None,
    *,
    offset: int = 0,
    limit: int = 50,
    sort: str = "-date",
) -> tuple[list[CallRecord], int]:
    """Calls matching `filters`, in `sort` order (newest first by default), one page of them
    and the total count.

    Calls without a value for the sort key (negativity of a call without speech) come last
    either way; ties go newest first.

    Returns
    -------
    (calls, total)
        At most `limit` calls starting at `offset`, and how many match in all.

    Raises
    ------
    CallmoodError
        `sort` is not one of :data:`CALL_SORTS`.
    """
    query = _filtered_calls(filters or CallFilter())
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = _sorted_calls(query, sort).offset(offset).limit(limit)
    return list(session.scalars(page)), total


def _sorted_calls(query: Select[tuple[CallRecord]], sort: str) -> Select[tuple[CallRecord]]:
    if sort not in CALL_SORTS:
        raise CallmoodError(f"sort {sort!r}: must be one of {', '.join(CALL_SORTS)}")
    column = CALL_SORT_KEYS[sort.lstrip("-")]()
    order = column.desc() if sort.startswith("-") else column.asc()
    return query.order_by(order.nulls_last(), CallRecord.created_at.desc(), CallRecord.id)


def iter_calls(
    session: Session,
    filters: CallFilter | None = None,
    *,
    sort: str = "-date",
    batch_size: int = 500,
) -> Iterator[list[CallRecord]]:
    """All calls matching `filters`, in the order of :func:`list_calls`, in batches of at
    most `batch_size`.

    One query read in batches (a server-side cursor on PostgreSQL), so an export of many
    thousand calls never holds them all in memory and cannot skip or repeat a call the way
    page-by-page offsets could when calls arrive meanwhile.

    Raises
    ------
    CallmoodError
        `sort` is not one of :data:`CALL_SORTS`.
    """
    query = _sorted_calls(_filtered_calls(filters or CallFilter()), sort)
    rows = session.scalars(query.execution_options(yield_per=batch_size))
    for batch in rows.partitions():
        yield list(batch)


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:  # the rows are gone; a stray file must not fail the request
            logger.warning("could not delete %s: %s", path, error)


def _delete_calls_with_audio(
    session_factory: sessionmaker[Session], call_ids: list[str], audio_dir: Path
) -> int:
    """Delete calls and their audio together: files are moved aside, rows deleted, then
    the commit decides whether the moved files are removed or put back."""
    moved: list[tuple[Path, Path]] = []
    try:
        with session_scope(session_factory) as session:
            calls = list(session.scalars(select(CallRecord).where(CallRecord.id.in_(call_ids))))
            for call in calls:
                if call.audio_path:
                    audio = audio_dir / call.audio_path
                    if audio.exists():
                        aside = audio.with_name(f".deleting-{audio.name}")
                        os.replace(audio, aside)
                        moved.append((audio, aside))
                session.delete(call)
            count = len(calls)
    except BaseException:
        for audio, aside in moved:
            os.replace(aside, audio)
        raise
    _remove_files([aside for _, aside in moved])
    return count


def delete_call(session_factory: sessionmaker[Session], call_id: str, audio_dir: Path) -> None:
    """Delete a call's rows and its recording in one transaction (all or nothing).

    Raises
    ------
    NotFoundError
        No such call.
    """
    if _delete_calls_with_audio(session_factory, [call_id], audio_dir) == 0:
        raise NotFoundError(f"call {call_id!r}: not found")


def purge_calls(
    session_factory: sessionmaker[Session],
    older_than: datetime,
    audio_dir: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete every call stored before `older_than` (timezone-aware), with its audio.

    Finished jobs from before `older_than` are forgotten too.

    Parameters
    ----------
    on_progress
        Called as `on_progress(deleted_so_far, total)` after each batch.

    Returns
    -------
    int
        How many calls were deleted.
    """
    with session_factory() as session:
        call_ids = list(
            session.scalars(select(CallRecord.id).where(CallRecord.created_at < older_than))
        )
    deleted = 0
    # In batches, so that a large archive is not one huge transaction.
    for start in range(0, len(call_ids), 200):
        deleted += _delete_calls_with_audio(
            session_factory, call_ids[start : start + 200], audio_dir
        )
        if on_progress is not None:
            on_progress(deleted, len(call_ids))
    with session_scope(session_factory) as session:
        delete_jobs_older_than(session, older_than)
    return deleted


# ---------------------------------------------------------------------------- alerts


def list_alerts(
    session: Session,
    *,
    state: str | None = None,
    severity: str | None = None,
    call_id: str | None = None,
    rule: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AlertRecord], int]:
    """Alerts across calls, newest first, one page of them and the total count.

    Every filter is optional; the dates (timezone-aware) bound when the alert was stored.
    """
    # The call's name comes along; its (large) result does not.
    query = select(AlertRecord).options(
        selectinload(AlertRecord.call).load_only(CallRecord.id, CallRecord.name)
    )
    if state is not None:
        query = query.where(AlertRecord.state == state)
    if severity is not None:
        query = query.where(AlertRecord.severity == severity)
    if call_id is not None:
        query = query.where(AlertRecord.call_id == call_id)
    if rule is not None:
        query = query.where(AlertRecord.rule == rule)
    if created_from is not None:
        query = query.where(AlertRecord.created_at >= created_from)
    if created_to is not None:
        query = query.where(AlertRecord.created_at <= created_to)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = (
        query.order_by(AlertRecord.created_at.desc(), AlertRecord.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(page)), total


def alert_rule_names(session: Session) -> list[str]:
    """The names of the rules that raised the stored alerts, sorted."""
    return list(session.scalars(select(AlertRecord.rule).distinct().order_by(AlertRecord.rule)))


def open_alert_counts(session: Session, call_ids: list[str]) -> dict[str, int]:
    """How many alerts of each call are still open (not acknowledged or resolved).

    Calls without an open alert are left out (count 0).
    """
    if not call_ids:
        return {}
    rows = session.execute(
        select(AlertRecord.call_id, func.count())
        .where(AlertRecord.call_id.in_(call_ids), AlertRecord.state == "open")
        .group_by(AlertRecord.call_id)
    )
    return {call_id: count for call_id, count in rows}


def get_alert(session: Session, alert_id: int) -> AlertRecord:
    """The stored alert `alert_id`.

    Raises
    ------
    NotFoundError
        No such alert.
    """
    alert = session.get(AlertRecord, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id}: not found")
    return alert


def set_alert_state(
    session: Session, alert_id: int, state: str, by: str | None = None
) -> AlertRecord:
    """Acknowledge or resolve an alert; repeating an action keeps its first timestamp
    and who did it first (`by`: the user or token name, as the audit trail names them).

    A resolved alert stays resolved when acknowledged afterwards (it gets the
    acknowledgement time too, since resolving implies having seen it).

    Raises
    ------
    NotFoundError
        No such alert.
    CallmoodError
        `state` is not "acknowledged" or "resolved".
    """
    if state not in ALERT_STATES[1:]:
        raise CallmoodError(f"alert state {state!r}: must be 'acknowledged' or 'resolved'")
    alert = get_alert(session, alert_id)
    now = utc_now()
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        alert.acknowledged_by = by
    if state == "resolved":
        if alert.resolved_at is None:
            alert.resolved_at = now
            alert.resolved_by = by
        alert.state = "resolved"
    elif alert.state != "resolved":
        alert.state = "acknowledged"
    session.flush()
    return alert


# ---------------------------------------------------------------------------- jobs


def create_job(
    session: Session,
    *,
    name: str,
    tags: list[str] | tuple[str, ...] = (),
    options: dict | None = None,
    upload_path: str | None = None,
    audio_media_type: str | None = None,
    job_id: str | None = None,
) -> JobRecord:
    """Queue the analysis of an uploaded call (state "queued")."""
    job = JobRecord(
        id=job_id or new_id(),
        state="queued",
        name=name[:MAX_NAME_LENGTH],
        tags=normalise_tags(tags),
        options=options or {},
        upload_path=upload_path,
        audio_media_type=audio_media_type,
        created_at=utc_now(),
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> JobRecord:
    """The job `job_id`.

    Raises
    ------
    NotFoundError
        No such job.
    """
    job = session.get(JobRecord, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id!r}: not found")
    return job


def mark_job_running(session: Session, job_id: str) -> JobRecord:
    """Record that a worker started the job."""
    job = get_job(session, job_id)
    job.state = "running"
    job.started_at = utc_now()
    session.flush()
    return job


def mark_job_done(session: Session, job_id: str, call_id: str) -> JobRecord:
    """Record that the job stored call `call_id`."""
    job = get_job(session, job_id)
    job.state = "done"
    job.call_id = call_id
    job.finished_at = utc_now()
    job.error = None
    session.flush()
    return job


def mark_job_failed(session: Session, job_id: str, error: str) -> JobRecord:
    """Record that the job failed, with a message for the user."""
    job = get_job(session, job_id)
    job.state = "failed"
    job.error = error
    job.finished_at = utc_now()
    job.upload_path = None
    session.flush()
    return job


def unfinished_jobs(session: Session) -> list[JobRecord]:
    """Jobs queued or running (e.g. when the server stopped), oldest first."""
    query = (
        select(JobRecord)
        .where(JobRecord.state.in_(("queued", "running")))
        .order_by(JobRecord.created_at)
    )
    return list(session.scalars(query))


def referenced_audio_paths(session: Session) -> set[str]:
    """Audio paths (relative to audio_dir) that a stored call or a job refers to."""
    calls = session.scalars(select(CallRecord.audio_path).where(CallRecord.audio_path.is_not(None)))
    jobs = session.scalars(select(JobRecord.upload_path).where(JobRecord.upload_path.is_not(None)))
    return set(calls) | set(jobs)


def delete_jobs_older_than(session: Session, older_than: datetime) -> int:
    """Forget finished jobs created before `older_than` (part of retention)."""
    outcome = session.execute(
        delete(JobRecord).where(
            JobRecord.created_at < older_than, JobRecord.state.in_(("done", "failed"))
        )
    )
    return outcome.rowcount or 0
