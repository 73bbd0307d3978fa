"""The parallel CNN + transformer emotion classifier over MFCC (or log-mel) feature maps.

After IliaZenkov's "parallel is all you want" (two 2-D CNN branches and a transformer encoder
side by side, concatenated into one linear layer), made independent of clip length.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from callmood.errors import CallmoodError

# Time downsampling of the CNN branch: max pools of 2, 4 and 4 frames.
CNN_TIME_STRIDE = 2 * 4 * 4
CNN_TIME_POOLS = ("mean", "max")
POSITIONAL_ENCODINGS = ("none", "sinusoidal")

logger = logging.getLogger(__name__)


class ModelInputError(CallmoodError, ValueError):
    """A model config or a feature batch the network cannot take."""


@dataclass
class ModelConfig:
    """Network hyper-parameters. Defaults are the published design (~241k parameters, 8 classes).

    ``num_features`` must equal the feature config's ``num_features`` (40 MFCCs, or n_mels).
    """

    num_features: int = 40
    num_classes: int = 8
    cnn_channels: tuple[int, int, int] = (16, 32, 64)
    cnn_dropout: float = 0.3
    # How the last CNN block is reduced over time so any clip length gives a fixed-size vector
    # (the published model flattened a fixed 3 s map instead).
    cnn_time_pool: str = "mean"
    transformer_time_pool: int = 4  # max pool over this many frames before the encoder
    transformer_layers: int = 4
    transformer_heads: int = 4
    transformer_feedforward: int = 512
    transformer_dropout: float = 0.4
    positional_encoding: str = "none"  # the published model has none
    attention_pooling: bool = False  # learned weights over time instead of the plain mean
    # Mean and standard deviation of every normalised input feature over the clip, joined to
    # the branches' outputs (x-vector style statistics pooling): the utterance-level
    # "functionals" that classic SER systems classify are then one linear layer away.
    statistics_branch: bool = False
    # With the statistics branch, also the standard deviation of every feature's frame-to-frame
    # change (how fast the spectrum moves: the delta functional of classic SER).
    statistics_deltas: bool = False
    # For speaker-normalised training only (a transductive protocol, docs/training.md): the
    # clip's statistics are standardised with their mean and standard deviation over all of
    # the speaker's clips, passed to forward() as `speaker_statistics`. Normalising these
    # "functionals" per speaker, not only the frames, is what lifts a classic functionals
    # classifier on EmoDB (docs/results.md).
    statistics_per_speaker: bool = False
    # With the statistics branch, also the same statistics of the absolute (not
    # caller-normalised) features of the window, passed to forward() as `absolute_features`
    # and standardised with the training population's (buffers set by
    # set_absolute_statistics). Caller normalisation removes the absolute level and spectral
    # tilt that carry anger; these give them back (docs/training.md).
    absolute_statistics: bool = False
    # With absolute_statistics, false leaves out the absolute mean of the first feature (MFCC
    # c0, the log energy): a line's gain shifts only that one (it adds a constant to every
    # log-mel band, and the DCT puts a constant in c0 alone), so the network stays blind to
    # the level of an uncalibrated line and keeps the absolute spectral shape.
    absolute_level: bool = True
    # With the statistics branch, a hidden layer of this many units (GELU, dropout) between
    # the statistics (normalised and absolute) and the decision: a small classifier of the
    # functionals inside the network, where a classic SER system puts an RBF SVM. 0: the
    # statistics go straight to the one linear decision layer.
    statistics_hidden: int = 0

    def __post_init__(self) -> None:
        problems = []
        positive_integers = {
            "num_features": 32,  # the CNN pools the feature axis 32x
            "num_classes": 2,
            "transformer_time_pool": 1,
            "transformer_layers": 1,
            "transformer_heads": 1,
            "transformer_feedforward": 1,
        }
        for name, minimum in positive_integers.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")
        channels = self.cnn_channels
        if not (
            isinstance(channels, list | tuple)
            and len(channels) == 3
            and all(isinstance(c, int) and c >= 1 for c in channels)
        ):
            problems.append(f"cnn_channels must be 3 positive integers, got {channels!r}")
        else:
            self.cnn_channels = tuple(channels)
        for name in ("cnn_dropout", "transformer_dropout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1:
                problems.append(f"{name} must be in [0, 1), got {value!r}")
        if not problems and self.num_features % self.transformer_heads:
            problems.append(
                f"num_features={self.num_features} must be divisible by "
                f"transformer_heads={self.transformer_heads}"
            )
        if self.cnn_time_pool not in CNN_TIME_POOLS:
            problems.append(
                f"cnn_time_pool must be one of {CNN_TIME_POOLS}, got {self.cnn_time_pool!r}"
            )
        if self.positional_encoding not in POSITIONAL_ENCODINGS:
            problems.append(
                f"positional_encoding must be one of {POSITIONAL_ENCODINGS}, "
                f"got {self.positional_encoding!r}"
            )
        flags = ("attention_pooling", "statistics_branch", "statistics_deltas")
        for flag in (*flags, "statistics_per_speaker", "absolute_statistics", "absolute_level"):
            if not isinstance(getattr(self, flag), bool):
                problems.append(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        for flag in ("statistics_deltas", "statistics_per_speaker", "absolute_statistics"):
            if getattr(self, flag) is True and self.statistics_branch is not True:
                problems.append(f"{flag} needs statistics_branch: true")
        if self.absolute_level is False and self.absolute_statistics is not True:
            problems.append("absolute_level: false needs absolute_statistics: true")
        hidden = self.statistics_hidden
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 0:
            problems.append(f"statistics_hidden must be an integer >= 0, got {hidden!r}")
        elif hidden and self.statistics_branch is not True:
            problems.append("statistics_hidden needs statistics_branch: true")
        if self.absolute_statistics is True and self.statistics_per_speaker is True:
            # Per-speaker statistics are the transductive protocol; absolute ones the plain.
            problems.append("absolute_statistics and statistics_per_speaker exclude each other")
        if problems:
            raise ModelInputError("invalid model config: " + "; ".join(problems))

    @property
    def min_frames(self) -> int:
        """Shortest input the network takes, in frames (0.32 s at a 10 ms hop)."""
        return max(CNN_TIME_STRIDE, self.transformer_time_pool)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["cnn_channels"] = list(self.cnn_channels)
        if not self.absolute_statistics:
            # Left out when off, so model.json of every model without it reads as before.
            del values["absolute_statistics"]
        if not self.statistics_hidden:
            del values["statistics_hidden"]
        if self.absolute_level:
            del values["absolute_level"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelInputError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**values)


class ConvBranch(nn.Module):
    """Three conv blocks (3x3 conv, batch norm, ReLU, max pool, dropout) over the feature map."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels, pool in zip(config.cnn_channels, (2, 4, 4), strict=True):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=pool, stride=pool),
                nn.Dropout(config.cnn_dropout),
            ]
            in_channels = out_channels
        self.blocks = nn.Sequential(*layers)
        self.time_pool = config.cnn_time_pool
        self.output_size = config.cnn_channels[-1] * (config.num_features // CNN_TIME_STRIDE)

    def forward(self, features: torch.Tensor, time_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.blocks(features.unsqueeze(1))  # (B, 1, F, T) -> (B, C, F/32, T/32)
        x = x.flatten(1, 2)  # (B, C * F/32, T/32)
        if time_mask is not None:
            mask = time_mask[:, None, : x.shape[-1]]  # (B, 1, T/32), True = real frames
            if self.time_pool == "max":
                return x.masked_fill(~mask, float("-inf")).amax(-1)
            return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        if self.time_pool == "max":
            return x.amax(-1)  # (B, C * F/32)
        return x.mean(-1)  # (B, C * F/32)


class SelfAttention(nn.Module):
    """Multi-head self-attention over time frames (same parameters as nn.MultiheadAttention)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        batch, frames, width = x.shape
        head_width = width // self.heads
        q, k, v = self.qkv(x).split(width, dim=-1)  # each (B, T, W)
        q, k, v = (t.view(batch, frames, self.heads, head_width).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(head_width)  # (B, H, T, T)
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        weights = self.dropout(scores.softmax(-1))
        y = (weights @ v).transpose(1, 2).reshape(batch, frames, width)  # (B, T, W)
        return self.out(y)


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer with ReLU, as nn.TransformerEncoderLayer's defaults.

    Written out so that the ONNX export never meets PyTorch's fused fast path.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.num_features
        self.attention = SelfAttention(width, config.transformer_heads, config.transformer_dropout)
        self.norm1 = nn.LayerNorm(width)
        self.feedforward = nn.Sequential(
            nn.Linear(width, config.transformer_feedforward),
            nn.ReLU(),
            nn.Dropout(config.transformer_dropout),
            nn.Linear(config.transformer_feedforward, width),
        )
        self.norm2 = nn.LayerNorm(width)
        self.dropout1 = nn.Dropout(config.transformer_dropout)
        self.dropout2 = nn.Dropout(config.transformer_dropout)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.attention(x, key_padding)))
        return self.norm2(x + self.dropout2(self.feedforward(x)))


class TransformerBranch(nn.Module):
    """Max pool over time, a transformer encoder over frames, then pooling over time."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.time_pool = config.transformer_time_pool
        self.positional_encoding = config.positional_encoding
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.transformer_layers))
        self.attention_pool = (
            nn.Linear(config.num_features, 1) if config.attention_pooling else None
        )
        self.output_size = config.num_features

    def forward(self, features: torch.Tensor, time_mask: torch.Tensor | None) -> torch.Tensor:
        pool = self.time_pool
        x = F.max_pool2d(features.unsqueeze(1), kernel_size=(1, pool), stride=(1, pool))
        x = x.squeeze(1).transpose(1, 2)  # (B, 1, F, T/p) -> (B, T/p, F): frames are tokens
        if self.positional_encoding == "sinusoidal":
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        key_padding = None if time_mask is None else ~time_mask[:, : x.shape[1]]  # (B, T/p)
        for layer in self.layers:
            x = layer(x, key_padding)
        if self.attention_pool is not None:
            scores = self.attention_pool(x).squeeze(-1)  # (B, T/p)
            if key_padding is not None:
                scores = scores.masked_fill(key_padding, float("-inf"))
            return (scores.softmax(-1).unsqueeze(-1) * x).sum(1)  # (B, F)
        if key_padding is None:
            return x.mean(1)  # (B, F)
        keep = (~key_padding).unsqueeze(-1).to(x.dtype)  # (B, T/p, 1)
        return (x * keep).sum(1) / keep.sum(1).clamp(min=1)


