"""The audit trail as CSV (admins). Read only: no route changes or deletes an event."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import sessionmaker

from callmood.exports import spreadsheet_safe
from callmood.service.audit import audit
from callmood.service.deps import require_api_token, require_role, require_scope
from callmood.service.routes.calls import query_time_utc
from callmood.store.audit import AuditFilter, iter_events

router = APIRouter(
    prefix="/api",
    tags=["audit"],
    dependencies=[
        Depends(require_api_token),
        Depends(require_role("admin")),
        Depends(require_scope("admin")),
    ],
)

AUDIT_CSV_COLUMNS = (
    "at",
    "actor_kind",
    "actor_name",
    "actor_id",
    "action",
    "target",
    "client",
    "detail",
)


def audit_csv_rows(session_factory: sessionmaker, selection: AuditFilter) -> Iterator[str]:
    """The header and one line per event, oldest first; text cells spreadsheet-safe (a
    failed login's user name is typed by anyone)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(AUDIT_CSV_COLUMNS)
    with session_factory() as session:
        for count, event in enumerate(iter_events(session, selection), start=1):
            writer.writerow(
                [
                    event.at.isoformat(),
                    event.actor_kind,
                    spreadsheet_safe(event.actor_name),
                    "" if event.actor_id is None else event.actor_id,
                    event.action,
                    spreadsheet_safe(event.target or ""),
                    spreadsheet_safe(event.client or ""),
                    spreadsheet_safe(json.dumps(event.detail, ensure_ascii=False, sort_keys=True)),
                ]
            )
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


@router.get(
    "/audit.csv",
    response_class=StreamingResponse,
    summary="The audit trail as a CSV download",
    responses={200: {"content": {"text/csv": {}}, "description": "One row per event."}},
)
def audit_csv(
    request: Request,
    action: str | None = Query(None, max_length=40, description="Only this action."),
    actor: str | None = Query(None, max_length=200, description="Only this user or token."),
    at_from: datetime | None = Query(None, description="At or after (ISO 8601)."),
    at_to: datetime | None = Query(None, description="At or before (ISO 8601)."),
) -> StreamingResponse:
    """Every event matching the filters, oldest first (columns: at, actor_kind,
    actor_name, actor_id, action, target, client, detail as JSON)."""
    start, end = query_time_utc(at_from), query_time_utc(at_to)
    if start is not None and end is not None and start > end:
        raise HTTPException(422, detail="query parameter 'at_to' is before 'at_from'")
    selection = AuditFilter(action=action or None, actor=actor or None, at_from=start, at_to=end)
    audit(request, "audit.exported", "audit.csv", {"query": str(request.url.query)})
    return StreamingResponse(
        audit_csv_rows(request.app.state.session_factory, selection),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
