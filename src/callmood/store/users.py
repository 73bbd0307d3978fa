"""Dashboard user accounts: names, roles and argon2 password hashes (docs/access.md).

Passwords are hashed with argon2id by `argon2-cffi` at the library's current default
parameters; a hash made with older parameters is re-made at the next successful login
(`check_needs_rehash`), so raising the library's defaults upgrades every account in time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callmood.errors import CallmoodError
from callmood.store.models import USER_ROLES, UserRecord, utc_now
from callmood.store.repository import NotFoundError

MIN_PASSWORD_LENGTH = 10
#: argon2 hashes whatever it is given; an upper bound keeps one login from costing much.
MAX_PASSWORD_LENGTH = 1000
USERNAME_PATTERN = re.compile(r"^[a-z0-9._@-]{1,64}$")

#: One hasher for the process: its parameters are the library's current defaults.
password_hasher = PasswordHasher()
# Verified against when the user name is unknown, so that an unknown name takes as long
# to refuse as a wrong password (the time would otherwise tell which names exist).
_DUMMY_HASH = password_hasher.hash("callmood-no-such-user")


class UserError(CallmoodError):
    """A user name, role or password that cannot be used, or a user who exists already."""


class UnknownUserError(NotFoundError):
    """No user has this name."""


def normalise_username(username: str) -> str:
    """The stored form of a user name (lower case), or UserError if it is not one."""
    name = username.strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise UserError(
            f"user name {username!r}: use 1 to 64 of the characters a-z, 0-9, '.', '_', '-', '@'"
        )
    return name


def check_role(role: str) -> str:
    """`role` if it is one of USER_ROLES, else UserError naming them."""
    if role not in USER_ROLES:
        raise UserError(f"role {role!r}: must be one of {', '.join(USER_ROLES)}")
    return role


def check_password(password: str) -> str:
    """`password` if it is long enough, else UserError saying why."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters (got {len(password)})"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of `password`, at the library's current parameters."""
    return password_hasher.hash(check_password(password))


def get_user(session: Session, username: str) -> UserRecord:
    """The user called `username` (any case); UnknownUserError if there is none."""
    name = username.strip().lower()
    user = session.scalar(select(UserRecord).where(UserRecord.username == name))
    if user is None:
        raise UnknownUserError(f"no user {username!r}")
    return user


def get_user_by_id(session: Session, user_id: int) -> UserRecord | None:
    """The user with this id, or None."""
    return session.get(UserRecord, user_id)


def list_users(session: Session) -> list[UserRecord]:
    """Every user, by name."""
    return list(session.scalars(select(UserRecord).order_by(UserRecord.username)))


def count_users(session: Session) -> int:
    """How many users there are."""
    return session.scalar(select(func.count()).select_from(UserRecord)) or 0


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    display_name: str | None = None,
) -> UserRecord:
    """Add a user (the caller commits); UserError for a bad name, role or password or a
    name that is taken."""
    name = normalise_username(username)
    check_role(role)
    if session.scalar(select(UserRecord.id).where(UserRecord.username == name)) is not None:
        raise UserError(f"user {name!r} exists already")
    user = UserRecord(
        username=name,
        display_name=(display_name or "").strip() or None,
        role=role,
        password_hash=hash_password(password),
        disabled=False,
        password_changed_at=utc_now(),
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, username: str, password: str) -> UserRecord:
    """Give a user a new password; their existing login sessions stop working."""
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    user.password_changed_at = utc_now()
    return user


def set_disabled(session: Session, username: str, disabled: bool) -> UserRecord:
    """Disable (no login, sessions end at their next request) or re-enable a user."""
    user = get_user(session, username)
    user.disabled = disabled
    return user


@dataclass(frozen=True)
class LoginOutcome:
    """What checking a user name and password found: `user` is set only on success."""

    user: UserRecord | None
    problem: str | None = None


def authenticate(session: Session, username: str, password: str) -> LoginOutcome:
    """Check a user name and password (the caller commits: last login, upgraded hash).

    A wrong name and a wrong password get the same answer; a disabled account is said
    so only to someone who knows its password.
    """
    wrong = LoginOutcome(None, "wrong user name or password")
    name = username.strip().lower()
    user = session.scalar(select(UserRecord).where(UserRecord.username == name))
    if user is None or len(password) > MAX_PASSWORD_LENGTH:
        _verify(_DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
        return wrong
    if not _verify(user.password_hash, password):
        return wrong
    if user.disabled:
        return LoginOutcome(None, f"the account {user.username!r} is disabled")
    if password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = password_hasher.hash(password)
    user.last_login_at = utc_now()
    return LoginOutcome(user)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