def sinusoidal_positions(frames: int, width: int, device: torch.device) -> torch.Tensor:
    """Fixed sine/cosine position encodings ("Attention is all you need"), shape (frames, width)."""
    position = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    encoding = torch.zeros(frames, width, device=device)
    encoding[:, 0::2] = torch.sin(position * rate)
    encoding[:, 1::2] = torch.cos(position * rate)
    return encoding


def time_statistics(
    x: torch.Tensor, mask: torch.Tensor | None = None, deltas: bool = False
) -> torch.Tensor:
    """Mean and standard deviation over time of (B, F, T) features -> (B, 2F).

    `mask` (B, T) marks real frames; padded frames are left out. With `deltas`, the standard
    deviation of the frame-to-frame differences follows -> (B, 3F).
    """
    mean, std = _masked_mean_std(x, mask)
    if not deltas:
        return torch.cat([mean, std], dim=1)
    # A difference is real when both of its frames are.
    delta_mask = None if mask is None else mask[:, 1:] & mask[:, :-1]
    _, delta_std = _masked_mean_std(x[..., 1:] - x[..., :-1], delta_mask)
    return torch.cat([mean, std, delta_std], dim=1)


def _set_mean_std(
    mean_buffer: torch.Tensor,
    std_buffer: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    what: str,
) -> None:
    # Standard deviations below 1e-5 are raised to it, so a constant value cannot divide by 0.
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    expected = mean_buffer.numel()
    if mean.numel() != expected or std.numel() != expected:
        raise ModelInputError(
            f"{what} needs {expected} means and stds, got {mean.numel()} and {std.numel()}"
        )
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ModelInputError(f"{what} mean/std contain NaN or infinite values")
    mean_buffer.copy_(mean)
    std_buffer.copy_(std.clamp(min=1e-5))


