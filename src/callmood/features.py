"""MFCC and log-mel features computed in torch, numerically matching librosa.

`FeatureExtractor` is a batched torch module (waveforms -> feature maps); `mfcc` and `log_mel`
are librosa-style functions over numpy arrays built on it. The on-disk cache lives in
`callmood.feature_cache`, which builds on this module (never the other way round).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from callmood.errors import CallmoodError

FEATURE_KINDS = ("mfcc", "logmel")


class FeatureError(CallmoodError, ValueError):
    """A feature configuration or an input waveform that features cannot be computed from."""


@dataclass(frozen=True)
class FeatureConfig:
    """How waveforms become feature maps; one source of truth shared by training and inference.

    Parameters
    ----------
    kind
        ``"mfcc"`` (``n_mfcc`` cepstral coefficients) or ``"logmel"`` (``n_mels`` log-mel bands).
    sample_rate
        Sample rate of the input waveforms, in Hz.
    n_fft
        FFT size, in samples. The analysis window is zero-padded to it, centred (as librosa).
    win_seconds, hop_seconds
        Analysis window length and hop, in seconds (0.025 s and 0.010 s: 400 and 160 samples at
        16 kHz).
    n_mels
        Number of mel bands (Slaney mel scale and area normalisation, librosa's defaults).
    n_mfcc
        Number of cepstral coefficients kept (orthonormal DCT-II of the log-mel bands).
    fmin, fmax
        Lowest and highest mel filter edge, in Hz; ``fmax=None`` means ``sample_rate / 2``.
    center
        Pad ``n_fft // 2`` zeros on both sides so that frame ``t`` is centred on sample
        ``t * hop`` (librosa's ``center=True, pad_mode="constant"``).
    top_db
        Floor of the log-mel values, in dB below the loudest mel bin of each clip (librosa's
        ``power_to_db(top_db=80)``); ``None`` keeps only the ``amin`` floor.
    amin
        Smallest mel power before the logarithm (-100 dB).
    """

    kind: str = "mfcc"
    sample_rate: int = 16000
    n_fft: int = 512
    win_seconds: float = 0.025
    hop_seconds: float = 0.010
    n_mels: int = 64
    n_mfcc: int = 40
    fmin: float = 20.0
    fmax: float | None = None
    center: bool = True
    top_db: float | None = 80.0
    amin: float = 1e-10

    def __post_init__(self) -> None:
        numbers = ("win_seconds", "hop_seconds", "fmin", "amin", "fmax", "top_db")
        wrong_type = [
            f"{name} must be a number, got {getattr(self, name)!r}"
            for name in numbers
            if not _is_number(getattr(self, name))
            and not (name in ("fmax", "top_db") and getattr(self, name) is None)
        ]
        if wrong_type:  # the range checks below would fail on them with a TypeError
            raise FeatureError("invalid feature config: " + "; ".join(wrong_type))
        for name in numbers:  # 20 and 20.0 must give one config hash (YAML writes either)
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))
        problems = []
        if self.kind not in FEATURE_KINDS:
            problems.append(f"kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            problems.append(
                f"sample_rate must be a positive integer (Hz), got {self.sample_rate!r}"
            )
        if not isinstance(self.n_fft, int) or self.n_fft < 16:
            problems.append(f"n_fft must be an integer >= 16 samples, got {self.n_fft!r}")
        if not self.win_seconds > 0 or not self.hop_seconds > 0:
            problems.append(
                f"win_seconds and hop_seconds must be > 0, got {self.win_seconds!r} and "
                f"{self.hop_seconds!r}"
            )
        if not problems and not math.isfinite(
            max(self.win_seconds, self.hop_seconds) * self.sample_rate
        ):
            # inf (or 1e308 s, times the rate) is no number of samples: round() overflows.
            problems.append(
                f"win_seconds and hop_seconds must be finite, got {self.win_seconds!r} and "
                f"{self.hop_seconds!r}"
            )
        if not problems and self.win_length > self.n_fft:
            problems.append(
                f"win_seconds={self.win_seconds} is {self.win_length} samples, longer than "
                f"n_fft={self.n_fft}"
            )
        if not problems and self.hop_length < 1:
            problems.append(f"hop_seconds={self.hop_seconds} is shorter than one sample")
        if not isinstance(self.n_mels, int) or self.n_mels < 1:
            problems.append(f"n_mels must be a positive integer, got {self.n_mels!r}")
        if self.kind == "mfcc" and (
            not isinstance(self.n_mfcc, int) or not 1 <= self.n_mfcc <= self.n_mels
        ):
            problems.append(
                f"n_mfcc must be between 1 and n_mels={self.n_mels}, got {self.n_mfcc!r}"
            )
        if not problems:
            nyquist = self.sample_rate / 2
            if not 0 <= self.fmin < self.upper_frequency <= nyquist:
                problems.append(
                    f"need 0 <= fmin < fmax <= sample_rate / 2 = {nyquist} Hz, got fmin={self.fmin}"
                    f" and fmax={self.fmax}"
                )
        if self.top_db is not None and not self.top_db >= 0:
            problems.append(f"top_db must be >= 0 dB or None, got {self.top_db!r}")
        if not self.amin > 0:
            problems.append(f"amin must be > 0, got {self.amin!r}")
        if problems:
            raise FeatureError("invalid feature config: " + "; ".join(problems))

    @property
    def win_length(self) -> int:
        """Analysis window length, in samples."""
        return round(self.win_seconds * self.sample_rate)

    @property
    def hop_length(self) -> int:
        """Hop between frames, in samples."""
        return round(self.hop_seconds * self.sample_rate)

    @property
    def upper_frequency(self) -> float:
        """Highest mel filter edge, in Hz (``fmax`` or the Nyquist frequency)."""
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

    @property
    def num_features(self) -> int:
        """Feature rows per frame: ``n_mfcc`` for MFCC, ``n_mels`` for log-mel."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def frames_for(self, samples: int) -> int:
        """Number of feature frames for a clip of ``samples`` samples (0 if too short)."""
        if self.center:
            return 1 + samples // self.hop_length
        return max(0, 1 + (samples - self.n_fft) // self.hop_length)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the form stored in ``model.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        if not isinstance(values, dict):
            raise FeatureError(f"feature config must be a mapping, got {type(values).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FeatureError(f"unknown feature config keys: {', '.join(unknown)}")
        return cls(**values)

    def config_hash(self) -> str:
        """Stable short hash of the config (hex), used to key cached features."""
        canonical = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- filterbank and DCT, computed once per config in numpy exactly as librosa does ---------


def _hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa ``htk=False``)."""
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    linear_step = 200.0 / 3
    mels = frequencies / linear_step
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / linear_step
    log_step = np.log(6.4) / 27.0
    above = frequencies >= min_log_hz
    mels[above] = min_log_mel + np.log(frequencies[above] / min_log_hz) / log_step
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mels = np.asanyarray(mels, dtype=np.float64)
    linear_step = 200.0 / 3
    frequencies = linear_step * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / linear_step
    log_step = np.log(6.4) / 27.0
    above = mels >= min_log_mel
    frequencies[above] = min_log_hz * np.exp(log_step * (mels[above] - min_log_mel))
    return frequencies


# Where the VTLP warp stops being f' = alpha * f, as a share of the Nyquist frequency: Jaitly &
# Hinton's 4800 Hz at 16 kHz. Above it the warp runs linearly to the Nyquist frequency, so the
# warped spectrum still spans the whole band (nothing is pushed out or left empty).
VTLP_BOUNDARY_SHARE = 0.6


def vtlp_warp(frequencies: np.ndarray, alpha: float, nyquist: float) -> np.ndarray:
    """Jaitly & Hinton's (2013) piecewise-linear vocal-tract-length warp of `frequencies` (Hz).

    ``f' = alpha * f`` up to the boundary ``f_hi * min(alpha, 1) / alpha`` (``f_hi`` =
    ``VTLP_BOUNDARY_SHARE * nyquist``), then the straight line to ``(nyquist, nyquist)``.
    """
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    boundary = VTLP_BOUNDARY_SHARE * nyquist * min(alpha, 1.0) / alpha
    upper_slope = (nyquist - alpha * boundary) / (nyquist - boundary)
    return np.where(
        frequencies <= boundary,
        alpha * frequencies,
        alpha * boundary + upper_slope * (frequencies - boundary),
    )


def mel_filterbank(config: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape (n_mels, n_fft // 2 + 1), float32.

    Same construction and rounding as ``librosa.filters.mel(norm="slaney", htk=False)``.
    `warp` != 1 gives the filters of a VTLP-warped spectrum (:func:`vtlp_warp`): power at
    ``f`` lands in the band of ``warp(f)``, so ``warp`` > 1 moves the spectrum up.
    """
    n_freqs = config.n_fft // 2 + 1
    fft_frequencies = np.fft.rfftfreq(n=config.n_fft, d=1.0 / config.sample_rate)
    slopes = None
    if warp != 1.0:
        warped = vtlp_warp(fft_frequencies, warp, config.sample_rate / 2)
        slopes = np.gradient(warped, fft_frequencies)  # the bin at the kink: the mean slope
        fft_frequencies = warped
    mel_edges = np.linspace(
        _hz_to_mel(np.array([config.fmin]))[0],
        _hz_to_mel(np.array([config.upper_frequency]))[0],
        config.n_mels + 2,
    )
    edge_frequencies = _mel_to_hz(mel_edges)  # Hz, (n_mels + 2,)
    edge_widths = np.diff(edge_frequencies)
    ramps = np.subtract.outer(edge_frequencies, fft_frequencies)
    weights = np.zeros((config.n_mels, n_freqs), dtype=np.float32)
    for band in range(config.n_mels):
        rising = -ramps[band] / edge_widths[band]
        falling = ramps[band + 2] / edge_widths[band + 1]
        weights[band] = np.maximum(0, np.minimum(rising, falling))
    # Slaney: each filter has unit area in Hz, so bands carry comparable energy.
    weights *= (2.0 / (edge_frequencies[2:] - edge_frequencies[:-2]))[:, np.newaxis]
    if slopes is not None:
        # Each FFT bin is stretched to `slope` bins of the warped spectrum; weighting by it
        # resamples the spectrum rather than moving its energy, so a flat spectrum stays flat
        # and the loudness is not part of the augmentation.
        weights *= slopes.astype(np.float32)[np.newaxis, :]
    return weights


def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n_mfcc, n_mels), float32, as ``scipy.fft.dct(norm="ortho")``."""
    mel_index = np.arange(n_mels, dtype=np.float64)
    coefficient = np.arange(n_mfcc, dtype=np.float64)[:, np.newaxis]
    basis = np.cos(np.pi * coefficient * (2 * mel_index + 1) / (2 * n_mels))
    basis *= np.sqrt(2.0 / n_mels)
    basis[0] *= np.sqrt(0.5)
    return basis.astype(np.float32)


class FeatureExtractor(nn.Module):
    """Waveforms (B, samples) float32 -> features (B, num_features, frames), in torch.

    Clips of different lengths are batched by zero-padding them at the end to a common length
    and passing their true lengths in samples. Because librosa also pads with zeros
    (``pad_mode="constant"``), the first ``config.frames_for(length)`` frames of each clip are
    exactly the clip's own features; the ``top_db`` floor is taken from those frames only. Frames
    past a clip's end hold padding (silence, at or near the floor) and are for the caller to
    ignore or mask.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config or FeatureConfig()
        # Derived from the config, so not part of any state dict.
        window = torch.hann_window(self.config.win_length, periodic=True, dtype=torch.float32)
        self.register_buffer("window", window, persistent=False)
        filterbank = torch.from_numpy(mel_filterbank(self.config))
        self.register_buffer("mel_filterbank", filterbank, persistent=False)
        # Each triangular filter covers a narrow band of FFT bins: the lower half of the filters
        # needs only the low bins and the upper half only the high bins. Two products over
        # those bins give the same sums with about half the multiply-adds of the dense one.
        self.mel_bands: list[tuple[int, int]] = []
        for index, rows in enumerate(_halves(self.config.n_mels)):
            start, stop = _nonzero_columns(filterbank[rows])
            weights = filterbank[rows, start:stop].T.contiguous()  # (stop - start, band mels)
            self.register_buffer(f"mel_band{index}", weights, persistent=False)
            self.mel_bands.append((start, stop))
        if self.config.kind == "mfcc":
            dct = torch.from_numpy(dct_matrix(self.config.n_mfcc, self.config.n_mels))
            self.register_buffer("dct", dct, persistent=False)
        else:
            self.dct = None

    @property
    def num_features(self) -> int:
        return self.config.num_features

    def frames_for(self, samples: int) -> int:
        """Number of frames for a clip of ``samples`` samples."""
        return self.config.frames_for(samples)

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        warps: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Compute features.

        Parameters
        ----------
        waveforms
            (B, samples) float32, amplitudes in [-1, 1], zero-padded at the end.
        lengths
            Optional (B,) true lengths in samples; ``None`` means every clip fills the batch.
        warps
            Optional VTLP warp factor of each clip (``mel_filterbank(config, warp)``), the
            training augmentation `augmentation.vocal_tract`; inference never passes it.

        Returns
        -------
        torch.Tensor
            (B, num_features, frames), frames = ``config.frames_for(samples)``. Log-mel in dB;
            MFCC as DCT-II (ortho) of the dB log-mel bands.
        """
        _check_waveforms(waveforms, self.config)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=waveforms.device)
            if lengths.shape != (waveforms.shape[0],):
                raise FeatureError(
                    f"lengths must have one entry per clip, shape ({waveforms.shape[0]},), "
                    f"got {tuple(lengths.shape)}"
                )
        config = self.config
        spectrum = torch.stft(
            waveforms.to(self.window.dtype),  # float64 input would clash with the float32 window
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            window=self.window,
            center=config.center,
            pad_mode="constant",
            return_complex=True,
        )  # (B, n_fft // 2 + 1, frames) complex, stored frame-major
        # Work frame-major, (B, frames, ...), which is how torch.stft lays the result out in
        # memory: |X|^2 and the filterbank product run over contiguous rows, 2x faster overall.
        spectrum = torch.view_as_real(spectrum.transpose(1, 2))  # (B, frames, n_freqs, 2)
        real, imaginary = spectrum[..., 0], spectrum[..., 1]
        power = torch.square(real).addcmul_(imaginary, imaginary)  # |X|^2 without a sqrt
        mel_power = torch.cat(
            [
                torch.matmul(power[..., start:stop], getattr(self, f"mel_band{index}"))
                for index, (start, stop) in enumerate(self.mel_bands)
            ],
            dim=-1,
        )  # (B, frames, n_mels), = power @ mel_filterbank.T
        if warps is not None:
            if len(warps) != waveforms.shape[0]:
                raise FeatureError(
                    f"warps must have one entry per clip ({waveforms.shape[0]}), got {len(warps)}"
                )
            for index, warp in enumerate(warps):
                if warp != 1.0:
                    filterbank = torch.from_numpy(mel_filterbank(config, float(warp)))
                    mel_power[index] = torch.matmul(power[index], filterbank.T)
        log_mel = 10.0 * torch.log10(torch.clamp(mel_power, min=config.amin))
        if config.top_db is not None:
            log_mel = torch.maximum(log_mel, _clip_peak(log_mel, lengths, config) - config.top_db)
        features = log_mel if self.dct is None else torch.matmul(log_mel, self.dct.T)  # MFCC
        return features.transpose(1, 2).contiguous()  # (B, num_features, frames)


def _halves(count: int) -> list[slice]:
    """Row slices splitting ``count`` rows into a lower and an upper half (one slice if 1)."""
    middle = count // 2
    return [slice(0, count)] if middle == 0 else [slice(0, middle), slice(middle, count)]


def _nonzero_columns(weights: torch.Tensor) -> tuple[int, int]:
    """First and one-past-last column holding a non-zero weight ((0, 0) if none)."""
    used = torch.nonzero(weights.abs().sum(0)).flatten()
    if used.numel() == 0:
        return 0, 0
    return int(used[0]), int(used[-1]) + 1


def _clip_peak(
    log_mel: torch.Tensor, lengths: torch.Tensor | None, config: FeatureConfig
) -> torch.Tensor:
    """Loudest mel bin of each clip in dB, over its own frames only; shape (B, 1, 1).

    ``log_mel`` is frame-major, (B, frames, n_mels).
    """
    if lengths is None:
        return log_mel.amax(dim=(1, 2), keepdim=True)
    lengths = torch.as_tensor(lengths, device=log_mel.device)
    if config.center:
        valid_frames = 1 + torch.div(lengths, config.hop_length, rounding_mode="floor")
    else:
        valid_frames = 1 + torch.div(
            lengths - config.n_fft, config.hop_length, rounding_mode="floor"
        )
    frame_index = torch.arange(log_mel.shape[1], device=log_mel.device)
    is_padding = frame_index[None, :] >= valid_frames.clamp(min=1)[:, None]  # (B, frames)
    masked = log_mel.masked_fill(is_padding[:, :, None], float("-inf"))
    return masked.amax(dim=(1, 2), keepdim=True)


def _check_waveforms(waveforms: torch.Tensor, config: FeatureConfig) -> None:
    if not isinstance(waveforms, torch.Tensor):
        raise FeatureError(f"waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
    if waveforms.ndim != 2:
        raise FeatureError(
            f"waveforms must have shape (batch, samples), got shape {tuple(waveforms.shape)}"
        )
    if not waveforms.is_floating_point():
        raise FeatureError(f"waveforms must be floating point, got {waveforms.dtype}")
    minimum = 1 if config.center else config.n_fft
    if waveforms.shape[1] < minimum:
        raise FeatureError(
            f"waveforms have {waveforms.shape[1]} samples; at least {minimum} are needed"
        )


@functools.lru_cache(maxsize=16)
def _extractor(config: FeatureConfig) -> FeatureExtractor:
    return FeatureExtractor(config).eval()


def extract(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features of one clip (samples,) or a batch (B, samples) of equal-length clips, as numpy.

    Returns (num_features, frames) or (B, num_features, frames), float32.
    """
    array = _as_waveforms(audio)
    with torch.no_grad():
        features = _extractor(config)(torch.from_numpy(array.reshape(-1, array.shape[-1])))
    result = features.numpy()
    return result[0] if array.ndim == 1 else result


def mfcc(
    audio: np.ndarray,
    *,
    sample_rate: int = 16000,
    n_mfcc: int = 40,
    n_mels: int = 64,
    n_fft: int = 512,
    win_seconds: float = 0.025,
    hop_seconds: float = 0.010,
    fmin: float = 20.0,
    fmax: float | None = None,
    center: bool = True,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """Mel-frequency cepstral coefficients of a waveform.

    Matches ``librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=n_mfcc, n_mels=n_mels,
    n_fft=n_fft, win_length=..., hop_length=..., fmin=fmin, fmax=fmax, center=center)``.

    Parameters
    ----------
    audio
        (samples,) or (B, samples) float waveform at ``sample_rate`` Hz.
    sample_rate
        Sample rate, in Hz.
    n_mfcc, n_mels
        Coefficients kept and mel bands computed.
    n_fft, win_seconds, hop_seconds
        FFT size (samples), window and hop (seconds).
    fmin, fmax
        Mel filter range, in Hz (``fmax=None``: Nyquist).
    center
        Centre frames on ``t * hop`` by zero padding.
    top_db
        Floor of the log-mel bands in dB below the clip's peak before the DCT.

    Returns
    -------
    np.ndarray
        (n_mfcc, frames) or (B, n_mfcc, frames), float32.
    """
    config = FeatureConfig(
        kind="mfcc",
        sample_rate=sample_rate,
        n_fft=n_fft,
        win_seconds=win_seconds,
        hop_seconds=hop_seconds,
        n_mels=n_mels,
        n_mfcc=n_mfcc,
        fmin=fmin,
        fmax=fmax,
        center=center,
        top_db=top_db,
    )
    return extract(audio, config)


def log_mel(
    audio: np.ndarray,
    *,
    sample_rate: int = 16000,
    n_mels: int = 64,
    n_fft: int = 512,
    win_seconds: float = 0.025,
    hop_seconds: float = 0.010,
    fmin: float = 20.0,
    fmax: float | None = None,
    center: bool = True,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """Log-mel spectrogram of a waveform, in dB.

    Matches ``librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=sample_rate,
    n_mels=n_mels, n_fft=n_fft, ...), top_db=top_db)``. Parameters as for :func:`mfcc`.

    Returns
    -------
    np.ndarray
        (n_mels, frames) or (B, n_mels, frames), float32, in dB (re 1.0 power).
    """
    config = FeatureConfig(
        kind="logmel",
        sample_rate=sample_rate,
        n_fft=n_fft,
        win_seconds=win_seconds,
        hop_seconds=hop_seconds,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        center=center,
        top_db=top_db,
    )
    return extract(audio, config)


def _as_waveforms(audio: np.ndarray) -> np.ndarray:
    array = np.asarray(audio)
    if array.ndim not in (1, 2):
        raise FeatureError(
            f"audio must have shape (samples,) or (batch, samples), got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        # Integer PCM has a scale (int16: 32768) that would silently shift every dB value.
        raise FeatureError(
            f"audio must be floating point in [-1, 1], got dtype {array.dtype}; "
            "decode files with callmood.audio.load_audio"
        )
    if array.shape[-1] == 0:
        raise FeatureError("audio is empty (0 samples)")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise FeatureError("audio contains NaN or infinite samples")
    return array


def seconds_to_frames(seconds: float, config: FeatureConfig | None = None) -> int:
    """Frames for a clip of ``seconds`` seconds (e.g. 301 for 3 s at the default 10 ms hop)."""
    config = config or FeatureConfig()
    return config.frames_for(math.floor(seconds * config.sample_rate))
