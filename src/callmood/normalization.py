"""Causal per-caller feature normalisation: each caller's features are mapped onto the
training population's, with statistics of that caller's own speech so far.

Every caller arrives on another line, microphone and level, with another voice. A model
trained on a few acted corpora learns their channels along with their emotions; on a new
corpus (or a contact centre's phone line) that shift alone sends it towards chance.
Cepstral mean and variance normalisation per caller removes the shift: a window's features
are standardised with the caller's running mean and standard deviation, then mapped back
onto the training data's (the model's own input normalisation, the *prior*), so the network
itself is unchanged.

Only the past is used. The statistics for a window are a blend of the prior, weighted as
``prior_seconds`` of speech, and every frame of this caller's windows up to and including
that window: the first window of a call leans on the prior, later ones more and more on the
caller. A caller who keeps one mood all call therefore drifts towards "their usual": an
angry-all-call caller's later windows are judged against their own angry voice, not against
the population (docs/model.md discusses what that costs). Training simulates exactly this
(`training.loop`): each crop is normalised with the prior, its own frames and, for some
crops, earlier clips of the same speaker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from callmood.errors import CallmoodError

# The variance floor, in squared feature units: a constant feature must not divide by ~0.
_MIN_VARIANCE = 1e-6


class NormalizationError(CallmoodError, ValueError):
    """A caller-normalisation prior or feature batch that cannot be used."""


@dataclass(frozen=True)
class CallerPrior:
    """What is assumed of a caller before they have said anything.

    Attributes
    ----------
    mean, std
        Per-feature mean and standard deviation of the training frames, (num_features,).
    frames
        How many frames of the caller's speech the prior weighs as (``prior_seconds`` at
        the feature hop).
    memory_frames
        The caller's statistics forget with this time constant, in frames: each window's
        frames weigh ``exp(-later frames / memory_frames)`` once later windows have come.
        None: every frame of the call so far weighs the same.
    """

    mean: np.ndarray
    std: np.ndarray
    frames: float
    memory_frames: float | None = None

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if mean.shape != std.shape or not len(mean):
            raise NormalizationError(
                f"caller prior needs one mean and one std per feature, got {mean.shape} and "
                f"{std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise NormalizationError("caller prior mean/std must be finite, std > 0")
        if not (isinstance(self.frames, int | float) and self.frames > 0):
            raise NormalizationError(f"caller prior weight must be > 0 frames, got {self.frames!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "frames", float(self.frames))
        if self.memory_frames is not None:
            if not (isinstance(self.memory_frames, int | float) and self.memory_frames > 0):
                raise NormalizationError(
                    f"caller memory must be > 0 frames or None, got {self.memory_frames!r}"
                )
            object.__setattr__(self, "memory_frames", float(self.memory_frames))

    def decay(self, frames: float) -> float:
        """How much of the caller's earlier statistics is kept after `frames` new frames."""
        if self.memory_frames is None:
            return 1.0
        return float(np.exp(-frames / self.memory_frames))

    def add(self, caller: FrameSums, new: FrameSums) -> FrameSums:
        """The caller's statistics once `new` frames have followed `caller`."""
        return caller.scaled(self.decay(new.count)) + new

    @property
    def num_features(self) -> int:
        return len(self.mean)

    def to_dict(self, hop_seconds: float) -> dict[str, Any]:
        """The ``caller_normalization`` block of ``model.json``."""
        memory = None if self.memory_frames is None else round(self.memory_frames * hop_seconds, 6)
        return {
            "prior_seconds": round(self.frames * hop_seconds, 6),
            "memory_seconds": memory,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, values: Any, hop_seconds: float) -> CallerPrior:
        """Inverse of :meth:`to_dict`."""
        keys = {"prior_seconds", "memory_seconds", "mean", "std"}
        if not isinstance(values, dict) or not {"prior_seconds", "mean", "std"} <= set(values):
            raise NormalizationError(
                "caller_normalization must be a mapping of prior_seconds, mean and std "
                "(and memory_seconds)"
            )
        if set(values) - keys:
            unknown = ", ".join(sorted(map(str, set(values) - keys)))
            raise NormalizationError(f"caller_normalization: unknown keys {unknown}")
        try:
            seconds = float(values["prior_seconds"])
            memory = values.get("memory_seconds")
            return cls(
                mean=np.asarray(values["mean"], dtype=np.float64),
                std=np.asarray(values["std"], dtype=np.float64),
                frames=seconds / hop_seconds,
                memory_frames=None if memory is None else float(memory) / hop_seconds,
            )
        except (TypeError, ValueError) as error:
            if isinstance(error, NormalizationError):
                raise
            raise NormalizationError(f"caller_normalization: {error}") from None


