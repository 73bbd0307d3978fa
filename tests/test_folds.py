"""Speaker-independent splits: no speaker (or IEMOCAP session) may be on both sides of a fold."""

import numpy as np
import pytest
from corpus_fixtures import build_cremad, build_iemocap_release, build_savee, speech_excerpt

from callmood.corpora import (
    prepare_cremad,
    prepare_emodb,
    prepare_iemocap,
    prepare_ravdess,
    prepare_savee,
)
from callmood.training.folds import (
    FoldError,
    grouped_kfold,
    leave_one_corpus_out,
    leave_one_group_out,
    validation_split,
)


@pytest.fixture(scope="module")
def ravdess_rows(ravdess_dir):
    return prepare_ravdess(ravdess_dir)


@pytest.fixture(scope="module")
def emodb_rows(emodb_dir):
    return prepare_emodb(emodb_dir)


@pytest.fixture(scope="module")
def small_corpora_rows(shared_data, tmp_path_factory):
    """IEMOCAP, CREMA-D and SAVEE trees built by the corpus fixture builders."""
    excerpt = speech_excerpt(shared_data)
    root = tmp_path_factory.mktemp("corpora")
    return {
        "iemocap": prepare_iemocap(build_iemocap_release(root / "iemocap", excerpt)),
        "cremad": prepare_cremad(build_cremad(root / "cremad", excerpt)),
        "savee": prepare_savee(build_savee(root / "savee", excerpt)),
    }


def assert_speaker_independent(rows, folds):
    speakers = np.array([row.speaker for row in rows])
    tested = []
    for fold in folds:
        train_speakers = set(speakers[fold.train_indices])
        test_speakers = set(speakers[fold.test_indices])
        assert not train_speakers & test_speakers, fold.name
        assert len(fold.train_indices) + len(fold.test_indices) == len(rows)
        tested.extend(fold.test_indices)
    # Every clip is tested exactly once across the folds.
    assert sorted(tested) == list(range(len(rows)))


def test_ravdess_six_folds_hold_four_consecutive_actors_each(ravdess_rows):
    folds = grouped_kfold([row.group for row in ravdess_rows], 6)

    assert_speaker_independent(ravdess_rows, folds)
    actors = [sorted(int(g.split(":")[1]) for g in fold.test_groups) for fold in folds]
    assert actors == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9, 10, 11, 12],
        [13, 14, 15, 16],
        [17, 18, 19, 20],
        [21, 22, 23, 24],
    ]
    assert all(len(fold.test_indices) == 240 for fold in folds)


def test_emodb_leave_one_speaker_out_has_ten_folds(emodb_rows):
    folds = leave_one_group_out([row.group for row in emodb_rows])

    assert len(folds) == 10
    assert_speaker_independent(emodb_rows, folds)
    assert [fold.name for fold in folds][:2] == ["emodb:03", "emodb:08"]


def test_iemocap_leave_one_session_out_keeps_sessions_whole(small_corpora_rows):
    rows = small_corpora_rows["iemocap"]
    folds = leave_one_group_out([row.group for row in rows])

    assert len(folds) == len({row.group for row in rows})
    assert_speaker_independent(rows, folds)
    sessions = np.array([row.group for row in rows])
    for fold in folds:
        assert set(sessions[fold.test_indices]) == set(fold.test_groups)
        assert not set(sessions[fold.train_indices]) & set(fold.test_groups)


@pytest.mark.parametrize("corpus", ["cremad", "savee"])
def test_other_corpora_fold_by_speaker(small_corpora_rows, corpus):
    rows = small_corpora_rows[corpus]
    folds = leave_one_group_out([row.group for row in rows])

    assert_speaker_independent(rows, folds)


def test_pooled_corpora_put_speakers_of_every_corpus_in_every_fold(ravdess_rows, emodb_rows):
    rows = ravdess_rows + emodb_rows
    folds = grouped_kfold([row.group for row in rows], 5, corpora=[row.corpus for row in rows])

    assert_speaker_independent(rows, folds)
    for fold in folds:
        corpora = {group.split(":")[0] for group in fold.test_groups}
        assert corpora == {"ravdess", "emodb"}


def test_leave_one_corpus_out_never_puts_a_corpus_or_speaker_on_both_sides(
    ravdess_rows, emodb_rows, small_corpora_rows
):
    rows = ravdess_rows + emodb_rows + small_corpora_rows["savee"]
    corpora = np.array([row.corpus for row in rows])
    folds = leave_one_corpus_out([row.group for row in rows], corpora)

    assert [fold.name for fold in folds] == [
        "ravdess+savee -> emodb",
        "emodb+savee -> ravdess",
        "emodb+ravdess -> savee",
    ]
    assert_speaker_independent(rows, folds)
    for fold in folds:
        (tested,) = set(corpora[fold.test_indices])
        assert tested not in set(corpora[fold.train_indices])
        assert set(corpora[fold.train_indices]) == set(corpora) - {tested}


def test_leave_one_corpus_out_refuses_one_corpus_or_a_shared_speaker(emodb_rows):
    groups = [row.group for row in emodb_rows]
    with pytest.raises(FoldError, match="at least 2 corpora"):
        leave_one_corpus_out(groups, ["emodb"] * len(groups))
    corpora = ["emodb"] * (len(groups) - 1) + ["other"]
    with pytest.raises(FoldError, match="occurs in corpora emodb, other"):
        leave_one_corpus_out(groups, corpora)


def test_fold_assignment_is_deterministic(ravdess_rows):
    groups = [row.group for row in ravdess_rows]
    first = grouped_kfold(groups, 6)
    shuffled_order = np.random.default_rng(1).permutation(len(groups))
    second = grouped_kfold([groups[i] for i in shuffled_order], 6)

    assert [f.test_groups for f in first] == [f.test_groups for f in second]


def test_validation_split_holds_out_whole_speakers(emodb_rows):
    groups = [row.group for row in emodb_rows]
    train, validation = validation_split(groups, fraction=0.2, seed=3)

    train_groups = {groups[i] for i in train}
    validation_groups = {groups[i] for i in validation}
    assert len(validation_groups) == 2
    assert not train_groups & validation_groups
    assert len(train) + len(validation) == len(groups)


def test_more_folds_than_speakers_is_a_clear_error(emodb_rows):
    with pytest.raises(FoldError, match="11 folds.*only 10"):
        grouped_kfold([row.group for row in emodb_rows], 11)
