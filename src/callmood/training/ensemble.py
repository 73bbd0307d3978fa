"""Ensembles of evaluation runs: average the class probabilities that several reports of the
same protocol give each test clip (soft voting), and score the average like any other run.

Networks trained on few speakers vary with the seed by a few points per fold; averaging the
predictions of runs that differ only in their seed (``callmood evaluate --seed``) is the
usual way to buy that variance back. Each member stays speaker-independent, so the ensemble
does too: it never sees a test clip's label.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from callmood.errors import CallmoodError
from callmood.training.evaluate import ClipPrediction, EvaluationResult, FoldOutcome
from callmood.training.metrics import classification_metrics, summarize_folds
from callmood.training.report import PREDICTIONS_CSV, REPORT_JSON


class EnsembleError(CallmoodError):
    """Reports that cannot be averaged (missing files, other protocol, classes or clips)."""


def _read_member(folder: Path) -> tuple[dict, dict[tuple[str, str], dict[str, str]]]:
    """A report's JSON and its predictions keyed by (fold, clip)."""
    report_path, predictions_path = folder / REPORT_JSON, folder / PREDICTIONS_CSV
    for path in (report_path, predictions_path):
        if not path.is_file():
            raise EnsembleError(
                f"{folder} is not an evaluation report with per-clip predictions: "
                f"no {path.name} (callmood evaluate writes both)"
            )
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        with open(predictions_path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise EnsembleError(f"{folder}: cannot read the report: {error}") from error
    fold_fields = ("name", "test_groups", "num_train", "num_validation", "epochs_run", "best_epoch")
    try:
        well_formed = (
            isinstance(report["classes"], list)
            and isinstance(report["summary"]["mean"]["unweighted_average_recall"], (int, float))
            and all(all(name in fold for name in fold_fields) for fold in report["folds"])
        )
    except (KeyError, TypeError):
        well_formed = False
    if not well_formed:
        raise EnsembleError(f"{report_path} is not a callmood evaluation report")
    columns = ["fold", "clip", "speaker", "label", "predicted"]
    columns += [f"p_{name}" for name in report["classes"]]
    missing = [name for name in columns if rows and name not in rows[0]]
    if missing or not rows:
        raise EnsembleError(
            f"{predictions_path} has no predictions"
            + (f" (no column {', '.join(missing)})" if missing else "")
        )
    predictions = {}
    for row in rows:
        key = (row.get("fold", ""), row.get("clip", ""))
        if key in predictions:
            raise EnsembleError(f"{predictions_path}: clip {key[1]} twice in fold {key[0]}")
        predictions[key] = row
    return report, predictions


def _check_same_evaluation(folders: Sequence[Path], reports: list[dict], keys: list[set]) -> None:
    first = reports[0]
    for folder, report, clips in zip(folders[1:], reports[1:], keys[1:], strict=True):
        for field in ("protocol", "classes"):
            if report.get(field) != first.get(field):
                raise EnsembleError(
                    f"{folder} has {field} {report.get(field)!r}, {folders[0]} has "
                    f"{first.get(field)!r}: only runs of the same evaluation can be averaged"
                )
        groups = [(f.get("name"), f.get("test_groups")) for f in report["folds"]]
        if groups != [(f.get("name"), f.get("test_groups")) for f in first["folds"]]:
            raise EnsembleError(f"{folder} tests other folds than {folders[0]}")
        if clips != keys[0]:
            missing = len(keys[0] - clips) + len(clips - keys[0])
            raise EnsembleError(
                f"{folder} and {folders[0]} differ in {missing} test clip(s): "
                "only runs over the same clips can be averaged"
            )


def _probabilities(row: dict[str, str], classes: list[str], source: Path) -> np.ndarray:
    try:
        return np.array([float(row[f"p_{name}"]) for name in classes])
    except (KeyError, TypeError, ValueError) as error:
        raise EnsembleError(
            f"{source}: clip {row.get('clip')} has no valid probability for every class ({error})"
        ) from error


def _agreed(values: list[int]) -> int:
    """A fold's epoch count when every member agrees; 0 (unknown) when they differ."""
    return values[0] if len(set(values)) == 1 else 0


def average_reports(folders: Sequence[Path]) -> EvaluationResult:
    """One evaluation whose class probabilities are the mean of the reports in `folders`.

    The reports must come from the same protocol over the same clips and folds (for example
    ``callmood evaluate`` of one recipe with different ``--seed``). Raises
    :class:`EnsembleError` naming the report that does not fit.
    """
    folders = [Path(folder) for folder in folders]
    if len(folders) < 2:
        raise EnsembleError("an ensemble needs at least two evaluation reports")
    if len({folder.resolve() for folder in folders}) != len(folders):
        raise EnsembleError("the same report is given twice; an ensemble averages different runs")
    members = [_read_member(folder) for folder in folders]
    reports = [report for report, _ in members]
    _check_same_evaluation(folders, reports, [set(p) for _, p in members])
    classes = [str(name) for name in reports[0]["classes"]]
    outcomes = []
    for number, fold in enumerate(reports[0]["folds"]):
        first_rows = [row for (name, _), row in members[0][1].items() if name == fold["name"]]
        predictions = []
        for row in first_rows:
            key = (row["fold"], row["clip"])
            labels = {predictions_of[key]["label"] for _, predictions_of in members}
            if len(labels) != 1 or row["label"] not in classes:
                raise EnsembleError(
                    f"clip {row['clip']} has label(s) {sorted(labels)} in the reports; "
                    f"expected one of {', '.join(classes)}"
                )
            mean = np.mean(
                [
                    _probabilities(predictions_of[key], classes, folder)
                    for folder, (_, predictions_of) in zip(folders, members, strict=True)
                ],
                axis=0,
            )
            predictions.append(
                ClipPrediction(
                    clip=row["clip"],
                    speaker=row["speaker"],
                    label=row["label"],
                    predicted=classes[int(mean.argmax())],
                    probabilities=tuple(round(float(p), 5) for p in mean),
                    corpus=row.get("corpus", ""),
                )
            )
        targets = np.array([classes.index(p.label) for p in predictions], dtype=np.int64)
        guesses = np.array([classes.index(p.predicted) for p in predictions], dtype=np.int64)
        member_folds = [report["folds"][number] for report in reports]
        outcomes.append(
            FoldOutcome(
                name=fold["name"],
                test_groups=tuple(fold["test_groups"]),
                num_train=int(fold["num_train"]),
                num_validation=int(fold["num_validation"]),
                num_test=len(predictions),
                epochs_run=_agreed([int(f["epochs_run"]) for f in member_folds]),
                best_epoch=_agreed([int(f["best_epoch"]) for f in member_folds]),
                metrics=classification_metrics(targets, guesses, tuple(classes)),
                predictions=predictions,
            )
        )
    member_ua = [report["summary"]["mean"]["unweighted_average_recall"] for report in reports]
    return EvaluationResult(
        protocol=reports[0]["protocol"],
        description=(
            f"{reports[0]['description']}; ensemble of {len(folders)} runs (mean of their "
            "class probabilities per clip)"
        ),
        classes=tuple(classes),
        folds=outcomes,
        summary=summarize_folds([outcome.metrics for outcome in outcomes]),
        seconds=sum(float(report.get("seconds", 0.0)) for report in reports),
        details={
            "ensemble": {
                "members": [str(folder) for folder in folders],
                "member_mean_ua": member_ua,
                "member_seeds": [
                    report.get("details", {}).get("config", {}).get("seed") for report in reports
                ],
            }
        },
    )
