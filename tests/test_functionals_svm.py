"""scripts/functionals_svm.py across corpora: openSMILE functionals, leave-corpus-out splits."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import numpy as np
import pytest
from conftest import REPO_ROOT, require

from callmood.corpora.emodb import prepare_emodb
from callmood.corpora.ravdess import prepare_ravdess
from callmood.training.data import decode_clip, map_labels, trim_silence

SCRIPT = REPO_ROOT / "scripts" / "functionals_svm.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    for package in ("opensmile", "sklearn"):
        require(importlib.util.find_spec(package) is not None, f"{package} (the `test` extra)")
    spec = importlib.util.spec_from_file_location("functionals_svm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pooled_rows(ravdess_dir, emodb_dir):
    rows, _ = map_labels(prepare_ravdess(ravdess_dir) + prepare_emodb(emodb_dir), "iemocap4")
    return rows


def test_egemaps_functionals_of_a_real_clip_are_88_finite_values(script, emodb_dir):
    samples = trim_silence(decode_clip(emodb_dir / "wav" / "03a01Fa.flac"), 16000, 35)
    values = script.opensmile_functionals(script.smile("egemaps"), samples)
    assert values.shape == (88,)
    assert np.isfinite(values).all()
    assert np.ptp(values) > 0


def test_leave_corpus_out_never_puts_a_corpus_or_speaker_on_both_sides(script, pooled_rows):
    corpora = np.array([row.corpus for row in pooled_rows], dtype=object)
    speakers = np.array([row.speaker for row in pooled_rows], dtype=object)
    splits = script.leave_corpus_out_splits(corpora)
    assert [name for name, _, _ in splits] == ["emodb", "ravdess"]
    for name, train, test in splits:
        assert set(corpora[test]) == {name}
        assert name not in set(corpora[train])
        assert not set(speakers[train]) & set(speakers[test])
        # Every clip is on exactly one side, and the test corpus is tested whole.
        assert sorted(np.concatenate([train, test])) == list(range(len(pooled_rows)))
        assert len(test) == (corpora == name).sum()


def test_in_corpus_splits_stay_inside_the_corpus_and_leave_one_speaker_out(script, pooled_rows):
    corpora = np.array([row.corpus for row in pooled_rows], dtype=object)
    speakers = np.array([row.speaker for row in pooled_rows], dtype=object)
    splits = script.in_corpus_splits(corpora, speakers)
    assert len(splits) == 34
    for name, train, test in splits:
        assert set(corpora[train]) == set(corpora[test]) == {name}
        assert len(set(speakers[test])) == 1
        assert not set(speakers[train]) & set(speakers[test])


def test_kfold_splits_are_the_folds_callmood_evaluate_uses(script, pooled_rows):
    """The network and the SVM are compared on the same speakers (docs/results.md)."""
    from callmood.training.folds import grouped_kfold

    corpora = np.array([row.corpus for row in pooled_rows], dtype=object)
    speakers = np.array([row.speaker for row in pooled_rows], dtype=object)
    splits = script.kfold_splits(corpora, speakers, 3)
    network = grouped_kfold(list(speakers), 3, corpora=list(corpora))
    assert [name for name, _, _ in splits] == [fold.name for fold in network]
    for (_, train, test), fold in zip(splits, network, strict=True):
        assert list(test) == list(fold.test_indices)
        assert list(train) == list(fold.train_indices)
        assert not set(speakers[train]) & set(speakers[test])
        # Every corpus is on both sides of every fold: in-corpus, speaker-independent.
        assert set(corpora[test]) == set(corpora[train]) == {"emodb", "ravdess"}
