"""The `callmood batch` command: analyse a call archive on Dask into Parquet tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from callmood.batch import BatchProgress, BatchSummary

console = Console(stderr=True)
_SHOWN_ERRORS = 10


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("batch")(batch)


def batch(
    source: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help=(
            "Calls to analyse: a folder (searched recursively; audio recognised by content), "
            "a glob in quotes ('calls/**/*.wav'), or a manifest CSV with a 'path' column "
            "and optional 'customer_channel' / 'agent_channel' columns."
        ),
        show_default=False,
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        metavar="DIR",
        help=(
            "Output folder: Parquet datasets calls/, segments/, alerts/, errors/. "
            "Rerunning with the same folder skips the calls already done."
        ),
        show_default=False,
    ),
    workers: int = typer.Option(
        2,
        "--workers",
        "-w",
        metavar="N",
        help="Worker processes of the local Dask cluster (one core each).",
    ),
    threads_per_worker: int = typer.Option(
        1,
        "--threads-per-worker",
        metavar="N",
        help="Calls each worker analyses at once (each on one thread).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help=(
            "Run on an existing Dask cluster at this address (tcp://HOST:8786) instead of "
            "a local one; the files and --model must be readable on every worker."
        ),
    ),
    channels: str | None = typer.Option(
        None,
        "--channels",
        metavar="MAPPING",
        help=(
            "Which channel holds whom, e.g. customer=0,agent=1 (the default: left = customer, "
            "right = agent). A manifest's per-call columns win."
        ),
    ),
    analyze_agent: bool = typer.Option(
        False,
        "--analyze-agent",
        help=(
            "Also infer the agent's emotions. Off by default: in the EU, inferring "
            "employees' emotions at work is prohibited."
        ),
    ),
    rules: Path | None = typer.Option(
        None, "--rules", metavar="FILE", help="Alert rules YAML file. Default: the built-in rules."
    ),
    model: Path | None = typer.Option(
        None, "--model", metavar="DIR", help="Model package folder. Default: the bundled model."
    ),
    database: str | None = typer.Option(
        None,
        "--database",
        metavar="URL",
        help=(
            "Also store each analysed call in the service database at this SQLAlchemy URL "
            "(sqlite:///path/callmood.db, postgresql+psycopg://user@host/db), tagged 'batch'. "
            "Default: Parquet only."
        ),
    ),
    metadata: Path | None = typer.Option(
        None,
        "--metadata",
        metavar="FILE",
        help=(
            "Sidecar CSV of what the phone system knows of each call: a 'file' column "
            "(relative to the CSV's folder) and any of agent, queue, external_call_id, "
            "started_at (ISO 8601 with a time zone). Into the calls table, the JSON and "
            "--database."
        ),
    ),
) -> None:
    """Analyse an archive of calls on Dask: resumable, one bad file never stops the batch."""
    # Imported here: the analysis stack (torch) must not slow down `callmood --help`.
    from callmood.analysis import parse_channel_mapping
    from callmood.batch import BatchOptions, run_batch

    options = BatchOptions(
        workers=workers,
        threads_per_worker=threads_per_worker,
        scheduler=scheduler,
        channels=parse_channel_mapping(channels) if channels is not None else None,
        analyze_agent=analyze_agent,
        rules=rules,
        model_dir=model,
        database_url=database,
        metadata=metadata,
    )
    try:
        with _ProgressBar() as bar:
            summary = run_batch(source, out, options, progress=bar.update)
    except KeyboardInterrupt:
        # Everything finished so far is stored; the same command picks up the rest.
        console.print(f"interrupted: the calls done are kept in {out}; run again to resume")
        raise typer.Exit(130) from None
    _print_summary(summary)


class _ProgressBar:
    """Rich progress: files hashed, then calls analysed with audio hours and throughput."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def update(self, state: BatchProgress) -> None:
        if not self.tasks:
            self.progress.start()  # not before: an early error prints alone
        if state.stage not in self.tasks:
            label = "hashing files" if state.stage == "hashing" else "analysing calls"
            self.tasks[state.stage] = self.progress.add_task(label, total=state.total, detail="")
        detail = ""
        if state.stage == "analysing":
            hours = state.audio_seconds / 3600.0
            speed = state.audio_seconds / state.elapsed_seconds if state.elapsed_seconds else 0.0
            detail = f"{hours:.2f} h audio, {speed:.1f}x real time, {state.errors} errors"
        self.progress.update(self.tasks[state.stage], completed=state.done, detail=detail)


def _print_summary(summary: BatchSummary) -> None:
    table = Table(title=f"batch -> {summary.output}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("files found", str(summary.files))
    table.add_row("duplicate files (same content)", str(summary.duplicate_files))
    table.add_row("already done (skipped)", str(summary.skipped))
    table.add_row("calls analysed", str(summary.analysed))
    table.add_row("errors", str(summary.errors))
    if summary.stored:
        table.add_row("stored in the database", str(summary.stored))
    table.add_row("audio analysed", f"{summary.audio_hours:.3f} h")
    table.add_row("wall time", f"{summary.wall_seconds:.1f} s")
    table.add_row("speed", f"{summary.realtime_factor:.1f}x real time")
    console.print(table)
    for message in summary.error_messages[:_SHOWN_ERRORS]:
        console.print(f"[red]error:[/] {message}", highlight=False)
    if len(summary.error_messages) > _SHOWN_ERRORS:
        console.print(
            f"... and {len(summary.error_messages) - _SHOWN_ERRORS} more in {summary.output}/errors"
        )
