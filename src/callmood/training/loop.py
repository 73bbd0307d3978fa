"""The training loop: crops and augmentation, class balancing, AdamW with a schedule, early
stopping on validation UA, and resumable checkpoints that hold data, never code.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from callmood.errors import CallmoodError
from callmood.normalization import CallerPrior, FrameSums, normalize_alone, normalize_features
from callmood.training.augment import WaveformAugmenter, mixup, spec_augment
from callmood.training.config import TrainingConfig, TrainingConfigError
from callmood.training.data import (
    ClipSet,
    TrainingDataError,
    clip_statistics_population,
    corpus_shares,
    epoch_batches,
    frame_statistics,
    random_crop,
    speaker_clip_statistics,
)
from callmood.training.metrics import ClassificationMetrics, classification_metrics

LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.safetensors"
CHECKPOINT_FORMAT = 1


class CheckpointError(CallmoodError):
    """A checkpoint that cannot be resumed from (missing, corrupt, or from another config)."""


@dataclass
class EpochRecord:
    """What one epoch did; written as one JSON line to ``metrics.jsonl``."""

    epoch: int
    train_loss: float
    learning_rate: float
    validation_ua: float | None
    validation_wa: float | None
    seconds: float
    best: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TrainingResult:
    """The trained model (best weights by validation UA, or last without validation)."""

    model: torch.nn.Module
    history: list[EpochRecord]
    best_epoch: int
    best_validation_ua: float | None
    validation_metrics: ClassificationMetrics | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    # With caller normalisation: what the model's inputs are normalised against.
    caller_prior: CallerPrior | None = None


def build_model(config: TrainingConfig, num_features: int, num_classes: int) -> torch.nn.Module:
    """The parallel CNN + transformer for this config's `model` block."""
    from callmood.models.parallel_cnn_transformer import ModelConfig, ParallelCNNTransformer

    try:
        model_config = ModelConfig(
            **{**config.model, "num_features": num_features, "num_classes": num_classes}
        )
    except TypeError as error:
        raise TrainingConfigError(f"model: {error}") from None
    return ParallelCNNTransformer(model_config)


def model_speaker_statistics(
    model: torch.nn.Module, clips: ClipSet, config: TrainingConfig | None = None
) -> torch.Tensor | None:
    """What a ``statistics_per_speaker`` model needs besides features, (N, 2, size); else None.

    With the training `config`, also checks that the recipe allows such a model.
    """
    if not model.config.statistics_per_speaker:
        return None
    if config is not None and not config.speaker_normalization:
        raise TrainingConfigError(
            "model.statistics_per_speaker needs speaker_normalization: true (both use each "
            "speaker's unlabelled clips: the transductive protocol)"
        )
    if config is not None and config.augmentation.mixup_alpha > 0:
        raise TrainingConfigError(
            "model.statistics_per_speaker does not combine with mixup (a mixed clip has no "
            "one speaker)"
        )
    return speaker_clip_statistics(clips, model.config.statistics_deltas)


class _GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient comes back negated and scaled."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, scale: float
    ) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        return -ctx.scale * grad, None


class CorpusAdversary(torch.nn.Module):
    """Tells the training corpora apart from the network's joined branch outputs, behind a
    gradient reversal (Ganin & Lempitsky 2015, domain-adversarial training).

    Minimising its cross-entropy trains it to find the corpus, and the reversed gradient moves
    the network's features so that it cannot: what is left is less of the studio, language and
    microphone that a caller never shares with the training corpora. Training-only: it is not
    part of the exported model.
    """

    def __init__(self, width: int, num_corpora: int, hidden: int = 64) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_corpora)
        )

    def forward(self, joined: torch.Tensor, scale: float) -> torch.Tensor:
        return self.layers(_GradientReversal.apply(joined, scale))


