"""`callmood users`: dashboard accounts (add, list, disable, enable, reset-password).

The database is the one `callmood serve` uses (settings: --config, --data-dir,
--database-url); its schema is upgraded first, like `serve` and `purge` do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from callmood.cli.serve import CONFIG_HELP, DATA_DIR_HELP, DATABASE_HELP
from callmood.settings import load_settings
from callmood.store.models import USER_ROLES, UserRecord

users_app = typer.Typer(
    help="Dashboard user accounts and their roles (viewer, supervisor, admin).",
    no_args_is_help=True,
)
console = Console()

T = TypeVar("T")

ConfigOption = typer.Option(None, "--config", "-c", help=CONFIG_HELP)
DataDirOption = typer.Option(None, help=DATA_DIR_HELP)
DatabaseOption = typer.Option(None, help=DATABASE_HELP)
PasswordStdinOption = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of standard input."
)


@contextmanager
def _session(
    config: Path | None, data_dir: Path | None, database_url: str | None
) -> Iterator[Session]:
    from callmood.store import create_database_engine, make_session_factory, upgrade_database

    settings = load_settings(config, data_dir=data_dir, database_url=database_url)
    engine = create_database_engine(settings.resolved_database_url)
    try:
        upgrade_database(engine)
        with make_session_factory(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def _run(
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    action: Callable[[Session], T],
) -> T:
    with _session(config, data_dir, database_url) as session:
        return action(session)


def _audited(
    session: Session, action: str, user: UserRecord, detail: dict[str, str] | None = None
) -> UserRecord:
    # The audit trail names the shell's changes too (actor "cli").
    from callmood.store.audit import record_cli_event

    record_cli_event(session, action, f"user:{user.username}", detail)
    return user


def _read_password(from_stdin: bool) -> str:
    from callmood.store.users import check_password

    if from_stdin:
        # One line, without its newline: `echo "$PASSWORD" | callmood users add ...`.
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return check_password(password)


def add(
    username: str = typer.Argument(..., help="1-64 of a-z 0-9 . _ - @ (kept in lower case)."),
    role: str = typer.Option(..., "--role", "-r", help=f"One of: {', '.join(USER_ROLES)}."),
    display_name: str | None = typer.Option(None, help="The name the dashboard shows."),
    password_stdin: bool = PasswordStdinOption,
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    database_url: str | None = DatabaseOption,
) -> None:
    """Add a user; the password is asked for twice (or read with --password-stdin)."""
    from callmood.store import users

    # Name and role are checked before the password is asked for.
    users.normalise_username(username)
    users.check_role(role)
    password = _read_password(password_stdin)
    user = _run(
        config,
        data_dir,
        database_url,
        lambda session: _audited(
            session,
            "user.added",
            users.create_user(session, username, password, role, display_name),
            {"role": role},
        ),
    )
    typer.echo(f"added user {user.username} ({user.role})")


def list_(
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    database_url: str | None = DatabaseOption,
) -> None:
    """List the users: name, role, disabled, last login."""
    from callmood.store import users

    rows = _run(
        config,
        data_dir,
        database_url,
        lambda session: [
            (
                user.username,
                user.display_name or "",
                user.role,
                "yes" if user.disabled else "no",
                user.last_login_at.strftime("%Y-%m-%d %H:%M UTC")
                if user.last_login_at
                else "never",
            )
            for user in users.list_users(session)
        ],
    )
    if not rows:
        typer.echo("no users yet: add one with `callmood users add NAME --role admin`")
        return
    table = Table("name", "display name", "role", "disabled", "last login")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _set_disabled(disabled: bool) -> Callable[..., None]:
    def command(
        username: str = typer.Argument(..., help="The user's name."),
        config: Path | None = ConfigOption,
        data_dir: Path | None = DataDirOption,
        database_url: str | None = DatabaseOption,
    ) -> None:
        from callmood.store import users

        name = _run(
            config,
            data_dir,
            database_url,
            lambda session: (
                _audited(
                    session,
                    "user.disabled" if disabled else "user.enabled",
                    users.set_disabled(session, username, disabled),
                ).username
            ),
        )
        typer.echo(f"{'disabled' if disabled else 'enabled'} user {name}")

    command.__doc__ = (
        "Disable a user: no more logins, and their open sessions end at the next request."
        if disabled
        else "Enable a disabled user again."
    )
    return command


def reset_password(
    username: str = typer.Argument(..., help="The user's name."),
    password_stdin: bool = PasswordStdinOption,
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    database_url: str | None = DatabaseOption,
) -> None:
    """Give a user a new password; their open sessions end."""
    from callmood.store import users

    def reset(session: Session) -> str:
        users.get_user(session, username)  # an unknown user is said before a prompt
        user = users.set_password(session, username, _read_password(password_stdin))
        return _audited(session, "user.password_reset", user).username

    typer.echo(f"new password set for user {_run(config, data_dir, database_url, reset)}")


def register(app: typer.Typer) -> None:
    """Add the `users` group to the root app."""
    users_app.command("add")(add)
    users_app.command("list")(list_)
    users_app.command("disable")(_set_disabled(True))
    users_app.command("enable")(_set_disabled(False))
    users_app.command("reset-password")(reset_password)
    app.add_typer(users_app, name="users")
