"""Training data: manifest rows -> clips decoded once with cached clean features, crops, batches.

Each clip is decoded once per process and its clean features computed once;
every epoch, fold and augmentation reuses them (audio decoding and feature
extraction dominated the original project's epochs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from callmood.errors import CallmoodError
from callmood.manifest import ManifestRow
from callmood.training.config import TrainingConfig, TrainingConfigError


class TrainingDataError(CallmoodError):
    """Training data that cannot be used (no clips for the label set, a class with no examples)."""


def load_rows(config: TrainingConfig) -> list[ManifestRow]:
    """All manifest rows the config names: its corpora (prepared now) and its manifest files."""
    from callmood.corpora import CORPORA
    from callmood.manifest import read_manifest

    rows: list[ManifestRow] = []
    for corpus in config.corpora:
        rows.extend(CORPORA[corpus.name](corpus.path))
    for manifest in config.manifests:
        rows.extend(read_manifest(manifest))
    return rows


def map_labels(rows: Sequence[ManifestRow], label_set: str) -> tuple[list[ManifestRow], list[str]]:
    """Keep the rows whose label maps into `label_set`, with the mapped label.

    Returns
    -------
    (rows, labels)
        The kept rows and, for each, its class in the set (calm -> neutral for
        ``iemocap4``, for instance).
    """
    from callmood.labels import to_label_set

    kept, labels = [], []
    for row in rows:
        mapped = to_label_set(row.label, label_set)
        if mapped is not None:
            kept.append(row)
            labels.append(mapped)
    return kept, labels


@dataclass
class ClipSet:
    """Labelled clips in memory: the waveform (optional) and clean features of each.

    Attributes
    ----------
    classes
        Class names in model output order.
    targets
        Class index of each clip, shape (N,).
    groups
        Split group of each clip (speaker or session), shape (N,).
    corpora
        Corpus of each clip, shape (N,).
    features
        Clean features of each whole clip, (num_features, frames) float32.
    waveforms
        16 kHz mono audio of each clip as float16 (halves memory), or ``None``
        when no waveform augmentation needs it.
    speaker_statistics
        With speaker normalisation: the (mean, std) per feature of each clip's
        speaker, shape (num_features,) each, already applied to `features` and to
        be applied to features recomputed from augmented audio; otherwise ``None``.
    """

    rows: list[ManifestRow]
    classes: tuple[str, ...]
    targets: np.ndarray
    groups: np.ndarray
    corpora: np.ndarray
    features: list[torch.Tensor]
    waveforms: list[np.ndarray] | None
    feature_config: object
    speaker_statistics: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def subset_counts(self, indices: np.ndarray) -> np.ndarray:
        """Examples per class among `indices`, shape (classes,)."""
        return np.bincount(self.targets[indices], minlength=len(self.classes))


def decode_clip(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """A clip as float32 mono at `sample_rate`; channels of a stereo file are averaged."""
    from callmood.audio import load_audio

    audio = load_audio(path, sample_rate=sample_rate)
    return audio.samples.mean(axis=0).astype(np.float32)


def trim_silence(
    waveform: np.ndarray, sample_rate: int, top_db: float, margin_seconds: float = 0.1
) -> np.ndarray:
    """`waveform` without its leading and trailing stretches quieter than `top_db` below its
    loudest 25 ms frame (10 ms hop), keeping `margin_seconds` either side of the voiced part.

    Acted corpora pad each sentence with a second or more of room tone; random
    training crops of it would often be mostly silence.
    """
    from callmood.segment import frame_levels

    frame, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
    if len(waveform) < frame:
        return waveform
    frames = np.lib.stride_tricks.sliding_window_view(waveform, frame)[::hop]
    rms_db, _ = frame_levels(frames)
    loud = np.flatnonzero(rms_db > rms_db.max() - top_db)
    margin = round(margin_seconds * sample_rate)
    start = max(0, loud[0] * hop - margin)
    end = min(len(waveform), loud[-1] * hop + frame + margin)
    return waveform[start:end]


def build_clip_set(
    rows: Sequence[ManifestRow],
    labels: Sequence[str],
    classes: Sequence[str],
    feature_config: object,
    *,
    keep_waveforms: bool,
    speaker_normalization: bool = False,
    trim_silence_db: float | None = None,
    on_clip: Callable[[int], None] | None = None,
) -> ClipSet:
    """Decode every clip once and compute its clean features.

    Parameters
    ----------
    rows, labels
        Manifest rows and the class (in `classes`) of each.
    keep_waveforms
        Keep the audio for waveform augmentation.
    speaker_normalization
        Standardise every clip's features with its speaker's statistics
        (:func:`normalize_per_speaker`).
    trim_silence_db
        Cut leading and trailing silence first (:func:`trim_silence`); None keeps whole clips.
    on_clip
        Called with the clip index after each clip (progress bars).
    """
    from callmood.features import FeatureExtractor

    extractor = FeatureExtractor(feature_config).eval()
    class_index = {name: i for i, name in enumerate(classes)}
    features, waveforms = [], []
    for i, row in enumerate(rows):
        waveform = decode_clip(row.path, feature_config.sample_rate)
        if trim_silence_db is not None:
            waveform = trim_silence(waveform, feature_config.sample_rate, trim_silence_db)
        with torch.no_grad():
            features.append(extractor(torch.from_numpy(waveform)[None])[0].contiguous())
        if keep_waveforms:
            waveforms.append(waveform.astype(np.float16))
        if on_clip is not None:
            on_clip(i)
    clip_set = ClipSet(
        rows=list(rows),
        classes=tuple(classes),
        targets=np.array([class_index[label] for label in labels], dtype=np.int64),
        groups=np.array([row.group for row in rows], dtype=object),
        corpora=np.array([row.corpus for row in rows], dtype=object),
        features=features,
        waveforms=waveforms if keep_waveforms else None,
        feature_config=feature_config,
    )
    if speaker_normalization:
        normalize_per_speaker(clip_set)
    return clip_set


def frame_statistics(features: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation over every frame of (F, T) feature maps.

    Running sums in float64, so no frames are concatenated; a constant feature gets a
    standard deviation of 1e-4, not 0.
    """
    total = total_sq = None
    frames = 0
    for clip in features:
        clip = clip.double()
        sums, squares = clip.sum(1), clip.square().sum(1)
        total = sums if total is None else total + sums
        total_sq = squares if total_sq is None else total_sq + squares
        frames += clip.shape[1]
    mean = total / frames
    std = (total_sq / frames - mean.square()).clamp(min=1e-8).sqrt()
    return mean.float(), std.float()


