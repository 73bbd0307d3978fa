"""The `callmood train` and `callmood evaluate` commands: thin fronts over `callmood.training`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from callmood.errors import CallmoodError

if TYPE_CHECKING:
    from callmood.training.config import TrainingConfig
    from callmood.training.evaluate import EvaluationResult

console = Console()


# Shared by `train` and `evaluate`.
SEED_OPTION = typer.Option(
    None,
    "--seed",
    help="Random seed; overrides the config's seed (another seed = another training run "
    "of the same recipe).",
    show_default=False,
    min=0,
)


class TrainCommandError(CallmoodError):
    """Command-line arguments of `train` / `evaluate` that do not fit together."""


def register(app: typer.Typer) -> None:
    """Add `train` and `evaluate` to the root app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("ensemble")(ensemble_command)


def train_command(
    config: Path = typer.Option(
        ...,
        "--config",
        "-c",
        help="Training config YAML (see configs/default.yaml and docs/training.md).",
        show_default=False,
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for the model package, metrics.jsonl, training_curve.png and "
        "checkpoints/. Default: runs/<config file name without .yaml>.",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run from OUTPUT/checkpoints/last.pt."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="torch CPU threads; overrides the config's num_threads (default 1).",
        show_default=False,
        min=1,
    ),
    seed: int | None = SEED_OPTION,
) -> None:
    """Train the parallel CNN + transformer from a config and save a model package (with ONNX)."""
    from callmood.training.config import load_training_config
    from callmood.training.run import run_training

    training_config = _with_overrides(load_training_config(config), threads, seed)
    output = output or Path("runs") / config.stem
    if resume and not (output / "checkpoints" / "last.pt").is_file():
        raise TrainCommandError(f"--resume: no checkpoint to resume in {output / 'checkpoints'}")
    outcome = run_training(training_config, output, resume=resume)
    result = outcome.result
    best = (
        "no validation split"
        if result.best_validation_ua is None
        else f"best validation UA {100 * result.best_validation_ua:.1f} % at epoch "
        f"{result.best_epoch + 1}"
    )
    console.print(
        f"trained on {outcome.num_train} clips ({outcome.num_validation} for validation), "
        f"{len(result.history)} epochs, {best}; {outcome.seconds / 60:.1f} min"
    )
    console.print(f"model package: {outcome.package_dir}")


