"""The `callmood` command line: a thin front over the library.

Each area registers its commands from its own module, so that the command
line and the library stay one-to-one and no module grows into a grab bag.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from callmood import __version__
from callmood.errors import CallmoodError

app = typer.Typer(
    name="callmood",
    help=(
        "Recognise emotions in speech and watch customer-service calls for them.\n\n"
        "Toolkit: `data` (prepare corpora, report), `train`, `evaluate`, `ensemble`.\n"
        "Calls: `analyze` one call, `batch` an archive on Dask, `serve` the dashboard and API,\n"
        "`users` its accounts."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# soft_wrap: an error stays one line (paths are long), however narrow the terminal.
error_console = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"callmood {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """callmood command line."""


def _register_commands() -> None:
    # Imported here so that `callmood --help` stays one place that lists them all.
    from callmood.cli import analyze, batch, data, serve, tokens, train, users

    for module in (data, train, analyze, serve, batch, users, tokens):
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point: user errors become one clear line and exit code 2."""
    try:
        app(standalone_mode=False)
    except CallmoodError as error:
        error_console.print("[bold red]error:[/]", escape(str(error)))
        sys.exit(2)
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        error_console.print("aborted")
        sys.exit(130)
    except Exception as error:  # usage errors: unknown option, missing argument, bad value
        import click

        # typer 0.2x raises the usage errors of its own copy of click (typer._click),
        # which are not click.ClickException: both must print one line, not a traceback.
        if isinstance(error, click.ClickException | typer.TyperException):
            show = getattr(error, "show", None)
            if show is not None:
                show()
            else:
                error_console.print("[bold red]error:[/]", escape(str(error)))
            sys.exit(error.exit_code)
        raise
