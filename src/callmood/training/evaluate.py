"""Speaker-independent evaluation protocols: leave-one-group-out, grouped k-fold,
cross-corpus, and the held-out test of a saved model.

Every protocol trains (where it trains) only on groups it never tests on, and
predicts each test clip whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from callmood.errors import CallmoodError
from callmood.normalization import CallerNormalizer, CallerPrior
from callmood.training.config import TrainingConfig
from callmood.training.data import ClipSet, build_clip_set, load_rows, map_labels
from callmood.training.folds import (
    Fold,
    grouped_kfold,
    leave_one_corpus_out,
    leave_one_group_out,
    validation_split,
)
from callmood.training.loop import clip_logits, predict_clips, train_model
from callmood.training.metrics import (
    ClassificationMetrics,
    FoldSummary,
    classification_metrics,
    summarize_folds,
)

PROTOCOLS = ("loso", "kfold", "cross-corpus", "leave-corpus-out", "holdout")


class EvaluationError(CallmoodError):
    """An evaluation that cannot run as asked (unknown protocol or corpus, no shared labels...)."""


@dataclass(frozen=True)
class ClipPrediction:
    """One test clip: who said it, its label, the model's guess and class probabilities."""

    clip: str
    speaker: str
    label: str
    predicted: str
    probabilities: tuple[float, ...]  # in the order of the evaluation's classes
    # Empty when unknown (an ensemble of reports written before the corpus column).
    corpus: str = ""

    @property
    def corpus_name(self) -> str:
        """The corpus, else the ``corpus:`` prefix of the clip id, else ``"-"``."""
        if self.corpus:
            return self.corpus
        prefix, colon, _ = self.clip.partition(":")
        return prefix if colon else "-"


def predict_test_clips(
    model: torch.nn.Module,
    clips: ClipSet,
    indices: np.ndarray,
    caller_prior: CallerPrior | None = None,
) -> tuple[ClassificationMetrics, list[ClipPrediction]]:
    """Predict clips `indices` of `clips` whole; their metrics and per-clip predictions.

    `caller_prior`: for a caller-normalised model, each clip is normalised as the first
    window of a call of its own (the plain protocol: nothing else of the speaker is used).
    """
    logits = clip_logits(model, clips, indices, caller_prior=caller_prior)
    predicted = logits.argmax(1)
    probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    predictions = [
        ClipPrediction(
            clip=clips.rows[i].id,
            speaker=clips.rows[i].speaker,
            label=clips.classes[clips.targets[i]],
            predicted=clips.classes[guess],
            probabilities=tuple(round(float(p), 5) for p in row),
            corpus=clips.rows[i].corpus,
        )
        for i, guess, row in zip(indices, predicted, probabilities, strict=True)
    ]
    metrics = classification_metrics(clips.targets[indices], predicted, clips.classes)
    return metrics, predictions


def call_metrics(
    model: torch.nn.Module, clips: ClipSet, indices: np.ndarray, caller_prior: CallerPrior
) -> ClassificationMetrics:
    """Metrics of clips `indices` when each test speaker's clips form one call.

    Each speaker's clips, in the order of their ids, go through one running
    :class:`CallerNormalizer`, as `callmood analyze` would normalise a call in which that
    speaker says them one after another: every clip is judged against the speaker's
    earlier clips and itself, never a later one (causal, no labels used).
    """
    indices = np.asarray(indices)
    speakers = np.array([clips.rows[i].speaker for i in indices], dtype=object)
    order = sorted(range(len(indices)), key=lambda k: (speakers[k], clips.rows[indices[k]].id))
    normalizers: dict[str, CallerNormalizer] = {}
    features: list[torch.Tensor | None] = [None] * len(indices)
    for k in order:
        normalizer = normalizers.setdefault(speakers[k], CallerNormalizer(caller_prior))
        features[k] = torch.from_numpy(normalizer.normalize(clips.features[indices[k]].numpy()))
    # A model with absolute_statistics also gets each clip as it is (its own frames only).
    absolute = [clips.features[i] for i in indices]
    logits = predict_clips(model, features, absolute_features=absolute)
    return classification_metrics(clips.targets[indices], logits.argmax(1), clips.classes)


@dataclass
class FoldOutcome:
    """One fold: what was tested, how training went, the test metrics."""

    name: str
    test_groups: tuple[str, ...]
    num_train: int
    num_validation: int
    num_test: int
    epochs_run: int
    best_epoch: int
    metrics: ClassificationMetrics
    # One per test clip, in test order (written to predictions.csv, not to report.json).
    predictions: list[ClipPrediction] = field(default_factory=list)
    # A caller-normalised model: the test speakers' clips as calls (call_metrics).
    call_metrics: ClassificationMetrics | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "test_groups": list(self.test_groups),
            "num_train": self.num_train,
            "num_validation": self.num_validation,
            "num_test": self.num_test,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics.to_dict(),
            **(
                {"call_metrics": self.call_metrics.to_dict()}
                if self.call_metrics is not None
                else {}
            ),
        }


