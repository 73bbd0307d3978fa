"""Calls: upload for analysis, job status, list and search, result, timeline, audio, exports,
deletion."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from callmood import store
from callmood.results import CallResult
from callmood.service.audit import audit
from callmood.service.deps import (
    get_db,
    get_settings,
    require_api_token,
    require_role,
    require_scope,
)
from callmood.service.jobs import INCOMING_SUBDIR
from callmood.service.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_OFFSET,
    MAX_PAGE_SIZE,
    link_with_offset,
    page_offsets,
)
from callmood.service.schemas import (
    CallPage,
    CallSummary,
    CallUpdate,
    JobAccepted,
    JobStatus,
    SpeakerTimeline,
    Timeline,
    UploadOptions,
)
from callmood.service.uploads import receive_upload
from callmood.settings import Settings

#: Uploading, renaming/retagging and deleting calls: supervisors, tokens with calls:write.
CALL_CHANGE = [Depends(require_role("supervisor")), Depends(require_scope("calls:write"))]

router = APIRouter(prefix="/api", tags=["calls"], dependencies=[Depends(require_api_token)])

#: Sort orders of the list: "-date" (newest first, the default), "duration", "-negativity", ...
CallSort = Literal[store.CALL_SORTS]  # type: ignore[valid-type]
ExportFormat = Literal["json", "csv", "windows-csv", "rttm", "emotionml"]
EXPORT_MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "windows-csv": "text/csv; charset=utf-8",
    "rttm": "text/plain; charset=utf-8",
    "emotionml": "application/emotionml+xml",
}
EXPORT_SUFFIXES = {
    "json": "json",
    "csv": "segments.csv",
    "windows-csv": "windows.csv",
    "rttm": "rttm",
    "emotionml": "emotionml.xml",
}
#: Endings of recording names left out of export file names ("demo_call.flac" -> "demo_call").
AUDIO_SUFFIXES = re.compile(r"\.(wav|flac|mp3|ogg|opus|m4a|aac|webm|wma|aiff?)$", re.IGNORECASE)

# The upload body is parsed by hand (streamed to disk), so describe it for OpenAPI here.
_UPLOAD_FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The call recording."},
        **{
            name: {**field, "title": field.get("title", name)}
            for name, field in UploadOptions.model_json_schema()["properties"].items()
        },
    },
}
_UPLOAD_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": _UPLOAD_FORM_SCHEMA}},
    }
}


def export_file_stem(name: str, call_id: str) -> str:
    """A file name (ASCII letters, digits, '.', '_', '-') from the call's name; its id when
    nothing of the name is left."""
    stem = AUDIO_SUFFIXES.sub("", name.strip())
    # Accents dropped rather than the letters ("Ärger" -> "Arger").
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:100]
    return stem or call_id


def query_time_utc(moment: datetime | None) -> datetime | None:
    """A time from a query parameter, timezone-aware: without a zone it is read as UTC,
    the zone everything is stored in."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.post(
    "/calls",
    dependencies=CALL_CHANGE,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    openapi_extra=_UPLOAD_OPENAPI,
    summary="Upload a call for analysis",
    responses={
        400: {"description": "Empty or malformed upload"},
        413: {"description": "Larger than max_upload_mb"},
        415: {"description": "Not audio, or not a multipart form"},
        422: {"description": "Invalid options, or a channel the file lacks"},
    },
)
async def upload_call(request: Request, settings: Settings = Depends(get_settings)) -> JobAccepted:
    """Upload a recording (form field `file`) with options; it is analysed in the background.

    Poll `status_url` until the job is `done`, then read the call at `/api/calls/{call_id}`.
    """
    upload = await receive_upload(
        request, settings.resolved_audio_dir / INCOMING_SUBDIR, settings.max_upload_bytes
    )
    try:
        options = UploadOptions.from_form(upload.fields)
    except Exception:
        upload.discard()
        raise
    job = await run_in_threadpool(request.app.state.jobs.accept_upload, upload, options)
    await run_in_threadpool(
        audit, request, "call.uploaded", f"job:{job.id}", {"file_name": upload.filename}
    )
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/api/jobs/{job.id}")


@router.get("/jobs/{job_id}", response_model=JobStatus, summary="State of an analysis job")
def job_status(job_id: str, session: Session = Depends(get_db)) -> JobStatus:
    return JobStatus.from_record(store.get_job(session, job_id))


@dataclass(frozen=True)
class CallListQuery:
    """The filters and order of the call list, as `/api/calls` and `/api/calls.csv` read them."""

    filters: store.CallFilter
    sort: str


