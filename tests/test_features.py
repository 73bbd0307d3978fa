"""Features: our torch MFCC / log-mel against librosa's own numbers on real clips, and the cache."""

from __future__ import annotations

import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from callmood.errors import CallmoodError
from callmood.feature_cache import FeatureCache
from callmood.features import (
    FeatureConfig,
    FeatureError,
    FeatureExtractor,
    log_mel,
    mfcc,
    seconds_to_frames,
)

librosa = pytest.importorskip("librosa")

# Tolerances against librosa (float32 FFTs on both sides): log-mel values in dB, MFCCs as the
# largest absolute difference and as the error norm relative to the librosa matrix's norm.
LOG_MEL_TOLERANCE_DB = 5e-3
MFCC_TOLERANCE = 5e-3
MFCC_RELATIVE_TOLERANCE = 1e-5


def _clips(ravdess_dir: Path, emodb_dir: Path) -> list[Path]:
    ravdess = sorted(ravdess_dir.glob("Actor_0[12]/*.flac"))[::23][:3]
    emodb = sorted((emodb_dir / "wav").glob("*.flac"))[::97][:3]
    assert len(ravdess) == 3 and len(emodb) == 3
    return ravdess + emodb


def _read(path: Path) -> np.ndarray:
    samples, sample_rate = soundfile.read(path, dtype="float32")
    assert sample_rate == 16000
    return samples


def _librosa_kwargs(config: FeatureConfig) -> dict:
    return dict(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        win_length=config.win_length,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        center=config.center,
    )


def test_log_mel_matches_librosa_on_real_clips(ravdess_dir, emodb_dir):
    config = FeatureConfig(kind="logmel")
    for path in _clips(ravdess_dir, emodb_dir):
        audio = _read(path)
        ours = log_mel(audio)
        power = librosa.feature.melspectrogram(y=audio, **_librosa_kwargs(config))
        expected = librosa.power_to_db(power, top_db=80.0)
        assert ours.shape == expected.shape, path.name
        assert np.abs(ours - expected).max() < LOG_MEL_TOLERANCE_DB, path.name


