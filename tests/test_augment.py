"""Channel augmentation of training audio: equalizer, room reverberation, lossy codecs."""

from __future__ import annotations

import numpy as np
import pytest

from callmood.audio import SAMPLE_RATE, load_audio
from callmood.training.augment import WaveformAugmenter, equalize, lossy_codec, reverberate
from callmood.training.config import AugmentationConfig


@pytest.fixture(scope="module")
def speech(emodb_dir):
    return load_audio(emodb_dir / "wav" / "03a01Fa.flac").samples[0]


def band_power(waveform, low_hz, high_hz):
    spectrum = np.abs(np.fft.rfft(waveform)) ** 2
    frequencies = np.fft.rfftfreq(len(waveform), 1 / SAMPLE_RATE)
    return spectrum[(frequencies >= low_hz) & (frequencies < high_hz)].sum()


def rms(waveform):
    return float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))


def test_equalizer_cuts_outside_its_band_and_keeps_the_level(speech):
    narrow = equalize(speech, low_hz=400, high_hz=3000, peak_hz=1000, peak_db=0)
    assert narrow.shape == speech.shape and narrow.dtype == np.float32
    # Share of the energy above 5 kHz falls by far more than 10 dB.
    before = band_power(speech, 5000, 8000) / band_power(speech, 0, 8000)
    after = band_power(narrow, 5000, 8000) / band_power(narrow, 0, 8000)
    assert after < before / 10
    assert rms(narrow) == pytest.approx(rms(speech), rel=0.02)


def test_reverberation_rings_on_after_the_speech_stops():
    burst = np.zeros(SAMPLE_RATE, dtype=np.float32)
    burst[:1600] = np.random.default_rng(0).uniform(-0.5, 0.5, 1600)
    wet = reverberate(burst, rt60_seconds=0.6, rng=np.random.default_rng(1))
    tail = slice(3200, 8000)  # 0.1-0.4 s after the burst ended
    assert rms(burst[tail]) == 0
    assert rms(wet[tail]) > 0.01 * rms(wet)
    assert rms(wet) == pytest.approx(rms(burst), rel=0.02)


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_lossy_codecs_round_trip_through_ffmpeg(speech, codec):
    coded = lossy_codec(speech, codec, bitrate_kbps=16)
    assert coded.shape == speech.shape and np.isfinite(coded).all()
    assert not np.array_equal(coded, speech)
    # The speech survives: its spectrum below 3 kHz is close to the original's.
    assert band_power(coded, 100, 3000) == pytest.approx(band_power(speech, 100, 3000), rel=0.35)


def test_every_channel_augmentation_together_gives_usable_audio(speech):
    config = AugmentationConfig(
        waveform_fraction=1.0,
        noise={"probability": 1.0, "snr_db": (10, 20)},
        equalizer={"probability": 1.0},
        reverb={"probability": 1.0},
        codec={"probability": 1.0},
        telephone={"probability": 1.0},
    )
    augmenter = WaveformAugmenter(config)
    rng = np.random.default_rng(2)
    for _ in range(3):
        out = augmenter(speech, rng)
        assert out.shape == speech.shape and np.isfinite(out).all()
        assert np.abs(out).max() <= 1.0
        assert not np.allclose(out, speech)