def call_list_query(
    created_from: datetime | None = Query(None, description="Stored at or after (ISO 8601)."),
    created_to: datetime | None = Query(None, description="Stored at or before (ISO 8601)."),
    has_alerts: bool | None = Query(None, description="Only calls with (true) / without alerts."),
    dominant_emotion: str | None = Query(None, description="Main speaker's dominant emotion."),
    min_negativity: float | None = Query(None, ge=0, le=1, description="Negativity 0..1."),
    q: str | None = Query(None, max_length=200, description="Part of the name, or a whole tag."),
    tag: str | None = Query(None, max_length=100, description="Only calls with this tag."),
    agent: str | None = Query(None, max_length=200, description="Only this agent's calls."),
    queue: str | None = Query(None, max_length=200, description="Only calls of this queue."),
    external_call_id: str | None = Query(
        None, max_length=200, description="The call with this id in the phone system."
    ),
    sort: CallSort = Query(
        "-date",
        description="Order: date (stored), started_at (when the call really started), "
        "duration, negativity or alerts (open ones); a leading '-' sorts descending. Calls "
        "without the value (no speech: no negativity) come last.",
    ),
) -> CallListQuery:
    """The list's query parameters; one dependency so that the list and its CSV download
    select exactly the same calls."""
    return CallListQuery(
        filters=store.CallFilter(
            created_from=query_time_utc(created_from),
            created_to=query_time_utc(created_to),
            has_alerts=has_alerts,
            dominant_emotion=dominant_emotion,
            min_negativity=min_negativity,
            search=q,
            tag=tag,
            agent=agent,
            queue=queue,
            external_call_id=external_call_id,
        ),
        sort=sort,
    )


@router.get("/calls", response_model=CallPage, summary="List and search stored calls")
def list_calls(
    request: Request,
    selection: CallListQuery = Depends(call_list_query),
    offset: int = Query(
        0, ge=0, le=MAX_OFFSET, description="Skip this many matching calls (paging)."
    ),
    limit: int = Query(
        DEFAULT_PAGE_SIZE,
        ge=1,
        le=MAX_PAGE_SIZE,
        description=f"Calls per page, at most {MAX_PAGE_SIZE}.",
    ),
    session: Session = Depends(get_db),
) -> CallPage:
    """Calls filtered and sorted (newest first unless `sort` says otherwise); `total` counts
    all matches, `next` links the next page."""
    calls, total = store.list_calls(
        session, selection.filters, offset=offset, limit=limit, sort=selection.sort
    )
    neighbours = page_offsets(offset, limit, total)
    return CallPage(
        items=[CallSummary.from_record(call) for call in calls],
        total=total,
        offset=offset,
        limit=limit,
        next_offset=neighbours.next,
        next=link_with_offset(request.url, neighbours.next),
        previous=link_with_offset(request.url, neighbours.previous),
    )


#: Columns of the call list CSV: what the list shows, plus what a supervisor sorts by.
CALL_LIST_CSV_COLUMNS = (
    "id",
    "name",
    "created_at_utc",
    "started_at_utc",
    "agent",
    "queue",
    "external_call_id",
    "duration_seconds",
    "tags",
    "main_speaker",
    "negativity",
    "dominant_emotion",
    "open_alerts",
    "alert_count",
    "source",
    "model_name",
)


