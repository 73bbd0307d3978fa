"""corpus_adversarial: a corpus classifier behind a gradient reversal, training-only.

Off, training is as before; on, the network's features are pushed away from what tells the
training corpora apart, the exported model is the same network, and resuming is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL as TINY
from conftest import TrainingInterrupted, stop_after_first_epoch

from callmood.training.config import TrainingConfigError, parse_training_config
from callmood.training.data import build_clip_set, map_labels
from callmood.training.loop import (
    CorpusAdversary,
    adversarial_scale,
    train_model,
)

TINY_MODEL = {
    **TINY,
    "statistics_branch": True,
}


def recipe(emodb_dir, ravdess_dir, **overrides):
    values = {
        "name": "adversarial-test",
        "corpora": [
            {"name": "emodb", "path": str(emodb_dir)},
            {"name": "ravdess", "path": str(ravdess_dir)},
        ],
        "label_set": "iemocap4",
        "classes": ["neutral", "angry"],
        "model": TINY_MODEL,
        "epochs": 2,
        "schedule": {"kind": "cosine"},
        "batch_size": 16,
        "crop_seconds": 1.0,
        "validation": {"fraction": 0.0},
        "corpus_balance": "equal",
        "corpus_adversarial": 1.0,
        "augmentation": {"waveform_fraction": 0.0},
        "num_threads": 1,
        "seed": 0,
    }
    values.update(overrides)
    return parse_training_config(values)


@pytest.fixture(scope="module")
def two_corpora(emodb_dir, ravdess_dir):
    """Angry and neutral clips of two EmoDB speakers and two RAVDESS actors."""
    from callmood.corpora import prepare_emodb, prepare_ravdess

    config = recipe(emodb_dir, ravdess_dir)
    rows, labels = [], []
    for prepared, speakers in (
        (prepare_emodb(emodb_dir), {"emodb:03", "emodb:08"}),
        (prepare_ravdess(ravdess_dir), {"ravdess:01", "ravdess:02"}),
    ):
        mapped_rows, mapped = map_labels(prepared, config.label_set)
        for row, label in zip(mapped_rows, mapped, strict=True):
            if label in config.classes and row.speaker in speakers:
                rows.append(row)
                labels.append(label)
    return build_clip_set(
        rows, labels, config.class_names(), config.feature_config(), keep_waveforms=False
    )


def test_the_reversal_passes_features_through_and_turns_their_gradient_around():
    torch.manual_seed(0)
    adversary = CorpusAdversary(width=6, num_corpora=2)
    joined = torch.randn(4, 6, requires_grad=True)
    plain = joined.detach().clone().requires_grad_(True)
    adversary(joined, 0.5).sum().backward()
    adversary.layers(plain).sum().backward()
    # Same answer as without the reversal; the features' gradient is -0.5 times theirs.
    torch.testing.assert_close(joined.grad, -0.5 * plain.grad)


def test_the_reversal_starts_at_nothing_and_rises_to_full_strength():
    scales = [adversarial_scale(p) for p in np.linspace(0, 1, 11)]
    assert scales[0] == 0
    assert scales[-1] == pytest.approx(1, abs=1e-4)
    assert all(b > a for a, b in zip(scales, scales[1:], strict=False))


def test_it_needs_two_training_corpora_and_no_mixup(emodb_dir, ravdess_dir, two_corpora):
    config = recipe(emodb_dir, ravdess_dir)
    only_emodb = np.flatnonzero(two_corpora.corpora == "emodb")
    with pytest.raises(TrainingConfigError, match="at least 2 training corpora, got emodb"):
        train_model(
            recipe(emodb_dir, ravdess_dir, corpus_balance="none"),
            two_corpora,
            only_emodb,
            np.array([], dtype=np.int64),
        )
    mixing = recipe(emodb_dir, ravdess_dir, augmentation={"mixup_alpha": 0.2})
    with pytest.raises(TrainingConfigError, match="does not combine with mixup"):
        train_model(mixing, two_corpora, np.arange(len(two_corpora.rows)), np.array([], int))
    with pytest.raises(TrainingConfigError, match="corpus_adversarial"):
        recipe(emodb_dir, ravdess_dir, corpus_adversarial=-1)
    assert config.corpus_adversarial == 1.0


def test_the_adversary_changes_training_but_not_what_is_exported(
    emodb_dir, ravdess_dir, two_corpora
):
    everything = np.arange(len(two_corpora.rows))
    none = np.array([], dtype=np.int64)
    plain = train_model(
        recipe(emodb_dir, ravdess_dir, corpus_adversarial=0.0), two_corpora, everything, none
    ).model
    adversarial = train_model(recipe(emodb_dir, ravdess_dir), two_corpora, everything, none).model
    # The same network (the adversary lives in the training loop only) ...
    assert plain.state_dict().keys() == adversarial.state_dict().keys()
    # ... whose feature layers were trained differently: the reversed gradient reached them.
    assert not torch.allclose(
        plain.conv_branch1.blocks[0].weight, adversarial.conv_branch1.blocks[0].weight
    )


def test_resuming_an_adversarial_run_equals_running_it_through(
    emodb_dir, ravdess_dir, two_corpora, tmp_path
):
    config = recipe(emodb_dir, ravdess_dir)
    everything = np.arange(len(two_corpora.rows))
    none = np.array([], dtype=np.int64)
    through = train_model(config, two_corpora, everything, none)

    with pytest.raises(TrainingInterrupted):
        train_model(
            config,
            two_corpora,
            everything,
            none,
            checkpoint_dir=tmp_path,
            on_epoch_end=stop_after_first_epoch,
        )
    # The checkpoint holds the adversary and its optimiser state, so epoch 2 goes on as it was.
    resumed = train_model(
        config, two_corpora, everything, none, checkpoint_dir=tmp_path, resume=True
    )
    assert [r.train_loss for r in resumed.history] == pytest.approx(
        [r.train_loss for r in through.history], rel=1e-5
    )
    for name, value in through.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)
