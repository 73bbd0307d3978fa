"""The streaming analyser: same results as the file path, early events, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_fixtures import (
    build_two_party_call,
    make_random_package,
    ravdess_clip,
    trimmed,
    write_audio,
)

from callmood.alerts import RuleSet, evaluate_rules
from callmood.analysis import AnalysisError, AnalysisOptions, StreamingAnalyzer, analyze_call
from callmood.audio import SAMPLE_RATE
from callmood.inference import EmotionModel
from callmood.segment import FRAME_SECONDS


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return EmotionModel.load(make_random_package(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def call(ravdess_dir, tmp_path_factory):
    samples, _ = build_two_party_call(ravdess_dir, turns=10, pause_seconds=2.5)
    return write_audio(tmp_path_factory.mktemp("call") / "call.flac", samples), samples


def rules_that_fire(model, call_path):
    """Rules of every kind, tuned to the random model's dominant emotion on this call."""
    probe = analyze_call(call_path, model=model)
    emotion = probe.speakers["customer"].scores.dominant_emotion
    peak = probe.speakers["customer"].scores.peak_dbfs
    return RuleSet.from_dict(
        {
            "rules": [
                {"name": "sustained", "kind": "sustained", "emotion": emotion,
                 "threshold": 0.3, "min_seconds": 2, "cooldown_seconds": 0},
                {"name": "frequent", "kind": "frequency", "emotion": emotion,
                 "threshold": 0.3, "min_windows": 2, "within_seconds": 30, "cooldown_seconds": 0},
                {"name": "shift", "kind": "shift", "rise": 0.01, "part_seconds": 5,
                 "min_windows": 1, "cooldown_seconds": 0},
                {"name": "loud", "kind": "loudness", "peak_dbfs": peak - 6, "cooldown_seconds": 0},
                {"name": "gap", "kind": "silence", "speaker": "any", "min_seconds": 2,
                 "cooldown_seconds": 0},
                {"name": "customer_quiet", "kind": "silence", "speaker": "customer",
                 "min_seconds": 3, "cooldown_seconds": 5},
            ]
        }
    )  # fmt: skip


def same_windows(first, second):
    # Batches of different sizes change float rounding in the network's last digits.
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert (a.speaker, a.start, a.end, a.emotion) == (b.speaker, b.start, b.end, b.emotion)
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
    return True


def stream(samples, model, rules, chunk_sizes):
    analyzer = StreamingAnalyzer(AnalysisOptions(), model, rules)
    feed_events, position = [], 0
    for size in chunk_sizes:
        if position >= samples.shape[1]:
            break
        chunk = samples[:, position : position + size]
        feed_events += analyzer.feed({"customer": chunk[0], "agent": chunk[1]})
        position += size
    close_events = analyzer.close()
    return analyzer, feed_events, close_events


def test_stream_in_random_chunks_gives_the_same_windows_and_alerts_as_the_file(call, model):
    path, samples = call
    rules = rules_that_fire(model, path)
    whole = analyze_call(path, model=model, rules=rules)
    assert {a.kind for a in whole.alerts} >= {"sustained", "frequency", "loudness", "silence"}

    rng = np.random.default_rng(7)
    for sizes in (rng.integers(1, 20_000, size=10_000), rng.integers(100, 800, size=100_000)):
        analyzer, _, _ = stream(samples, model, rules, sizes)
        streamed = analyzer.result()
        assert [a.model_dump() for a in streamed.alerts] == [a.model_dump() for a in whole.alerts]
        assert same_windows(streamed.windows(), whole.windows())
        assert streamed.speakers["agent"].speech == whole.speakers["agent"].speech
    # Re-evaluating the finished result with the rules gives the same alerts again.
    assert evaluate_rules(whole, rules) == whole.alerts


