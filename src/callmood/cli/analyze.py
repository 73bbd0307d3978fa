"""The `callmood analyze` command: analyse one call and print its timeline, scores and alerts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from callmood.errors import CallmoodError
from callmood.results import CallResult

console = Console()

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def register(app: typer.Typer) -> None:
    """Add `analyze` to the root app."""
    app.command("analyze")(analyze_command)


def analyze_command(
    call: Path = typer.Argument(
        ...,
        help="The call recording: any audio file (WAV, FLAC, MP3, Ogg, telephone mu-law/A-law "
        "WAV ...). Stereo: channel 0 (left) = customer, 1 (right) = agent by default.",
        show_default=False,
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Write the result to this file (overwritten) in --format. Default: print only.",
        show_default=False,
    ),
    format: str = typer.Option(
        "json",
        "--format",
        help="Format of --output: json (full result), csv (emotion segments), windows-csv "
        "(every analysis window with its probabilities), rttm (speaker turns) or emotionml "
        "(W3C EmotionML 1.0).",
    ),
    channels: str | None = typer.Option(
        None,
        "--channels",
        help="Which channel is which, e.g. customer=1,agent=0 (indices from 0). "
        "Default: customer=0,agent=1; required for files with more than 2 channels.",
        show_default=False,
    ),
    mono: bool = typer.Option(
        False,
        "--mono",
        help="Analyse the mix of all channels as one speaker ('mixed'). One-channel files "
        "are analysed this way anyway.",
    ),
    analyze_agent: bool = typer.Option(
        False,
        "--analyze-agent",
        help="Also infer the agent's emotions. Off by default: in the EU, inferring "
        "employees' emotions at work is prohibited.",
    ),
    rules: Path | None = typer.Option(
        None,
        "--rules",
        help="Alert rules YAML file (see docs/alerts.md). Default: the built-in rules.",
        show_default=False,
    ),
    window_seconds: float | None = typer.Option(
        None,
        "--window-seconds",
        help="Analysis window length in seconds. Default: the model's window (3 s).",
        show_default=False,
    ),
    hop_seconds: float = typer.Option(
        1.0, "--hop-seconds", help="Step between windows over speech, in seconds."
    ),
    backend: str = typer.Option(
        "onnx", "--backend", help="Inference backend: onnx (ONNX Runtime) or torch."
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Model package directory. Default: the bundled model.",
        show_default=False,
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        help="Threads of the features and the model (torch and ONNX Runtime). Decoding and "
        "voice detection already run on a second thread beside them; more threads here only "
        "contend on a small machine (2 threads take twice as long on 2 cores: docs/analysis.md).",
    ),
    agent: str | None = typer.Option(
        None, "--agent", help="The agent who took the call (goes into the JSON's metadata)."
    ),
    queue: str | None = typer.Option(
        None, "--queue", help="The queue or team the call came in on (metadata)."
    ),
    external_call_id: str | None = typer.Option(
        None, "--external-call-id", help="The phone system's id of the call (metadata)."
    ),
    started_at: str | None = typer.Option(
        None,
        "--started-at",
        help="When the call really started: ISO 8601 with a time zone, e.g. "
        "2026-12-03T09:15:00+01:00 (metadata).",
    ),
) -> None:
    """Analyse one call: per-speaker emotion timeline, call scores and alerts.

    Example: callmood analyze examples/demo_call.flac -o demo.json
    """
    # Heavy imports here so `callmood --help` stays fast.
    from callmood.alerts import RuleSet
    from callmood.analysis import (
        AnalysisError,
        AnalysisOptions,
        analyze_call,
        parse_channel_mapping,
    )
    from callmood.call_metadata import CallMetadata
    from callmood.exports import FORMATS, ExportError, write_export
    from callmood.inference import BACKENDS, EmotionModel

    if format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if backend not in BACKENDS:
        raise AnalysisError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not call.exists():
        raise AnalysisError(f"{call}: no such file")
    if call.is_dir():
        raise AnalysisError(f"{call}: is a directory, not an audio file")
    values: dict = dict(
        mono=mono,
        analyze_agent=analyze_agent,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
        backend=backend,
        num_threads=threads,
    )
    if channels is not None:
        if mono:
            raise AnalysisError("--channels and --mono exclude each other")
        values["channels"] = parse_channel_mapping(channels)
    options = AnalysisOptions(**values)
    # Checked before the model loads, so a typo fails at once.
    metadata = CallMetadata.parse(
        {
            "agent": agent,
            "queue": queue,
            "external_call_id": external_call_id,
            "started_at": started_at,
        }
    )
    rule_set = RuleSet.from_yaml(rules) if rules is not None else None
    import torch

    torch.set_num_threads(threads)  # the features are computed with torch
    emotion_model = EmotionModel.load(model, backend=backend, num_threads=threads)

    with Progress(
        TextColumn("[bold]analysing[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(call.name, total=None)

        def advance(done: float, total: float) -> None:
            progress.update(task, completed=done, total=total or None)

        result = analyze_call(call, options, emotion_model, rule_set, progress=advance)
    if not metadata.is_empty:
        result = result.model_copy(update={"metadata": metadata})

    print_summary(result)
    if output is not None:
        try:
            write_export(result, output, format)
        except CallmoodError:
            raise
        console.print(f"wrote {format} to {output}")


def print_summary(result: CallResult, target: Console | None = None) -> None:
    """Print a readable summary: speakers, timeline per analysed speaker, scores, alerts."""
    out = target or console
    out.print(
        f"[bold]{result.source}[/]  {result.duration_seconds:.1f} s  "
        f"model {result.model.name} ({result.model.backend})  "
        f"channels {', '.join(f'{s}={i}' for s, i in result.channels.items())}"
    )
    if result.metadata is not None and not result.metadata.is_empty:
        known = result.metadata.model_dump(mode="json", exclude_none=True)
        out.print("  ".join(f"{name} {value}" for name, value in known.items()))
    for note in result.notes:
        out.print(f"[dim]note:[/] {note}")
    if not result.has_speech:
        out.print("[bold]No speech detected[/]: nothing to analyse, no alerts.")
        return
    for speaker in result.analyzed_speakers:
        found = result.speakers[speaker]
        table = Table(title=f"{speaker} timeline", title_justify="left")
        for column, justify in (("start", "right"), ("end", "right"), ("emotion", "left")):
            table.add_column(column, justify=justify)
        table.add_column("confidence", justify="right")
        table.add_column("windows", justify="right")
        for segment in found.segments:
            table.add_row(
                _clock(segment.start),
                _clock(segment.end),
                segment.emotion,
                f"{segment.confidence:.2f}",
                str(segment.window_count),
            )
        if not found.segments:
            table.add_row("-", "-", "no speech", "-", "-")
        out.print(table)

    scores = Table(title="scores", title_justify="left")
    for column in ("speaker", "talk", "silence", "dominant", "negativity", "by quarter", "shift"):
        scores.add_column(column)
    for speaker, found in result.speakers.items():
        s = found.scores
        quarters = (
            " ".join("-" if v is None else f"{v:.2f}" for v in s.negativity_by_quarter)
            if s.negativity_by_quarter
            else "-"
        )
        scores.add_row(
            speaker,
            f"{s.talk_seconds:.1f} s",
            f"{s.silence_share:.0%}",
            s.dominant_emotion or ("not analysed" if not s.emotions_analyzed else "-"),
            "-" if s.negativity is None else f"{s.negativity:.2f}",
            quarters,
            "-" if s.negativity_shift is None else f"{s.negativity_shift:+.2f}",
        )
    out.print(scores)

    if not result.alerts:
        out.print("alerts: none")
        return
    alerts = Table(title=f"alerts ({len(result.alerts)})", title_justify="left")
    # opened: where the condition began; confirmed: when the rule was met (a live stream
    # raises the alert then). The message names the speaker, so no column does; the
    # message wraps, the rest stay whole (a rule name is what a user greps for).
    for column in ("severity", "rule", "opened", "confirmed", "closed", "message"):
        alerts.add_column(column, no_wrap=column != "message")
    for alert in result.alerts:
        style = _SEVERITY_STYLE.get(alert.severity, "")
        alerts.add_row(
            f"[{style}]{alert.severity}[/]",
            alert.rule,
            _clock(alert.opened_at),
            "-" if alert.confirmed_at is None else _clock(alert.confirmed_at),
            "-" if alert.closed_at is None else _clock(alert.closed_at),
            alert.message,
        )
    out.print(alerts)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"
