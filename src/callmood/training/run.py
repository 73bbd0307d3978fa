"""One training run from a config to a model package: data, speaker-grouped validation split,
the loop, then weights + ONNX + model.json, per-epoch metrics and a training curve.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from callmood.training.config import TrainingConfig
from callmood.training.data import (
    ClipSet,
    TrainingDataError,
    build_clip_set,
    load_rows,
    map_labels,
)
from callmood.training.folds import validation_split
from callmood.training.loop import EpochRecord, TrainingResult, train_model

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"
CHECKPOINT_FOLDER = "checkpoints"


@dataclass
class RunOutcome:
    """What `run_training` produced."""

    package_dir: Path
    result: TrainingResult
    num_clips: int
    num_train: int
    num_validation: int
    seconds: float


def prepare_clips(
    config: TrainingConfig, *, progress: Callable[[int, int], None] | None = None
) -> ClipSet:
    """Load the config's corpora/manifests, map labels to its label set, decode and featurise.

    Raises
    ------
    TrainingDataError
        When no clip has a label in the label set.
    """
    if config.num_threads:
        # Before featurising: several threads per process thrash on a shared machine.
        torch.set_num_threads(config.num_threads)
    classes = config.class_names()
    rows, labels = map_labels(load_rows(config), config.label_set)
    kept = [(row, label) for row, label in zip(rows, labels, strict=True) if label in classes]
    if not kept:
        raise TrainingDataError(
            f"no clip of the configured data has a label in {', '.join(classes)}"
        )
    rows, labels = [k[0] for k in kept], [k[1] for k in kept]
    keep_waveforms = config.augmentation.waveform_fraction > 0
    total = len(rows)
    return build_clip_set(
        rows,
        labels,
        classes,
        config.feature_config(),
        keep_waveforms=keep_waveforms,
        speaker_normalization=config.speaker_normalization,
        trim_silence_db=config.trim_silence_db,
        on_clip=(lambda i: progress(i + 1, total)) if progress else None,
    )


def split_for_validation(config: TrainingConfig, clips: ClipSet) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices; no speaker (group) is on both sides."""
    if config.validation.hold_out == "corpus":
        raise TrainingDataError(
            "validation.hold_out: corpus only works with callmood evaluate --protocol "
            "leave-corpus-out, not callmood train; use hold_out: speakers"
        )
    return validation_split(
        clips.groups,
        fraction=config.validation.fraction,
        min_groups=config.validation.min_groups,
        seed=config.seed,
        corpora=clips.corpora,
    )


def run_training(
    config: TrainingConfig,
    output_dir: Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> RunOutcome:
    """Train on everything the config names and save a model package in `output_dir`.

    `output_dir` receives the package files (``weights.safetensors``,
    ``model.onnx``, ``model.json``), ``metrics.jsonl`` (one JSON object per
    epoch), ``training_curve.png`` and ``checkpoints/`` (``last.pt``,
    ``best.safetensors``) for `resume`.
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    checkpoint_dir = output_dir / CHECKPOINT_FOLDER
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        (output_dir / METRICS_FILE).unlink(missing_ok=True)

    progress = _progress_bar() if show_progress else None
    with progress or nullcontext():
        if progress is not None:
            task = progress.add_task("decoding clips", total=None, status="")
            clips = prepare_clips(
                config,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        else:
            clips = prepare_clips(config)
        train_indices, validation_indices = split_for_validation(config, clips)

        def step_callback(step: int, steps: int, loss: float) -> None:
            if progress is not None:
                progress.update(task, completed=step + 1, total=steps, status=f"loss {loss:.3f}")

        def epoch_callback(record: EpochRecord) -> None:
            with (output_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record.to_dict()) + "\n")
            if progress is not None:
                ua = "-" if record.validation_ua is None else f"{record.validation_ua:.3f}"
                progress.update(
                    task,
                    description=f"epoch {record.epoch + 1}/{config.epochs}",
                    status=f"loss {record.train_loss:.3f}  val UA {ua}",
                )
            if on_epoch_end is not None:
                on_epoch_end(record)

        if progress is not None:
            progress.update(task, description=f"epoch 1/{config.epochs}", completed=0)
        result = train_model(
            config,
            clips,
            train_indices,
            validation_indices,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            on_step=step_callback,
            on_epoch_end=epoch_callback,
        )
    plot_training_curve(result.history, output_dir / CURVE_FILE)
    seconds = time.perf_counter() - started
    training_info = describe_training(config, clips, train_indices, validation_indices, result)
    training_info["wall_seconds"] = round(seconds, 1)
    save_package(config, clips, result, output_dir, training_info)
    return RunOutcome(
        package_dir=output_dir,
        result=result,
        num_clips=len(clips),
        num_train=len(train_indices),
        num_validation=len(validation_indices),
        seconds=seconds,
    )


def describe_training(
    config: TrainingConfig,
    clips: ClipSet,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
    result: TrainingResult,
) -> dict:
    """The ``training`` block of model.json: data, recipe, where it stopped."""
    corpora = sorted({clips.rows[i].corpus for i in range(len(clips))})
    counts = clips.subset_counts(train_indices)
    return {
        "config": config.model_dump(mode="json"),
        "corpora": corpora,
        "num_clips": len(clips),
        "num_train_clips": int(len(train_indices)),
        "num_validation_clips": int(len(validation_indices)),
        "validation_groups": sorted({str(clips.groups[i]) for i in validation_indices}),
        "train_class_counts": dict(zip(clips.classes, map(int, counts), strict=True)),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch + 1,
        "stopped_early": result.stopped_early,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save_package(
    config: TrainingConfig,
    clips: ClipSet,
    result: TrainingResult,
    output_dir: Path,
    training_info: dict,
) -> Path:
    """Write the model package (weights, ONNX, model.json) via `callmood.models.package`."""
    from callmood.models.package import save_model_package

    metrics = {}
    if result.validation_metrics is not None:
        metrics["validation"] = {
            "protocol": "held-out speakers of the training data (early stopping)",
            **result.validation_metrics.to_dict(),
        }
    return save_model_package(
        output_dir,
        result.model,
        labels=list(clips.classes),
        feature_config=clips.feature_config,
        window_seconds=config.window_seconds,
        extra={
            "name": config.name,
            # Read by held-out evaluation and refused by analysis: the model needs
            # per-speaker feature statistics that a call cannot supply up front.
            "speaker_normalization": config.speaker_normalization,
            "trim_silence_db": config.trim_silence_db,
            # Read by inference and analysis: each caller's features are normalised
            # against this prior and the caller's own speech so far.
            **(
                {
                    "caller_normalization": result.caller_prior.to_dict(
                        clips.feature_config.hop_seconds
                    )
                }
                if result.caller_prior is not None
                else {}
            ),
            "training": training_info,
            "metrics": metrics,
        },
        # The ONNX graph serves call analysis, which refuses speaker-normalised models
        # (and a statistics_per_speaker model takes a second input): none is written.
        export_onnx=config.export_onnx and not config.speaker_normalization,
        # Read now, so a card that lives in `output_dir` itself is carried over.
        model_card=config.model_card.read_text(encoding="utf-8") if config.model_card else None,
    )


def plot_training_curve(history: list[EpochRecord], path: Path) -> None:
    """Training loss and validation UA per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [record.epoch + 1 for record in history]
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot(epochs, [r.train_loss for r in history], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    validated = [(r.epoch + 1, r.validation_ua) for r in history if r.validation_ua is not None]
    if validated:
        ua_axis = loss_axis.twinx()
        ua_axis.plot(*zip(*validated, strict=True), color="tab:orange", label="validation UA")
        ua_axis.set_ylabel("validation UA", color="tab:orange")
        ua_axis.set_ylim(0, 1)
    loss_axis.set_title("Training curve")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _progress_bar():  # noqa: ANN202
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
