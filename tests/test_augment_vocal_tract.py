"""Vocal-tract-length perturbation (VTLP): the mel filterbank of a warped frequency axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import emodb_clips

from callmood.audio import load_audio
from callmood.features import FeatureConfig, FeatureExtractor, mel_filterbank, vtlp_warp
from callmood.training.augment import WaveformAugmenter
from callmood.training.config import AugmentationConfig, TrainingConfigError, parse_training_config
from callmood.training.loop import _BatchMaker

LOGMEL = FeatureConfig(kind="logmel", n_mels=64)
# Every other augmentation off, so that only the warp can change a batch.
ONLY_AUDIO = {
    "waveform_fraction": 1.0,
    "noise": {"probability": 0.0},
    "gain": {"probability": 0.0},
    "speed": {"probability": 0.0},
    "spec_augment": {"probability": 0.0},
}


@pytest.fixture(scope="module")
def speech(emodb_dir):
    return load_audio(emodb_dir / "wav" / "03a01Fa.flac").samples[0]


def training_config(emodb_dir, **augmentation):
    return parse_training_config(
        {
            "corpora": [{"name": "emodb", "path": str(emodb_dir)}],
            "label_set": "emodb7",
            "classes": ["neutral", "angry"],
            "crop_seconds": 1.5,
            "augmentation": {**ONLY_AUDIO, **augmentation},
        }
    )


@pytest.fixture(scope="module")
def clips(emodb_dir):
    """Speaker 03's angry and neutral clips with their audio."""
    config = training_config(emodb_dir)
    return emodb_clips(emodb_dir, config, speakers={"emodb:03"}, keep_waveforms=True)


def mel_centroid_hz(waveform: np.ndarray, warp: float) -> float:
    """Power-weighted mean centre frequency of the mel bands over the whole clip, Hz."""
    log_mel = FeatureExtractor(LOGMEL)(torch.from_numpy(waveform)[None], warps=[warp])[0]
    power = (10 ** (log_mel.double() / 10)).sum(1).numpy()  # (n_mels,)
    filterbank = mel_filterbank(LOGMEL)
    frequencies = np.fft.rfftfreq(LOGMEL.n_fft, 1 / LOGMEL.sample_rate)
    centres = frequencies[filterbank.argmax(1)]
    return float((power * centres).sum() / power.sum())


def test_the_warp_is_alpha_times_f_up_to_the_boundary_then_straight_to_nyquist():
    frequencies = np.linspace(0, 8000, 8001)
    for alpha in (0.8, 0.9, 1.1, 1.2):
        warped = vtlp_warp(frequencies, alpha, 8000.0)
        boundary = 4800 * min(alpha, 1) / alpha
        low = frequencies <= boundary
        assert np.allclose(warped[low], alpha * frequencies[low])
        assert warped[0] == 0 and warped[-1] == pytest.approx(8000)
        assert np.all(np.diff(warped) > 0)  # monotonic: no band is folded onto another
        # Continuous at the boundary: no step larger than the steeper slope (1 Hz apart).
        upper_slope = (8000 - alpha * boundary) / (8000 - boundary)
        assert np.diff(warped).max() <= max(alpha, upper_slope) + 1e-9


def test_alpha_one_leaves_features_unchanged(speech):
    waveform = torch.from_numpy(speech)[None]
    extractor = FeatureExtractor(FeatureConfig())
    assert torch.equal(extractor(waveform, warps=[1.0]), extractor(waveform))
    assert np.array_equal(mel_filterbank(LOGMEL, 1.0), mel_filterbank(LOGMEL))


def test_alpha_above_one_moves_the_spectrum_up_and_below_one_down(speech):
    clean = mel_centroid_hz(speech, 1.0)
    assert mel_centroid_hz(speech, 1.1) > clean * 1.03
    assert mel_centroid_hz(speech, 0.9) < clean * 0.97
    # More warp, further.
    assert mel_centroid_hz(speech, 1.2) > mel_centroid_hz(speech, 1.1)


