"""A report on a manifest: label distribution per corpus, durations, clips per speaker, imbalance.

Writes PNG figures and a Markdown summary with the numbers, so a reader sees what a model
will be trained on before training it.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from callmood.errors import CallmoodError
from callmood.labels import order_labels
from callmood.manifest import ManifestRow

LABEL_FIGURE = "label_distribution.png"
DURATION_FIGURE = "durations.png"
SPEAKER_FIGURE = "clips_per_speaker.png"
SUMMARY_FILE = "summary.md"
_DPI = 120


class ReportError(CallmoodError):
    """A report that cannot be made (no rows, output folder not writable)."""


@dataclass(frozen=True)
class CorpusSummary:
    """The numbers of one corpus (or of all corpora together).

    Attributes
    ----------
    clips : int
        Number of clips.
    speakers : int
        Number of distinct speakers.
    hours : float
        Total audio, in hours.
    label_counts : dict
        Label -> clips, in canonical label order.
    imbalance_ratio : float
        Clips of the largest class divided by clips of the smallest (1.0 = balanced).
    min_seconds, median_seconds, max_seconds : float
        Clip durations, in seconds.
    gender_counts : dict
        ``"female"`` / ``"male"`` / ``"unknown"`` -> clips.
    """

    clips: int
    speakers: int
    hours: float
    label_counts: dict[str, int]
    imbalance_ratio: float
    min_seconds: float
    median_seconds: float
    max_seconds: float
    gender_counts: dict[str, int]


@dataclass(frozen=True)
class DataReport:
    """The summary numbers and the files written."""

    overall: CorpusSummary
    corpora: dict[str, CorpusSummary]
    clips_per_speaker: dict[str, int]
    files: list[Path] = field(default_factory=list)


def summarize(rows: Sequence[ManifestRow]) -> CorpusSummary:
    """Count clips, speakers, hours, labels, genders and class imbalance of `rows`.

    Raises
    ------
    ReportError
        When `rows` is empty.
    """
    if not rows:
        raise ReportError("no clips to summarise: the manifest is empty")
    counts = Counter(row.label for row in rows)
    label_counts = {label: counts[label] for label in order_labels(counts)}
    durations = [row.duration_seconds for row in rows]
    genders = Counter(row.gender or "unknown" for row in rows)
    return CorpusSummary(
        clips=len(rows),
        speakers=len({row.speaker for row in rows}),
        hours=sum(durations) / 3600.0,
        label_counts=label_counts,
        imbalance_ratio=max(counts.values()) / min(counts.values()),
        min_seconds=min(durations),
        median_seconds=statistics.median(durations),
        max_seconds=max(durations),
        gender_counts=dict(sorted(genders.items())),
    )


def build_report(
    rows: Sequence[ManifestRow],
    output_dir: str | Path,
    *,
    source: str = "manifest",
    progress: Callable[[int, int], None] | None = None,
) -> DataReport:
    """Write the figures and the Markdown summary of `rows` into `output_dir`.

    Parameters
    ----------
    rows : sequence of ManifestRow
        The manifest's clips.
    output_dir : str or Path
        Folder for ``label_distribution.png``, ``durations.png``, ``clips_per_speaker.png``
        and ``summary.md``; created if missing.
    source : str
        Name of the manifest, quoted in the summary's title.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file is written.

    Returns
    -------
    DataReport
        The numbers in the summary and the paths written.

    Raises
    ------
    ReportError
        When there are no rows or the folder cannot be written.
    """
    overall = summarize(rows)
    by_corpus: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_corpus.setdefault(row.corpus, []).append(row)
    corpora = {name: summarize(corpus_rows) for name, corpus_rows in sorted(by_corpus.items())}
    clips_per_speaker = dict(sorted(Counter(row.speaker for row in rows).items()))
    report = DataReport(overall, corpora, clips_per_speaker)

    output = Path(output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create report folder {output}: {error.strerror}") from None
    steps: list[tuple[str, Callable[[Path], None]]] = [
        (LABEL_FIGURE, lambda path: _plot_label_distribution(corpora, path)),
        (DURATION_FIGURE, lambda path: _plot_durations(by_corpus, path)),
        (SPEAKER_FIGURE, lambda path: _plot_clips_per_speaker(rows, path)),
        (SUMMARY_FILE, lambda path: path.write_text(_markdown(report, source), encoding="utf-8")),
    ]
    for done, (name, write) in enumerate(steps, start=1):
        path = output / name
        try:
            write(path)
        except OSError as error:
            raise ReportError(f"cannot write {path}: {error.strerror or error}") from None
        report.files.append(path)
        if progress is not None:
            progress(done, len(steps))
    return report


def _plot_label_distribution(corpora: dict[str, CorpusSummary], path: Path) -> None:
    """One bar chart of clips per label for each corpus, side by side."""
    figure = Figure(figsize=(4.5 * len(corpora), 4.0), layout="constrained")
    axes = figure.subplots(1, len(corpora), squeeze=False)[0]
    for ax, (name, summary) in zip(axes, corpora.items(), strict=True):
        labels = list(summary.label_counts)
        bars = ax.bar(labels, list(summary.label_counts.values()), color="tab:blue")
        ax.bar_label(bars, fontsize=8)
        ax.set_title(f"{name} ({summary.clips} clips)")
        ax.set_ylabel("clips")
        ax.tick_params(axis="x", labelrotation=45)
    figure.suptitle("Label distribution per corpus")
    figure.savefig(path, dpi=_DPI)


def _plot_durations(by_corpus: dict[str, list[ManifestRow]], path: Path) -> None:
    """Histogram of clip durations, one colour per corpus."""
    figure = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = figure.subplots()
    names = sorted(by_corpus)
    durations = [[row.duration_seconds for row in by_corpus[name]] for name in names]
    ax.hist(durations, bins=40, stacked=True, label=names)
    ax.set_xlabel("duration (seconds)")
    ax.set_ylabel("clips")
    ax.set_title("Clip durations")
    ax.legend()
    figure.savefig(path, dpi=_DPI)


def _plot_clips_per_speaker(rows: Sequence[ManifestRow], path: Path) -> None:
    """Horizontal bars of clips per speaker, grouped by corpus (the unit of honest splits)."""
    counts = Counter(row.speaker for row in rows)
    speakers = sorted(counts)
    height = min(max(3.0, 0.18 * len(speakers) + 1.0), 60.0)
    figure = Figure(figsize=(7.0, height), layout="constrained")
    ax = figure.subplots()
    ax.barh(speakers, [counts[speaker] for speaker in speakers], color="tab:green")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("clips")
    ax.set_title(f"Clips per speaker ({len(speakers)} speakers)")
    figure.savefig(path, dpi=_DPI)


def _markdown(report: DataReport, source: str) -> str:
    overall = report.overall
    lines = [
        f"# Data report: {source}",
        "",
        f"{overall.clips} clips, {overall.speakers} speakers, {overall.hours:.2f} hours, "
        f"{len(report.corpora)} corpora. Class imbalance (largest / smallest class): "
        f"{overall.imbalance_ratio:.2f}.",
        "",
        "## Corpora",
        "",
        "| corpus | clips | speakers | hours | min s | median s | max s | female | male "
        "| unknown gender | imbalance |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, summary in [*report.corpora.items(), ("all", overall)]:
        genders = summary.gender_counts
        lines.append(
            f"| {name} | {summary.clips} | {summary.speakers} | {summary.hours:.2f} "
            f"| {summary.min_seconds:.2f} | {summary.median_seconds:.2f} "
            f"| {summary.max_seconds:.2f} | {genders.get('female', 0)} | {genders.get('male', 0)} "
            f"| {genders.get('unknown', 0)} | {summary.imbalance_ratio:.2f} |"
        )
    labels = list(overall.label_counts)
    lines += [
        "",
        "## Clips per label",
        "",
        "| corpus | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for name, summary in [*report.corpora.items(), ("all", overall)]:
        cells = [str(summary.label_counts.get(label, 0)) for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    per_speaker = list(report.clips_per_speaker.values())
    lines += [
        "",
        "## Speakers",
        "",
        f"{len(per_speaker)} speakers; clips per speaker: min {min(per_speaker)}, "
        f"median {statistics.median(per_speaker):g}, max {max(per_speaker)}. "
        "Evaluate speaker-independently: a random split puts the same voice in train and test.",
        "",
        "## Figures",
        "",
        f"![Label distribution per corpus]({LABEL_FIGURE})",
        "",
        f"![Clip durations]({DURATION_FIGURE})",
        "",
        f"![Clips per speaker]({SPEAKER_FIGURE})",
        "",
    ]
    return "\n".join(lines)