@dataclass
class FrameSums:
    """Count, sum and sum of squares of feature frames, in float64 (exact to add up)."""

    count: float
    total: np.ndarray  # (num_features,)
    squares: np.ndarray  # (num_features,)

    @classmethod
    def empty(cls, num_features: int) -> FrameSums:
        return cls(0.0, np.zeros(num_features), np.zeros(num_features))

    @classmethod
    def of(cls, features: np.ndarray | torch.Tensor) -> FrameSums:
        """The sums over every frame of one (num_features, frames) map."""
        values = np.asarray(features, dtype=np.float64)
        return cls(float(values.shape[1]), values.sum(1), np.square(values).sum(1))

    def scaled(self, factor: float) -> FrameSums:
        return FrameSums(self.count * factor, self.total * factor, self.squares * factor)

    def __add__(self, other: FrameSums) -> FrameSums:
        return FrameSums(
            self.count + other.count, self.total + other.total, self.squares + other.squares
        )


def normalize_features(
    features: torch.Tensor, sums: Sequence[FrameSums], prior: CallerPrior
) -> torch.Tensor:
    """Map each map of `features` (B, F, T) from its caller's statistics onto the prior's.

    ``sums[b]`` are the caller's frames so far (the prior is added here). Each feature is
    standardised with the blended mean and standard deviation, then scaled back to the
    prior's, so the model's own input normalisation applies as in training.
    """
    if features.ndim != 3 or features.shape[1] != prior.num_features or len(sums) != len(features):
        raise NormalizationError(
            f"caller normalisation needs (batch, {prior.num_features}, frames) features and one "
            f"FrameSums each, got {tuple(features.shape)} and {len(sums)}"
        )
    weight = prior.frames
    prior_squares = np.square(prior.std) + np.square(prior.mean)
    means, stds = [], []
    for caller in sums:
        count = weight + caller.count
        mean = (weight * prior.mean + caller.total) / count
        variance = (weight * prior_squares + caller.squares) / count - np.square(mean)
        means.append(mean)
        stds.append(np.sqrt(np.maximum(variance, _MIN_VARIANCE)))
    mean = torch.from_numpy(np.stack(means)).to(features.dtype)[:, :, None]
    std = torch.from_numpy(np.stack(stds)).to(features.dtype)[:, :, None]
    prior_mean = torch.from_numpy(prior.mean).to(features.dtype)[None, :, None]
    prior_std = torch.from_numpy(prior.std).to(features.dtype)[None, :, None]
    return (features - mean) / std * prior_std + prior_mean


def normalize_alone(features: torch.Tensor, prior: CallerPrior) -> torch.Tensor:
    """Each map of `features` (B, F, T) as the first window of a call of its own."""
    return normalize_features(features, [FrameSums.of(f) for f in features], prior)


class CallerNormalizer:
    """The running statistics of one caller (one channel of one call), fed window by window.

    :meth:`normalize` takes the caller's windows in time order: each window's frames join the
    statistics (the older ones fading with the prior's memory), then the window is
    normalised with them, so every output depends only on the windows before it and itself.
    """

    def __init__(self, prior: CallerPrior) -> None:
        self.prior = prior
        self.sums = FrameSums.empty(prior.num_features)

    def normalize(self, window: np.ndarray, real_frames: slice | None = None) -> np.ndarray:
        """Normalise one (num_features, frames) window; ``real_frames`` selects the frames
        that hear audio (a short window padded with zeros counts only those)."""
        return self.normalize_windows(np.asarray(window)[None], [real_frames])[0]

    def normalize_windows(
        self, windows: np.ndarray, real_frames: Sequence[slice | None]
    ) -> np.ndarray:
        """:meth:`normalize` for the caller's next windows (N, num_features, frames) in time
        order, at once: the same result, one vectorised normalisation."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 3 or len(real_frames) != len(windows):
            raise NormalizationError(
                f"normalize_windows needs (windows, features, frames) and one frame range per "
                f"window, got {windows.shape} and {len(real_frames)}"
            )
        sums = []
        for window, frames in zip(windows, real_frames, strict=True):
            counted = window if frames is None else window[:, frames]
            if counted.shape[1]:
                self.sums = self.prior.add(self.sums, FrameSums.of(counted))
            sums.append(self.sums)
        return normalize_features(torch.from_numpy(windows), sums, self.prior).numpy()