def clip_statistics_population(
    features: Iterable[torch.Tensor], deltas: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over clips of each clip's :func:`time_statistics`
    ((F, T) maps, un-normalised), for a model's ``absolute_statistics``; each (2F,) or (3F,)."""
    from callmood.models.parallel_cnn_transformer import time_statistics

    statistics = torch.cat([time_statistics(clip[None].float(), None, deltas) for clip in features])
    if len(statistics) < 2:
        raise TrainingDataError("absolute statistics need at least 2 training clips")
    return statistics.mean(0), statistics.std(0).clamp(min=1e-4)


def clips_by_speaker(clips: ClipSet) -> list[list[int]]:
    """The indices of each speaker's clips, one list per speaker."""
    by_speaker: dict[str, list[int]] = {}
    for i, row in enumerate(clips.rows):
        by_speaker.setdefault(row.speaker, []).append(i)
    return list(by_speaker.values())


def normalize_per_speaker(clips: ClipSet) -> None:
    """Standardise each clip's features with its speaker's mean and std, in place.

    Speaker-level normalisation removes much of what differs between voices
    (vocal tract, recording level) and keeps what differs between one speaker's
    emotions. It uses all of a speaker's clips, so a test speaker's statistics
    come from their own unlabelled test audio: results obtained this way are
    reported as a separate, transductive protocol.
    """
    per_clip: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(clips)  # type: ignore[list-item]
    for indices in clips_by_speaker(clips):
        mean, std = frame_statistics(clips.features[i] for i in indices)
        for i in indices:
            per_clip[i] = (mean, std)
            clips.features[i] = (clips.features[i] - mean[:, None]) / std[:, None]
    clips.speaker_statistics = per_clip


def speaker_clip_statistics(clips: ClipSet, deltas: bool) -> torch.Tensor:
    """For each clip, the mean and std over its speaker's clips of their statistics.

    The statistics are those of the model's statistics branch (:func:`time_statistics` of
    each whole clip's features, with or without `deltas`); a model with
    ``statistics_per_speaker`` standardises a clip's statistics with these, so what is left
    is how the clip differs from its speaker's usual (a transductive protocol, like
    :func:`normalize_per_speaker`). Returns (N, 2, statistics size) float32.
    """
    from callmood.models.parallel_cnn_transformer import time_statistics

    result: torch.Tensor | None = None
    for indices in clips_by_speaker(clips):
        with torch.no_grad():
            values = torch.cat(
                [time_statistics(clips.features[i][None], deltas=deltas) for i in indices]
            )  # (clips, size)
        if result is None:
            result = torch.zeros(len(clips), 2, values.shape[1])
        spread = values.std(0, unbiased=False) if len(indices) > 1 else torch.ones(values.shape[1])
        # A statistic that never varies for a speaker would divide by ~0: floor it.
        result[indices, 0] = values.mean(0)
        result[indices, 1] = spread.clamp(min=1e-3)
    return result if result is not None else torch.zeros(0, 2, 0)


def random_crop(sequence: np.ndarray | torch.Tensor, length: int, rng: np.random.Generator):  # noqa: ANN201
    """A random window of `length` along the last axis; shorter input is tiled to fill it.

    Tiling (rather than zero padding) keeps every frame real speech statistics,
    which matters for short EmoDB clips (down to ~1.2 s).
    """
    available = sequence.shape[-1]
    if available >= length:
        start = int(rng.integers(0, available - length + 1))
        return sequence[..., start : start + length]
    repeats = -(-length // available)
    if isinstance(sequence, torch.Tensor):
        tiled = sequence.repeat(*([1] * (sequence.dim() - 1)), repeats)
    else:
        tiled = np.tile(sequence, [1] * (sequence.ndim - 1) + [repeats])
    start = int(rng.integers(0, available))
    if start + length > tiled.shape[-1]:
        start = 0
    return tiled[..., start : start + length]


def corpus_shares(
    corpora: np.ndarray, corpus_balance: str | Mapping[str, float]
) -> dict[str, float] | None:
    """Each training corpus's share of an epoch's draws under `corpus_balance` (None = as is).

    Raises
    ------
    TrainingConfigError
        A weighted corpus that is not in `corpora`, or a corpus in `corpora` without a weight.
    """
    if corpus_balance == "none":
        return None
    present = sorted(set(corpora.tolist()))
    if corpus_balance == "equal":
        return {name: 1.0 / len(present) for name in present}
    assert isinstance(corpus_balance, Mapping)
    unknown = sorted(set(corpus_balance) - set(present))
    if unknown:
        raise TrainingConfigError(
            f"corpus_balance names {', '.join(unknown)}, not in the training data "
            f"(its corpora: {', '.join(present)})"
        )
    missing = [name for name in present if name not in corpus_balance]
    if missing:
        raise TrainingConfigError(
            f"corpus_balance gives no weight to training corpus {', '.join(missing)}"
        )
    total = sum(corpus_balance[name] for name in present)
    return {name: corpus_balance[name] / total for name in present}


def sampling_probabilities(
    indices: np.ndarray,
    targets: np.ndarray,
    *,
    balanced: bool,
    corpora: np.ndarray | None = None,
    corpus_balance: str | Mapping[str, float] = "none",
) -> np.ndarray | None:
    """The probability of drawing each of `indices`, or None for a plain permutation.

    With `corpus_balance` each corpus gets its share (:func:`corpus_shares`) and,
    within it, each of its classes the same part; otherwise with `balanced` each
    class gets the same part of all draws.
    """
    shares = None if corpora is None else corpus_shares(corpora[indices], corpus_balance)
    if shares is not None:
        assert corpora is not None
        weights = np.empty(len(indices))
        for name, share in shares.items():
            inside = corpora[indices] == name
            classes, counts = np.unique(targets[indices][inside], return_counts=True)
            per_class = dict(zip(classes.tolist(), counts.tolist(), strict=True))
            weights[inside] = [
                share / (len(classes) * per_class[t]) for t in targets[indices][inside].tolist()
            ]
        return weights / weights.sum()
    if balanced:
        counts = np.bincount(targets[indices])
        weights = 1.0 / counts[targets[indices]]
        return weights / weights.sum()
    return None


def epoch_batches(
    indices: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    *,
    balanced: bool,
    corpora: np.ndarray | None = None,
    corpus_balance: str | Mapping[str, float] = "none",
) -> Iterator[np.ndarray]:
    """The batches of one epoch, ``len(indices) // batch_size`` of them (at least one).

    With `balanced` or a `corpus_balance`, clips are drawn with replacement with
    :func:`sampling_probabilities` (each class, or each corpus and each class within
    it, gets its share); otherwise the epoch is a random permutation.
    """
    num_batches = max(1, len(indices) // batch_size)
    size = min(batch_size, len(indices))
    probabilities = sampling_probabilities(
        indices, targets, balanced=balanced, corpora=corpora, corpus_balance=corpus_balance
    )
    if probabilities is not None:
        order = rng.choice(indices, size=num_batches * size, replace=True, p=probabilities)
    else:
        order = rng.permutation(indices)[: num_batches * size]
    for b in range(num_batches):
        yield order[b * size : (b + 1) * size]
