"""Alerts across calls: newest first, acknowledge, resolve."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from callmood import store
from callmood.service.deps import get_db, require_api_token
from callmood.service.paging import MAX_OFFSET
from callmood.service.schemas import AlertPage, StoredAlert

router = APIRouter(prefix="/api/alerts", tags=["alerts"], dependencies=[Depends(require_api_token)])


@router.get("", response_model=AlertPage, summary="Alerts across calls, newest first")
def list_alerts(
    state: Literal["open", "acknowledged", "resolved"] | None = Query(None),
    severity: Literal["info", "warning", "critical"] | None = Query(None),
    call_id: str | None = Query(None, description="Only this call's alerts."),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=500),
    session: Session = Depends(get_db),
) -> AlertPage:
    alerts, total = store.list_alerts(
        session, state=state, severity=severity, call_id=call_id, offset=offset, limit=limit
    )
    return AlertPage(
        items=[StoredAlert.from_record(alert) for alert in alerts],
        total=total,
        offset=offset,
        limit=limit,
    )


#: Alert ids are database integers (64-bit); a larger number is refused, not sent to the database.
AlertId = Path(ge=0, le=2**63 - 1, description="The alert's id.")


@router.post("/{alert_id}/acknowledge", response_model=StoredAlert, summary="Acknowledge")
def acknowledge_alert(alert_id: int = AlertId, session: Session = Depends(get_db)) -> StoredAlert:
    """Mark the alert as seen (idempotent; a resolved alert stays resolved)."""
    alert = store.set_alert_state(session, alert_id, "acknowledged")
    session.commit()
    return StoredAlert.from_record(alert)


@router.post("/{alert_id}/resolve", response_model=StoredAlert, summary="Resolve")
def resolve_alert(alert_id: int = AlertId, session: Session = Depends(get_db)) -> StoredAlert:
    """Mark the alert as dealt with (idempotent)."""
    alert = store.set_alert_state(session, alert_id, "resolved")
    session.commit()
    return StoredAlert.from_record(alert)
