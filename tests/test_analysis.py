"""Whole-call analysis: channels and speakers, telephone input, silence and noise, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_fixtures import (
    build_two_party_call,
    make_random_package,
    ravdess_clip,
    trimmed,
    write_audio,
)
from conftest import REPO_ROOT
from fixtures_audio import g711_wav_bytes

from callmood.analysis import AnalysisError, AnalysisOptions, analyze_call
from callmood.audio import SAMPLE_RATE, encode_telephone, load_audio
from callmood.errors import CallmoodError
from callmood.inference import EmotionModel, pad_centered
from callmood.results import CallResult, call_result_json_schema


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return EmotionModel.load(make_random_package(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def call(ravdess_dir, tmp_path_factory):
    samples, placement = build_two_party_call(ravdess_dir)
    path = write_audio(tmp_path_factory.mktemp("call") / "call.flac", samples)
    return path, samples, placement


def overlaps(stretch, span, tolerance=0.3):
    return stretch.start < span[1] + tolerance and stretch.end > span[0] - tolerance


def test_stereo_call_analyses_customer_channel_by_default(call, model):
    path, _, placement = call
    result = analyze_call(path, model=model)

    assert result.analyzed_speakers == ["customer"]
    assert result.channels == {"customer": 0, "agent": 1}
    customer, agent = result.speakers["customer"], result.speakers["agent"]
    assert customer.windows and agent.windows == []
    assert not agent.scores.emotions_analyzed and agent.scores.negativity is None
    # Talk time is measured for both; the agent's emotions are not inferred.
    assert agent.scores.talk_seconds > 0 and customer.scores.talk_seconds > 0
    customer_spans = [(s, e) for who, s, e in placement if who == "customer"]
    agent_spans = [(s, e) for who, s, e in placement if who == "agent"]
    for window in customer.windows:
        assert any(overlaps(window, span) for span in customer_spans)
        assert not any(overlaps(window, span, tolerance=-0.3) for span in agent_spans)
    assert len(customer.speech) == len(customer_spans)
    assert any("agent emotions not analysed" in note for note in result.notes)


def test_agent_emotions_are_analysed_only_on_opt_in(call, model):
    result = analyze_call(call[0], AnalysisOptions(analyze_agent=True), model=model)
    assert result.analyzed_speakers == ["customer", "agent"]
    assert result.speakers["agent"].windows
    assert result.speakers["agent"].scores.dominant_emotion in model.labels


def test_channel_mapping_override_swaps_who_is_the_customer(call, model):
    default = analyze_call(call[0], model=model)
    swapped = analyze_call(
        call[0], AnalysisOptions(channels={"customer": 1, "agent": 0}), model=model
    )
    assert swapped.channels == {"customer": 1, "agent": 0}
    assert swapped.speakers["customer"].speech == default.speakers["agent"].speech
    assert swapped.speakers["agent"].speech == default.speakers["customer"].speech


def test_mono_analyses_the_mix_as_one_speaker(call, model, tmp_path):
    path, samples, placement = call
    mixed = analyze_call(path, AnalysisOptions(mono=True), model=model)
    assert list(mixed.speakers) == ["mixed"] and mixed.analyzed_speakers == ["mixed"]
    assert len(mixed.speakers["mixed"].speech) == len(placement)

    mono_file = write_audio(tmp_path / "mono.wav", samples.sum(axis=0, keepdims=True))
    auto = analyze_call(mono_file, model=model)
    assert auto.analyzed_speakers == ["mixed"]
    assert any("mono" in note for note in auto.notes)


def test_telephone_mulaw_8khz_wav_is_analysed(call, model, tmp_path):
    _, samples, placement = call
    customer = samples[0]
    path = tmp_path / "phone.wav"
    path.write_bytes(g711_wav_bytes(encode_telephone(customer, SAMPLE_RATE, "mulaw"), "mulaw"))
    result = analyze_call(path, model=model)
    speech = result.speakers["mixed"].speech
    customer_spans = [(s, e) for who, s, e in placement if who == "customer"]
    assert len(speech) == len(customer_spans)
    assert all(any(overlaps(s, span) for span in customer_spans) for s in speech)
    assert result.duration_seconds == pytest.approx(len(customer) / SAMPLE_RATE, abs=0.01)


def test_silence_only_call_has_no_speech_and_no_alerts(model, tmp_path):
    path = write_audio(tmp_path / "silence.flac", np.zeros((2, 30 * SAMPLE_RATE), np.float32))
    result = analyze_call(path, model=model)
    assert not result.has_speech and result.alerts == []
    assert all(not s.speech and not s.windows for s in result.speakers.values())
    assert any("no speech" in note for note in result.notes)


def test_noise_only_call_has_no_speech_and_no_alerts(model, tmp_path):
    rng = np.random.default_rng(0)
    seconds = np.arange(30 * SAMPLE_RATE) / SAMPLE_RATE
    white = rng.normal(0, 0.05, seconds.size)  # about -26 dBFS
    hum = 0.3 * np.sin(2 * np.pi * 50 * seconds) + rng.normal(0, 0.002, seconds.size)
    path = write_audio(tmp_path / "noise.flac", np.stack([white, hum]).astype(np.float32))
    result = analyze_call(path, model=model)
    assert not result.has_speech and result.alerts == []


def test_window_probabilities_are_distributions_in_time_order(call, model):
    result = analyze_call(call[0], model=model)
    windows = result.speakers["customer"].windows
    starts = [w.start for w in windows]
    assert starts == sorted(starts)
    for window in windows:
        assert sum(window.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert window.emotion == max(window.probabilities, key=window.probabilities.get)
        assert window.end - window.start <= model.window_seconds + 1e-6
    scores = result.speakers["customer"].scores
    assert len(scores.negativity_by_quarter) == 4
    assert sum(scores.emotion_shares.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("window_seconds", [None, 2.0])
def test_window_probabilities_equal_predicting_each_window_on_its_own(
    ravdess_dir, model, tmp_path, window_seconds
):
    # One long stretch of real speech (pauses bridged), so windows overlap: the analyser
    # computes their features from one shared spectrogram, predict() window by window.
    speech = np.concatenate(
        [
            ravdess_clip(ravdess_dir, 3, code)
            for code in ("05-02-01-01", "01-01-02-01", "04-02-01-02")
        ]
    )
    path = write_audio(tmp_path / "call.flac", np.stack([speech, np.zeros_like(speech)]))
    options = AnalysisOptions(
        smoothing_windows=1,
        keep_raw_probabilities=True,
        vad={"max_gap_seconds": 2.0},
        window_seconds=window_seconds,
    )
    length = round((window_seconds or model.window_seconds) * SAMPLE_RATE)
    windows = analyze_call(path, options, model=model).speakers["customer"].windows
    assert len(windows) >= 5 and windows[1].start < windows[0].end  # overlapping
    customer = load_audio(path).samples[0]
    alone = model.predict(
        np.stack(
            [
                pad_centered(
                    customer[round(w.start * SAMPLE_RATE) : round(w.end * SAMPLE_RATE)],
                    length,
                )
                for w in windows
            ]
        )
    )
    fast = np.array([[w.raw_probabilities[label] for label in model.labels] for w in windows])
    np.testing.assert_allclose(fast, alone, atol=1e-5)


def test_smoothing_averages_windows_of_one_turn_only(ravdess_dir, model, tmp_path):
    # Two customer turns, each several windows long, 4 s apart: the default centred
    # average over 3 windows never mixes the two turns, and a turn's first and last
    # windows are averaged with the one neighbour they have.
    codes = ("05-02-01-01", "01-01-02-01", "04-02-01-02")
    pause = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    turn = np.concatenate(
        [part for code in codes for part in (trimmed(ravdess_clip(ravdess_dir, 3, code)), pause)]
    )
    customer = np.concatenate([turn, np.zeros(4 * SAMPLE_RATE, np.float32), turn])
    path = write_audio(tmp_path / "turns.flac", np.stack([customer, np.zeros_like(customer)]))
    options = AnalysisOptions(smoothing_windows=3, keep_raw_probabilities=True)
    result = analyze_call(path, options, model=model)
    speech, windows = result.speakers["customer"].speech, result.speakers["customer"].windows
    assert len(speech) == 2
    in_turns = [[w for w in windows if s.start <= w.start < s.end] for s in speech]
    assert sum(len(inside) for inside in in_turns) == len(windows)
    for inside in in_turns:
        assert len(inside) >= 3
        raw = np.array([[w.raw_probabilities[label] for label in model.labels] for w in inside])
        for index, window in enumerate(inside):
            expected = raw[max(0, index - 1) : index + 2].mean(axis=0)
            smoothed = [window.probabilities[label] for label in model.labels]
            np.testing.assert_allclose(smoothed, expected, atol=2e-6)


def test_too_short_call_is_refused_with_its_length(model, tmp_path):
    path = write_audio(tmp_path / "blip.wav", np.zeros((2, SAMPLE_RATE // 5), np.float32))
    with pytest.raises(AnalysisError, match=r"blip\.wav.*0\.20 s"):
        analyze_call(path, model=model)


def test_six_channel_file_needs_a_channel_mapping(model, tmp_path):
    path = write_audio(tmp_path / "six.wav", np.zeros((6, 2 * SAMPLE_RATE), np.float32))
    with pytest.raises(AnalysisError, match="6 channels"):
        analyze_call(path, model=model)
    result = analyze_call(path, AnalysisOptions(channels={"customer": 4, "agent": 5}), model=model)
    assert result.channels == {"customer": 4, "agent": 5}


def test_missing_channel_and_corrupt_file_give_clear_errors(call, model, tmp_path):
    with pytest.raises(AnalysisError, match="no channel for customer=3"):
        analyze_call(call[0], AnalysisOptions(channels={"customer": 3}), model=model)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(call[0].read_bytes()[:2000])
    with pytest.raises(CallmoodError, match="corrupt.flac"):
        analyze_call(corrupt, model=model)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(CallmoodError, match="garbage.wav"):
        analyze_call(garbage, model=model)


def test_invalid_options_are_clear_errors():
    with pytest.raises(AnalysisError, match="hop_seconds"):
        AnalysisOptions(hop_seconds=-1)
    with pytest.raises(AnalysisError, match="customer"):
        AnalysisOptions(channels={"agent": 1})
    with pytest.raises(AnalysisError, match="different channels"):
        AnalysisOptions(channels={"customer": 0, "agent": 0})
    with pytest.raises(AnalysisError, match="odd"):
        AnalysisOptions(smoothing_windows=4)


def test_result_json_round_trips_and_the_published_schema_is_current(call, model):
    result = analyze_call(call[0], model=model)
    assert CallResult.model_validate_json(result.model_dump_json()) == result
    published = json.loads((REPO_ROOT / "docs" / "call_result.schema.json").read_text())
    assert published == json.loads(json.dumps(call_result_json_schema()))
