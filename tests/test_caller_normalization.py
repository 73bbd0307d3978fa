"""Causal per-caller normalisation: only the past is used, file and stream agree, and the
model package carries the prior to every backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analysis_fixtures import (
    build_two_party_call,
    make_random_package,
    ravdess_clip,
    trimmed,
    write_audio,
)

from callmood.analysis import AnalysisOptions, StreamingAnalyzer, analyze_call
from callmood.audio import SAMPLE_RATE
from callmood.inference import EmotionModel, ModelLoadError
from callmood.normalization import (
    CallerNormalizer,
    CallerPrior,
    FrameSums,
    NormalizationError,
    normalize_alone,
    normalize_features,
)


def prior(frames: float = 300.0) -> CallerPrior:
    return CallerPrior(mean=np.array([1.0, -2.0]), std=np.array([2.0, 0.5]), frames=frames)


def test_a_caller_who_sounds_like_the_prior_is_left_as_they_are():
    rng = np.random.default_rng(0)
    speech = rng.normal([[1.0], [-2.0]], [[2.0], [0.5]], size=(2, 20_000)).astype(np.float32)
    normalized = normalize_alone(torch.from_numpy(speech)[None], prior())[0].numpy()
    np.testing.assert_allclose(normalized, speech, atol=0.05 * 2.0)


def test_a_shifted_channel_is_mapped_back_onto_the_prior():
    # A caller whose line adds +10 to the first coefficient and halves the second's spread
    # (a different microphone and level) comes out with the prior's statistics.
    rng = np.random.default_rng(1)
    speech = rng.normal([[11.0], [-2.0]], [[2.0], [0.25]], size=(2, 50_000))
    normalized = normalize_features(
        torch.from_numpy(speech)[None], [FrameSums.of(speech)], prior(frames=1.0)
    )[0].numpy()
    np.testing.assert_allclose(normalized.mean(1), [1.0, -2.0], atol=0.01)
    np.testing.assert_allclose(normalized.std(1), [2.0, 0.5], rtol=0.01)


def test_the_prior_weighs_as_its_frames_of_speech():
    # 300 frames of a caller at 5.0 against a prior worth 300 frames (means 1 and -2): the
    # blended mean is half way (3.0 and 1.5), so a frame there maps onto the prior's mean.
    caller = FrameSums.of(np.full((2, 300), 5.0))
    at_the_blend = torch.tensor([[[3.0], [1.5]]], dtype=torch.float64)
    normalized = normalize_features(at_the_blend, [caller], prior(frames=300))
    np.testing.assert_allclose(normalized[0, :, 0].numpy(), [1.0, -2.0], atol=1e-9)


def test_the_normalizer_uses_only_past_windows():
    rng = np.random.default_rng(2)
    windows = [rng.normal(size=(2, 50)).astype(np.float32) * (1 + i) for i in range(6)]
    changed = windows[:3] + [w + 100.0 for w in windows[3:]]
    first, second = CallerNormalizer(prior()), CallerNormalizer(prior())
    outputs = [first.normalize(w) for w in windows]
    others = [second.normalize(w) for w in changed]
    for k in range(3):
        np.testing.assert_array_equal(outputs[k], others[k])
    assert not np.allclose(outputs[3], others[3])


def test_padding_frames_do_not_count_towards_the_statistics():
    window = np.zeros((2, 10), dtype=np.float32)
    window[:, 3:7] = 4.0
    normalizer = CallerNormalizer(prior())
    normalizer.normalize(window, slice(3, 7))
    assert normalizer.sums.count == 4
    np.testing.assert_array_equal(normalizer.sums.total, [16.0, 16.0])


def test_a_bad_prior_is_refused_by_name():
    with pytest.raises(NormalizationError, match="std > 0"):
        CallerPrior(mean=np.zeros(2), std=np.array([1.0, 0.0]), frames=10)
    with pytest.raises(NormalizationError, match="prior_seconds, mean and std"):
        CallerPrior.from_dict({"mean": [0.0]}, hop_seconds=0.01)
    with pytest.raises(NormalizationError, match="> 0 frames"):
        CallerPrior(mean=np.zeros(2), std=np.ones(2), frames=0)


# --- in call analysis -------------------------------------------------------------------


@pytest.fixture(scope="module")
def normalized_model(tmp_path_factory):
    directory = make_random_package(
        tmp_path_factory.mktemp("model"), caller_normalization=True, export_onnx=True
    )
    return directory


@pytest.fixture(scope="module")
def call(ravdess_dir):
    samples, _ = build_two_party_call(ravdess_dir, turns=8, pause_seconds=1.5)
    return samples


RAW = AnalysisOptions(keep_raw_probabilities=True)


def customer_windows(result):
    return [w for w in result.windows() if w.speaker == "customer"]


def test_windows_before_t_are_unchanged_by_audio_after_t(normalized_model, call, tmp_path):
    model = EmotionModel.load(normalized_model)
    cut = int(0.6 * call.shape[1])
    louder = call.copy()
    louder[0, cut:] = np.clip(louder[0, cut:] * 4.0, -1, 1)  # the caller turns up later
    first = analyze_call(write_audio(tmp_path / "a.flac", call), RAW, model)
    second = analyze_call(write_audio(tmp_path / "b.flac", louder), RAW, model)
    before = [w for w in customer_windows(first) if w.end * SAMPLE_RATE <= cut]
    assert len(before) >= 3
    other = {(w.start, w.end): w for w in customer_windows(second)}
    for window in before:
        assert other[(window.start, window.end)].raw_probabilities == window.raw_probabilities
    # ... while the windows after t do change (the test can fail).
    after = [w.raw_probabilities for w in customer_windows(first) if w.start * SAMPLE_RATE >= cut]
    changed = [
        w.raw_probabilities for w in customer_windows(second) if w.start * SAMPLE_RATE >= cut
    ]
    assert after and after != changed


def test_file_and_stream_give_identical_results(normalized_model, call, tmp_path):
    model = EmotionModel.load(normalized_model)
    whole = analyze_call(write_audio(tmp_path / "call.flac", call), RAW, model)
    analyzer = StreamingAnalyzer(RAW, model)
    rng = np.random.default_rng(3)
    position = 0
    while position < call.shape[1]:
        size = int(rng.integers(100, 12_000))
        chunk = call[:, position : position + size]
        analyzer.feed({"customer": chunk[0], "agent": chunk[1]})
        position += size
    analyzer.close()
    streamed = analyzer.result()
    assert len(streamed.windows()) == len(whole.windows())
    for a, b in zip(streamed.windows(), whole.windows(), strict=True):
        assert (a.speaker, a.start, a.end, a.emotion) == (b.speaker, b.start, b.end, b.emotion)
        assert a.raw_probabilities == pytest.approx(b.raw_probabilities, abs=1e-4)


def test_later_windows_are_judged_against_the_callers_own_speech(
    normalized_model, ravdess_dir, tmp_path
):
    # One long turn, so every window is whole: the first is normalised as if alone, later
    # ones with the caller's past too, so they differ from predicting each window alone.
    model = EmotionModel.load(normalized_model)
    codes = ["01-01-01-01", "05-02-01-01", "04-01-02-01", "03-01-01-02"]
    turn = np.concatenate([trimmed(ravdess_clip(ravdess_dir, 3, code)) for code in codes])
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    customer = np.concatenate([silence, turn, silence])
    call = np.stack([customer, np.zeros_like(customer)])
    result = analyze_call(write_audio(tmp_path / "turn.flac", call), RAW, model)
    windows = customer_windows(result)
    assert len(windows) >= 3
    alone = []
    for window in windows:
        start = int(round(window.start * SAMPLE_RATE))
        assert int(round(window.end * SAMPLE_RATE)) - start == model.window_samples
        alone.append(model.predict(call[0, start : start + model.window_samples][None])[0])
    first = list(windows[0].raw_probabilities.values())
    assert first == pytest.approx(alone[0], abs=1e-4)
    assert any(
        not np.allclose(list(w.raw_probabilities.values()), p, atol=1e-3)
        for w, p in zip(windows[1:], alone[1:], strict=True)
    )


def test_onnx_and_torch_backends_normalise_alike(normalized_model, call):
    onnx = EmotionModel.load(normalized_model, backend="onnx")
    torch_model = EmotionModel.load(normalized_model, backend="torch")
    assert onnx.backend == "onnx" and torch_model.backend == "torch"
    assert onnx.caller_prior is not None and torch_model.caller_prior is not None
    windows = np.stack([call[0, s : s + onnx.window_samples] for s in (0, 16_000, 48_000)])
    np.testing.assert_allclose(onnx.predict(windows), torch_model.predict(windows), atol=1e-4)


def test_a_damaged_prior_in_model_json_is_a_load_error(normalized_model, tmp_path):
    import shutil

    copy = shutil.copytree(normalized_model, tmp_path / "model")
    meta = json.loads((copy / "model.json").read_text())
    meta["caller_normalization"]["std"] = [0.0] * 40
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="caller"):
        EmotionModel.load(copy)
