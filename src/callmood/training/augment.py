"""On-the-fly training augmentation: noise, gain, speed, equalizer, room reverberation, lossy
codecs, telephone channel, vocal-tract-length perturbation, SpecAugment, mixup.

Waveform augmentations work on one float32 16 kHz clip with a numpy generator;
SpecAugment and mixup work on a torch batch of features. Validation and test
audio is never augmented.
"""

from __future__ import annotations

import numpy as np
import torch

from callmood.audio import TELEPHONE_SAMPLE_RATE, decode_g711, encode_telephone, resample
from callmood.training.config import AugmentationConfig


def add_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white, pink or brown noise at a signal-to-noise ratio of `snr_db` (dB).

    The colour is drawn at random: call-centre noise is rarely white.
    """
    noise = rng.standard_normal(len(waveform)).astype(np.float32)
    colour = rng.integers(3)
    if colour > 0 and len(waveform) > 1:
        # Shape the spectrum by 1/f (pink) or 1/f^2 (brown) power.
        spectrum = np.fft.rfft(noise)
        frequencies = np.arange(len(spectrum), dtype=np.float32)
        frequencies[0] = 1.0
        spectrum /= frequencies ** (0.5 * colour)
        noise = np.fft.irfft(spectrum, n=len(waveform)).astype(np.float32)
    signal_power = float(np.mean(waveform**2)) + 1e-10
    noise_power = float(np.mean(noise**2)) + 1e-10
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (waveform + scale * noise).astype(np.float32)


def apply_gain(waveform: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by `gain_db` decibels, clipped to [-1, 1] like a real recording chain."""
    return np.clip(waveform * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def _resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    return resample(waveform, orig_rate, target_rate)


def change_speed(waveform: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, like a tape), by resampling.

    The result has ``len(waveform) / factor`` samples.
    """
    if abs(factor - 1.0) < 1e-3:
        return waveform
    return _resample(waveform, round(sample_rate * factor), sample_rate)


def telephone_channel(waveform: np.ndarray, codec: str, sample_rate: int = 16000) -> np.ndarray:
    """Simulate a phone line: 8 kHz G.711 (``"mulaw"`` or ``"alaw"``), back to `sample_rate`.

    Uses `callmood.audio`'s G.711 codec, so training sees exactly the
    distortion the call pipeline decodes: nothing above 4 kHz, plus the 8-bit
    companding noise.
    """
    line_bytes = encode_telephone(np.clip(waveform, -1.0, 1.0), sample_rate, codec)
    narrowband = decode_g711(line_bytes, codec)
    restored = _resample(narrowband, TELEPHONE_SAMPLE_RATE, sample_rate)
    # Resampling may be off by a sample; keep the length so crops stay aligned.
    if len(restored) >= len(waveform):
        return restored[: len(waveform)]
    return np.pad(restored, (0, len(waveform) - len(restored)))


def _keep_level(augmented: np.ndarray, original: np.ndarray) -> np.ndarray:
    # A channel changes colour, not loudness: level is the gain augmentation's job.
    scale = np.sqrt((np.mean(original**2) + 1e-12) / (np.mean(augmented**2) + 1e-12))
    return np.clip(augmented * scale, -1.0, 1.0).astype(np.float32)


def equalize(
    waveform: np.ndarray,
    low_hz: float,
    high_hz: float,
    peak_hz: float,
    peak_db: float,
    sample_rate: int = 16000,
) -> np.ndarray:
    """A band-pass from `low_hz` to `high_hz` (2nd-order Butterworth) and one peaking band
    (RBJ biquad, Q = 1) of `peak_db` at `peak_hz`: another microphone, handset or line."""
    from scipy.signal import butter, sosfilt

    high_hz = min(high_hz, 0.45 * sample_rate)
    sections = [butter(2, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")]
    amplitude = 10 ** (peak_db / 40)
    omega = 2 * np.pi * peak_hz / sample_rate
    alpha = np.sin(omega) / 2  # Q = 1
    b = [1 + alpha * amplitude, -2 * np.cos(omega), 1 - alpha * amplitude]
    a = [1 + alpha / amplitude, -2 * np.cos(omega), 1 - alpha / amplitude]
    sections.append(np.array([[*(np.array(b) / a[0]), 1.0, a[1] / a[0], a[2] / a[0]]]))
    filtered = sosfilt(np.concatenate(sections), waveform.astype(np.float64))
    return _keep_level(filtered, waveform)


def reverberate(
    waveform: np.ndarray, rt60_seconds: float, rng: np.random.Generator, sample_rate: int = 16000
) -> np.ndarray:
    """Convolve with a synthetic room: the direct path, then noise decaying by 60 dB over
    `rt60_seconds` (the statistical model of a diffuse reverberant tail)."""
    from scipy.signal import fftconvolve

    length = max(2, int(rt60_seconds * sample_rate))
    time = np.arange(length) / sample_rate
    response = rng.standard_normal(length) * np.exp(-6.9 * time / rt60_seconds)
    response[0] = 0.0
    response *= 0.5 / (np.sqrt(np.sum(response**2)) + 1e-12)  # tail a little under the direct
    response[0] = 1.0
    wet = fftconvolve(waveform.astype(np.float64), response)[: len(waveform)]
    return _keep_level(wet, waveform)


# Container and FFmpeg encoder of each lossy codec.
_CODECS = {"opus": ("ogg", "libopus"), "mp3": ("mp3", "libmp3lame")}


def lossy_codec(
    waveform: np.ndarray, codec: str, bitrate_kbps: int, sample_rate: int = 16000
) -> np.ndarray:
    """Encode with a lossy codec through PyAV and decode back with `callmood.audio`, as a call
    recorded by a VoIP system (Opus) or a recorder (MP3) would reach analysis."""
    import io

    import av

    from callmood.audio import load_audio

    container_format, encoder = _CODECS[codec]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=sample_rate, layout="mono")
        stream.bit_rate = int(bitrate_kbps) * 1000
        pcm = (np.clip(waveform, -1.0, 1.0) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    decoded = load_audio(buffer.getvalue(), sample_rate=sample_rate).samples[0]
    # Encoder delay and padding change the length by a few ms; keep crops aligned.
    if len(decoded) >= len(waveform):
        return decoded[: len(waveform)].astype(np.float32)
    return np.pad(decoded, (0, len(waveform) - len(decoded))).astype(np.float32)


class WaveformAugmenter:
    """Applies the configured audio augmentations to one clip, each with its own probability."""

    def __init__(self, config: AugmentationConfig, sample_rate: int = 16000) -> None:
        self.config = config
        self.sample_rate = sample_rate

    def speed_factor(self, rng: np.random.Generator) -> float:
        """Draw the speed factor first, so the caller can crop ``crop * factor`` seconds."""
        speed = self.config.speed
        if speed.probability > 0 and rng.random() < speed.probability:
            return float(rng.uniform(*speed.factors))
        return 1.0

    def warp_factor(self, rng: np.random.Generator) -> float:
        """Draw the VTLP warp factor (1 = none); the feature extractor applies it.

        Drawn after the clip's audio augmentations, and only when `vocal_tract` is on, so
        configs without it consume the random stream exactly as before.
        """
        vocal_tract = self.config.vocal_tract
        if vocal_tract.probability > 0 and rng.random() < vocal_tract.probability:
            return float(rng.uniform(*vocal_tract.alpha))
        return 1.0

    def __call__(
        self, waveform: np.ndarray, rng: np.random.Generator, *, speed_factor: float = 1.0
    ) -> np.ndarray:
        config = self.config
        waveform = change_speed(waveform, speed_factor, self.sample_rate)
        if config.gain.probability > 0 and rng.random() < config.gain.probability:
            waveform = apply_gain(waveform, float(rng.uniform(*config.gain.db)))
        equalizer = config.equalizer
        if equalizer.probability > 0 and rng.random() < equalizer.probability:
            waveform = equalize(
                waveform,
                float(rng.uniform(*equalizer.low_hz)),
                float(rng.uniform(*equalizer.high_hz)),
                float(np.exp(rng.uniform(np.log(300.0), np.log(4000.0)))),
                float(rng.uniform(-equalizer.peak_db, equalizer.peak_db)),
                self.sample_rate,
            )
        if config.reverb.probability > 0 and rng.random() < config.reverb.probability:
            rt60 = float(rng.uniform(*config.reverb.rt60_seconds))
            waveform = reverberate(waveform, rt60, rng, self.sample_rate)
        if config.noise.probability > 0 and rng.random() < config.noise.probability:
            waveform = add_noise(waveform, float(rng.uniform(*config.noise.snr_db)), rng)
        codec = config.codec
        if codec.probability > 0 and codec.codecs and rng.random() < codec.probability:
            name = codec.codecs[int(rng.integers(len(codec.codecs)))]
            bitrate = int(rng.integers(codec.bitrate_kbps[0], codec.bitrate_kbps[1] + 1))
            waveform = lossy_codec(waveform, name, bitrate, self.sample_rate)
        telephone = config.telephone
        if telephone.probability > 0 and telephone.codecs and rng.random() < telephone.probability:
            codec = telephone.codecs[int(rng.integers(len(telephone.codecs)))]
            waveform = telephone_channel(waveform, codec, self.sample_rate)
        return waveform


def spec_augment(
    features: torch.Tensor, config: AugmentationConfig, rng: np.random.Generator
) -> torch.Tensor:
    """Mask random time and feature stripes (SpecAugment) of a batch, in place.

    Parameters
    ----------
    features
        (B, num_features, frames). Masked cells take the clip's mean of that
        feature, which the model's normalisation maps to about zero.
    """
    settings = config.spec_augment
    batch, num_features, frames = features.shape
    means = features.mean(dim=2, keepdim=True)
    for b in range(batch):
        if rng.random() >= settings.probability:
            continue
        for _ in range(settings.time_masks):
            width = int(rng.integers(0, min(settings.time_mask_frames, frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            features[b, :, start : start + width] = means[b]
        for _ in range(settings.freq_masks):
            width = int(rng.integers(0, min(settings.freq_mask_bins, num_features) + 1))
            start = int(rng.integers(0, num_features - width + 1))
            features[b, start : start + width, :] = means[b, start : start + width]
    return features


def mixup(
    features: torch.Tensor, targets: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the batch with a shuffled copy of itself (mixup).

    Parameters
    ----------
    targets
        (B, classes) class probabilities (one-hot or smoothed).

    Returns
    -------
    (features, targets), both blended with one weight drawn from Beta(alpha, alpha).
    """
    weight = float(rng.beta(alpha, alpha))
    order = torch.from_numpy(rng.permutation(features.shape[0]))
    return (
        weight * features + (1 - weight) * features[order],
        weight * targets + (1 - weight) * targets[order],
    )
