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
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response, WebSocketException, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from callmood.errors import CallmoodError
from callmood.settings import (
    SESSION_SECRET_FILE_NAME,
    TOKEN_FILE_NAME,
    TOKEN_HASH_FILE_NAME,
    Settings,
)
from callmood.store.models import TOKEN_SCOPES, USER_ROLES
from callmood.store.tokens import find_active_token, note_use
from callmood.store.users import authenticate, check_role, get_user_by_id

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


#: The user field of a session cookie opened with the shared token (no user account).
SHARED_SESSION = "shared"


def _session_message(expires: int, subject: str) -> str:
    return f"callmood-session:{expires}:{subject}"


def user_session_subject(user_id: int, password_changed_at: datetime) -> str:
    """What a user's session cookie names: the user and when their password was set.

    Signing the password's time too means a new password ends the user's other sessions.
    """
    return f"u{user_id}-{int(password_changed_at.timestamp())}"


def make_session_cookie(
    credentials: Credentials, hours: float, subject: str = SHARED_SESSION
) -> str:
    """A signed, expiring session cookie value for `subject` (no server-side state).

    `subject` is SHARED_SESSION for the shared token, else `user_session_subject`.
    """
    expires = int(time.time() + hours * 3600)
    signature = _signature(credentials.session_key, _session_message(expires, subject))
    return f"{expires}.{subject}.{signature}"


def session_cookie_subject(value: str | None, credentials: Credentials) -> str | None:
    """Whom a session cookie value names, if it was signed with `credentials` and has not
    expired; else None."""
    if not value or value.count(".") != 2:
        return None
    expires_text, subject, signature = value.split(".")
    if not expires_text.isdigit() or int(expires_text) < time.time():
        return None
    expected = _signature(credentials.session_key, _session_message(int(expires_text), subject))
    return subject if hmac.compare_digest(signature, expected) else None


def session_cookie_valid(value: str | None, credentials: Credentials) -> bool:
    """Whether a session cookie value was signed with `credentials` and has not expired."""
    return session_cookie_subject(value, credentials) is not None