def _utc_iso(moment: datetime) -> str:
    # Stored times come back timezone-aware in UTC (store.models.UTCDateTime, SQLite too).
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def call_list_csv_rows(
    session_factory: sessionmaker[Session], selection: CallListQuery
) -> Iterator[str]:
    """The CSV text of all calls of `selection`, header first, a batch of rows at a time."""
    from callmood.exports import spreadsheet_safe

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CALL_LIST_CSV_COLUMNS)
    # Its own session: the response streams after the request's session is given back.
    with store.session_scope(session_factory) as session:
        for batch in store.iter_calls(session, selection.filters, sort=selection.sort):
            open_alerts = store.open_alert_counts(session, [call.id for call in batch])
            for call in batch:
                writer.writerow(
                    [
                        call.id,
                        spreadsheet_safe(call.name),
                        _utc_iso(call.created_at),
                        _utc_iso(call.started_at or call.created_at),
                        spreadsheet_safe(call.agent or ""),
                        spreadsheet_safe(call.queue or ""),
                        spreadsheet_safe(call.external_call_id or ""),
                        f"{call.duration_seconds:.3f}",
                        spreadsheet_safe(";".join(call.tag_names)),
                        call.main_speaker or "",
                        "" if call.negativity is None else f"{call.negativity:.4f}",
                        call.dominant_emotion or "",
                        open_alerts.get(call.id, 0),
                        call.alert_count,
                        spreadsheet_safe(call.source),
                        call.model_name,
                    ]
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# Before "/calls/{call_id}" in the file, so that the literal path reads first.
@router.get(
    "/calls.csv",
    response_class=StreamingResponse,
    summary="The filtered call list as a CSV download",
    responses={200: {"content": {"text/csv": {}}, "description": "One row per call."}},
)
def list_calls_csv(
    request: Request, selection: CallListQuery = Depends(call_list_query)
) -> StreamingResponse:
    """All calls matching the filters of `/api/calls` (no paging), in its order, as CSV.

    Names and tags that start like a spreadsheet formula (`=`, `+`, `-`, `@`) get a leading
    `'` so that a spreadsheet shows them as text.
    """
    audit(request, "calls.exported", "calls.csv", {"query": str(request.url.query)})
    return StreamingResponse(
        call_list_csv_rows(request.app.state.session_factory, selection),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="calls.csv"'},
    )


@router.get("/calls/{call_id}", response_model=CallResult, summary="The analysis of a call")
def get_call(call_id: str, session: Session = Depends(get_db)) -> CallResult:
    return store.call_result(store.get_call(session, call_id))


@router.get("/calls/{call_id}/summary", response_model=CallSummary, summary="A call's summary")
def get_call_summary(call_id: str, session: Session = Depends(get_db)) -> CallSummary:
    """Name, tags and scores of a call, as in the list."""
    return CallSummary.from_record(store.get_call(session, call_id))


@router.get("/calls/{call_id}/timeline", response_model=Timeline, summary="Per-speaker timeline")
def get_timeline(call_id: str, session: Session = Depends(get_db)) -> Timeline:
    """Each speaker's windows and merged emotion segments, seconds from the start."""
    result = store.call_result(store.get_call(session, call_id))
    return Timeline(
        call_id=result.call_id,
        duration_seconds=result.duration_seconds,
        speakers=[
            SpeakerTimeline(
                speaker=speaker,
                channel=speaker_result.channel,
                emotions_analyzed=speaker_result.scores.emotions_analyzed,
                windows=speaker_result.windows,
                segments=speaker_result.segments,
            )
            for speaker, speaker_result in result.speakers.items()
        ],
    )


@router.get(
    "/calls/{call_id}/audio",
    response_class=FileResponse,
    summary="The call recording",
    responses={404: {"description": "No such call, or its audio is not kept"}},
)
def get_audio(
    call_id: str,
    request: Request,
    session: Session = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> FileResponse:
    """The stored recording as uploaded (supports HTTP range requests, for the player)."""
    call = store.get_call(session, call_id)
    path = settings.resolved_audio_dir / call.audio_path if call.audio_path else None
    if path is None or not path.is_file():
        raise store.NotFoundError(f"call {call_id!r}: its audio is not stored")
    # A player fetches a recording in many ranges: one listen is the request for its start.
    byte_range = request.headers.get("range", "").replace(" ", "")
    if not byte_range or byte_range.startswith("bytes=0-"):
        audit(request, "call.listened", f"call:{call.id}")
    return FileResponse(path, media_type=call.audio_media_type or "application/octet-stream")


@router.get(
    "/calls/{call_id}/export/{export_format}",
    summary="Export a call's analysis",
    dependencies=[Depends(require_role("supervisor"))],
)
def export_call(
    call_id: str, export_format: ExportFormat, request: Request, session: Session = Depends(get_db)
) -> Response:
    """The result as JSON, CSV (`csv`: one row per emotion segment; `windows-csv`: one row
    per analysis window), RTTM (speaker turns) or W3C EmotionML.

    The file is named after the call (e.g. `demo_call.windows.csv`).
    """
    from callmood import exports

    call = store.get_call(session, call_id)
    filename = f"{export_file_stem(call.name, call.id)}.{EXPORT_SUFFIXES[export_format]}"
    audit(request, "call.exported", f"call:{call.id}", {"format": export_format})
    return Response(
        content=exports.export(store.call_result(call), export_format),
        media_type=EXPORT_MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.patch(
    "/calls/{call_id}",
    response_model=CallSummary,
    summary="Rename, retag or reassign a call",
    dependencies=CALL_CHANGE,
)
def update_call(
    call_id: str, change: CallUpdate, session: Session = Depends(get_db)
) -> CallSummary:
    """Set the call's `name`, `agent` or `queue` (an empty string clears agent or queue)
    and/or replace its `tags`; fields left out stay as they are."""
    call = store.update_call(
        session,
        call_id,
        name=change.name,
        tags=change.tags,
        agent=change.agent,
        queue=change.queue,
    )
    session.commit()
    return CallSummary.from_record(call)


@router.delete(
    "/calls/{call_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a call",
    dependencies=CALL_CHANGE,
)
def delete_call(call_id: str, request: Request, settings: Settings = Depends(get_settings)) -> None:
    """Delete the call's rows and its recording together (all or nothing)."""
    store.delete_call(request.app.state.session_factory, call_id, settings.resolved_audio_dir)
    audit(request, "call.deleted", f"call:{call_id}")
