"""Loading a model package and predicting emotion probabilities for batches of windows."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_fixtures import LABELS, make_random_package, ravdess_clip

from callmood.errors import CallmoodError
from callmood.features import extract
from callmood.inference import EmotionModel, PredictionInputError, default_model_dir, pad_centered


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return make_random_package(tmp_path_factory.mktemp("model"), export_onnx=True)


@pytest.fixture(scope="module")
def windows(ravdess_dir):
    clips = [ravdess_clip(ravdess_dir, 7, code) for code in ("01-01-01-01", "05-02-01-01")]
    return np.stack([pad_centered(clip, 48000) for clip in clips])


def test_onnx_and_torch_backends_agree_on_real_speech(package, windows):
    onnx = EmotionModel.load(package, backend="onnx", num_threads=1)
    torch_model = EmotionModel.load(package, backend="torch")
    assert (onnx.backend, torch_model.backend) == ("onnx", "torch")
    assert onnx.labels == LABELS and onnx.window_seconds == 3.0
    p_onnx, p_torch = onnx.predict(windows), torch_model.predict(windows)
    assert p_onnx.shape == (2, len(LABELS)) and p_onnx.dtype == np.float32
    np.testing.assert_allclose(p_onnx.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)


def test_a_window_gets_the_same_probabilities_alone_or_in_a_batch(package, windows):
    model = EmotionModel.load(package)
    together = model.predict(windows)
    alone = np.concatenate([model.predict(windows[i : i + 1]) for i in range(len(windows))])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert model.predict(np.zeros((0, 48000), np.float32)).shape == (0, len(LABELS))


def test_a_package_without_onnx_falls_back_to_torch(tmp_path, windows):
    model = EmotionModel.load(make_random_package(tmp_path / "no-onnx"), backend="onnx")
    assert model.backend == "torch"
    assert model.predict(windows).shape == (2, len(LABELS))


def test_bad_waveforms_are_refused_with_the_expected_shape(package):
    model = EmotionModel.load(package)
    with pytest.raises(PredictionInputError, match=r"\(batch, samples\)"):
        model.predict(np.zeros(48000, np.float32))
    with pytest.raises(PredictionInputError, match="float"):
        model.predict(np.zeros((1, 48000), np.int16))
    with pytest.raises(PredictionInputError, match="NaN"):
        model.predict(np.full((1, 48000), np.nan, np.float32))
    with pytest.raises(PredictionInputError, match="too short"):
        model.predict(np.zeros((1, 100), np.float32))
    with pytest.raises(PredictionInputError, match="numpy array"):
        model.predict([[0.0] * 48000])


def test_missing_or_broken_model_directories_are_clear_errors(tmp_path):
    with pytest.raises(CallmoodError, match="not found"):
        EmotionModel.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CallmoodError, match="model.json"):
        EmotionModel.load(tmp_path / "empty")
    with pytest.raises(CallmoodError, match="backend"):
        EmotionModel.load(tmp_path, backend="tensorflow")


def test_a_speaker_normalised_model_is_refused_for_analysis(tmp_path):
    import json

    directory = make_random_package(tmp_path / "speaker-normalised")
    meta = json.loads((directory / "model.json").read_text())
    (directory / "model.json").write_text(json.dumps({**meta, "speaker_normalization": True}))

    with pytest.raises(CallmoodError, match="speaker_normalization"):
        EmotionModel.load(directory)


def test_pad_centered_keeps_the_audio_in_the_middle():
    padded = pad_centered(np.ones(4, np.float32), 10)
    assert padded.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    assert pad_centered(np.arange(10, dtype=np.float32), 4).tolist() == [3, 4, 5, 6]


def test_bundled_model_loads_and_predicts(windows):
    from conftest import require

    require((default_model_dir() / "model.json").is_file(), "bundled default model not built")
    model = EmotionModel.load()
    assert model.backend == "onnx"
    probabilities = model.predict(windows)
    assert probabilities.shape == (2, len(model.labels))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def speech(ravdess_dir):
    """12 s of real speech: three RAVDESS clips of one actor back to back."""
    codes = ("05-02-01-01", "01-01-02-01", "03-02-01-02")
    return np.concatenate([ravdess_clip(ravdess_dir, 9, code) for code in codes])


def test_overlapping_window_features_equal_each_window_computed_alone(package, speech):
    model = EmotionModel.load(package)
    length, hop = model.window_samples, model.feature_config.hop_length
    # Windows every second, one aligned near the end, and one off the 10 ms frame grid.
    for starts in ([*range(0, len(speech) - length, 16000), (len(speech) - length) // hop * hop],
                   [0, 16000 + 5]):  # fmt: skip
        shared = model.window_features(speech, starts)
        windows = np.stack([speech[s : s + length] for s in starts])
        alone = extract(windows, model.feature_config)
        assert shared.shape == alone.shape == (len(starts), 40, 301)
        # Identical, edge frames included: each window's first and last frames hear only
        # its own samples, zero-padded, as when the window is computed on its own.
        np.testing.assert_allclose(shared, alone, atol=1e-4, rtol=0)
        np.testing.assert_allclose(
            model.predict_features(shared), model.predict(windows), atol=1e-5
        )


def test_window_features_refuse_windows_outside_the_audio(package, speech):
    model = EmotionModel.load(package)
    with pytest.raises(PredictionInputError, match="do not fit"):
        model.window_features(speech[:40000], [0])
    with pytest.raises(PredictionInputError, match="shape"):
        model.predict_features(np.zeros((1, 12, 301), np.float32))
