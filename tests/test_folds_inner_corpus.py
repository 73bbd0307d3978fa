"""Leave-corpus-out with an inner validation corpus (validation.hold_out: corpus).

Synthetic manifest rows (a group and a corpus per clip, no audio): the fold builder only
looks at those.
"""

import numpy as np
import pytest
from pydantic import ValidationError

from callmood.training.config import ValidationConfig
from callmood.training.folds import FoldError, leave_one_corpus_out


def synthetic_rows(speakers_per_corpus: dict[str, int], clips_per_speaker: int = 3):
    groups, corpora = [], []
    for corpus, speakers in speakers_per_corpus.items():
        for speaker in range(1, speakers + 1):
            groups += [f"{corpus}:{speaker}"] * clips_per_speaker
            corpora += [corpus] * clips_per_speaker
    return np.array(groups, dtype=object), np.array(corpora, dtype=object)


THREE = {"ravdess": 4, "emodb": 3, "ased": 2}


def test_each_fold_validates_on_one_whole_training_corpus():
    groups, corpora = synthetic_rows(THREE)
    folds = leave_one_corpus_out(groups, corpora, hold_out_corpus=True)
    assert len(folds) == 3
    validation_corpora = []
    for fold in folds:
        test_corpus = set(corpora[fold.test_indices])
        assert len(test_corpus) == 1
        # The test corpus never appears in train or validation.
        assert not test_corpus & set(corpora[fold.train_indices])
        assert not test_corpus & set(corpora[fold.validation_indices])
        # Validation is exactly one whole corpus, not trained on.
        (validation_corpus,) = set(corpora[fold.validation_indices])
        assert sorted(fold.validation_indices) == list(np.flatnonzero(corpora == validation_corpus))
        assert validation_corpus not in set(corpora[fold.train_indices])
        assert len(set(corpora[fold.train_indices])) == 1
        # No speaker on two sides; every clip is on exactly one side.
        sides = [fold.train_indices, fold.validation_indices, fold.test_indices]
        speaker_sets = [set(groups[side]) for side in sides]
        for i in range(3):
            for j in range(i + 1, 3):
                assert not speaker_sets[i] & speaker_sets[j], fold.name
        assert sorted(np.concatenate(sides)) == list(range(len(groups)))
        validation_corpora.append(validation_corpus)
    # Next corpus in name order after the test corpus (ased, emodb, ravdess): each once.
    assert validation_corpora == ["emodb", "ravdess", "ased"]
    assert folds[0].name == "ravdess (validation emodb) -> ased"


def test_two_corpora_with_hold_out_corpus_is_a_clear_error():
    groups, corpora = synthetic_rows({"ravdess": 4, "emodb": 3})
    with pytest.raises(FoldError, match="at least 3 corpora.*found 2: emodb, ravdess"):
        leave_one_corpus_out(groups, corpora, hold_out_corpus=True)


def test_speakers_default_is_unchanged():
    assert ValidationConfig().hold_out == "speakers"
    groups, corpora = synthetic_rows(THREE)
    for fold in leave_one_corpus_out(groups, corpora):
        # No fixed validation set: run_folds draws validation speakers from the training part.
        assert fold.validation_indices is None
        (test_corpus,) = set(corpora[fold.test_indices])
        assert list(fold.train_indices) == list(np.flatnonzero(corpora != test_corpus))
        assert "validation" not in fold.name


def test_unknown_hold_out_is_refused():
    with pytest.raises(ValidationError):
        ValidationConfig(hold_out="sessions")


def test_hold_out_corpus_outside_leave_corpus_out_is_a_clear_error():
    from callmood.training.config import TrainingConfig
    from callmood.training.evaluate import EvaluationError, evaluate_cross_validation

    config = TrainingConfig.model_construct(validation=ValidationConfig(hold_out="corpus"))
    with pytest.raises(EvaluationError, match="only works with --protocol leave-corpus-out"):
        evaluate_cross_validation(config, "loso")