@dataclass
class EvaluationResult:
    """The outcome of one protocol, ready for :mod:`callmood.training.report`."""

    protocol: str
    description: str
    classes: tuple[str, ...]
    folds: list[FoldOutcome]
    summary: FoldSummary
    seconds: float
    details: dict = field(default_factory=dict)

    def per_corpus(self) -> dict[str, ClassificationMetrics]:
        """Metrics of each corpus's test clips pooled over folds; empty for one corpus.

        A number over two corpora can hide that the model only works on one of them.
        """
        by_corpus: dict[str, list[ClipPrediction]] = {}
        for fold in self.folds:
            for clip in fold.predictions:
                by_corpus.setdefault(clip.corpus_name, []).append(clip)
        if len(by_corpus) < 2:
            return {}
        return {
            corpus: classification_metrics(
                [self.classes.index(clip.label) for clip in clips],
                [self.classes.index(clip.predicted) for clip in clips],
                self.classes,
            )
            for corpus, clips in sorted(by_corpus.items())
        }

    def to_dict(self) -> dict:
        per_corpus = self.per_corpus()
        return {
            "title": "Performance evaluation",
            "protocol": self.protocol,
            "description": self.description,
            "classes": list(self.classes),
            "summary": {
                "num_folds": len(self.folds),
                "mean": self.summary.mean,
                "std": self.summary.std,
                "pooled": self.summary.pooled.to_dict(),
            },
            "folds": [fold.to_dict() for fold in self.folds],
            # Only when the test clips come from more than one corpus.
            **(
                {"per_corpus": {name: m.to_dict() for name, m in per_corpus.items()}}
                if per_corpus
                else {}
            ),
            "seconds": round(self.seconds, 1),
            "details": self.details,
        }


FoldCallback = Callable[[int, int, FoldOutcome], None]


