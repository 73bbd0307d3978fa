"""FastAPI dependencies: settings, database sessions, and authentication.

The API takes a Bearer token (``Authorization: Bearer <token>``) or the session
cookie the dashboard login sets; pages redirect to ``/login`` instead of answering
401. Nothing is served without one of them unless the settings' `auth_disabled`.
The server keeps only the token's hash (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from callmood.errors import CallmoodError
from callmood.settings import (
    SESSION_SECRET_FILE_NAME,
    TOKEN_FILE_NAME,
    TOKEN_HASH_FILE_NAME,
    Settings,
)

logger = logging.getLogger(__name__)

SESSION_COOKIE = "callmood_session"
LOGIN_PATH = "/login"
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing; any other needs the CSRF token with a login cookie.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# ---------------------------------------------------------------------------- the API token

TOKEN_HASH_PREFIX = "sha256:"
_TOKEN_HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


class CredentialsError(CallmoodError):
    """A stored credential file in the data folder is unreadable or malformed."""


@dataclass(frozen=True)
class Credentials:
    """What the server keeps to check requests; never the API token itself.

    `token_hash` is the token's SHA-256 (the token is random, so a plain hash cannot be
    reversed); `session_key` signs login cookies and CSRF tokens.
    """

    token_hash: str
    session_key: bytes


def hash_token(token: str) -> str:
    """The stored form of an API token: ``sha256:`` and its hex SHA-256 digest."""
    return TOKEN_HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def resolve_credentials(
    settings: Settings, announce: Callable[[str], None] | None = None
) -> Credentials:
    """The API token's hash and the session key, creating what is missing in `data_dir`.

    The token comes from the settings (the token, or its ``sha256:...`` hash), else from
    `data_dir/api_token.sha256`. A plain token in `data_dir/api_token` (how earlier
    versions kept it, and how an operator sets a new one) is hashed into that file and
    the plain file deleted. With neither, a new token is made, its hash written, and the
    token passed to `announce` (`callmood serve` prints it): it is shown only then.

    Raises
    ------
    CredentialsError
        `api_token.sha256` or `session_secret` holds something else than what we write.
    """
    token_hash = _resolve_token_hash(settings, announce)
    secret = _session_secret(settings.data_dir / SESSION_SECRET_FILE_NAME)
    # Keyed by the token too: a new token logs every browser out.
    session_key = hmac.new(secret, token_hash.encode("ascii"), hashlib.sha256).digest()
    return Credentials(token_hash=token_hash, session_key=session_key)


def _resolve_token_hash(settings: Settings, announce: Callable[[str], None] | None) -> str:
    if settings.auth_token is not None and settings.auth_token.get_secret_value():
        configured = settings.auth_token.get_secret_value()
        return configured if _TOKEN_HASH_PATTERN.match(configured) else hash_token(configured)
    hash_file = settings.data_dir / TOKEN_HASH_FILE_NAME
    plain_file = settings.data_dir / TOKEN_FILE_NAME
    plain = _read_credential_file(plain_file) if plain_file.is_file() else ""
    if plain:
        token_hash = hash_token(plain)
        _write_private_file(hash_file, token_hash + "\n")
        plain_file.unlink()
        logger.warning(
            "the API token from %s is now kept only as its hash in %s (the token is unchanged)",
            plain_file,
            hash_file,
        )
        return token_hash
    if hash_file.is_file():
        stored = _read_credential_file(hash_file)
        if not _TOKEN_HASH_PATTERN.match(stored):
            raise CredentialsError(
                f"{hash_file}: not a token hash (sha256: and 64 hex digits); delete it to "
                "get a new token, or put a token in data_dir/api_token"
            )
        return stored
    token = secrets.token_urlsafe(32)
    _write_private_file(hash_file, hash_token(token) + "\n")
    logger.warning("created a new API token; its hash is in %s", hash_file)
    if announce is not None:
        announce(token)
    return hash_token(token)


def _session_secret(path: Path) -> bytes:
    # Random, kept beside the token hash so logins survive a restart; a copy of the token
    # hash alone (a config file, a log) is then not enough to forge a login cookie.
    if path.is_file():
        text = _read_credential_file(path)
        if not re.fullmatch(r"[0-9a-f]{64}", text):
            raise CredentialsError(f"{path}: not a session secret; delete it to make a new one")
        return bytes.fromhex(text)
    secret = secrets.token_bytes(32)
    _write_private_file(path, secret.hex() + "\n")
    return secret


def _read_credential_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CredentialsError(f"{path}: cannot be read as text: {error}") from None


def _write_private_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def token_matches(candidate: str | None, token_hash: str) -> bool:
    """Whether `candidate` is the API token whose stored hash is `token_hash`."""
    if not candidate:
        return False
    return hmac.compare_digest(hash_token(candidate), token_hash)


# ---------------------------------------------------------------------------- sessions


def _signature(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def make_session_cookie(credentials: Credentials, hours: float) -> str:
    """A signed, expiring session cookie value (no server-side state)."""
    expires = int(time.time() + hours * 3600)
    return f"{expires}.{_signature(credentials.session_key, f'callmood-session:{expires}')}"


def session_cookie_valid(value: str | None, credentials: Credentials) -> bool:
    """Whether a session cookie value was signed with `credentials` and has not expired."""
    if not value or "." not in value:
        return False
    expires_text, signature = value.split(".", 1)
    if not expires_text.isdigit() or int(expires_text) < time.time():
        return False
    expected = _signature(credentials.session_key, f"callmood-session:{int(expires_text)}")
    return hmac.compare_digest(signature, expected)


def set_session_cookie(response: Response, request: Request) -> None:
    """Log the browser in: set the session cookie on `response` (HttpOnly, SameSite=Lax)."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        make_session_cookie(request.app.state.credentials, settings.session_hours),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    """Log the browser out."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def csrf_token(connection: HTTPConnection) -> str | None:
    """The CSRF token of this browser's login session (None without a valid session cookie).

    Derived from the session cookie, so it needs no server-side state and changes with
    every login; pages put it in ``<meta name="csrf-token">`` for their scripts.
    """
    credentials: Credentials = connection.app.state.credentials
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not session_cookie_valid(cookie, credentials):
        return None
    return _signature(credentials.session_key, f"callmood-csrf:{cookie}")


