"""Metrics are the numbers we publish: they must agree with scikit-learn's definitions."""

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)

from callmood.training.metrics import classification_metrics, summarize_folds

LABELS = ("neutral", "happy", "sad", "angry")


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, size=200)
    # Predictions that are right 60 % of the time, so recall differs by class.
    predicted = np.where(rng.random(200) < 0.6, true, rng.integers(0, 4, size=200))

    metrics = classification_metrics(true, predicted, LABELS)

    assert metrics.unweighted_average_recall == pytest.approx(
        balanced_accuracy_score(true, predicted)
    )
    assert metrics.weighted_accuracy == pytest.approx(accuracy_score(true, predicted))
    assert metrics.macro_f1 == pytest.approx(
        f1_score(true, predicted, average="macro", labels=range(4), zero_division=0)
    )
    per_class = recall_score(true, predicted, average=None, labels=range(4))
    assert [metrics.per_class_recall[label] for label in LABELS] == pytest.approx(per_class)
    np.testing.assert_array_equal(
        metrics.confusion, confusion_matrix(true, predicted, labels=range(4))
    )


def test_unweighted_average_recall_ignores_class_imbalance():
    # 90 neutral clips all right, 10 angry clips all wrong: WA looks great, UA tells the truth.
    true = np.array([0] * 90 + [3] * 10)
    predicted = np.zeros(100, dtype=int)

    metrics = classification_metrics(true, predicted, LABELS)

    assert metrics.weighted_accuracy == pytest.approx(0.9)
    assert metrics.unweighted_average_recall == pytest.approx(0.5)
    assert metrics.per_class_recall == {"neutral": 1.0, "angry": 0.0}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_class_missing_from_a_test_fold_is_left_out_of_ua_like_scikit_learn():
    true = np.array([0, 0, 1, 1])
    predicted = np.array([0, 2, 1, 1])

    metrics = classification_metrics(true, predicted, LABELS)

    assert metrics.unweighted_average_recall == pytest.approx(
        balanced_accuracy_score(true, predicted)
    )
    assert "sad" not in metrics.per_class_recall
    assert metrics.support["sad"] == 0


def test_fold_summary_gives_mean_std_and_pooled_confusion():
    fold_a = classification_metrics([0, 1, 2, 3], [0, 1, 2, 3], LABELS)  # UA 1.0
    fold_b = classification_metrics([0, 1, 2, 3], [0, 0, 0, 0], LABELS)  # UA 0.25

    summary = summarize_folds([fold_a, fold_b])

    assert summary.mean["unweighted_average_recall"] == pytest.approx(0.625)
    assert summary.std["unweighted_average_recall"] == pytest.approx(0.375)
    np.testing.assert_array_equal(summary.pooled.confusion, fold_a.confusion + fold_b.confusion)
    assert summary.pooled.weighted_accuracy == pytest.approx(5 / 8)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="differ"):
        classification_metrics([0, 1, 2], [0, 1], LABELS)