def test_the_first_formant_peak_follows_the_warp(speech):
    # The loudest band between 400 Hz and 2 kHz (above the voice's own pitch: the first
    # formant, about 625 Hz here) moves by about the factor.
    extractor = FeatureExtractor(LOGMEL)
    waveform = torch.from_numpy(speech)[None]
    centres = mel_filterbank(LOGMEL).argmax(1) * LOGMEL.sample_rate / LOGMEL.n_fft
    formant_region = (centres > 400) & (centres < 2000)
    peaks = {}
    for warp in (0.9, 1.0, 1.1):
        power = (10 ** (extractor(waveform, warps=[warp])[0].double() / 10)).sum(1).numpy()
        peaks[warp] = centres[np.argmax(power * formant_region)]
    assert peaks[0.9] < peaks[1.0] < peaks[1.1]
    assert peaks[1.1] / peaks[1.0] == pytest.approx(1.1, abs=0.07)
    assert peaks[0.9] / peaks[1.0] == pytest.approx(0.9, abs=0.07)


def test_a_flat_spectrum_stays_flat():
    # The warp resamples the spectrum: white noise keeps its level in every band.
    noise = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.1
    extractor = FeatureExtractor(FeatureConfig(kind="logmel", top_db=None))
    clean, warped = (
        extractor(torch.from_numpy(noise)[None], warps=[warp])[0].mean(1) for warp in (1.0, 1.15)
    )
    inner = slice(2, -2)  # the lowest bands hold only a few FFT bins each
    assert (warped - clean)[inner].abs().max() < 1.0  # dB


def test_warps_must_match_the_batch(speech):
    from callmood.features import FeatureError

    with pytest.raises(FeatureError, match="one entry per clip"):
        FeatureExtractor()(torch.from_numpy(speech)[None], warps=[1.0, 1.1])


def test_vocal_tract_off_draws_no_random_numbers():
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    assert WaveformAugmenter(AugmentationConfig()).warp_factor(rng) == 1.0
    assert rng.bit_generator.state == before


def test_alpha_one_in_training_gives_the_clean_batch(emodb_dir, clips):
    plain = training_config(emodb_dir)
    identity = training_config(emodb_dir, vocal_tract={"probability": 1.0, "alpha": [1.0, 1.0]})
    one_clip = np.array([0])  # one clip: the warp's own draws come after its crop
    batches = [
        _BatchMaker(config, clips, np.arange(len(clips)))(one_clip, np.random.default_rng(4))
        for config in (plain, identity)
    ]
    assert torch.equal(*batches)


def test_same_seed_same_warped_batch(emodb_dir, clips):
    warped = training_config(emodb_dir, vocal_tract={"probability": 0.5, "alpha": [0.9, 1.1]})
    plain = training_config(emodb_dir)
    batch = np.arange(len(clips))

    def make(config, seed):
        return _BatchMaker(config, clips, batch)(batch, np.random.default_rng(seed))

    assert torch.equal(make(warped, 7), make(warped, 7))
    assert not torch.equal(make(warped, 7), make(plain, 7))
    assert not torch.equal(make(warped, 7), make(warped, 8))


@pytest.mark.parametrize(
    ("vocal_tract", "field", "problem"),
    [
        ({"probability": 1.5}, "augmentation.vocal_tract.probability", "less than or equal to 1"),
        ({"probability": -0.1}, "augmentation.vocal_tract.probability", "greater than or equal"),
        ({"alpha": [1.1, 0.9]}, "augmentation.vocal_tract.alpha", "0 < low <= high"),
        ({"alpha": [0, 1.1]}, "augmentation.vocal_tract.alpha", "0 < low <= high"),
        ({"alpha": [-1, 1]}, "augmentation.vocal_tract.alpha", "0 < low <= high"),
        ({"alpha": [0.5, 1.0]}, "augmentation.vocal_tract.alpha", r"within \[0.7, 1.3\]"),
        ({"alpha": [1.0, 2.0]}, "augmentation.vocal_tract.alpha", r"within \[0.7, 1.3\]"),
        ({"alpha": [1.0]}, "augmentation.vocal_tract.alpha", ""),
        ({"alpah": [0.9, 1.1]}, "augmentation.vocal_tract.alpah", ""),
    ],
)
def test_bad_vocal_tract_settings_are_config_errors_naming_the_field(
    emodb_dir, vocal_tract, field, problem
):
    with pytest.raises(TrainingConfigError, match=rf"{field}.*{problem}"):
        training_config(emodb_dir, vocal_tract=vocal_tract)