def _masked_mean_std(
    x: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if mask is None:
        mean = x.mean(-1)
        variance = (x - mean[..., None]).square().mean(-1)
    else:
        weights = mask[:, None, :].to(x.dtype)
        count = weights.sum(-1).clamp(min=1)
        mean = (x * weights).sum(-1) / count
        variance = ((x - mean[..., None]).square() * weights).sum(-1) / count
    # The epsilon keeps the gradient of sqrt finite for a constant feature.
    return mean, (variance + 1e-5).sqrt()


class ParallelCNNTransformer(nn.Module):
    """Features (B, num_features, frames) -> emotion logits (B, num_classes), for any frames.

    Per-feature normalisation (``feature_mean``, ``feature_std``, set from the training data by
    :meth:`set_normalization`) is applied first, inside the network, so every export carries it.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        num_features = self.config.num_features
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        if self.config.absolute_statistics:
            # Only then: the weights of every other model keep exactly their tensors.
            self.register_buffer("absolute_mean", torch.zeros(self.statistics_size))
            self.register_buffer("absolute_std", torch.ones(self.statistics_size))
        self.conv_branch1 = ConvBranch(self.config)
        self.conv_branch2 = ConvBranch(self.config)
        self.transformer_branch = TransformerBranch(self.config)
        statistics = self.statistics_size * (2 if self.config.absolute_statistics else 1)
        if self.config.statistics_hidden:
            self.statistics_head = nn.Sequential(
                nn.Linear(statistics, self.config.statistics_hidden),
                nn.GELU(),
                nn.Dropout(self.config.cnn_dropout),
            )
            statistics = self.config.statistics_hidden
        joined = (
            self.conv_branch1.output_size
            + self.conv_branch2.output_size
            + self.transformer_branch.output_size
            + statistics
        )
        self.classifier = nn.Linear(joined, self.config.num_classes)
        logger.info("ParallelCNNTransformer: %d parameters", self.num_parameters())

    @property
    def statistics_size(self) -> int:
        """Values the statistics branch adds: 0, 2F, or 3F with the delta deviations."""
        if not self.config.statistics_branch:
            return 0
        return (3 if self.config.statistics_deltas else 2) * self.config.num_features

    def num_parameters(self) -> int:
        """Trainable parameters (the normalisation buffers are not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @torch.no_grad()
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-feature mean and standard deviation (each (num_features,)) of training data.

        Standard deviations below 1e-5 are raised to it, so a constant feature cannot divide by 0.
        """
        _set_mean_std(self.feature_mean, self.feature_std, mean, std, "normalisation")

    @torch.no_grad()
    def set_absolute_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the training population's mean and standard deviation, each (statistics_size,),
        of :func:`time_statistics` of absolute features, for ``absolute_statistics``."""
        if not self.config.absolute_statistics:
            raise ModelInputError("set_absolute_statistics needs model.absolute_statistics")
        _set_mean_std(self.absolute_mean, self.absolute_std, mean, std, "absolute statistics")

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor | None = None,
        speaker_statistics: torch.Tensor | None = None,
        absolute_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits.

        Parameters
        ----------
        features
            (B, num_features, frames) float32, frames >= ``config.min_frames``.
        lengths
            Optional (B,) true lengths in frames for a zero/floor-padded batch; padded frames are
            then left out of every average over time. ``None``: all frames are real.
        speaker_statistics
            (B, 2, statistics_size) float32: the mean and standard deviation, over all of each
            clip's speaker's clips, of :func:`time_statistics` of the input features; needed
            by (and only by) a model with ``statistics_per_speaker``
            (:func:`callmood.training.data.speaker_clip_statistics` computes them).
        absolute_features
            (B, num_features, frames): the same windows before caller normalisation; needed
            by (and only by) a model with ``absolute_statistics``.

        Returns
        -------
        torch.Tensor
            (B, num_classes) logits (apply softmax for probabilities).
        """
        return self.joined_logits(
            self.branches(features, lengths, speaker_statistics, absolute_features)
        )

    def branches(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor | None = None,
        speaker_statistics: torch.Tensor | None = None,
        absolute_features: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Each branch's output, (B, size) each, in the classifier's order; as :meth:`forward`."""
        self._check(features)
        x = (features - self.feature_mean[:, None]) / self.feature_std[:, None]  # (B, F, T)
        cnn_mask = transformer_mask = frame_mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=features.device)
            if lengths.shape != (features.shape[0],):
                raise ModelInputError(
                    f"lengths must have one entry (frames) per clip, shape ({features.shape[0]},),"
                    f" got {tuple(lengths.shape)}"
                )
            frame_index = torch.arange(features.shape[-1], device=features.device)
            cnn_frames = torch.div(lengths, CNN_TIME_STRIDE, rounding_mode="floor").clamp(min=1)
            cnn_mask = frame_index[None, :] < cnn_frames[:, None]  # (B, T) of which T/32 used
            pool = self.config.transformer_time_pool
            tokens = torch.div(lengths, pool, rounding_mode="floor").clamp(min=1)
            transformer_mask = frame_index[None, :] < tokens[:, None]
            frame_mask = frame_index[None, :] < lengths[:, None]
        parts = [
            self.conv_branch1(x, cnn_mask),
            self.conv_branch2(x, cnn_mask),
            self.transformer_branch(x, transformer_mask),
        ]
        if self.config.statistics_per_speaker:
            if speaker_statistics is None or speaker_statistics.shape != (
                features.shape[0],
                2,
                self.statistics_size,
            ):
                raise ModelInputError(
                    "this model standardises its statistics per speaker: pass "
                    f"speaker_statistics of shape ({features.shape[0]}, 2, "
                    f"{self.statistics_size})"
                )
            # Standardising is blind to the per-feature affine normalisation above, so the
            # statistics of the input features are compared with the speaker's directly.
            statistics = time_statistics(features, frame_mask, self.config.statistics_deltas)
            parts.append((statistics - speaker_statistics[:, 0]) / speaker_statistics[:, 1])
        elif speaker_statistics is not None:
            # Silently ignoring them would hide a mix-up of models.
            raise ModelInputError(
                "speaker_statistics were given to a model without statistics_per_speaker"
            )
        elif self.config.statistics_branch:
            parts.append(time_statistics(x, frame_mask, self.config.statistics_deltas))
        if self.config.absolute_statistics:
            if absolute_features is None or (
                not torch.compiler.is_compiling() and absolute_features.shape != features.shape
            ):
                raise ModelInputError(
                    "this model also takes the statistics of the absolute features: pass "
                    f"absolute_features (the windows before caller normalisation) of shape "
                    f"{tuple(features.shape)}"
                )
            absolute = time_statistics(absolute_features, frame_mask, self.config.statistics_deltas)
            absolute = (absolute - self.absolute_mean) / self.absolute_std
            if not self.config.absolute_level:
                # The first statistic is the mean of c0: the line's level (see the config).
                absolute = torch.cat([torch.zeros_like(absolute[:, :1]), absolute[:, 1:]], dim=1)
            parts.append(absolute)
        elif absolute_features is not None:
            raise ModelInputError(
                "absolute_features were given to a model without absolute_statistics"
            )
        if self.config.statistics_hidden:
            # One part for all the statistics: the hidden layer sees them together.
            parts = [*parts[:3], self.statistics_head(torch.cat(parts[3:], dim=1))]
        return parts

    def joined_logits(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The one linear layer over the concatenated branch outputs of :meth:`branches`."""
        return self.classifier(torch.cat(parts, dim=1))

    def branch_logits(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of each branch alone: its slice of the classifier's weights, and the bias.

        The joined logits are their sum less the repeated bias, so a loss on each branch
        (`branch_loss` in training) asks every branch to classify by itself without
        changing the network that is exported.
        """
        logits, start = [], 0
        for part in parts:
            weight = self.classifier.weight[:, start : start + part.shape[1]]
            logits.append(F.linear(part, weight, self.classifier.bias))
            start += part.shape[1]
        return logits

    def _check(self, features: torch.Tensor) -> None:
        if torch.compiler.is_compiling():  # shapes are symbolic while exporting
            return
        expected = self.config.num_features
        if features.ndim != 3 or features.shape[1] != expected:
            raise ModelInputError(
                f"features must have shape (batch, {expected}, frames), got {tuple(features.shape)}"
            )
        if features.shape[2] < self.config.min_frames:
            raise ModelInputError(
                f"features have {features.shape[2]} frames; the model needs at least "
                f"{self.config.min_frames} (0.32 s at a 10 ms hop)"
            )
