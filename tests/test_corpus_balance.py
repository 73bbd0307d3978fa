"""corpus_balance: each corpus gets its share of an epoch's draws, its classes balanced inside.

The sampler works on the manifest rows' corpora and labels only, so no audio is needed.
"""

import numpy as np
import pytest

from callmood.manifest import ManifestRow
from callmood.training.config import TrainingConfigError, parse_training_config
from callmood.training.data import epoch_batches

CLASSES = ("angry", "happy", "neutral", "sad")
# Three corpora of very different sizes, each with its own skewed class mix.
CORPUS_CLASS_COUNTS = {
    "ravdess": (40, 60, 100, 200),  # 400 clips
    "emodb": (50, 20, 20, 10),  # 100 clips
    "ased": (10, 10, 10, 10),  # 40 clips
}


def make_rows() -> list[ManifestRow]:
    rows = []
    for corpus, counts in CORPUS_CLASS_COUNTS.items():
        for label, count in zip(CLASSES, counts, strict=True):
            for i in range(count):
                speaker = f"{corpus}:{i % 5}"
                rows.append(
                    ManifestRow(
                        id=f"{corpus}:{label}-{i}",
                        corpus=corpus,
                        path=f"/data/{corpus}/{label}-{i}.wav",
                        speaker=speaker,
                        gender=None,
                        group=speaker,
                        label=label,
                        original_label=label,
                        valence=None,
                        arousal=None,
                        dominance=None,
                        duration_seconds=2.5,
                        sample_rate=16000,
                        language="en",
                    )
                )
    return rows


def draw(corpus_balance, *, balanced=False, epochs=10, seed=0):
    """The corpora and labels of `epochs` epochs of draws, batch size 32, with a fixed seed."""
    rows = make_rows()
    corpora = np.array([row.corpus for row in rows], dtype=object)
    targets = np.array([CLASSES.index(row.label) for row in rows], dtype=np.int64)
    indices = np.arange(len(rows))
    rng = np.random.default_rng(seed)
    drawn = np.concatenate(
        [
            batch
            for _ in range(epochs)
            for batch in epoch_batches(
                indices,
                targets,
                32,
                rng,
                balanced=balanced,
                corpora=corpora,
                corpus_balance=corpus_balance,
            )
        ]
    )
    return corpora[drawn], targets[drawn]


def shares(values, names):
    return {name: float(np.mean(values == name)) for name in names}


def test_equal_gives_each_corpus_a_third_and_balances_classes_within_it():
    corpora, targets = draw("equal")

    for corpus, share in shares(corpora, CORPUS_CLASS_COUNTS).items():
        assert share == pytest.approx(1 / 3, abs=0.03), corpus
        class_shares = shares(targets[corpora == corpus], range(len(CLASSES)))
        for label, class_share in class_shares.items():
            assert class_share == pytest.approx(0.25, abs=0.04), (corpus, CLASSES[label])


def test_weights_give_proportional_shares():
    corpora, _ = draw({"ravdess": 2, "emodb": 1, "ased": 1})

    got = shares(corpora, CORPUS_CLASS_COUNTS)
    assert got["ravdess"] == pytest.approx(0.50, abs=0.03)
    assert got["emodb"] == pytest.approx(0.25, abs=0.03)
    assert got["ased"] == pytest.approx(0.25, abs=0.03)