def evaluate_command(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Training config YAML: the recipe trained in every fold and the data it names.",
        show_default=False,
    ),
    protocol: str = typer.Option(
        "loso",
        "--protocol",
        "-p",
        help="loso = leave one group out (EmoDB: 10 speakers, IEMOCAP: 5 sessions); "
        "kfold = speaker-grouped k-fold (--folds); cross-corpus = train on --train-corpus, "
        "test on --test-corpus; leave-corpus-out = for each corpus of the config, train on "
        "the others and test on it, over the classes they share (unseen speakers on unseen "
        "channels). "
        "Ignored with --model.",
    ),
    folds: int = typer.Option(
        6, "--folds", "-k", min=2, help="Number of folds for --protocol kfold."
    ),
    train_corpus: str | None = typer.Option(
        None, "--train-corpus", help="cross-corpus: corpus to train on.", show_default=False
    ),
    test_corpus: str | None = typer.Option(
        None, "--test-corpus", help="cross-corpus: corpus to test on.", show_default=False
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Test this saved model package on --manifest instead of cross-validating.",
        show_default=False,
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="Manifest CSV of held-out test clips (with --model).",
        show_default=False,
    ),
    output: Path = typer.Option(
        Path("evaluation"),
        "--output",
        "-o",
        help="Folder for report.md, report.json, confusion_matrix.png and fold_ua.png.",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (default: the config's).", min=1
    ),
    seed: int | None = SEED_OPTION,
) -> None:
    """Evaluate speaker-independently and write a "Performance evaluation" report.

    Examples: callmood evaluate -c configs/emodb7.yaml -p loso -o out/emodb;
    callmood evaluate --model out/model --manifest test.csv -o out/test
    """
    from callmood.training.config import load_training_config
    from callmood.training.evaluate import (
        evaluate_cross_corpus,
        evaluate_cross_validation,
        evaluate_leave_corpus_out,
        evaluate_saved_model,
    )

    with _progress() as progress:
        task = progress.add_task("decoding clips", total=None, status="")

        def clip_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        def fold_progress(number: int, total: int, outcome) -> None:  # noqa: ANN001
            ua = 100 * outcome.metrics.unweighted_average_recall
            wa = 100 * outcome.metrics.weighted_accuracy
            progress.console.print(
                f"{outcome.name} ({number + 1}/{total}): UA {ua:.1f} %, WA {wa:.1f} %, "
                f"{outcome.num_test} test clips"
            )
            progress.update(
                task,
                description="folds",
                completed=number + 1,
                total=total,
                status=f"{outcome.name}: UA {ua:.1f} %",
            )

        if model is not None:
            if manifest is None:
                raise TrainCommandError("--model needs --manifest (the held-out test clips)")
            result = evaluate_saved_model(model, manifest, progress=clip_progress)
        else:
            if config is None:
                raise TrainCommandError("give --config (a training recipe) or --model")
            training_config = _with_overrides(load_training_config(config), threads, seed)
            if protocol == "cross-corpus":
                if not train_corpus or not test_corpus:
                    raise TrainCommandError(
                        "--protocol cross-corpus needs --train-corpus and --test-corpus"
                    )
                result = evaluate_cross_corpus(
                    training_config,
                    train_corpus,
                    test_corpus,
                    on_fold=fold_progress,
                    progress=clip_progress,
                )
            elif protocol == "leave-corpus-out":
                progress.update(task, description="decoding clips")
                result = evaluate_leave_corpus_out(
                    training_config, on_fold=fold_progress, progress=clip_progress
                )
            elif protocol in ("loso", "kfold"):
                progress.update(task, description="decoding clips")
                result = evaluate_cross_validation(
                    training_config,
                    protocol,
                    num_folds=folds,
                    on_fold=fold_progress,
                    progress=clip_progress,
                )
            else:
                raise TrainCommandError(
                    "--protocol must be loso, kfold, cross-corpus or leave-corpus-out, "
                    f"got {protocol!r}"
                )
    _write_and_summarise(result, output)


def ensemble_command(
    reports: list[Path] = typer.Argument(
        ...,
        help="Two or more report folders of `callmood evaluate` (same protocol, clips, folds).",
        show_default=False,
    ),
    output: Path = typer.Option(
        Path("ensemble"),
        "--output",
        "-o",
        help="Folder for the ensemble's report.md, report.json, predictions.csv and plots.",
    ),
) -> None:
    """Average the class probabilities of several evaluation runs and report the ensemble.

    Each test clip's probabilities are averaged over the runs (soft voting),
    then scored fold by fold like any evaluation. Example, three seeds:

    callmood evaluate -c configs/emodb7.yaml -p loso --seed 1 -o runs/s1

    (likewise --seed 0 and --seed 2), then

    callmood ensemble runs/s0 runs/s1 runs/s2 -o runs/emodb7-3seeds
    """
    from callmood.training.ensemble import average_reports

    result = average_reports(reports)
    for folder, ua in zip(reports, result.details["ensemble"]["member_mean_ua"], strict=True):
        console.print(f"{folder}: UA {100 * ua:.1f} %")
    _write_and_summarise(result, output)


def _write_and_summarise(result: EvaluationResult, output: Path) -> None:
    """Write the report into `output` and print its headline numbers."""
    from callmood.training.report import write_report

    report = write_report(result, output)
    mean, std = result.summary.mean, result.summary.std
    console.print(
        f"{result.protocol}: UA {100 * mean['unweighted_average_recall']:.1f} ± "
        f"{100 * std['unweighted_average_recall']:.1f} %, WA "
        f"{100 * mean['weighted_accuracy']:.1f} ± {100 * std['weighted_accuracy']:.1f} % "
        f"over {len(result.folds)} fold(s)"
    )
    console.print(f"report: {report}")


def _with_overrides(
    config: TrainingConfig, threads: int | None, seed: int | None
) -> TrainingConfig:
    """The config with the command line's --threads and --seed, where given."""
    updates = {"num_threads": threads, "seed": seed}
    return config.model_copy(update={k: v for k, v in updates.items() if v is not None})


def _progress():  # noqa: ANN202
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )
