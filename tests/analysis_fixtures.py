"""Helpers for the call-analysis tests: a small random model package and calls built from RAVDESS.

A randomly initialised network is enough to test the plumbing (channels, VAD,
windows, smoothing, alerts, exports); tests of what the model recognises use
the bundled model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from callmood.audio import SAMPLE_RATE, load_audio

LABELS = ("neutral", "happy", "sad", "angry")


def make_random_package(
    directory: Path,
    *,
    export_onnx: bool = False,
    seed: int = 0,
    caller_normalization: bool = False,
) -> Path:
    """A model package with random weights (4 classes, 40 MFCCs, 3 s windows).

    With `caller_normalization`, a prior (the MFCC statistics of a typical voice, 3 s) is
    written so that analysis normalises each caller (callmood.normalization).
    """
    import torch

    from callmood.features import FeatureConfig
    from callmood.models.package import save_model_package
    from callmood.models.parallel_cnn_transformer import ModelConfig, ParallelCNNTransformer

    torch.manual_seed(seed)
    model = ParallelCNNTransformer(ModelConfig(num_features=40, num_classes=len(LABELS))).eval()
    extra = {"name": "random-test-model"}
    if caller_normalization:
        prior = _typical_voice_prior()
        # The network standardises with the prior, as a trained one does.
        model.set_normalization(torch.from_numpy(prior.mean), torch.from_numpy(prior.std))
        extra["caller_normalization"] = prior.to_dict(hop_seconds=0.010)
    return save_model_package(
        directory,
        model,
        labels=LABELS,
        feature_config=FeatureConfig(),
        window_seconds=3.0,
        extra=extra,
        export_onnx=export_onnx,
    )


def _typical_voice_prior():  # noqa: ANN202 (CallerPrior, imported late like torch)
    from callmood.normalization import CallerPrior

    # Roughly what 40 MFCCs of speech look like: a loud, spread c0, smaller higher ones.
    mean = np.concatenate([[-300.0], np.linspace(80.0, 0.0, 39)])
    std = np.concatenate([[80.0], np.linspace(30.0, 8.0, 39)])
    return CallerPrior(mean=mean, std=std, frames=300)


def ravdess_clip(ravdess_dir: Path, actor: int, code: str) -> np.ndarray:
    """One RAVDESS clip (``code`` = emotion-intensity-statement-repetition) as 16 kHz mono."""
    path = ravdess_dir / f"Actor_{actor:02d}" / f"03-01-{code}-{actor:02d}.flac"
    return load_audio(path, channels=[0]).samples[0]


def trimmed(samples: np.ndarray) -> np.ndarray:
    """``samples`` from the start of their first speech to the end of their last."""
    from callmood.segment import speech_segments

    found = speech_segments(samples)
    return samples[int(found[0][0] * SAMPLE_RATE) : int(found[-1][1] * SAMPLE_RATE)]


def build_two_party_call(
    ravdess_dir: Path, *, turns: int = 6, pause_seconds: float = 1.0
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A stereo call (2, frames): actor 1 on the left, actor 2 on the right, taking turns.

    Returns the samples and the placement ``(speaker, start, end)`` of each clip
    in seconds, customer = left.
    """
    codes = ["01-01-01-01", "02-01-01-01", "05-02-01-01", "04-01-02-01", "03-01-01-02"]
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    placement = []
    position = 0
    pause = np.zeros(int(pause_seconds * SAMPLE_RATE), dtype=np.float32)
    for turn in range(turns):
        speaker, actor = ("customer", 1) if turn % 2 == 0 else ("agent", 2)
        clip = ravdess_clip(ravdess_dir, actor, codes[turn % len(codes)])
        speaking, listening = (left, right) if speaker == "customer" else (right, left)
        speaking.append(clip)
        listening.append(np.zeros_like(clip))
        placement.append((speaker, position / SAMPLE_RATE, (position + len(clip)) / SAMPLE_RATE))
        position += len(clip)
        left.append(pause)
        right.append(pause)
        position += len(pause)
    return np.stack([np.concatenate(left), np.concatenate(right)]), placement


def write_audio(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write (channels, frames) float32 samples as 16-bit FLAC/WAV (by suffix)."""
    sf.write(path, np.asarray(samples).T, sample_rate, subtype="PCM_16")
    return path
