"""Scoped integration tokens (docs/access.md): named, with scopes, stored as a SHA-256 hash.

A token's secret is ``cm_`` and 43 random URL-safe characters (`secrets.token_urlsafe(32)`),
shown once when the token is made. Being random, a plain SHA-256 of it cannot be reversed,
and it can be looked up by its hash at every request (argon2 would cost each request a
password check).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callmood.errors import CallmoodError
from callmood.store.models import TOKEN_SCOPES, ApiTokenRecord, utc_now
from callmood.store.repository import NotFoundError

#: Every scoped token's secret starts so: recognisable in a config file or a leaked log.
TOKEN_PREFIX = "cm_"
TOKEN_NAME_PATTERN = re.compile(r"^[a-z0-9._@-]{1,64}$")
#: `last_used_at` is written at most this often per token, to spare the database a write
#: on every request of a busy integration.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(CallmoodError):
    """A token name or scope that cannot be used, or a name that is taken."""


class UnknownTokenError(NotFoundError):
    """No token has this name."""


def hash_secret(secret: str) -> str:
    """The stored form of a token secret: ``sha256:`` and its hex digest (as the shared token)."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, de-duplicated in TOKEN_SCOPES order; TokenError for an unknown or no scope."""
    wanted = list(dict.fromkeys(scope.strip() for scope in scopes))
    unknown = [scope for scope in wanted if scope not in TOKEN_SCOPES]
    if unknown:
        raise TokenError(f"scope {unknown[0]!r}: must be one of {', '.join(TOKEN_SCOPES)}")
    if not wanted:
        raise TokenError(f"a token needs at least one scope: {', '.join(TOKEN_SCOPES)}")
    return [scope for scope in TOKEN_SCOPES if scope in wanted]


def normalise_token_name(name: str) -> str:
    """The stored form of a token name (lower case), or TokenError."""
    cleaned = name.strip().lower()
    if not TOKEN_NAME_PATTERN.match(cleaned):
        raise TokenError(
            f"token name {name!r}: use 1 to 64 of the characters a-z, 0-9, '.', '_', '-', '@'"
        )
    return cleaned


def create_token(
    session: Session, name: str, scopes: Iterable[str], created_by: str
) -> tuple[ApiTokenRecord, str]:
    """Make a token (the caller commits): its record and its secret, which is not kept."""
    cleaned = normalise_token_name(name)
    checked = check_scopes(scopes)
    if session.scalar(select(ApiTokenRecord.id).where(ApiTokenRecord.name == cleaned)):
        raise TokenError(f"token {cleaned!r} exists already")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiTokenRecord(
        name=cleaned,
        scopes=checked,
        secret_hash=hash_secret(secret),
        created_at=utc_now(),
        created_by=created_by,
    )
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(session: Session) -> list[ApiTokenRecord]:
    """Every token, revoked ones too, by name."""
    return list(session.scalars(select(ApiTokenRecord).order_by(ApiTokenRecord.name)))


def get_token(session: Session, name: str) -> ApiTokenRecord:
    """The token called `name`; UnknownTokenError if there is none."""
    token = session.scalar(
        select(ApiTokenRecord).where(ApiTokenRecord.name == name.strip().lower())
    )
    if token is None:
        raise UnknownTokenError(f"no token {name!r}")
    return token


def revoke_token(session: Session, name: str) -> ApiTokenRecord:
    """Revoke a token: refused from its next request on (repeating keeps the first time)."""
    token = get_token(session, name)
    if token.revoked_at is None:
        token.revoked_at = utc_now()
    return token


def find_active_token(session: Session, secret: str | None) -> ApiTokenRecord | None:
    """The unrevoked token whose secret this is, or None (anything else is no token)."""
    if not secret or not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(
        select(ApiTokenRecord).where(ApiTokenRecord.secret_hash == hash_secret(secret))
    )
    if token is None or token.revoked_at is not None:
        return None
    return token


def note_use(token: ApiTokenRecord, now: datetime | None = None) -> bool:
    """Set `last_used_at` if it is older than LAST_USED_RESOLUTION; whether it changed."""
    now = now or utc_now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return False
    token.last_used_at = now
    return True
