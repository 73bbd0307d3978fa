"""FastAPI dependencies: settings, database sessions, and authentication.

The API takes a Bearer token (``Authorization: Bearer <token>``) or the session
cookie the dashboard login sets; pages redirect to ``/login`` instead of answering
401. Nothing is served without one of them unless the settings' `auth_disabled`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from callmood.settings import TOKEN_FILE_NAME, Settings

logger = logging.getLogger(__name__)

SESSION_COOKIE = "callmood_session"
LOGIN_PATH = "/login"


# ---------------------------------------------------------------------------- the API token


def resolve_api_token(settings: Settings, announce: Callable[[str], None] | None = None) -> str:
    """The API token: from the settings, else from `data_dir/api_token`, else a new one.

    A new token is written to `data_dir/api_token` (readable by the owner only) and
    passed to `announce` (`callmood serve` prints it), so the first start of a server
    is never open to everyone.
    """
    if settings.auth_token is not None and settings.auth_token.get_secret_value():
        return settings.auth_token.get_secret_value()
    token_file = settings.data_dir / TOKEN_FILE_NAME
    if token_file.is_file():
        token = token_file.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    _write_private_file(token_file, token + "\n")
    logger.warning("created a new API token in %s", token_file)
    if announce is not None:
        announce(token)
    return token


def _write_private_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def token_matches(candidate: str | None, api_token: str) -> bool:
    """Whether `candidate` is the API token (constant-time compare)."""
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), api_token.encode("utf-8"))


# ---------------------------------------------------------------------------- sessions


def _cookie_signature(expires: int, api_token: str) -> str:
    # Keyed by the API token: changing the token logs every browser out.
    message = f"callmood-session:{expires}".encode()
    return hmac.new(api_token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def make_session_cookie(api_token: str, hours: float) -> str:
    """A signed, expiring session cookie value (no server-side state)."""
    expires = int(time.time() + hours * 3600)
    return f"{expires}.{_cookie_signature(expires, api_token)}"


def session_cookie_valid(value: str | None, api_token: str) -> bool:
    """Whether a session cookie value was made with `api_token` and has not expired."""
    if not value or "." not in value:
        return False
    expires_text, signature = value.split(".", 1)
    if not expires_text.isdigit() or int(expires_text) < time.time():
        return False
    return hmac.compare_digest(signature, _cookie_signature(int(expires_text), api_token))


def set_session_cookie(response: Response, request: Request) -> None:
    """Log the browser in: set the session cookie on `response` (HttpOnly, SameSite=Lax)."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        make_session_cookie(request.app.state.api_token, settings.session_hours),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    """Log the browser out."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def _bearer_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def is_authenticated(connection: HTTPConnection) -> bool:
    """Whether a request or WebSocket carries the API token or a valid session cookie.

    WebSockets may also pass the token as the `token` query parameter, since
    browsers cannot set headers on them (plain HTTP requests may not: URLs get logged).
    """
    state = connection.app.state
    if state.settings.auth_disabled:
        return True
    api_token: str = state.api_token
    if token_matches(_bearer_token(connection), api_token):
        return True
    if session_cookie_valid(connection.cookies.get(SESSION_COOKIE), api_token):
        return True
    if connection.scope["type"] == "websocket":
        return token_matches(connection.query_params.get("token"), api_token)
    return False


# ---------------------------------------------------------------------------- login throttling


def _login_client(request: Request) -> str:
    # The address uvicorn reports (the proxy's X-Forwarded-For when it trusts the proxy).
    return request.client.host if request.client else "unknown"


def login_retry_after(request: Request) -> int | None:
    """Seconds this client must wait before trying to log in again, or None if it may."""
    return request.app.state.login_limiter.retry_after(_login_client(request))


def record_login_attempt(request: Request, *, success: bool) -> None:
    """Count a failed login of this client, or forget its failures after a success."""
    limiter = request.app.state.login_limiter
    if success:
        limiter.reset(_login_client(request))
    else:
        limiter.record_failure(_login_client(request))


def too_many_logins_message(retry_after: int) -> str:
    """What a throttled client is told (the API's `detail` and the login page's message)."""
    minutes = math.ceil(retry_after / 60)
    wait = f"{retry_after} s" if retry_after < 60 else f"{minutes} min"
    return f"too many failed logins from this address: try again in {wait}"


# ---------------------------------------------------------------------------- dependencies


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_session_factory(request: Request) -> sessionmaker[Session]:
    """The app's database session factory (for code that manages its own transactions)."""
    return request.app.state.session_factory


def get_db(
    session_factory: sessionmaker[Session] = Depends(get_session_factory),
) -> Iterator[Session]:
    """A database session for one request; the route commits what it writes."""
    with session_factory() as session:
        yield session


def require_api_token(request: Request) -> None:
    """API guard: 401 unless the request has the Bearer token or a session cookie."""
    if not is_authenticated(request):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token: send 'Authorization: Bearer <token>' "
            "(the token is in data_dir/api_token) or log in at /login",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_login(request: Request) -> None:
    """Page guard: redirect (303) to the login page unless logged in."""
    if not is_authenticated(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status_code=status.HTTP_303_SEE_OTHER,
            detail="login required",
            headers={"Location": f"{LOGIN_PATH}?next={quote(target, safe='')}"},
        )
