"""Engines, sessions and schema upgrades: SQLite by default, PostgreSQL by URL.

The schema is owned by the Alembic migrations shipped in `callmood/store/migrations`;
`upgrade_database` applies them programmatically (no alembic.ini on the user's disk).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from callmood.errors import CallmoodError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(CallmoodError):
    """The database URL is invalid or the database cannot be reached."""


def create_database_engine(url: str) -> Engine:
    """An engine for `url`, with the per-backend settings callmood relies on.

    SQLite gets foreign keys on (for cascading deletes), WAL journaling (readers
    are not blocked by a worker writing a result) and a busy timeout; its parent
    folder is created.

    Raises
    ------
    DatabaseError
        The URL cannot be parsed or names a driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"database URL {url!r} is not a valid SQLAlchemy URL") from None
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(
            parsed,
            pool_pre_ping=not is_sqlite,
            connect_args={"check_same_thread": False, "timeout": 30} if is_sqlite else {},
        )
    except (NoSuchModuleError, ImportError) as error:
        raise DatabaseError(f"database URL {parsed!r}: driver not available ({error})") from None
    if is_sqlite:
        event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection, connection_record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit (results leave the session)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back when it raises."""
    with session_factory() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration for the shipped migrations, bound to `engine`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to `revision` (safe to call on every start).

    Raises
    ------
    DatabaseError
        The database cannot be reached (the message names the URL, without password).
    """
    try:
        command.upgrade(alembic_config(engine), revision)
    except OperationalError as error:
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseError(f"database {url}: cannot upgrade schema ({error.orig})") from None