def adversarial_scale(progress: float) -> float:
    """The reversal's strength at `progress` (0..1) of training: 0 while the features are
    still noise, rising smoothly to 1 (the schedule of Ganin & Lempitsky)."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights, ``N / (classes * count)``: each class weighs the same in total."""
    counts = np.maximum(counts, 1)
    return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)


@torch.no_grad()
def predict_clips(
    model: torch.nn.Module,
    features: list[torch.Tensor],
    speaker_statistics: torch.Tensor | None = None,
    caller_prior: CallerPrior | None = None,
    absolute_features: list[torch.Tensor] | None = None,
) -> np.ndarray:
    """Logits of each whole clip, shape (N, classes); clips run one by one (no padding).

    Clips shorter than the network's minimum (0.32 s) are tiled up to it.
    `speaker_statistics` (N, 2, size): for a model with ``statistics_per_speaker``.
    `caller_prior`: for a caller-normalised model; each clip is then normalised as the
    first window of a call of its own (nothing else of its speaker is used).
    `absolute_features`: for a model with ``absolute_statistics`` given clips that are
    normalised already, each clip before normalisation; with `caller_prior`, the clips
    themselves are.
    """
    model.eval()
    min_frames = model.config.min_frames
    takes_absolute = model.config.absolute_statistics
    logits = []
    for i, clip in enumerate(features):
        absolute = None if absolute_features is None else absolute_features[i]
        if caller_prior is not None:
            absolute = clip if absolute is None else absolute
            clip = normalize_alone(clip[None], caller_prior)[0]
        if clip.shape[1] < min_frames:
            repeats = -(-min_frames // clip.shape[1])
            clip = clip.repeat(1, repeats)
            absolute = None if absolute is None else absolute.repeat(1, repeats)
        mine = None if speaker_statistics is None else speaker_statistics[i : i + 1]
        extra = {}
        if takes_absolute:
            # None reaches the model, which says what it is missing.
            extra["absolute_features"] = None if absolute is None else absolute[None]
        logits.append(model(clip[None], speaker_statistics=mine, **extra)[0])
    return torch.stack(logits).numpy() if logits else np.zeros((0, 0), dtype=np.float32)


def evaluate_clips(
    model: torch.nn.Module,
    clips: ClipSet,
    indices: np.ndarray,
    speaker_statistics: torch.Tensor | None = None,
    caller_prior: CallerPrior | None = None,
) -> ClassificationMetrics:
    """UA, WA, ... of the model on whole clips `indices` of `clips`.

    `speaker_statistics`: :func:`model_speaker_statistics` of `clips` when already at hand
    (computed here otherwise). `caller_prior`: as :func:`predict_clips`.
    """
    logits = clip_logits(model, clips, indices, speaker_statistics, caller_prior)
    return classification_metrics(clips.targets[indices], logits.argmax(1), clips.classes)


def clip_logits(
    model: torch.nn.Module,
    clips: ClipSet,
    indices: np.ndarray,
    speaker_statistics: torch.Tensor | None = None,
    caller_prior: CallerPrior | None = None,
) -> np.ndarray:
    """Logits (len(indices), classes) of whole clips `indices` of `clips`, as evaluate_clips."""
    statistics = speaker_statistics
    if statistics is None:
        statistics = model_speaker_statistics(model, clips)
    return predict_clips(
        model,
        [clips.features[i] for i in indices],
        None if statistics is None else statistics[indices],
        caller_prior,
    )


def _make_scheduler(
    config: TrainingConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    schedule = config.schedule
    if schedule.kind == "onecycle":
        warmup_fraction = max(schedule.warmup_fraction, 1e-3)
        if math.isclose(warmup_fraction * total_steps, 1.0):
            # A warm-up of exactly one step makes OneCycleLR divide by zero (a small data set:
            # 10 steps at 0.1); just under one step is the same schedule.
            warmup_fraction = 0.99 / total_steps
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.optimizer.learning_rate,
            total_steps=total_steps,
            pct_start=warmup_fraction,
        )
    warmup = int(schedule.warmup_fraction * total_steps) if schedule.kind == "cosine" else 0

    def factor(step: int) -> float:
        if schedule.kind == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _BatchMaker:
    """Turns a batch of clip indices into (features, targets) for one training step."""

    def __init__(
        self,
        config: TrainingConfig,
        clips: ClipSet,
        train_indices: np.ndarray,
        caller_prior: CallerPrior | None = None,
        absolute: bool = False,
    ) -> None:
        from callmood.features import FeatureExtractor

        self.config = config
        self.clips = clips
        feature_config = clips.feature_config
        self.crop_samples = round(config.crop_seconds * feature_config.sample_rate)
        self.crop_frames = feature_config.frames_for(self.crop_samples)
        self.augmenter = WaveformAugmenter(config.augmentation, feature_config.sample_rate)
        self.extractor = FeatureExtractor(feature_config).eval()
        self.waveform_fraction = (
            config.augmentation.waveform_fraction if clips.waveforms is not None else 0.0
        )
        self.caller_prior = caller_prior
        self.absolute = absolute
        self.speaker_clips: dict[str, np.ndarray] = {}
        self.clip_sums: dict[int, FrameSums] = {}
        if caller_prior is not None:
            # A call's earlier speech comes from the same speaker's other training clips.
            speakers = np.array([clips.rows[i].speaker for i in train_indices], dtype=object)
            for speaker in set(speakers):
                self.speaker_clips[speaker] = train_indices[speakers == speaker]

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """The batch's crops, as the network's `features`."""
        return self.views(batch, rng)[0]

    def views(
        self, batch: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's crops, and with `absolute` the same crops before caller normalisation
        (and before SpecAugment, whose masks belong to the normalised view), else None."""
        augmentation = self.config.augmentation
        if self.waveform_fraction > 0 and rng.random() < self.waveform_fraction:
            waveforms, warps = [], []
            for i in batch:
                factor = self.augmenter.speed_factor(rng)
                # Crop `factor` times more audio so the sped-up crop is crop_seconds long.
                source = self.clips.waveforms[i].astype(np.float32)
                crop = random_crop(source, round(self.crop_samples * factor), rng)
                crop = self.augmenter(np.ascontiguousarray(crop), rng, speed_factor=factor)
                waveforms.append(_fit_length(crop, self.crop_samples))
                if augmentation.vocal_tract.probability > 0:
                    warps.append(self.augmenter.warp_factor(rng))
            # VTLP warps the mel filterbank (the power spectrum's frequency axis) rather than
            # the audio: the extractor already has the power spectrum, so a warped crop costs
            # one dense filterbank product and no STFT round trip or phase artefacts. It hence
            # acts on the finished crop (the channel's band edges shift with the formants, by
            # at most the drawn factor) and only in these batches, as the other audio
            # augmentations; cached clean features have no spectrum left to warp.
            with torch.no_grad():
                features = self.extractor(
                    torch.from_numpy(np.stack(waveforms)), warps=warps or None
                )
            if self.clips.speaker_statistics is not None:
                statistics = [self.clips.speaker_statistics[i] for i in batch]
                mean = torch.stack([m for m, _ in statistics])[:, :, None]
                std = torch.stack([s for _, s in statistics])[:, :, None]
                features = (features - mean) / std
            augmented = True
        else:
            features = torch.stack(
                [random_crop(self.clips.features[i], self.crop_frames, rng) for i in batch]
            ).clone()
            augmented = False
        absolute = features.clone() if self.absolute else None
        if self.caller_prior is not None:
            features = self._normalize_callers(features, batch, augmented, rng)
        if augmentation.spec_augment.probability > 0:
            spec_augment(features, augmentation, rng)
        return features, absolute

    def _normalize_callers(
        self, features: torch.Tensor, batch: np.ndarray, augmented: bool, rng: np.random.Generator
    ) -> torch.Tensor:
        # As call analysis does: the prior, the crop's own frames and, for some crops, the
        # speaker's earlier speech (other clips, clean; an augmented crop's channel would
        # not match theirs, so those crops are normalised as the first window of a call).
        settings = self.config.caller_normalization
        prior = self.caller_prior
        sums = []
        for crop, i in zip(features, batch, strict=True):
            caller = FrameSums.empty(prior.num_features)
            if not augmented and rng.random() < settings.context_probability:
                others = self.speaker_clips[self.clips.rows[i].speaker]
                others = others[others != i]
                if len(others):
                    low, high = settings.context_clips
                    count = min(len(others), int(rng.integers(low, high + 1)))
                    for j in rng.choice(others, size=count, replace=False):
                        caller = prior.add(caller, self._sums(int(j)))
            sums.append(prior.add(caller, FrameSums.of(crop)))
        return normalize_features(features, sums, self.caller_prior)

    def _sums(self, index: int) -> FrameSums:
        if index not in self.clip_sums:
            self.clip_sums[index] = FrameSums.of(self.clips.features[index])
        return self.clip_sums[index]


def _fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    if len(waveform) >= length:
        return waveform[:length]
    return np.pad(waveform, (0, length - len(waveform)), mode="wrap")


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def _restore_rng(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def _config_fingerprint(config: TrainingConfig) -> str:
    # Resuming under a different recipe would silently mix two experiments.
    return json.dumps(
        config.model_dump(mode="json", exclude={"epochs", "num_threads", "name"}), sort_keys=True
    )


def train_model(
    config: TrainingConfig,
    clips: ClipSet,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> TrainingResult:
    """Train a model on `train_indices`, early-stopping on whole-clip UA of `validation_indices`.

    Parameters
    ----------
    checkpoint_dir
        Where ``last.pt`` (model, optimiser, scheduler, epoch, RNG states) and
        ``best.safetensors`` are written after every epoch; ``None`` = nowhere.
    resume
        Continue from ``checkpoint_dir/last.pt``; the result equals an
        uninterrupted run with the same seed.
    on_step
        Called with (step, steps_per_epoch, loss) after each batch.
    on_epoch_end
        Called with each epoch's record (after its checkpoint is written).

    Raises
    ------
    TrainingDataError
        When the training set misses a class or is empty.
    CheckpointError
        When `resume` finds no usable checkpoint.
    """
    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    train_indices = np.asarray(train_indices, dtype=np.int64)
    validation_indices = np.asarray(validation_indices, dtype=np.int64)
    counts = clips.subset_counts(train_indices)
    if len(train_indices) == 0:
        raise TrainingDataError("no training clips")
    missing = [name for name, count in zip(clips.classes, counts, strict=True) if count == 0]
    if missing:
        raise TrainingDataError(f"no training clips of class {', '.join(missing)}")

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model(config, clips.features[0].shape[0], len(clips.classes))
    speaker_statistics = model_speaker_statistics(model, clips, config)
    # The statistics live in the model as buffers, so the ONNX export normalises too.
    mean, std = frame_statistics(clips.features[i] for i in train_indices)
    model.set_normalization(mean, std)
    takes_absolute = model.config.absolute_statistics
    if takes_absolute:
        # Fixed from the training clips, as the feature normalisation: never the test speaker.
        model.set_absolute_statistics(
            *clip_statistics_population(
                (clips.features[i] for i in train_indices), model.config.statistics_deltas
            )
        )
    caller_prior = None
    if config.caller_normalization.enabled:
        # Callers are mapped onto the training population, which the model then standardises.
        hop = clips.feature_config.hop_seconds
        caller_prior = CallerPrior(
            mean=model.feature_mean.numpy(),
            std=model.feature_std.numpy(),
            frames=config.caller_normalization.prior_seconds / hop,
            memory_frames=(
                None
                if config.caller_normalization.memory_seconds is None
                else config.caller_normalization.memory_seconds / hop
            ),
        )
    adversary, corpus_targets = _corpus_adversary(config, model, clips, train_indices)
    trained = list(model.parameters())
    if adversary is not None:
        trained += list(adversary.parameters())
    optimizer = torch.optim.AdamW(
        trained,
        lr=config.optimizer.learning_rate,
        weight_decay=config.optimizer.weight_decay,
    )
    steps_per_epoch = max(1, len(train_indices) // config.batch_size)
    scheduler = _make_scheduler(config, optimizer, config.epochs * steps_per_epoch)
    # A corpus-balanced sampler balances the classes already: weighting the loss too would
    # count that twice.
    weights = (
        class_weights(counts)
        if config.class_balance == "weighted_loss" and config.corpus_balance == "none"
        else None
    )
    # Fails now, not after the first epoch, on corpora the mapping and the data disagree on.
    corpus_shares(clips.corpora[train_indices], config.corpus_balance)
    make_batch = _BatchMaker(config, clips, train_indices, caller_prior, takes_absolute)
    num_classes = len(clips.classes)

    history: list[EpochRecord] = []
    start_epoch = 0
    best_ua: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    epochs_since_best = 0
    if resume:
        if checkpoint_dir is None or not (checkpoint_dir / LAST_CHECKPOINT).is_file():
            raise CheckpointError(f"nothing to resume: no {LAST_CHECKPOINT} in {checkpoint_dir}")
        state = _load_checkpoint(checkpoint_dir / LAST_CHECKPOINT)
        if state["config"] != _config_fingerprint(config):
            raise CheckpointError(
                f"{checkpoint_dir / LAST_CHECKPOINT} was written by a different training config; "
                "use a fresh output folder"
            )
        model.load_state_dict(state["model"])
        if adversary is not None:
            adversary.load_state_dict(state["adversary"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(rng, state["rng"])
        start_epoch = int(state["epoch"]) + 1
        best_ua = state["best_ua"]
        best_epoch = int(state["best_epoch"])
        epochs_since_best = int(state["epochs_since_best"])
        history = [EpochRecord(**record) for record in state["history"]]
        if (checkpoint_dir / BEST_WEIGHTS).is_file():
            best_state = load_file(checkpoint_dir / BEST_WEIGHTS)

    stopped_early = False
    for epoch in range(start_epoch, config.epochs):
        if (
            config.early_stopping.enabled
            and len(validation_indices)
            and epochs_since_best >= config.early_stopping.patience
        ):
            stopped_early = True
            break
        epoch_started = time.perf_counter()
        model.train()
        losses = []
        batches = epoch_batches(
            train_indices,
            clips.targets,
            config.batch_size,
            rng,
            balanced=config.class_balance == "balanced_sampler",
            corpora=clips.corpora,
            corpus_balance=config.corpus_balance,
        )
        for step, batch in enumerate(batches):
            features, absolute = make_batch.views(batch, rng)
            targets = F.one_hot(torch.from_numpy(clips.targets[batch]), num_classes).float()
            if config.label_smoothing > 0:
                targets = (
                    targets * (1 - config.label_smoothing) + config.label_smoothing / num_classes
                )
            if config.augmentation.mixup_alpha > 0:
                if absolute is None:
                    features, targets = mixup(
                        features, targets, config.augmentation.mixup_alpha, rng
                    )
                else:
                    # One blend for both views of each crop (mixup is per element).
                    both, targets = mixup(
                        torch.cat([features, absolute], dim=1),
                        targets,
                        config.augmentation.mixup_alpha,
                        rng,
                    )
                    features, absolute = both.split(features.shape[1], dim=1)
            batch_statistics = None if speaker_statistics is None else speaker_statistics[batch]
            parts = model.branches(
                features, speaker_statistics=batch_statistics, absolute_features=absolute
            )
            logits = model.joined_logits(parts)
            loss = F.cross_entropy(logits, targets, weight=weights)
            if adversary is not None:
                progress = (epoch * steps_per_epoch + step) / (config.epochs * steps_per_epoch)
                corpus_logits = adversary(torch.cat(parts, dim=1), adversarial_scale(progress))
                corpus_loss = F.cross_entropy(corpus_logits, corpus_targets[batch])
                loss = loss + config.corpus_adversarial * corpus_loss
            if config.branch_loss > 0:
                branch_losses = [
                    F.cross_entropy(branch, targets, weight=weights)
                    for branch in model.branch_logits(parts)
                ]
                loss = loss + config.branch_loss * torch.stack(branch_losses).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 5.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, steps_per_epoch, losses[-1])

        validation_ua = validation_wa = None
        improved = False
        if len(validation_indices):
            metrics = evaluate_clips(
                model, clips, validation_indices, speaker_statistics, caller_prior
            )
            validation_ua = metrics.unweighted_average_recall
            validation_wa = metrics.weighted_accuracy
            improved = best_ua is None or validation_ua > best_ua
        else:
            improved = True
        if improved:
            best_ua, best_epoch, epochs_since_best = validation_ua, epoch, 0
            best_state = {
                name: value.detach().clone() for name, value in model.state_dict().items()
            }
        else:
            epochs_since_best += 1
        record = EpochRecord(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            learning_rate=float(optimizer.param_groups[0]["lr"]),
            validation_ua=validation_ua,
            validation_wa=validation_wa,
            seconds=time.perf_counter() - epoch_started,
            best=improved,
        )
        history.append(record)
        if checkpoint_dir is not None:
            if improved:
                save_file(best_state, checkpoint_dir / BEST_WEIGHTS)
            _save_checkpoint(
                checkpoint_dir / LAST_CHECKPOINT,
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": _config_fingerprint(config),
                    "model": model.state_dict(),
                    "adversary": {} if adversary is None else adversary.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(rng),
                    "epoch": epoch,
                    "best_ua": best_ua,
                    "best_epoch": best_epoch,
                    "epochs_since_best": epochs_since_best,
                    "history": [r.to_dict() for r in history],
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(record)

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    validation_metrics = (
        evaluate_clips(model, clips, validation_indices, speaker_statistics, caller_prior)
        if len(validation_indices)
        else None
    )
    return TrainingResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_validation_ua=best_ua,
        validation_metrics=validation_metrics,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - started,
        caller_prior=caller_prior,
    )


def _corpus_adversary(
    config: TrainingConfig, model: torch.nn.Module, clips: ClipSet, train_indices: np.ndarray
) -> tuple[CorpusAdversary | None, torch.Tensor | None]:
    """With `corpus_adversarial`, the adversary and every clip's training-corpus index
    (-1 for clips of other corpora, which never reach a training batch)."""
    if config.corpus_adversarial <= 0:
        return None, None
    corpora = sorted(set(clips.corpora[train_indices].tolist()))
    if len(corpora) < 2:
        raise TrainingConfigError(
            f"corpus_adversarial needs at least 2 training corpora, got {', '.join(corpora)}"
        )
    if config.augmentation.mixup_alpha > 0:
        raise TrainingConfigError(
            "corpus_adversarial does not combine with mixup (a mixed crop has no one corpus)"
        )
    index = {name: i for i, name in enumerate(corpora)}
    targets = torch.tensor([index.get(name, -1) for name in clips.corpora], dtype=torch.long)
    return CorpusAdversary(model.classifier.in_features, len(corpora)), targets


def _save_checkpoint(path: Path, state: dict) -> None:
    # Write then rename: an interruption mid-write must not destroy the previous checkpoint.
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def _load_checkpoint(path: Path) -> dict:
    try:
        # weights_only: a checkpoint is data; unpickling arbitrary objects would run code.
        state = torch.load(path, weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path}: cannot read checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a callmood training checkpoint")
    return state
