"""Classification metrics for emotion recognition: UA, WA, macro-F1, per-class recall, confusion.

UA (unweighted average recall, the mean of per-class recalls) is the headline
number because emotion corpora are unbalanced; WA is plain accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of one test set.

    Attributes
    ----------
    labels
        Class names, in the order of the confusion matrix rows and columns.
    confusion
        Counts, shape (classes, classes): row = true class, column = predicted class.
    """

    labels: tuple[str, ...]
    confusion: np.ndarray
    unweighted_average_recall: float
    weighted_accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    support: dict[str, int]

    @property
    def num_examples(self) -> int:
        return int(self.confusion.sum())

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "unweighted_average_recall": self.unweighted_average_recall,
            "weighted_accuracy": self.weighted_accuracy,
            "macro_f1": self.macro_f1,
            "per_class_recall": self.per_class_recall,
            "support": self.support,
            "confusion": self.confusion.tolist(),
            "num_examples": self.num_examples,
        }


def confusion_matrix(
    true_indices: Sequence[int] | np.ndarray,
    predicted_indices: Sequence[int] | np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Counts of (true, predicted) class pairs, shape (num_classes, num_classes)."""
    true_indices = np.asarray(true_indices, dtype=np.int64)
    predicted_indices = np.asarray(predicted_indices, dtype=np.int64)
    if true_indices.shape != predicted_indices.shape:
        raise ValueError(
            f"true and predicted differ: {true_indices.shape} vs {predicted_indices.shape}"
        )
    counts = np.bincount(
        true_indices * num_classes + predicted_indices, minlength=num_classes * num_classes
    )
    return counts.reshape(num_classes, num_classes)


def classification_metrics(
    true_indices: Sequence[int] | np.ndarray,
    predicted_indices: Sequence[int] | np.ndarray,
    labels: Sequence[str],
) -> ClassificationMetrics:
    """UA, WA, macro-F1, per-class recall and the confusion matrix.

    Classes absent from the true labels have no recall; they are left out of
    UA (the mean over classes present), as scikit-learn's
    ``balanced_accuracy_score`` does. Macro-F1 averages over all `labels`,
    counting F1 = 0 for a class never predicted correctly, as
    ``f1_score(average="macro", labels=range(len(labels)), zero_division=0)`` does.
    """
    labels = tuple(labels)
    confusion = confusion_matrix(true_indices, predicted_indices, len(labels))
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    correct = np.diag(confusion)
    present = support > 0
    recall = np.divide(correct, support, out=np.zeros(len(labels)), where=present)
    precision = np.divide(
        correct, predicted_count, out=np.zeros(len(labels)), where=predicted_count > 0
    )
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros(len(labels)), where=denominator > 0
    )
    total = int(confusion.sum())
    return ClassificationMetrics(
        labels=labels,
        confusion=confusion,
        unweighted_average_recall=float(recall[present].mean()) if present.any() else 0.0,
        weighted_accuracy=float(correct.sum() / total) if total else 0.0,
        macro_f1=float(f1.mean()),
        per_class_recall={label: float(recall[i]) for i, label in enumerate(labels) if present[i]},
        support={label: int(support[i]) for i, label in enumerate(labels)},
    )


@dataclass(frozen=True)
class FoldSummary:
    """Mean and standard deviation of fold metrics, plus the metrics of all folds pooled."""

    labels: tuple[str, ...]
    folds: list[ClassificationMetrics]
    pooled: ClassificationMetrics
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "num_folds": len(self.folds),
            "mean": self.mean,
            "std": self.std,
            "pooled": self.pooled.to_dict(),
            "folds": [fold.to_dict() for fold in self.folds],
        }


SUMMARY_METRICS = ("unweighted_average_recall", "weighted_accuracy", "macro_f1")


def summarize_folds(folds: Sequence[ClassificationMetrics]) -> FoldSummary:
    """Mean and (population) standard deviation of UA, WA and macro-F1 across folds.

    The pooled confusion matrix is the sum of the folds' matrices.
    """
    if not folds:
        raise ValueError("no folds to summarise")
    labels = folds[0].labels
    for fold in folds:
        if fold.labels != labels:
            raise ValueError(f"folds disagree on labels: {fold.labels} vs {labels}")
    confusion = sum(fold.confusion for fold in folds)
    true_indices = np.repeat(np.arange(len(labels)), confusion.sum(axis=1))
    predicted_indices = np.concatenate(
        [np.repeat(np.arange(len(labels)), row) for row in confusion]
    )
    pooled = classification_metrics(true_indices, predicted_indices, labels)
    mean = {}
    std = {}
    for name in SUMMARY_METRICS:
        values = np.array([getattr(fold, name) for fold in folds])
        mean[name] = float(values.mean())
        std[name] = float(values.std())
    return FoldSummary(labels=labels, folds=list(folds), pooled=pooled, mean=mean, std=std)
