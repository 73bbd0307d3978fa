"""Alerts across calls: newest first, filtered; acknowledge (one or many), resolve."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from sqlalchemy.orm import Session

from callmood import store
from callmood.service.audit import actor_label, audit
from callmood.service.deps import get_db, require_api_token, require_role, require_scope
from callmood.service.paging import MAX_OFFSET
from callmood.service.routes.calls import query_time_utc
from callmood.service.schemas import AlertPage, AlertSelection, StoredAlert

#: Acknowledging and resolving: supervisors, and tokens with alerts:write.
ALERT_CHANGE = [Depends(require_role("supervisor")), Depends(require_scope("alerts:write"))]

router = APIRouter(prefix="/api/alerts", tags=["alerts"], dependencies=[Depends(require_api_token)])


@router.get("", response_model=AlertPage, summary="Alerts across calls, newest first")
def list_alerts(
    state: Literal["open", "acknowledged", "resolved"] | None = Query(None),
    severity: Literal["info", "warning", "critical"] | None = Query(None),
    call_id: str | None = Query(None, max_length=64, description="Only this call's alerts."),
    rule: str | None = Query(None, max_length=100, description="Only this rule's alerts."),
    created_from: datetime | None = Query(None, description="Raised at or after (ISO 8601)."),
    created_to: datetime | None = Query(None, description="Raised at or before (ISO 8601)."),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=500),
    session: Session = Depends(get_db),
) -> AlertPage:
    start, end = query_time_utc(created_from), query_time_utc(created_to)
    if start is not None and end is not None and start > end:
        raise HTTPException(
            status_code=422,
            detail=f"query parameter 'created_to' ({end.isoformat()}) is before "
            f"'created_from' ({start.isoformat()})",
        )
    alerts, total = store.list_alerts(
        session,
        state=state,
        severity=severity,
        call_id=call_id,
        rule=rule,
        created_from=start,
        created_to=end,
        offset=offset,
        limit=limit,
    )
    return AlertPage(
        items=[StoredAlert.from_record(alert) for alert in alerts],
        total=total,
        offset=offset,
        limit=limit,
    )


@router.post(
    "/acknowledge",
    dependencies=ALERT_CHANGE,
    response_model=list[StoredAlert],
    summary="Acknowledge many alerts",
    responses={404: {"description": "An id is no alert; nothing was changed"}},
)
def acknowledge_alerts(
    request: Request, selection: AlertSelection, session: Session = Depends(get_db)
) -> list[StoredAlert]:
    """Acknowledge every alert of `ids` at once: all of them, or (an unknown id) none."""
    alerts = [
        store.set_alert_state(session, alert_id, "acknowledged", actor_label(request))
        for alert_id in dict.fromkeys(selection.ids)
    ]
    session.commit()  # only reached when every id was found
    for alert in alerts:
        audit(request, "alert.acknowledged", f"alert:{alert.id}", {"bulk": True})
    return [StoredAlert.from_record(alert) for alert in alerts]


#: Alert ids are database integers (64-bit); a larger number is refused, not sent to the database.
AlertId = Path(ge=0, le=2**63 - 1, description="The alert's id.")


@router.post(
    "/{alert_id}/acknowledge",
    response_model=StoredAlert,
    summary="Acknowledge",
    dependencies=ALERT_CHANGE,
)
def acknowledge_alert(
    request: Request, alert_id: int = AlertId, session: Session = Depends(get_db)
) -> StoredAlert:
    """Mark the alert as seen (idempotent; a resolved alert stays resolved)."""
    alert = store.set_alert_state(session, alert_id, "acknowledged", actor_label(request))
    session.commit()
    audit(request, "alert.acknowledged", f"alert:{alert.id}", {"call_id": alert.call_id})
    return StoredAlert.from_record(alert)


@router.post(
    "/{alert_id}/resolve",
    response_model=StoredAlert,
    summary="Resolve",
    dependencies=ALERT_CHANGE,
)
def resolve_alert(
    request: Request, alert_id: int = AlertId, session: Session = Depends(get_db)
) -> StoredAlert:
    """Mark the alert as dealt with (idempotent)."""
    alert = store.set_alert_state(session, alert_id, "resolved", actor_label(request))
    session.commit()
    audit(request, "alert.resolved", f"alert:{alert.id}", {"call_id": alert.call_id})
    return StoredAlert.from_record(alert)
