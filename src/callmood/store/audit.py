"""The audit trail (docs/access.md): who did what, when, from where. Append-only.

No function here changes an event, and no route changes or deletes one; the call
retention purge leaves the table alone (events outlive the calls they name). Only the
separate `audit_retention_days`, when set, deletes events by age (`purge_events`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from callmood.store.models import AuditEventRecord, utc_now

#: Every action the trail records (the admin page's filter offers these).
AUDIT_ACTIONS = (
    "login.ok",
    "login.failed",
    "logout",
    "alert.acknowledged",
    "alert.resolved",
    "rules.changed",
    "call.uploaded",
    "call.exported",
    "calls.exported",
    "call.deleted",
    "call.listened",
    "token.created",
    "token.revoked",
    "user.added",
    "user.disabled",
    "user.enabled",
    "user.password_reset",
    "audit.exported",
)
#: The actor of what is done with the `callmood` commands on the server's shell.
CLI_ACTOR = "cli"


def record_event(
    session: Session,
    *,
    action: str,
    actor_kind: str,
    actor_name: str,
    actor_id: int | None = None,
    target: str | None = None,
    client: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEventRecord:
    """Add one event (the caller commits)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"audit action {action!r}: add it to AUDIT_ACTIONS")
    event = AuditEventRecord(
        at=utc_now(),
        actor_kind=actor_kind,
        actor_name=actor_name[:200],
        actor_id=actor_id,
        action=action,
        target=target[:300] if target else None,
        client=client[:100] if client else None,
        detail=detail or {},
    )
    session.add(event)
    return event


def record_cli_event(
    session: Session, action: str, target: str | None, detail: dict[str, Any] | None = None
) -> AuditEventRecord:
    """An event of a `callmood` command (actor "cli"; the shell's user is not known here)."""
    return record_event(
        session,
        action=action,
        actor_kind=CLI_ACTOR,
        actor_name=CLI_ACTOR,
        target=target,
        detail=detail,
    )


@dataclass(frozen=True)
class AuditFilter:
    """Which events to show: each field left None matches every event."""

    action: str | None = None
    actor: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None


def _select(selection: AuditFilter) -> Select[tuple[AuditEventRecord]]:
    query = select(AuditEventRecord)
    if selection.action:
        query = query.where(AuditEventRecord.action == selection.action)
    if selection.actor:
        query = query.where(AuditEventRecord.actor_name == selection.actor.strip().lower())
    if selection.at_from is not None:
        query = query.where(AuditEventRecord.at >= selection.at_from)
    if selection.at_to is not None:
        query = query.where(AuditEventRecord.at <= selection.at_to)
    return query


def list_events(
    session: Session, selection: AuditFilter, *, offset: int = 0, limit: int = 50
) -> tuple[list[AuditEventRecord], int]:
    """A page of the matching events, newest first, and how many match."""
    query = _select(selection)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.scalars(
        query.order_by(AuditEventRecord.at.desc(), AuditEventRecord.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(page), total


def iter_events(
    session: Session, selection: AuditFilter, batch: int = 1000
) -> Iterator[AuditEventRecord]:
    """Every matching event, oldest first, read in batches (for the CSV export)."""
    last_id = 0
    while True:
        rows = list(
            session.scalars(
                _select(selection)
                .where(AuditEventRecord.id > last_id)
                .order_by(AuditEventRecord.id)
                .limit(batch)
            )
        )
        yield from rows
        if len(rows) < batch:
            return
        last_id = rows[-1].id


def purge_events(session: Session, before: datetime) -> int:
    """Delete the events older than `before` (the audit retention; the caller commits)."""
    result = session.execute(delete(AuditEventRecord).where(AuditEventRecord.at < before))
    return result.rowcount or 0