def set_session_cookie(response: Response, request: Request, subject: str = SHARED_SESSION) -> None:
    """Log the browser in: set the session cookie on `response` (HttpOnly, SameSite=Lax)."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        make_session_cookie(request.app.state.credentials, settings.session_hours, subject),
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


@dataclass(frozen=True)
class Actor:
    """Who a request acts as (kept on ``request.state.actor`` for the routes and audit).

    `kind` is "user" (a user account's session), "token" (an integration credential: the
    shared API token, by header, query or its login session, with the admin role and
    every scope; or a scoped token of the api_tokens table, by header or query) or
    "anonymous" (`auth_disabled`: also admin, as before accounts existed).

    A token's `scopes` decide what it may do (`require_scope`); a user's `role` decides
    for a person (`require_role`). `scopes` is None for users and anonymous.
    """

    kind: str
    role: str
    name: str
    user_id: int | None = None
    display_name: str | None = None

    scopes: frozenset[str] | None = None
    token_id: int | None = None

    def may(self, role: str) -> bool:
        """Whether this actor has `role` or a higher one (a token: its scopes decide)."""
        if self.scopes is not None:
            return True
        return USER_ROLES.index(self.role) >= USER_ROLES.index(role)

    def has_scope(self, scope: str) -> bool:
        """Whether this actor may do what needs `scope` (`admin` includes every scope;
        users and anonymous: their role decides instead, so yes)."""
        return self.scopes is None or scope in self.scopes or "admin" in self.scopes


#: The legacy integration credential keeps everything it could do before scopes existed.
SHARED_TOKEN_ACTOR = Actor(
    kind="token", role="admin", name="shared token", scopes=frozenset(TOKEN_SCOPES)
)
#: What a scoped token is shown as beside users' roles (it has no role, only scopes).
TOKEN_ROLE = "integration"
ANONYMOUS_ACTOR = Actor(kind="anonymous", role="admin", name="anonymous")


def _session_actor(connection: HTTPConnection, subject: str) -> Actor | None:
    if subject == SHARED_SESSION:
        return SHARED_TOKEN_ACTOR
    match = re.fullmatch(r"u(\d+)-(\d+)", subject)
    if match is None:
        return None
    # Read on every request, so that disabling a user ends their sessions at once.
    with connection.app.state.session_factory() as session:
        user = get_user_by_id(session, int(match.group(1)))
    if user is None or user.disabled:
        return None
    if user_session_subject(user.id, user.password_changed_at) != subject:
        return None  # the password was changed since this login
    return Actor(
        kind="user",
        role=user.role,
        name=user.username,
        user_id=user.id,
        display_name=user.display_name,
    )


def scoped_token_actor(connection: HTTPConnection, secret: str | None) -> Actor | None:
    """The actor of the unrevoked scoped token `secret`, or None (notes its last use).

    For credentials that come in a protocol's own message (a connector's start
    parameters); headers and ?token= are read by `authenticate_connection`.
    """
    # Read at every request, so a revoked token is refused at once.
    if not secret:
        return None
    with connection.app.state.session_factory() as session:
        token = find_active_token(session, secret)
        if token is None:
            return None
        if note_use(token):
            session.commit()
        return Actor(
            kind="token",
            role=TOKEN_ROLE,
            name=token.name,
            scopes=frozenset(token.scopes),
            token_id=token.id,
        )


def authenticate_connection(connection: HTTPConnection) -> tuple[str, Actor] | None:
    """How a request or WebSocket is authenticated and who it acts as, or None.

    The method is "disabled" (the settings' `auth_disabled`), "bearer" (the API token or
    a scoped token in the Authorization header), "cookie" (a valid login session cookie
    of the shared token or of an enabled user) or "query" (the token as the `token` query parameter:
    WebSockets only, since browsers cannot set headers on them; plain HTTP requests may
    not, as URLs get logged).
    """
    state = connection.app.state
    if state.settings.auth_disabled:
        return "disabled", ANONYMOUS_ACTOR
    credentials: Credentials = state.credentials
    bearer = _bearer_token(connection)
    if token_matches(bearer, credentials.token_hash):
        return "bearer", SHARED_TOKEN_ACTOR
    scoped = scoped_token_actor(connection, bearer)
    if scoped is not None:
        return "bearer", scoped
    subject = session_cookie_subject(connection.cookies.get(SESSION_COOKIE), credentials)
    if subject is not None:
        actor = _session_actor(connection, subject)
        if actor is not None:
            return "cookie", actor
    if connection.scope["type"] == "websocket":
        query_token = connection.query_params.get("token")
        if token_matches(query_token, credentials.token_hash):
            return "query", SHARED_TOKEN_ACTOR
        scoped = scoped_token_actor(connection, query_token)
        if scoped is not None:
            return "query", scoped
    return None


def authentication(connection: HTTPConnection) -> str | None:
    """How a request or WebSocket is authenticated (see `authenticate_connection`), or None."""
    found = authenticate_connection(connection)
    return found[0] if found else None


def current_actor(connection: HTTPConnection) -> Actor | None:
    """Who the request acts as, or None if it is not authenticated (also sets
    ``connection.state.actor``)."""
    found = authenticate_connection(connection)
    connection.state.actor = found[1] if found else None
    return connection.state.actor


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


@dataclass(frozen=True)
class LoginResult:
    """A login attempt: the session `subject` and `actor` on success, else `problem`."""

    subject: str | None
    actor: Actor | None
    problem: str = ""


def user_login(request: Request, username: str, password: str) -> LoginResult:
    """Check a user's name and password.

    The caller throttles (`login_retry_after`, `record_login_attempt`) as for the token.
    """
    with request.app.state.session_factory() as session:
        outcome = authenticate(session, username, password)
        user = outcome.user
        if user is None:
            return LoginResult(None, None, outcome.problem or "login refused")
        session.commit()  # last_login_at, and the hash if it was upgraded
        actor = Actor("user", user.role, user.username, user.id, user.display_name)
        return LoginResult(user_session_subject(user.id, user.password_changed_at), actor)


def token_login(request: Request, token: str) -> LoginResult:
    """Check the shared API token (an integration credential that logs in as admin)."""
    if token_matches(token, request.app.state.credentials.token_hash):
        return LoginResult(SHARED_SESSION, SHARED_TOKEN_ACTOR)
    return LoginResult(None, None, "wrong API token")


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
    found = authenticate_connection(request)
    request.state.actor = found[1] if found else None
    if found is not None and request.method in SAFE_METHODS:
        _check_scope(request, found[1], READ_SCOPE)  # reading anything needs calls:read
    if found is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token: send 'Authorization: Bearer <token>' "
            "(printed when the server made it) or log in at /login",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if found[0] == "cookie" and request.method not in SAFE_METHODS:
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
    """Page guard: redirect (303) to the login page unless logged in (a token: it needs
    calls:read to see pages)."""
    actor = current_actor(request)
    if actor is not None:
        _check_scope(request, actor, READ_SCOPE)
    if actor is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status_code=status.HTTP_303_SEE_OTHER,
            detail="login required",
            headers={"Location": f"{LOGIN_PATH}?next={quote(target, safe='')}"},
        )


def role_refusal(actor: Actor | None, role: str) -> str | None:
    """Why `actor` may not do what needs `role`, or None if it may."""
    if actor is None or actor.may(role):
        return None
    return (
        f"not allowed: this needs the {role} role; {actor.name!r} has the {actor.role} role "
        "(see docs/access.md)"
    )


def require_role(role: str) -> Callable[[Request], None]:
    """A dependency that answers 403 unless the request's actor has `role` or higher.

    Put it after `require_api_token` or `require_login` (a router's dependencies run
    first), which authenticate the request and set ``request.state.actor``; pages get
    the 403 as a page (see the app's HTTP error handler).
    """
    check_role(role)

    def check(request: Request) -> None:
        actor = getattr(request.state, "actor", None)
        if actor is None:
            actor = current_actor(request)
        if actor is None:
            raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="login required")
        problem = role_refusal(actor, role)
        if problem is not None:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=problem)

    return check


# ---------------------------------------------------------------------------- scopes

#: What every read (GET) by a token needs; other scopes are named by each route.
READ_SCOPE = "calls:read"


def scope_refusal(actor: Actor | None, scope: str) -> str | None:
    """Why `actor` (a token) may not do what needs `scope`, or None if it may."""
    if scope not in TOKEN_SCOPES:
        raise ValueError(f"scope {scope!r}: must be one of {', '.join(TOKEN_SCOPES)}")
    if actor is None or actor.has_scope(scope):
        return None
    held = ", ".join(sorted(actor.scopes or ())) or "none"
    return (
        f"not allowed: this needs the {scope} scope; the token {actor.name!r} has {held} "
        "(see docs/access.md)"
    )


def _check_scope(connection: HTTPConnection, actor: Actor | None, scope: str) -> None:
    problem = scope_refusal(actor, scope)
    if problem is None:
        return
    if connection.scope["type"] == "websocket":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=problem[:120])
    raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=problem)


def require_scope(scope: str) -> Callable[[HTTPConnection], None]:
    """A dependency that answers 403 (a WebSocket: closes it with 1008) unless a token
    actor has `scope`; users pass (their role decides: add `require_role` too).

    Put it after the route's authentication (`require_api_token`, `require_login`, or
    `current_actor` for a WebSocket), which sets ``state.actor``. WebSocket routes that
    send their own error first can call `scope_refusal` instead.
    """
    scope_refusal(None, scope)  # an unknown scope is a programming error, found at import

    def check(connection: HTTPConnection) -> None:
        actor = getattr(connection.state, "actor", None)
        if actor is None:
            actor = current_actor(connection)
        if actor is None:
            if connection.scope["type"] == "websocket":
                raise WebSocketException(
                    code=status.WS_1008_POLICY_VIOLATION, reason="login required"
                )
            raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail="login required")
        _check_scope(connection, actor, scope)

    return check
