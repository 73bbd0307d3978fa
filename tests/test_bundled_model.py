"""The default model shipped in the package: loads offline, predicts the 4 classes, ONNX = torch."""

import json

import numpy as np
import pytest
import torch

from callmood.features import FeatureExtractor
from callmood.models.package import DEFAULT_MODEL_DIR, load_model_package
from callmood.normalization import normalize_alone
from callmood.training.data import decode_clip

# Strong-intensity angry and neutral clips of one RAVDESS actor (training data of the model:
# this checks the package works end to end, not how well it generalises; docs/results.md does).
ANGRY_CLIPS = ["03-01-05-02-01-01-12", "03-01-05-02-02-01-12", "03-01-05-02-01-02-12"]
NEUTRAL_CLIPS = ["03-01-01-01-01-01-12", "03-01-01-01-02-01-12", "03-01-01-01-01-02-12"]


@pytest.fixture(scope="module")
def package():
    return load_model_package(None)


def features_of(package, path):
    """The clip's features as the network takes them: normalised as a caller of its own."""
    waveform = decode_clip(path, package.feature_config.sample_rate)
    with torch.no_grad():
        features = FeatureExtractor(package.feature_config)(torch.from_numpy(waveform)[None])
    return normalize_alone(features, package.caller_prior)


def test_bundled_model_is_the_four_class_default_and_small(package):
    assert package.directory == DEFAULT_MODEL_DIR
    assert package.labels == ("neutral", "happy", "sad", "angry")
    assert package.window_seconds == 3.0
    size_mb = (DEFAULT_MODEL_DIR / "weights.safetensors").stat().st_size / 1e6
    assert size_mb < 5
    assert (DEFAULT_MODEL_DIR / "model.onnx").stat().st_size / 1e6 < 5


def test_model_json_records_features_and_training_data():
    metadata = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert metadata["feature_config"]["kind"] in {"mfcc", "logmel"}
    assert metadata["feature_config"]["sample_rate"] == 16000
    assert set(metadata["training"]["corpora"]) == {"ravdess", "emodb", "ased"}
    # Callers are normalised against the training data's statistics (callmood.normalization).
    prior = metadata["caller_normalization"]
    assert len(prior["mean"]) == len(prior["std"]) == metadata["model_config"]["num_features"]
    assert prior["prior_seconds"] > 0


def test_model_card_states_the_non_commercial_license_and_limits():
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert "CC BY-NC-SA 4.0" in card
    assert "non-commercial" in card.lower()
    assert "acted" in card.lower()
    # Every training corpus's terms: ASED is free for research, with its paper cited.
    assert "ASED" in card and "Retta" in card and "research" in card


def test_bundled_model_predicts_probabilities_of_the_four_classes_on_real_speech(
    package, ravdess_dir
):
    angry = [features_of(package, ravdess_dir / "Actor_12" / f"{c}.flac") for c in ANGRY_CLIPS]
    neutral = [features_of(package, ravdess_dir / "Actor_12" / f"{c}.flac") for c in NEUTRAL_CLIPS]

    with torch.no_grad():
        angry_probabilities = torch.cat([package.model(f).softmax(-1) for f in angry])
        neutral_probabilities = torch.cat([package.model(f).softmax(-1) for f in neutral])

    assert angry_probabilities.shape == (3, 4)
    torch.testing.assert_close(angry_probabilities.sum(-1), torch.ones(3))
    angry_index = package.labels.index("angry")
    neutral_index = package.labels.index("neutral")
    # Shouted anger must look angrier than calm neutral speech.
    assert angry_probabilities[:, angry_index].mean() > neutral_probabilities[:, angry_index].mean()
    assert (
        neutral_probabilities[:, neutral_index].mean()
        > angry_probabilities[:, neutral_index].mean()
    )


def test_onnx_graph_agrees_with_torch_on_a_real_clip(package, ravdess_dir):
    import onnxruntime

    features = features_of(package, ravdess_dir / "Actor_12" / f"{ANGRY_CLIPS[0]}.flac")
    session = onnxruntime.InferenceSession(
        str(DEFAULT_MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    (onnx_logits,) = session.run(["logits"], {"features": features.numpy()})
    with torch.no_grad():
        torch_logits = package.model(features).numpy()

    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