def prepare_clip_set(
    config: TrainingConfig,
    *,
    classes: tuple[str, ...] | None = None,
    keep: Callable[[object], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClipSet:
    """Decode and featurise the config's clips once, for every fold to share.

    Parameters
    ----------
    classes
        Restrict to these classes of the label set (cross-corpus: the shared ones).
    keep
        Keep only manifest rows for which this returns True.
    """
    if config.num_threads:
        # Before featurising: several threads per process thrash on a shared machine.
        torch.set_num_threads(config.num_threads)
    rows, labels = map_labels(load_rows(config), config.label_set)
    if keep is not None:
        pairs = [(row, label) for row, label in zip(rows, labels, strict=True) if keep(row)]
        rows, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    classes = classes or config.class_names()
    pairs = [(row, label) for row, label in zip(rows, labels, strict=True) if label in classes]
    if not pairs:
        raise EvaluationError(f"no clip has a label in {', '.join(classes)}")
    total = len(pairs)
    return build_clip_set(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        classes,
        config.feature_config(),
        keep_waveforms=config.augmentation.waveform_fraction > 0,
        speaker_normalization=config.speaker_normalization,
        trim_silence_db=config.trim_silence_db,
        on_clip=(lambda i: progress(i + 1, total)) if progress else None,
    )


def run_folds(
    config: TrainingConfig,
    clips: ClipSet,
    folds: list[Fold],
    *,
    on_fold: FoldCallback | None = None,
) -> list[FoldOutcome]:
    """Train one model per fold (validation groups drawn from its training groups) and test it."""
    outcomes = []
    for number, fold in enumerate(folds):
        if fold.validation_indices is not None:
            # A whole inner corpus, fixed by the fold (validation.hold_out: corpus).
            train_indices, validation_indices = fold.train_indices, fold.validation_indices
        else:
            train_part, validation_part = validation_split(
                clips.groups[fold.train_indices],
                fraction=config.validation.fraction,
                min_groups=config.validation.min_groups,
                seed=config.seed + number,
                corpora=clips.corpora[fold.train_indices],
            )
            train_indices = fold.train_indices[train_part]
            validation_indices = fold.train_indices[validation_part]
        result = train_model(config, clips, train_indices, validation_indices)
        metrics, predictions = predict_test_clips(
            result.model, clips, fold.test_indices, result.caller_prior
        )
        outcome = FoldOutcome(
            name=fold.name,
            test_groups=fold.test_groups,
            num_train=len(train_indices),
            num_validation=len(validation_indices),
            num_test=len(fold.test_indices),
            epochs_run=len(result.history),
            best_epoch=result.best_epoch + 1,
            metrics=metrics,
            predictions=predictions,
            call_metrics=(
                call_metrics(result.model, clips, fold.test_indices, result.caller_prior)
                if result.caller_prior is not None
                else None
            ),
        )
        outcomes.append(outcome)
        if on_fold is not None:
            on_fold(number, len(folds), outcome)
    return outcomes


def require_speaker_hold_out(config: TrainingConfig, what: str) -> None:
    """Refuse ``validation.hold_out: corpus`` where there is no left-out corpus to protect."""
    if config.validation.hold_out == "corpus":
        raise EvaluationError(
            f"validation.hold_out: corpus only works with --protocol leave-corpus-out, not {what}; "
            "use hold_out: speakers"
        )


def _corpora_text(clips: ClipSet) -> str:
    return "+".join(sorted({row.corpus for row in clips.rows}))


def evaluate_cross_validation(
    config: TrainingConfig,
    protocol: str,
    *,
    num_folds: int = 6,
    clips: ClipSet | None = None,
    on_fold: FoldCallback | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Leave-one-group-out (``"loso"``) or grouped k-fold (``"kfold"``) over the config's data."""
    started = time.perf_counter()
    if protocol not in ("loso", "kfold"):
        raise EvaluationError(f"unknown cross-validation protocol {protocol!r}; use loso or kfold")
    require_speaker_hold_out(config, protocol)
    clips = clips or prepare_clip_set(config, progress=progress)
    if protocol == "loso":
        folds = leave_one_group_out(clips.groups)
        description = (
            f"leave-one-group-out over {len(folds)} groups (speakers or sessions) of "
            f"{_corpora_text(clips)}, {len(clips.classes)} classes ({config.label_set})"
        )
    else:
        folds = grouped_kfold(clips.groups, num_folds, corpora=clips.corpora)
        description = (
            f"speaker-grouped {num_folds}-fold cross-validation of {_corpora_text(clips)}, "
            f"{len(clips.classes)} classes ({config.label_set}); each corpus's speakers sorted "
            "and cut into consecutive blocks"
        )
    outcomes = run_folds(config, clips, folds, on_fold=on_fold)
    return _evaluation_result(config, protocol, description, clips, outcomes, started)


def _classes_by_corpus(config: TrainingConfig) -> dict[str, set[str]]:
    """The classes of the label set that each corpus of the config has clips of."""
    rows, labels = map_labels(load_rows(config), config.label_set)
    present: dict[str, set[str]] = {}
    for row, label in zip(rows, labels, strict=True):
        present.setdefault(row.corpus, set()).add(label)
    return present


def _evaluation_result(
    config: TrainingConfig,
    protocol: str,
    description: str,
    clips: ClipSet,
    outcomes: list[FoldOutcome],
    started: float,
) -> EvaluationResult:
    return EvaluationResult(
        protocol=protocol,
        description=description,
        classes=clips.classes,
        folds=outcomes,
        summary=summarize_folds([o.metrics for o in outcomes]),
        seconds=time.perf_counter() - started,
        details={"config": config.model_dump(mode="json"), "num_clips": len(clips)},
    )


def evaluate_cross_corpus(
    config: TrainingConfig,
    train_corpus: str,
    test_corpus: str,
    *,
    on_fold: FoldCallback | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Train on every clip of `train_corpus`, test on every clip of `test_corpus`.

    Only the classes of the label set present in both corpora are used.
    """
    started = time.perf_counter()
    require_speaker_hold_out(config, "cross-corpus")
    present = _classes_by_corpus(config)
    for corpus in (train_corpus, test_corpus):
        if corpus not in present:
            found = ", ".join(sorted(present)) or "none"
            raise EvaluationError(f"corpus {corpus!r} is not in the config's data (found: {found})")
    if train_corpus == test_corpus:
        raise EvaluationError("cross-corpus needs two different corpora")
    shared = tuple(
        c for c in config.class_names() if c in present[train_corpus] & present[test_corpus]
    )
    if len(shared) < 2:
        raise EvaluationError(
            f"{train_corpus} and {test_corpus} share fewer than 2 classes of {config.label_set}"
        )
    clips = prepare_clip_set(
        config,
        classes=shared,
        keep=lambda row: row.corpus in (train_corpus, test_corpus),
        progress=progress,
    )
    corpus_of = np.array([row.corpus for row in clips.rows])
    fold = Fold(
        name=f"{train_corpus} -> {test_corpus}",
        train_indices=np.flatnonzero(corpus_of == train_corpus),
        test_indices=np.flatnonzero(corpus_of == test_corpus),
        test_groups=tuple(sorted({str(g) for g in clips.groups[corpus_of == test_corpus]})),
    )
    outcomes = run_folds(config, clips, [fold], on_fold=on_fold)
    description = (
        f"cross-corpus: trained on all of {train_corpus}, tested on all of {test_corpus}, "
        f"over the {len(shared)} shared classes of {config.label_set}"
    )
    return _evaluation_result(config, "cross-corpus", description, clips, outcomes, started)


def evaluate_leave_corpus_out(
    config: TrainingConfig,
    *,
    on_fold: FoldCallback | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """For each corpus of the config: train on all the others, test on all of it.

    The headline protocol for unseen speakers on unseen channels. Only the classes of the
    label set that every corpus has are used; validation speakers (early stopping, the
    best epoch) come from the training corpora only, never from the corpus left out.
    """
    started = time.perf_counter()
    present = _classes_by_corpus(config)
    if len(present) < 2:
        found = ", ".join(sorted(present)) or "none"
        raise EvaluationError(f"leave-corpus-out needs at least 2 corpora, found: {found}")
    shared = tuple(c for c in config.class_names() if all(c in p for p in present.values()))
    if len(shared) < 2:
        raise EvaluationError(
            f"the corpora {', '.join(sorted(present))} share fewer than 2 classes of "
            f"{config.label_set}"
        )
    hold_out_corpus = config.validation.hold_out == "corpus"
    if hold_out_corpus and len(present) < 3:
        # Checked before featurising: minutes of work would end in the same error.
        raise EvaluationError(
            "validation.hold_out: corpus needs at least 3 corpora, found: "
            f"{', '.join(sorted(present))}; use hold_out: speakers"
        )
    clips = prepare_clip_set(config, classes=shared, progress=progress)
    folds = leave_one_corpus_out(clips.groups, clips.corpora, hold_out_corpus=hold_out_corpus)
    outcomes = run_folds(config, clips, folds, on_fold=on_fold)
    validation = (
        "validation on one whole training corpus (the next in name order), not trained on"
        if hold_out_corpus
        else "validation speakers from the training corpora only"
    )
    description = (
        f"leave-one-corpus-out over {', '.join(sorted(present))}: each corpus tested whole "
        f"by a model trained on the others, over the {len(shared)} classes of "
        f"{config.label_set} they share; {validation}"
    )
    return _evaluation_result(config, "leave-corpus-out", description, clips, outcomes, started)


def evaluate_saved_model(
    model_dir: Path,
    manifest_path: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Test a saved model package on every clip of a manifest whose label it can predict.

    Labels are mapped into the model's classes as training maps them (calm ->
    neutral for a 4-class model); other clips are left out and counted.
    """
    from callmood.labels import LABEL_SETS, to_label_set
    from callmood.manifest import read_manifest
    from callmood.models.package import load_model_package

    started = time.perf_counter()
    package = load_model_package(model_dir)
    classes = tuple(package.labels)
    set_name = next((name for name, labels in LABEL_SETS.items() if labels == classes), None)
    rows = read_manifest(manifest_path)
    kept, labels = [], []
    for row in rows:
        label = to_label_set(row.label, set_name) if set_name else row.label
        if label in classes:
            kept.append(row)
            labels.append(label)
    if not kept:
        raise EvaluationError(
            f"{manifest_path}: no clip has a label the model predicts ({', '.join(classes)})"
        )
    speaker_normalized = bool(package.metadata.get("speaker_normalization"))
    # Test clips are prepared exactly as the model's training clips were.
    clips = build_clip_set(
        kept,
        labels,
        classes,
        package.feature_config,
        keep_waveforms=False,
        speaker_normalization=speaker_normalized,
        trim_silence_db=package.metadata.get("trim_silence_db"),
        on_clip=(lambda i: progress(i + 1, len(kept))) if progress else None,
    )
    caller_prior = package.caller_prior
    everything = np.arange(len(clips))
    metrics, predictions = predict_test_clips(package.model, clips, everything, caller_prior)
    groups = tuple(sorted({row.group for row in kept}))
    outcome = FoldOutcome(
        name="held-out test",
        test_groups=groups,
        num_train=0,
        num_validation=0,
        num_test=len(kept),
        epochs_run=0,
        best_epoch=0,
        metrics=metrics,
        predictions=predictions,
        # As the corpus protocols: a caller-normalised model is also judged as calls.
        call_metrics=(
            call_metrics(package.model, clips, everything, caller_prior)
            if caller_prior is not None
            else None
        ),
    )
    return EvaluationResult(
        protocol="holdout",
        description=(
            f"held-out test of the saved model {model_dir} on {manifest_path} "
            f"({len(kept)} clips of {len(groups)} speakers/groups; {len(rows) - len(kept)} clips "
            "with labels outside the model's classes left out); the model's training speakers "
            "must not be among them for the numbers to be speaker-independent"
            + (
                "; features standardised per speaker with statistics of that speaker's own "
                "test clips, as the model was trained (transductive)"
                if speaker_normalized
                else ""
            )
        ),
        classes=classes,
        folds=[outcome],
        summary=summarize_folds([metrics]),
        seconds=time.perf_counter() - started,
        details={"model": str(model_dir), "manifest": str(manifest_path)},
    )
