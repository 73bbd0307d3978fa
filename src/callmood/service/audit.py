"""Recording the audit trail from requests: who (`request.state.actor`) and from where.

Each event is written in its own transaction, so that a failed login (whose request
changes nothing else) or a route that already committed still leaves its trace.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import HTTPConnection

from callmood.service.deps import Actor, LoginResult
from callmood.store import session_scope
from callmood.store.audit import record_event

logger = logging.getLogger(__name__)


def client_address(connection: HTTPConnection) -> str | None:
    """The address uvicorn reports (the proxy's X-Forwarded-For when it trusts the proxy)."""
    return connection.client.host if connection.client else None


def audit(
    connection: HTTPConnection,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    actor: Actor | None = None,
    claimed: tuple[str, str] | None = None,
) -> None:
    """Record `action` on `target` by `actor` (default: the request's actor), or by the
    (kind, name) a failed login `claimed` to be."""
    who = actor or getattr(connection.state, "actor", None)
    kind, name = claimed or ((who.kind, who.name) if who else ("anonymous", "anonymous"))
    with session_scope(connection.app.state.session_factory) as session:
        record_event(
            session,
            action=action,
            actor_kind=kind,
            actor_name=name,
            actor_id=(who.user_id or who.token_id) if who and not claimed else None,
            target=target,
            client=client_address(connection),
            detail=detail,
        )


def actor_label(connection: HTTPConnection) -> str:
    """What an alert row keeps as who acknowledged or resolved it: the actor's name."""
    actor = getattr(connection.state, "actor", None)
    return actor.name if actor else "anonymous"


def audit_login(connection: HTTPConnection, result: LoginResult, username: str) -> None:
    """A login's outcome: `login.ok` by whom it signed in, or `login.failed` with the
    user name tried (never the password or token)."""
    if result.actor is not None:
        audit(connection, "login.ok", detail={"method": result.actor.kind}, actor=result.actor)
        return
    name = username.strip().lower()[:64]
    claimed = ("user", name) if name else ("token", "(wrong token)")
    audit(
        connection,
        "login.failed",
        detail={"username": name, "reason": result.problem},
        claimed=claimed,
    )
