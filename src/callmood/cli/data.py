"""The `callmood data` commands: turn corpora into one manifest, and report on a manifest."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from callmood.corpora import CORPORA, CorpusError, CorpusWarning, prepare
from callmood.labels import LABEL_SETS, label_set, order_labels
from callmood.manifest import ManifestRow, apply_label_set, read_manifest, write_manifest

data_app = typer.Typer(
    help="Prepare emotional speech corpora into one manifest CSV, and report on a manifest.",
    no_args_is_help=True,
)
console = Console()


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the root app."""
    app.add_typer(data_app, name="data")


@data_app.command("prepare")
def prepare_command(
    corpora_and_paths: list[str] = typer.Argument(
        ...,
        metavar="CORPUS PATH [CORPUS PATH ...]",
        help=f"Pairs of corpus name and its folder. Corpora: {', '.join(CORPORA)}. "
        "iemocap and custom also take a CSV file as PATH.",
        show_default=False,
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Manifest CSV to write (overwritten).", show_default=False
    ),
    label_set_name: str | None = typer.Option(
        None,
        "--label-set",
        help=f"Map labels into a named set and drop clips outside it ({', '.join(LABEL_SETS)}). "
        "Default: keep every clip with its own label.",
        show_default=False,
    ),
    min_recognition: float | None = typer.Option(
        None,
        "--min-recognition",
        help="emodb only: keep clips that at least this percentage (0-100) of the listening "
        "test's listeners recognised. Default: keep all.",
        show_default=False,
    ),
    one_hot: bool = typer.Option(
        False, "--one-hot", help="Add one 0/1 column per label to the manifest. Default: off."
    ),
) -> None:
    """Find the clips of one or more corpora and write them to one manifest CSV.

    Example: callmood data prepare ravdess data/ravdess emodb data/emodb -o manifest.csv
    """
    pairs = _corpus_pairs(corpora_and_paths)
    if label_set_name is not None:
        label_set(label_set_name)  # fail before scanning gigabytes for an unknown set name
    names = [name for name, _ in pairs]
    if min_recognition is not None and "emodb" not in names:
        raise CorpusError("--min-recognition applies to emodb only, and no emodb is given")

    rows: list[ManifestRow] = []
    found: Counter[str] = Counter()
    with _progress() as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        for name, path in pairs:
            task = progress.add_task(f"{name} {path}", total=None)

            def advance(done: int, total: int, task: int = task) -> None:
                progress.update(task, completed=done, total=total)

            options = {"min_recognition": min_recognition} if name == "emodb" else {}
            corpus_rows = prepare(name, path, progress=advance, **options)
            found[name] += len(corpus_rows)
            rows += corpus_rows
    for warning in (w for w in caught if issubclass(w.category, CorpusWarning)):
        console.print(f"[yellow]warning:[/] {warning.message}")

    if label_set_name is not None:
        rows = apply_label_set(rows, label_set_name)
    labels = (
        list(LABEL_SETS[label_set_name]) if label_set_name else order_labels(r.label for r in rows)
    )
    write_manifest(rows, output, one_hot=one_hot, labels=labels)
    console.print(_counts_table(rows, found, labels))
    console.print(f"wrote {len(rows)} clips to {output}")


@data_app.command("report")
def report_command(
    manifest: Path = typer.Argument(..., help="Manifest CSV to report on.", show_default=False),
    output_dir: Path = typer.Option(
        ...,
        "-o",
        "--output-dir",
        help="Folder for the figures (PNG) and summary.md; created if missing.",
        show_default=False,
    ),
    check_files: bool = typer.Option(
        False,
        "--check-files/--no-check-files",
        help="Also check that every audio file exists (the report itself reads no audio).",
    ),
) -> None:
    """Report a manifest: labels per corpus, durations, clips per speaker, class imbalance."""
    # matplotlib takes seconds to import; only this command needs it.
    from callmood.data_report import build_report

    rows = read_manifest(manifest, check_files=check_files)
    with _progress() as progress:
        task = progress.add_task("writing report", total=4)
        report = build_report(
            rows,
            output_dir,
            source=manifest.name,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    table = Table("corpus", "clips", "speakers", "hours", "imbalance (max/min class)")
    for name, summary in [*report.corpora.items(), ("all", report.overall)]:
        table.add_row(
            name,
            str(summary.clips),
            str(summary.speakers),
            f"{summary.hours:.2f}",
            f"{summary.imbalance_ratio:.2f}",
        )
    console.print(table)
    for path in report.files:
        console.print(f"wrote {path}")


def _corpus_pairs(arguments: list[str]) -> list[tuple[str, Path]]:
    """Split CORPUS PATH CORPUS PATH ... into pairs, checking the corpus names."""
    if len(arguments) % 2:
        raise CorpusError(
            f"expected CORPUS PATH pairs, got an odd number of arguments: {' '.join(arguments)}"
        )
    pairs = [(arguments[i].lower(), Path(arguments[i + 1])) for i in range(0, len(arguments), 2)]
    for name, _ in pairs:
        if name not in CORPORA:
            raise CorpusError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}")
    return pairs


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _counts_table(rows: list[ManifestRow], found: Counter[str], labels: list[str]) -> Table:
    """Clips per label (rows) and corpus (columns) as written, and clips found per corpus."""
    per_corpus: dict[str, Counter[str]] = {name: Counter() for name in found}
    for row in rows:
        per_corpus[row.corpus][row.label] += 1
    table = Table("label", *found, "total", title="clips per corpus and label")
    for label in labels:
        cells = [per_corpus[name][label] for name in found]
        table.add_row(label, *map(str, cells), str(sum(cells)))
    kept = [sum(per_corpus[name].values()) for name in found]
    table.add_section()
    table.add_row("kept", *map(str, kept), str(sum(kept)))
    table.add_row("found", *(str(found[name]) for name in found), str(sum(found.values())))
    return table
