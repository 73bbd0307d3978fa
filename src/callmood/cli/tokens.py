"""`callmood tokens`: scoped integration tokens (create, list, revoke; docs/access.md).

The database is the one `callmood serve` uses (settings: --config, --data-dir,
--database-url); its schema is upgraded first, like `users` does.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from callmood.cli.users import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    _run,
    console,
)
from callmood.store.audit import CLI_ACTOR, record_cli_event
from callmood.store.models import TOKEN_SCOPES

tokens_app = typer.Typer(
    help="Scoped integration tokens for phone systems, scripts and BI tools.",
    no_args_is_help=True,
)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def create(
    name: str = typer.Argument(..., help="1-64 of a-z 0-9 . _ - @ (kept in lower case)."),
    scope: list[str] = typer.Option(
        ..., "--scope", "-s", help=f"Repeat for each scope: {', '.join(TOKEN_SCOPES)}."
    ),
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    database_url: str | None = DatabaseOption,
) -> None:
    """Make a token; its secret is printed once and never shown again."""
    from callmood.store import tokens

    def make(session: Session) -> tuple[str, list[str], str]:
        token, secret = tokens.create_token(session, name, scope, CLI_ACTOR)
        record_cli_event(session, "token.created", f"token:{token.name}", {"scopes": token.scopes})
        return token.name, token.scopes, secret

    made, scopes, secret = _run(config, data_dir, database_url, make)
    typer.echo(f"created token {made} ({', '.join(scopes)}); its secret, shown only now:")
    typer.echo(secret)


def list_(
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    database_url: str | None = DatabaseOption,
) -> None:
    """List the tokens: name, scopes, created, last used, revoked."""
    from callmood.store import tokens

    rows = _run(
        config,
        data_dir,
        database_url,
        lambda session: [
            (
                token.name,
                " ".join(token.scopes),
                f"{_when(token.created_at)} by {token.created_by}",
                _when(token.last_used_at),
                _when(token.revoked_at) if token.revoked_at else "no",
            )
            for token in tokens.list_tokens(session)
        ],
    )
    if not rows:
        typer.echo("no tokens yet: make one with `callmood tokens create NAME --scope calls:read`")
        return
    table = Table("name", "scopes", "created", "last used", "revoked")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def revoke(
    name: str = typer.Argument(..., help="The token's name."),
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    database_url: str | None = DatabaseOption,
) -> None:
    """Revoke a token: refused from its next request on; the others keep working."""
    from callmood.store import tokens

    def revoke_one(session: Session) -> str:
        token = tokens.revoke_token(session, name)
        record_cli_event(session, "token.revoked", f"token:{token.name}", {})
        return token.name

    typer.echo(f"revoked token {_run(config, data_dir, database_url, revoke_one)}")


def register(app: typer.Typer) -> None:
    """Add the `tokens` group to the root app."""
    tokens_app.command("create")(create)
    tokens_app.command("list")(list_)
    tokens_app.command("revoke")(revoke)
    app.add_typer(tokens_app, name="tokens")