def _bearer_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def authentication(connection: HTTPConnection) -> str | None:
    """How a request or WebSocket is authenticated, or None if it is not.

    "disabled" (the settings' `auth_disabled`), "bearer" (the API token in the
    Authorization header), "cookie" (a valid login session cookie) or "query" (the token
    as the `token` query parameter: WebSockets only, since browsers cannot set headers on
    them; plain HTTP requests may not, as URLs get logged).
    """
    state = connection.app.state
    if state.settings.auth_disabled:
        return "disabled"
    credentials: Credentials = state.credentials
    if token_matches(_bearer_token(connection), credentials.token_hash):
        return "bearer"
    if session_cookie_valid(connection.cookies.get(SESSION_COOKIE), credentials):
        return "cookie"
    if connection.scope["type"] == "websocket" and token_matches(
        connection.query_params.get("token"), credentials.token_hash
    ):
        return "query"
    return None


def is_authenticated(connection: HTTPConnection) -> bool:
    """Whether a request or WebSocket carries the API token or a valid session cookie."""
    return authentication(connection) is not None


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
    """API guard: 401 unless the request has the Bearer token or a session cookie.

    A cookie-authenticated request that changes something must also carry the session's
    CSRF token in the X-CSRF-Token header (403 otherwise): a browser sends the cookie
    with requests other sites start, but only the dashboard's own pages know the token.
    """
    method = authentication(request)
    if method is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token: send 'Authorization: Bearer <token>' "
            "(printed when the server made it) or log in at /login",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if method == "cookie" and request.method not in SAFE_METHODS:
        expected = csrf_token(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if expected is None or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"missing or wrong {CSRF_HEADER} header: a request authenticated by "
                "the login cookie must send the CSRF token of a dashboard page "
                "(<meta name=\"csrf-token\">), or use 'Authorization: Bearer <token>'",
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
