"""Commands of the web service: `serve` (API and dashboard) and `purge` (retention)."""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from callmood.errors import CallmoodError
from callmood.settings import TOKEN_HASH_FILE_NAME, Settings, load_settings

console = Console(stderr=True)

CONFIG_HELP = "Settings file (YAML or TOML). Default: $CALLMOOD_CONFIG, if set."
DATA_DIR_HELP = (
    "Folder for the database, audio, API token and rules. Default: ~/.local/share/callmood."
)
DATABASE_HELP = "SQLAlchemy database URL. Default: SQLite file callmood.db in the data folder."


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    host: str | None = typer.Option(
        None, help="Interface to listen on. Default: 127.0.0.1 (this machine only)."
    ),
    port: int | None = typer.Option(None, help="TCP port. Default: 8000."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    database_url: str | None = typer.Option(None, help=DATABASE_HELP),
    workers: int | None = typer.Option(
        None, help="Analysis worker threads for uploaded calls. Default: 1."
    ),
    model_dir: Path | None = typer.Option(
        None, help="Model package folder. Default: the bundled model."
    ),
    no_auth: bool = typer.Option(
        False,
        "--no-auth",
        help="Serve without authentication (sets auth_disabled; for local use only).",
    ),
    log_level: str = typer.Option("info", help="Server log level: debug, info, warning, error."),
    audiosocket: str | None = typer.Option(
        None,
        "--audiosocket",
        metavar="HOST:PORT",
        help="Also accept Asterisk AudioSocket calls on this TCP address, e.g. 127.0.0.1:9092 "
        "(no authentication in the protocol: see docs/connectors-asterisk.md). Default: off.",
    ),
) -> None:
    """Serve the REST API, the live stream and the dashboard.

    The database is created or upgraded on start. Without a configured token, a
    token is created in the data folder on the first start and printed once.
    """
    import torch
    import uvicorn

    from callmood.service.app import create_app

    # Each call's analysis computes features and runs the model on one thread beside its
    # decoding thread; intra-op threads per call only contend (docs/analysis.md). More
    # analysis workers use more cores.
    torch.set_num_threads(1)

    settings = load_settings(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        workers=workers,
        model_dir=model_dir,
        auth_disabled=True if no_auth else None,
        audiosocket=audiosocket,
    )
    if settings.auth_disabled and not _is_loopback(settings.host):
        console.print(
            f"[bold yellow]warning:[/] authentication is disabled and the server listens on "
            f"{settings.host}: anyone who can reach it can read and delete calls"
        )

    def announce(token: str) -> None:
        console.print(
            f"[bold]API token[/] (shown only now; its hash is in "
            f"{settings.data_dir / TOKEN_HASH_FILE_NAME}): {token}\n"
            "Use it as 'Authorization: Bearer <token>' or to log in to the dashboard."
        )

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, announce_token=announce)
    # Load the model now: a missing or broken model stops the start with a clear error
    # instead of failing every uploaded call later.
    model = app.state.model.get()
    console.print(f"model: {model.name} ({', '.join(model.labels)})")
    url = settings.resolved_database_url
    console.print(
        f"callmood serving on http://{settings.host}:{settings.port}  "
        f"(database: {_hide_password(url)}, data: {settings.data_dir})"
    )
    if settings.audiosocket:
        _announce_audiosocket(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level.lower())
    )
    stop = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        # uvicorn waits for open responses before it stops, and an event stream (/api/events,
        # every open dashboard page) never ends by itself: end them first.
        app.state.event_hub.close()
        stop(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run()


def _announce_audiosocket(settings: Settings) -> None:
    from callmood.service.audiosocket import split_host_port

    host, _ = split_host_port(settings.audiosocket or "")
    allowed = ", ".join(settings.audiosocket_allow) or "any address"
    console.print(f"AudioSocket listening on {settings.audiosocket} (clients: {allowed})")
    if not _is_loopback(host) and not settings.audiosocket_allow:
        console.print(
            f"[bold yellow]warning:[/] AudioSocket has no authentication and listens on {host} "
            "for any client: set audiosocket_allow to Asterisk's address, or keep it on a "
            "private network"
        )


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def purge(
    older_than_days: int | None = typer.Option(
        None,
        min=0,
        help="Delete calls stored more than this many days ago. Default: retention_days (90).",
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    database_url: str | None = typer.Option(None, help=DATABASE_HELP),
) -> None:
    """Delete old calls with their audio, alerts and timelines (retention), and audit
    events older than `audit_retention_days` if it is set."""
    settings = load_settings(config, data_dir=data_dir, database_url=database_url)
    deleted = purge_old_calls(settings, older_than_days)
    typer.echo(f"deleted {deleted} call{'s' if deleted != 1 else ''}")
    if settings.audit_retention_days is not None:
        events = purge_old_audit_events(settings)
        typer.echo(f"deleted {events} audit event{'s' if events != 1 else ''}")


def purge_old_audit_events(settings: Settings) -> int:
    """Delete the audit events older than the settings' `audit_retention_days`."""
    from callmood.service.retention import purge_expired_audit
    from callmood.store import create_database_engine, make_session_factory

    if settings.audit_retention_days is None:
        return 0  # kept for good
    engine = create_database_engine(settings.resolved_database_url)
    try:
        return purge_expired_audit(make_session_factory(engine), settings.audit_retention_days)
    finally:
        engine.dispose()


def purge_old_calls(settings: Settings, older_than_days: int | None = None) -> int:
    """Delete calls older than `older_than_days` (default: the settings' retention_days).

    Returns
    -------
    int
        How many calls were deleted.
    """
    from callmood.store import (
        create_database_engine,
        make_session_factory,
        purge_calls,
        upgrade_database,
    )
    from callmood.store.models import utc_now

    days = older_than_days if older_than_days is not None else settings.retention_days
    if days is None:
        raise CallmoodError(
            "purge: no age given: pass --older-than-days N or set retention_days in the settings"
        )
    engine = create_database_engine(settings.resolved_database_url)
    try:
        upgrade_database(engine)
        cutoff = utc_now() - timedelta(days=days)
        with Progress(
            TextColumn("purging calls"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("purge", total=None)
            return purge_calls(
                make_session_factory(engine),
                cutoff,
                settings.resolved_audio_dir,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    """Add `serve` and `purge` to the root app."""
    app.command("serve")(serve)
    app.command("purge")(purge)
