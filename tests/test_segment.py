"""Voice-activity detection and windowing over speech."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_fixtures import ravdess_clip, trimmed

from callmood.audio import SAMPLE_RATE
from callmood.segment import (
    FRAME_SAMPLES,
    SegmentError,
    SpeechWindower,
    VadOptions,
    VoiceActivityDetector,
    speech_segments,
)


def silence(seconds):
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


@pytest.fixture(scope="module")
def clip(ravdess_dir):
    """A RAVDESS clip trimmed to its speech (the clip's own silences cut off)."""
    return trimmed(ravdess_clip(ravdess_dir, 5, "01-01-01-01"))


@pytest.mark.parametrize("method", ["webrtc", "energy"])
def test_speech_is_found_where_it_was_placed(clip, method):
    audio = np.concatenate([silence(2.0), clip, silence(3.0), clip, silence(1.0)])
    found = speech_segments(audio, options=VadOptions(method=method))
    length = len(clip) / SAMPLE_RATE
    expected = [(2.0, 2.0 + length), (5.0 + length, 5.0 + 2 * length)]
    assert len(found) == 2
    for (start, end), (true_start, true_end) in zip(found, expected, strict=True):
        assert start == pytest.approx(true_start, abs=0.3)
        assert end == pytest.approx(true_end, abs=0.3)


def test_silence_noise_and_hum_are_not_speech():
    rng = np.random.default_rng(0)
    seconds = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    assert speech_segments(silence(10)) == []
    assert speech_segments(rng.normal(0, 0.05, seconds.size).astype(np.float32)) == []
    hum = 0.3 * np.sin(2 * np.pi * 50 * seconds) + rng.normal(0, 0.002, seconds.size)
    assert speech_segments(hum.astype(np.float32)) == []
    assert speech_segments(rng.normal(0, 0.002, seconds.size).astype(np.float32)) == []


def test_short_pauses_are_bridged_and_long_ones_split(clip):
    bridged = np.concatenate([silence(1), clip, silence(0.2), clip, silence(1)])
    assert len(speech_segments(bridged)) == 1
    split = np.concatenate([silence(1), clip, silence(1.5), clip, silence(1)])
    assert len(speech_segments(split)) == 2


def test_bursts_shorter_than_the_minimum_are_dropped(clip):
    burst = clip[: int(0.12 * SAMPLE_RATE)]
    audio = np.concatenate([silence(1), burst, silence(2)])
    assert speech_segments(audio, options=VadOptions(min_speech_seconds=0.3)) == []


def test_pushing_any_chunk_sizes_gives_the_same_stretches(clip):
    audio = np.concatenate([silence(0.7), clip, silence(0.9), clip, silence(2), clip])
    whole = speech_segments(audio)
    rng = np.random.default_rng(3)
    detector = VoiceActivityDetector()
    found, position = [], 0
    while position < len(audio):
        size = int(rng.integers(1, 5000))
        found += detector.push(audio[position : position + size])
        position += size
    found += detector.flush()
    assert [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in found] == whole


def test_labelling_ahead_on_another_thread_gives_the_same_stretches(clip):
    # analyze_call labels each block on its decode thread while the analysis thread
    # tracks the labels of the block before: both halves of push(), run apart.
    import queue
    import threading

    audio = np.concatenate([silence(0.7), clip, silence(0.9), clip, silence(2), clip])
    whole = speech_segments(audio)
    detector = VoiceActivityDetector()
    labelled: queue.Queue = queue.Queue(maxsize=1)

    def label() -> None:
        for position in range(0, len(audio), 7000):
            labelled.put(detector.label(audio[position : position + 7000]))
        labelled.put(None)

    thread = threading.Thread(target=label)
    thread.start()
    found = []
    while (labels := labelled.get()) is not None:
        found += detector.track(labels)
    thread.join()
    found += detector.flush()
    assert [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in found] == whole


def test_frames_are_labelled_as_soon_as_they_are_pushed(clip):
    # No lookahead: the speech heard so far is known at once, exactly as it is labelled
    # once the silence after it has been heard too.
    audio = np.concatenate([silence(1), clip])
    live = VoiceActivityDetector()
    assert live.push(audio) == []
    assert live.labelled_samples == len(audio) // FRAME_SAMPLES * FRAME_SAMPLES
    later = VoiceActivityDetector()
    (stretch,) = later.push(np.concatenate([audio, silence(2)])) + later.flush()
    assert live.open_stretch == stretch


def test_windows_may_run_into_the_pause_after_a_stretch_instead_of_a_tail():
    start, end = 0, int(5.7 * SAMPLE_RATE)
    plain = SpeechWindower(3.0, 1.0).finish(start, end)
    assert [(w.start_seconds, w.end_seconds) for w in plain] == [
        (0, 3), (1, 4), (2, 5), (2.7, 5.7)
    ]  # fmt: skip
    reaching = SpeechWindower(3.0, 1.0).finish(start, end, reach=end + int(0.45 * SAMPLE_RATE))
    assert [(w.start_seconds, w.end_seconds) for w in reaching] == [
        (0, 3), (1, 4), (2, 5), (3, 6)
    ]  # fmt: skip


def test_windows_cover_a_long_stretch_with_hops_and_a_tail():
    windower = SpeechWindower(window_seconds=3.0, hop_seconds=1.0)
    start, end = 2 * SAMPLE_RATE, int(12.6 * SAMPLE_RATE)
    windows = windower.finish(start, end)
    starts = [w.start_seconds for w in windows]
    assert starts[:8] == pytest.approx([2, 3, 4, 5, 6, 7, 8, 9])
    assert windows[-1].end == end  # the 0.6 s tail gets a window aligned to the end
    assert all(w.end - w.start == 3 * SAMPLE_RATE for w in windows)
    assert all(start <= w.start and w.end <= end for w in windows)


def test_a_stretch_shorter_than_the_window_gets_one_window():
    windower = SpeechWindower(window_seconds=3.0, hop_seconds=1.0)
    (window,) = windower.finish(SAMPLE_RATE, int(2.2 * SAMPLE_RATE))
    assert (window.start_seconds, window.end_seconds) == (1.0, 2.2)


def test_growing_stretch_gives_the_same_windows_as_the_finished_one():
    whole = SpeechWindower(3.0, 1.0).finish(0, 10 * SAMPLE_RATE)
    growing = SpeechWindower(3.0, 1.0)
    windows = []
    for end in range(SAMPLE_RATE, 10 * SAMPLE_RATE, 777):
        windows += growing.grow(0, end)
    windows += growing.finish(0, 10 * SAMPLE_RATE)
    assert windows == whole


def test_invalid_settings_are_clear_errors():
    with pytest.raises(SegmentError, match="aggressiveness"):
        VadOptions(aggressiveness=7)
    with pytest.raises(SegmentError, match="method"):
        VadOptions(method="magic")
    with pytest.raises(SegmentError, match="hop_seconds"):
        SpeechWindower(window_seconds=1.0, hop_seconds=2.0)
    with pytest.raises(SegmentError, match="16000 Hz"):
        speech_segments(silence(1), sample_rate=8000)
    with pytest.raises(SegmentError, match="mono"):
        speech_segments(np.zeros((2, 100), np.float32))


def test_webrtc_verdicts_are_the_same_through_the_public_wrapper(clip):
    # The detector calls webrtcvad's C function directly for speed; a webrtcvad
    # without that private entry point gets Vad.is_speech, which must hear the same.
    audio = np.concatenate([silence(0.7), clip, silence(0.9), clip])
    fast, public = VoiceActivityDetector(), VoiceActivityDetector()
    public._is_speech = public._vad_is_speech
    found = fast.push(audio) + fast.flush()
    assert found and public.push(audio) + public.flush() == found