def test_none_keeps_the_old_permutation_and_the_old_class_balanced_sampler():
    rows = make_rows()
    targets = np.array([CLASSES.index(row.label) for row in rows], dtype=np.int64)
    corpora = np.array([row.corpus for row in rows], dtype=object)
    indices = np.arange(len(rows))
    size = 32 * (len(rows) // 32)

    def new(balanced):
        batches = epoch_batches(
            indices,
            targets,
            32,
            np.random.default_rng(3),
            balanced=balanced,
            corpora=corpora,
            corpus_balance="none",
        )
        return np.concatenate(list(batches))

    # What the sampler drew before corpus_balance existed, with the same seed.
    permutation = np.random.default_rng(3).permutation(indices)[:size]
    inverse = 1.0 / np.bincount(targets)[targets]
    class_balanced = np.random.default_rng(3).choice(
        indices, size=size, replace=True, p=inverse / inverse.sum()
    )
    assert np.array_equal(new(False), permutation)
    assert np.array_equal(new(True), class_balanced)
    # Unbalanced, the corpora come in their own proportions.
    assert shares(corpora[permutation], ["ravdess"])["ravdess"] == pytest.approx(400 / 540, 0.03)


def test_config_accepts_none_equal_and_a_weight_mapping():
    base = {"manifests": ["m.csv"]}
    assert parse_training_config(base).corpus_balance == "none"
    assert parse_training_config({**base, "corpus_balance": "equal"}).corpus_balance == "equal"
    config = parse_training_config({**base, "corpus_balance": {"ravdess": 2, "emodb": 0.5}})
    assert config.corpus_balance == {"ravdess": 2.0, "emodb": 0.5}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("uniform", "`uniform`"),
        ({"ravdess": 0}, "`ravdess`"),
        ({"ravdess": -1}, "`ravdess`"),
        ({"emodb": "lots"}, "'lots'"),
        ({"emodb": True}, "`emodb`"),
        ({"emodb": float("nan")}, "`emodb`"),
        ({}, "{}"),
        (3, "3"),
    ],
)
def test_bad_corpus_balance_is_an_error_naming_the_value(value, named):
    with pytest.raises(TrainingConfigError, match="corpus_balance") as error:
        parse_training_config({"manifests": ["m.csv"], "corpus_balance": value})
    assert named in str(error.value)


def test_a_weight_for_a_corpus_not_in_the_training_data_is_an_error():
    with pytest.raises(TrainingConfigError, match="iemocap, not in the training data"):
        draw({"ravdess": 1, "emodb": 1, "ased": 1, "iemocap": 1}, epochs=1)


def test_a_training_corpus_without_a_weight_is_an_error():
    with pytest.raises(TrainingConfigError, match="no weight to training corpus ased"):
        draw({"ravdess": 1, "emodb": 1}, epochs=1)


def test_training_on_real_clips_checks_the_mapping_before_it_trains_and_then_trains(emodb_dir):
    from callmood.corpora import prepare_emodb
    from callmood.training.data import build_clip_set, map_labels
    from callmood.training.loop import train_model

    values = {
        "corpora": [{"name": "emodb", "path": str(emodb_dir)}],
        "label_set": "emodb7",
        "classes": ["neutral", "angry"],
        "model": {"cnn_channels": [4, 8, 16], "transformer_layers": 1},
        "epochs": 1,
        "batch_size": 8,
        "crop_seconds": 1.0,
        "validation": {"fraction": 0.0},
        "export_onnx": False,
    }
    config = parse_training_config({**values, "corpus_balance": {"ravdess": 1}})
    rows, labels = map_labels(prepare_emodb(emodb_dir), config.label_set)
    kept = [(r, label) for r, label in zip(rows, labels, strict=True) if label in config.classes]
    # Twelve clips of each class: enough to train one epoch, quick to featurise.
    kept = [k for k in kept if k[1] == "angry"][:12] + [k for k in kept if k[1] == "neutral"][:12]
    clips = build_clip_set(
        [k[0] for k in kept],
        [k[1] for k in kept],
        config.class_names(),
        config.feature_config(),
        keep_waveforms=False,
    )
    train = np.arange(len(clips))
    with pytest.raises(TrainingConfigError, match="ravdess, not in the training data"):
        train_model(config, clips, train, np.array([], dtype=np.int64))

    config = parse_training_config({**values, "corpus_balance": "equal"})
    result = train_model(config, clips, train, np.array([], dtype=np.int64))
    assert len(result.history) == 1
