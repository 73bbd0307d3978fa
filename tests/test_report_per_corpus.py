"""Per-corpus UA and WA in the evaluation report, from hand-made clip predictions."""

from __future__ import annotations

import csv
import json

import pytest

from callmood.training.evaluate import ClipPrediction, EvaluationResult, FoldOutcome
from callmood.training.metrics import classification_metrics, summarize_folds
from callmood.training.report import write_report

CLASSES = ("angry", "neutral")


def clip(clip_id: str, label: str, predicted: str, corpus: str = "") -> ClipPrediction:
    probabilities = (1.0, 0.0) if predicted == "angry" else (0.0, 1.0)
    return ClipPrediction(clip_id, "s1", label, predicted, probabilities, corpus=corpus)


def fold(name: str, predictions: list[ClipPrediction]) -> FoldOutcome:
    metrics = classification_metrics(
        [CLASSES.index(p.label) for p in predictions],
        [CLASSES.index(p.predicted) for p in predictions],
        CLASSES,
    )
    return FoldOutcome(name, ("s1",), 10, 2, len(predictions), 3, 2, metrics, predictions)


def result(folds: list[FoldOutcome]) -> EvaluationResult:
    summary = summarize_folds([f.metrics for f in folds])
    return EvaluationResult("kfold", "test", CLASSES, folds, summary, 1.0)


def test_two_corpora_get_their_own_ua_and_wa_pooled_over_folds(tmp_path):
    folds = [
        # RAVDESS's corpus comes from the field; EmoDB's only from the id prefix.
        fold(
            "fold 1",
            [
                clip("ravdess:a", "angry", "angry", "ravdess"),
                clip("ravdess:b", "angry", "neutral", "ravdess"),
                clip("emodb:a", "neutral", "neutral"),
            ],
        ),
        fold(
            "fold 2",
            [
                clip("ravdess:c", "neutral", "neutral", "ravdess"),
                clip("emodb:b", "angry", "neutral"),
                clip("emodb:c", "neutral", "angry"),
                clip("emodb:d", "neutral", "neutral"),
            ],
        ),
    ]
    markdown = write_report(result(folds), tmp_path).read_text()
    report = json.loads((tmp_path / "report.json").read_text())

    # RAVDESS: angry 1/2, neutral 1/1 -> UA 0.75; 2 of 3 right -> WA 2/3.
    # EmoDB: angry 0/1, neutral 2/3 -> UA 1/3; 2 of 4 right -> WA 0.5.
    ravdess, emodb = report["per_corpus"]["ravdess"], report["per_corpus"]["emodb"]
    assert ravdess["unweighted_average_recall"] == pytest.approx(0.75)
    assert ravdess["weighted_accuracy"] == pytest.approx(2 / 3)
    assert ravdess["num_examples"] == 3
    assert emodb["unweighted_average_recall"] == pytest.approx(1 / 3)
    assert emodb["weighted_accuracy"] == pytest.approx(0.5)
    assert emodb["num_examples"] == 4
    assert "## Per corpus (pooled over folds)" in markdown
    assert "| emodb | 4 | 33.3 | 50.0 |" in markdown
    assert "| ravdess | 3 | 75.0 | 66.7 |" in markdown
    with open(tmp_path / "predictions.csv", newline="") as file:
        corpora = {row["clip"]: row["corpus"] for row in csv.DictReader(file)}
    assert corpora["emodb:a"] == "emodb" and corpora["ravdess:c"] == "ravdess"


def test_one_corpus_has_no_per_corpus_section(tmp_path):
    folds = [
        fold("fold 1", [clip("emodb:a", "angry", "angry"), clip("emodb:b", "neutral", "angry")])
    ]
    markdown = write_report(result(folds), tmp_path).read_text()
    report = json.loads((tmp_path / "report.json").read_text())

    assert "Per corpus" not in markdown
    assert "per_corpus" not in report