def test_mfcc_matches_librosa_on_real_clips(ravdess_dir, emodb_dir):
    config = FeatureConfig()
    for path in _clips(ravdess_dir, emodb_dir):
        audio = _read(path)
        ours = mfcc(audio)
        expected = librosa.feature.mfcc(y=audio, n_mfcc=40, **_librosa_kwargs(config))
        assert ours.shape == expected.shape == (40, 1 + len(audio) // 160), path.name
        assert np.abs(ours - expected).max() < MFCC_TOLERANCE, path.name
        relative = np.linalg.norm(ours - expected) / np.linalg.norm(expected)
        assert relative < MFCC_RELATIVE_TOLERANCE, path.name


def test_non_default_parameters_still_match_librosa(ravdess_dir, emodb_dir):
    audio = _read(_clips(ravdess_dir, emodb_dir)[0])
    config = FeatureConfig(
        kind="logmel", n_fft=1024, win_seconds=0.05, hop_seconds=0.0125, n_mels=80, fmin=0.0,
        fmax=7600.0, center=False, top_db=None,
    )  # fmt: skip
    ours = log_mel(
        audio, n_fft=1024, win_seconds=0.05, hop_seconds=0.0125, n_mels=80, fmin=0.0, fmax=7600.0,
        center=False, top_db=None,
    )  # fmt: skip
    power = librosa.feature.melspectrogram(y=audio, **_librosa_kwargs(config))
    expected = librosa.power_to_db(power, top_db=None)
    assert ours.shape == expected.shape
    # Without the 80 dB floor, near-silent bins reach -100 dB where float32 noise is larger.
    loud = expected > expected.max() - 80
    assert np.abs(ours - expected)[loud].max() < LOG_MEL_TOLERANCE_DB


@pytest.mark.parametrize("n_mels", [1, 7, 128])
def test_any_number_of_mel_bands_matches_librosa(ravdess_dir, emodb_dir, n_mels):
    # 128 bands at n_fft=512 leave some low filters empty: librosa warns, both give the floor.
    audio = _read(_clips(ravdess_dir, emodb_dir)[3])
    config = FeatureConfig(kind="logmel", n_mels=n_mels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        power = librosa.feature.melspectrogram(y=audio, **_librosa_kwargs(config))
    expected = librosa.power_to_db(power, top_db=80.0)
    assert np.abs(log_mel(audio, n_mels=n_mels) - expected).max() < LOG_MEL_TOLERANCE_DB


def test_padded_batch_gives_each_clip_its_own_features(ravdess_dir, emodb_dir):
    clips = [_read(path) for path in _clips(ravdess_dir, emodb_dir)[:4]]
    lengths = [len(clip) for clip in clips]
    batch = np.zeros((len(clips), max(lengths)), dtype=np.float32)
    for row, clip in enumerate(clips):
        batch[row, : len(clip)] = clip
    extractor = FeatureExtractor(FeatureConfig())
    with torch.no_grad():
        batched = extractor(torch.from_numpy(batch), lengths=torch.tensor(lengths))
    assert batched.shape == (4, 40, extractor.frames_for(max(lengths)))
    for row, clip in enumerate(clips):
        alone = mfcc(clip)
        frames = extractor.frames_for(len(clip))
        assert alone.shape[1] == frames
        np.testing.assert_allclose(batched[row, :, :frames].numpy(), alone, atol=1e-3)


def test_batch_of_equal_clips_matches_one_by_one(ravdess_dir, emodb_dir):
    clip = _read(_clips(ravdess_dir, emodb_dir)[0])[:48000]
    batch = np.stack([clip, clip * 0.5, clip[::-1].copy()])
    together = mfcc(batch)
    assert together.shape == (3, 40, 301)
    for row in range(3):
        np.testing.assert_allclose(together[row], mfcc(batch[row]), atol=1e-4)


def test_float64_waveforms_give_the_same_features(ravdess_dir, emodb_dir):
    clip = _read(_clips(ravdess_dir, emodb_dir)[2])
    extractor = FeatureExtractor()
    with torch.no_grad():
        single = extractor(torch.from_numpy(clip)[None])
        double = extractor(torch.from_numpy(clip.astype(np.float64))[None])
    assert torch.equal(single, double)


def test_features_are_deterministic(ravdess_dir, emodb_dir):
    clip = _read(_clips(ravdess_dir, emodb_dir)[1])
    assert np.array_equal(mfcc(clip), mfcc(clip))


def test_frame_count_follows_hop_and_centering():
    config = FeatureConfig()
    assert seconds_to_frames(3.0) == 301  # 1 + 48000 // 160
    assert config.frames_for(159) == 1
    assert FeatureConfig(center=False).frames_for(48000) == 1 + (48000 - 512) // 160
    assert mfcc(np.zeros(16000, dtype=np.float32)).shape == (40, 101)


def test_num_features_depends_on_kind():
    assert FeatureConfig().num_features == 40
    assert FeatureConfig(kind="logmel", n_mels=80).num_features == 80


def test_feature_config_round_trips_through_dict():
    config = FeatureConfig(kind="logmel", n_mels=80, fmax=7600.0, top_db=None)
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert FeatureConfig.from_dict({"n_mfcc": 20}) == FeatureConfig(n_mfcc=20)
    assert config.config_hash() != FeatureConfig().config_hash()
    assert FeatureConfig().config_hash() == FeatureConfig().config_hash()
    assert FeatureConfig(fmin=20).config_hash() == FeatureConfig(fmin=20.0).config_hash()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kind": "spectrogram"}, "kind"),
        ({"n_mfcc": 80}, "n_mfcc"),
        ({"win_seconds": 0.05}, "n_fft"),
        ({"fmax": 9000.0}, "fmax"),
        ({"hop_seconds": 0.0}, "hop_seconds"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"window": "hamming"}, "window"),
        ({"fmin": "low"}, "fmin"),
        ({"top_db": float("nan")}, "top_db"),
    ],
)
def test_invalid_feature_config_is_a_clear_error(values, named):
    with pytest.raises(FeatureError, match=named):
        FeatureConfig.from_dict(values)