def test_stream_emits_windows_and_alert_openings_before_the_call_ends(call, model):
    path, samples = call
    rules = rules_that_fire(model, path)
    analyzer, feed_events, close_events = stream(samples, model, rules, [SAMPLE_RATE // 2] * 10_000)
    during = [e.event for e in feed_events]
    assert "window" in during and "alert_open" in during
    opened, closed = {}, {}
    for order, event in enumerate(feed_events + close_events):
        if event.event == "alert_open":
            opened[event.alert.id] = order
            assert event.alert.closed_at is None
        elif event.event == "alert_close":
            closed[event.alert.id] = order
    assert opened.keys() == closed.keys() == {a.id for a in analyzer.result().alerts}
    assert all(opened[i] < closed[i] for i in opened)


def test_a_window_is_emitted_as_soon_as_its_audio_is_in(ravdess_dir, model):
    # Live speech as a caller would send it: sentences with short pauses, then a
    # longer pause, in 100 ms chunks; no smoothing, so nothing waits for later windows.
    codes = ["05-02-01-01", "01-01-02-01", "04-02-01-02", "03-01-02-01", "05-01-01-02"]
    sentences = [trimmed(ravdess_clip(ravdess_dir, 4, code)) for code in codes]
    pause = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    speech = np.concatenate([part for sentence in sentences for part in (sentence, pause)])
    audio = np.concatenate([speech, np.zeros(2 * SAMPLE_RATE, np.float32), sentences[0]])
    analyzer = StreamingAnalyzer(AnalysisOptions(smoothing_windows=1), model, RuleSet())
    chunk, silent = SAMPLE_RATE // 10, np.zeros(SAMPLE_RATE // 10, np.float32)
    delays = []
    for first in range(0, len(audio), chunk):
        piece = audio[first : first + chunk]
        for event in analyzer.feed({"customer": piece, "agent": silent[: len(piece)]}):
            if event.event == "window":
                delays.append((event.window, (first + len(piece)) / SAMPLE_RATE - event.window.end))
    full = [delay for window, delay in delays if window.end - window.start >= 3.0]
    assert len(full) >= 5
    # Determined by the chunk that completes the 30 ms frame holding the window's end
    # (also at the end of the speech: the window may reach into the pause instead of
    # waiting for the pause to prove the speech over).
    assert max(full) < 0.1 + FRAME_SECONDS
    # A sentence shorter than a window is one window, once its end is certain: after
    # the pause that ends the stretch (max_gap_seconds, 0.5 s).
    short = [delay for window, delay in delays if window.end - window.start < 3.0]
    assert all(delay < 0.5 + 0.1 + FRAME_SECONDS for delay in short)


def test_a_turns_last_window_is_emitted_when_the_turn_ends(ravdess_dir, model):
    # With smoothing 3 a window waits for the speaker's next window, but only within
    # its turn: the turn's last window goes out once the VAD has heard the turn end
    # (max_gap_seconds of non-speech), not when the speaker's next turn starts.
    codes = ["05-02-01-01", "01-01-02-01", "04-02-01-02"]
    sentences = [trimmed(ravdess_clip(ravdess_dir, 4, code)) for code in codes]
    pause = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    turn = np.concatenate([part for sentence in sentences for part in (sentence, pause)])
    audio = np.concatenate([turn, np.zeros(8 * SAMPLE_RATE, np.float32), turn])
    options = AnalysisOptions(smoothing_windows=3)
    analyzer = StreamingAnalyzer(options, model, RuleSet())
    chunk, silent = SAMPLE_RATE // 10, np.zeros(SAMPLE_RATE // 10, np.float32)
    emitted = []  # (window, seconds of audio fed when it arrived)
    for first in range(0, len(audio), chunk):
        piece = audio[first : first + chunk]
        for event in analyzer.feed({"customer": piece, "agent": silent[: len(piece)]}):
            if event.event == "window":
                emitted.append((event.window, (first + len(piece)) / SAMPLE_RATE))
    analyzer.close()
    first_turn, second_turn = analyzer.result().speakers["customer"].speech
    in_first = [(window, at) for window, at in emitted if window.start < first_turn.end]
    assert len(in_first) >= 3  # the turn has windows before its last one to smooth with
    last, arrived = max(in_first, key=lambda item: item[0].start)
    assert last.end >= first_turn.end - 1.0  # really the turn's last window
    assert arrived - first_turn.end < options.vad.max_gap_seconds + 0.1 + FRAME_SECONDS
    assert arrived < second_turn.start - 5


def test_stream_memory_stays_bounded_by_the_window(call, model):
    _, samples = call
    long_call = np.tile(samples, 4)  # several minutes
    # Pauses up to 15 s are bridged, so both speakers' speech runs on for minutes.
    options = AnalysisOptions(vad={"max_gap_seconds": 15.0}, analyze_agent=False)
    analyzer = StreamingAnalyzer(options, model, RuleSet())
    chunk = 4000
    largest = 0
    for position in range(0, long_call.shape[1], chunk):
        piece = long_call[:, position : position + chunk]
        analyzer.feed({"customer": piece[0], "agent": piece[1]})
        largest = max(largest, *(len(c.buffer) for c in analyzer.channels.values()))
    analyzer.close()
    longest_stretch = max(s.end - s.start for s in analyzer.result().speakers["agent"].speech)
    assert longest_stretch > 60
    limit = (3.0 + 15.0 + 1.0) * SAMPLE_RATE + chunk
    assert largest <= limit


def test_feed_rejects_chunks_that_do_not_fit_the_call(model):
    analyzer = StreamingAnalyzer(AnalysisOptions(), model, RuleSet())
    one_second = np.zeros(SAMPLE_RATE, np.float32)
    with pytest.raises(AnalysisError, match="exactly"):
        analyzer.feed({"customer": one_second})
    with pytest.raises(AnalysisError, match="equally long"):
        analyzer.feed({"customer": one_second, "agent": one_second[:100]})
    with pytest.raises(AnalysisError, match="NaN"):
        analyzer.feed({"customer": one_second * np.nan, "agent": one_second})
    with pytest.raises(AnalysisError, match="1-D float"):
        analyzer.feed({"customer": np.zeros((2, 10)), "agent": np.zeros((2, 10))})
    analyzer.close()
    with pytest.raises(AnalysisError, match="closed"):
        analyzer.feed({"customer": one_second, "agent": one_second})
