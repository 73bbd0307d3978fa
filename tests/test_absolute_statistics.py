"""model.absolute_statistics: the statistics branch also sees the windows before caller
normalisation, standardised with fixed training statistics; off, every model is as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analysis_fixtures import build_two_party_call, ravdess_clip, trimmed, write_audio
from conftest import TINY_MODEL as TINY
from conftest import emodb_clips

from callmood.analysis import AnalysisOptions, analyze_call
from callmood.audio import SAMPLE_RATE
from callmood.inference import EmotionModel, PredictionInputError
from callmood.models.package import ABSOLUTE_INPUT, load_model_package
from callmood.models.parallel_cnn_transformer import (
    ModelConfig,
    ModelInputError,
    ParallelCNNTransformer,
    time_statistics,
)
from callmood.training.config import TrainingConfigError, parse_training_config

TINY_MODEL = {
    **TINY,
    "statistics_branch": True,
    "statistics_deltas": True,
    "absolute_statistics": True,
}
RAW = AnalysisOptions(keep_raw_probabilities=True)


def config_values(emodb_dir, **overrides):
    values = {
        "name": "absolute-test-model",
        "corpora": [{"name": "emodb", "path": str(emodb_dir)}],
        "label_set": "emodb7",
        "classes": ["neutral", "angry"],
        "model": TINY_MODEL,
        "epochs": 1,
        "batch_size": 16,
        "crop_seconds": 1.5,
        "validation": {"fraction": 0.0},
        "caller_normalization": {"enabled": True, "prior_seconds": 3.0},
        "augmentation": {"spec_augment": {"probability": 0.5}, "mixup_alpha": 0.2},
        "num_threads": 1,
        "seed": 0,
    }
    values.update(overrides)
    return values


def test_the_option_needs_the_statistics_branch_and_caller_normalisation(emodb_dir):
    with pytest.raises(ModelInputError, match="absolute_statistics needs statistics_branch"):
        ModelConfig(absolute_statistics=True)
    with pytest.raises(ModelInputError, match="absolute_statistics must be true or false"):
        ModelConfig(statistics_branch=True, absolute_statistics="yes")
    with pytest.raises(TrainingConfigError, match="caller_normalization.enabled"):
        parse_training_config(config_values(emodb_dir, caller_normalization={"enabled": False}))
    without_branch = {**TINY_MODEL, "statistics_branch": False, "statistics_deltas": False}
    with pytest.raises(TrainingConfigError, match="needs model.statistics_branch"):
        parse_training_config(config_values(emodb_dir, model=without_branch))


def test_off_the_model_and_its_metadata_are_as_before():
    plain = ParallelCNNTransformer(ModelConfig(num_classes=4, statistics_branch=True))
    # No new buffers and no new model.json key: older packages load, newer ones read alike.
    assert "absolute_statistics" not in plain.config.to_dict()
    assert not any("absolute" in name for name in plain.state_dict())
    with pytest.raises(ModelInputError, match="without absolute_statistics"):
        plain(torch.zeros(1, 40, 64), absolute_features=torch.zeros(1, 40, 64))
    on = ParallelCNNTransformer(
        ModelConfig(num_classes=4, statistics_branch=True, absolute_statistics=True)
    ).eval()
    assert on.config.to_dict()["absolute_statistics"] is True
    with pytest.raises(ModelInputError, match="pass absolute_features"):
        on(torch.zeros(1, 40, 64))


def test_the_bundled_model_is_unchanged():
    package = load_model_package()
    assert "absolute_statistics" not in package.metadata["model_config"]
    model = EmotionModel.load(backend="onnx")
    assert not model.absolute_statistics
    with pytest.raises(ModelInputError, match="without absolute_statistics"):
        package.model(torch.zeros(1, 40, 300), absolute_features=torch.zeros(1, 40, 300))


def test_the_absolute_level_reaches_the_network_through_the_new_branch():
    torch.manual_seed(0)
    model = ParallelCNNTransformer(
        ModelConfig(num_classes=4, statistics_branch=True, absolute_statistics=True)
    ).eval()
    features = torch.randn(2, 40, 300)
    with torch.no_grad():
        quiet = model(features, absolute_features=features)
        loud = model(features, absolute_features=features + 10.0)
    # Same normalised frames, another absolute level (c0 and tilt): another answer.
    assert not torch.allclose(quiet, loud, atol=1e-3)


@pytest.fixture(scope="module")
def trained(emodb_dir, tmp_path_factory):
    """One tiny epoch on three EmoDB speakers, saved as a package with its ONNX graph."""
    from callmood.training.loop import train_model
    from callmood.training.run import save_package

    config = parse_training_config(config_values(emodb_dir))
    speakers = {"emodb:09", "emodb:10", "emodb:11"}
    clips = emodb_clips(emodb_dir, config, speakers=speakers, keep_waveforms=True)
    indices = np.arange(len(clips.rows))
    result = train_model(config, clips, indices, np.array([], dtype=np.int64))
    directory = save_package(config, clips, result, tmp_path_factory.mktemp("abs"), {})
    return directory, clips, result


def test_the_population_statistics_are_fixed_from_the_training_clips(trained):
    directory, clips, result = trained
    statistics = torch.cat([time_statistics(c[None], None, True) for c in clips.features])
    model = result.model
    np.testing.assert_allclose(model.absolute_mean, statistics.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.absolute_std, statistics.std(0), rtol=1e-4, atol=1e-4)
    # ... and they travel in the weights (safetensors) the package loads.
    package = load_model_package(directory)
    assert torch.equal(package.model.absolute_mean, model.absolute_mean)
    assert json.loads((directory / "model.json").read_text())["model_config"]["absolute_statistics"]


def test_onnx_and_torch_agree_on_a_real_call(trained, ravdess_dir, tmp_path):
    import onnxruntime

    directory = trained[0]
    session = onnxruntime.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["features", ABSOLUTE_INPUT]
    onnx = EmotionModel.load(directory, backend="onnx", num_threads=1)
    torch_model = EmotionModel.load(directory, backend="torch")
    assert onnx.backend == "onnx" and onnx.absolute_statistics and onnx.caller_prior
    call, _ = build_two_party_call(ravdess_dir, turns=4)
    path = write_audio(tmp_path / "call.flac", call)
    by_onnx = analyze_call(path, RAW, onnx).windows()
    by_torch = analyze_call(path, RAW, torch_model).windows()
    assert len(by_onnx) == len(by_torch) >= 2
    for a, b in zip(by_onnx, by_torch, strict=True):
        assert (a.speaker, a.start) == (b.speaker, b.start)
        assert a.raw_probabilities == pytest.approx(b.raw_probabilities, abs=1e-4)
    # A normalised batch without its absolute windows is refused by name.
    features = onnx.window_features(call[0], [0])
    with pytest.raises(PredictionInputError, match="before caller normalisation"):
        onnx.predict_features(features, normalized=True)


def customer(result):
    return [w for w in result.windows() if w.speaker == "customer"]


def test_absolute_statistics_use_neither_later_speech_nor_the_other_caller(
    trained, ravdess_dir, tmp_path
):
    model = EmotionModel.load(trained[0], backend="onnx", num_threads=1)
    codes = ["01-01-01-01", "05-02-01-01", "04-01-02-01", "03-01-01-02"]
    turn = np.concatenate([trimmed(ravdess_clip(ravdess_dir, 3, code)) for code in codes])
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    left = np.concatenate([silence, turn, silence])
    right = np.zeros_like(left)
    cut = SAMPLE_RATE + int(0.75 * len(turn))
    louder = left.copy()
    louder[cut:] = np.clip(louder[cut:] * 4.0, -1, 1)  # the caller turns up later
    other = np.concatenate([silence, trimmed(ravdess_clip(ravdess_dir, 2, "05-02-01-01"))])
    talking = right.copy()
    talking[: len(other)] = other[: len(talking)]  # and the agent talks over them

    def run(name, samples):
        return customer(analyze_call(write_audio(tmp_path / name, samples), RAW, model))

    base = run("base.flac", np.stack([left, right]))
    later = run("later.flac", np.stack([louder, right]))
    agent = run("agent.flac", np.stack([left, talking]))
    before = [w for w in base if w.end * SAMPLE_RATE <= cut]
    assert len(before) >= 2
    for changed in (later, agent):
        windows = {(w.start, w.end): w.raw_probabilities for w in changed}
        for window in before:
            assert windows[(window.start, window.end)] == window.raw_probabilities
    # The windows after the change hear it (the test can fail).
    after = [w.raw_probabilities for w in base if w.end * SAMPLE_RATE > cut]
    assert after and after != [w.raw_probabilities for w in later if w.end * SAMPLE_RATE > cut]
    # Plain: the first window is that window alone (its own frames, no other speech).
    first = base[0]
    start = int(round(first.start * SAMPLE_RATE))
    alone = model.predict(left[start : start + model.window_samples][None])[0]
    assert list(first.raw_probabilities.values()) == pytest.approx(alone, abs=1e-4)


def test_evaluation_feeds_the_absolute_clips_in_both_test_protocols(trained):
    from callmood.training.evaluate import call_metrics, predict_test_clips

    directory, clips, result = trained
    indices = np.arange(len(clips.rows))
    metrics, predictions = predict_test_clips(result.model, clips, indices, result.caller_prior)
    assert len(predictions) == len(indices) and 0 <= metrics.unweighted_average_recall <= 1
    # Each speaker's clips as one call: normalised with their past, absolute as they are.
    as_calls = call_metrics(result.model, clips, indices, result.caller_prior)
    assert 0 <= as_calls.unweighted_average_recall <= 1
    # The package loaded for `callmood evaluate --model` predicts the same clips alike.
    package = load_model_package(directory)
    again, _ = predict_test_clips(package.model, clips, indices, package.caller_prior)
    assert again.unweighted_average_recall == metrics.unweighted_average_recall


def test_without_the_level_a_gain_changes_nothing_and_the_shape_still_counts(emodb_dir):
    with pytest.raises(ModelInputError, match="absolute_level: false needs absolute_statistics"):
        ModelConfig(statistics_branch=True, absolute_level=False)
    logmel = {**TINY_MODEL, "absolute_level": False}
    with pytest.raises(TrainingConfigError, match="absolute_level: false needs features.kind"):
        parse_training_config(
            config_values(emodb_dir, model=logmel, features={"kind": "logmel", "n_mels": 64})
        )
    assert "absolute_level" not in ModelConfig(**TINY_MODEL).to_dict()  # the default: as before
    torch.manual_seed(0)
    model = ParallelCNNTransformer(ModelConfig(num_classes=4, **logmel)).eval()
    assert model.config.to_dict()["absolute_level"] is False
    features = torch.randn(2, 40, 300)
    # A gain adds a constant to c0 alone (the DCT of a constant log-mel shift): no answer moves.
    louder = features.clone()
    louder[:, 0] += 6.0
    brighter = features.clone()
    brighter[:, 1] += 2.0  # another spectral tilt: the absolute shape still reaches the decision
    with torch.no_grad():
        base = model(features, absolute_features=features)
        torch.testing.assert_close(model(features, absolute_features=louder), base)
        assert not torch.allclose(model(features, absolute_features=brighter), base, atol=1e-4)