@pytest.mark.parametrize(
    ("audio", "problem"),
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
        (np.zeros(1600, dtype=np.int16), "floating point"),
        (np.zeros((2, 2, 1600), dtype=np.float32), "shape"),
        (np.array(["a", "b"]), "floating point"),
    ],
)
def test_garbage_audio_is_a_clear_error(audio, problem):
    with pytest.raises(CallmoodError, match=problem):
        mfcc(audio)


def test_extractor_rejects_wrong_shapes():
    extractor = FeatureExtractor()
    with pytest.raises(FeatureError, match=r"\(batch, samples\)"):
        extractor(torch.zeros(16000))
    with pytest.raises(FeatureError, match="one entry per clip"):
        extractor(torch.zeros(2, 16000), lengths=torch.tensor([16000, 8000, 4000]))


# ------------------------------------------------------------------------------------ cache


@pytest.fixture()
def clip_copy(tmp_path, ravdess_dir, emodb_dir) -> Path:
    source = _clips(ravdess_dir, emodb_dir)[0]
    target = tmp_path / "audio" / source.name
    target.parent.mkdir()
    shutil.copy2(source, target)
    return target


def test_cache_returns_same_features_as_direct_extraction_and_reuses_them(tmp_path, clip_copy):
    cache = FeatureCache(tmp_path / "cache")
    first = cache.get(clip_copy)
    assert (cache.hits, cache.misses) == (0, 1)
    second = FeatureCache(tmp_path / "cache").get(clip_copy)  # a new process would see the same
    again = cache.get(clip_copy)
    assert (cache.hits, cache.misses) == (1, 1)
    assert first.dtype == torch.float32 and first.shape[0] == 40
    assert torch.equal(first, second) and torch.equal(first, again)
    np.testing.assert_allclose(first.numpy(), mfcc(_read(clip_copy)), atol=1e-4)


def test_cache_keeps_configs_apart(tmp_path, clip_copy):
    mfcc_features = FeatureCache(tmp_path / "cache").get(clip_copy)
    log_mel_cache = FeatureCache(tmp_path / "cache", FeatureConfig(kind="logmel"))
    log_mel_features = log_mel_cache.get(clip_copy)
    assert log_mel_cache.misses == 1
    assert mfcc_features.shape[0] == 40 and log_mel_features.shape[0] == 64


def test_cache_recomputes_an_edited_file(tmp_path, clip_copy):
    cache = FeatureCache(tmp_path / "cache")
    before = cache.get(clip_copy)
    audio = _read(clip_copy)
    soundfile.write(clip_copy, audio[: len(audio) // 2], 16000, format="FLAC")
    after = cache.get(clip_copy)
    assert cache.misses == 2
    assert after.shape[1] < before.shape[1]


def test_cache_recomputes_a_damaged_entry(tmp_path, clip_copy):
    cache = FeatureCache(tmp_path / "cache")
    expected = cache.get(clip_copy)
    cache.cache_path(clip_copy).write_bytes(b"\x93NUMPY garbage")
    assert torch.equal(cache.get(clip_copy), expected)
    assert cache.misses == 2
    assert torch.equal(cache.get(clip_copy), expected) and cache.hits == 1


def test_cache_survives_concurrent_writers(tmp_path, clip_copy):
    results: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def fill() -> None:
        try:
            results.append(FeatureCache(tmp_path / "cache").get(clip_copy))
        except BaseException as error:  # noqa: BLE001  (reported by the assert below)
            errors.append(error)

    threads = [threading.Thread(target=fill) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(torch.equal(result, results[0]) for result in results)
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no temporary files left behind
    assert torch.equal(FeatureCache(tmp_path / "cache").get(clip_copy), results[0])


def test_cache_names_a_missing_file(tmp_path):
    with pytest.raises(FeatureError, match="nothing.wav"):
        FeatureCache(tmp_path / "cache").get(tmp_path / "nothing.wav")


def test_cache_rejects_a_file_that_is_not_audio(tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n" * 50)
    with pytest.raises(CallmoodError, match="notes.wav"):
        FeatureCache(tmp_path / "cache").get(bogus)
