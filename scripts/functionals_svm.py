"""A classic reference for `callmood evaluate`: utterance functionals + SVM, speaker-independent.

Each clip becomes the mean, standard deviation, 10th and 90th percentile of
each of its features over time plus the standard deviation of their frame
deltas (5 x 40 values for 40 MFCCs), and an RBF SVM (C = 10, balanced class
weights) is trained leave-one-speaker-out, with and without speaker
normalisation (the transductive protocol of docs/training.md) of the
functionals, of the frames (as the network's `speaker_normalization`), or of
both (as the network with `model.statistics_per_speaker`). It shows what the
features carry before any network sees them.

A second table classifies exactly what the network's statistics branch sees
(mean, standard deviation and delta deviation of each speaker-normalised frame
row: 3 x 40 values) with a linear model (logistic regression, as the network's
one linear layer) and with the SVM, with and without standardising them per
speaker (`model.statistics_per_speaker`). With `--prosody`, pitch (pYIN, 60-500
Hz) and energy functionals of each clip are added to the functionals of the
first table's plain and speaker-normalised-functionals rows (the rows built
from normalised frames stay MFCC-only).

Usage: python scripts/functionals_svm.py configs/experiments/emodb7_medium.yaml [--prosody]
(needs scikit-learn, part of the `test` extra).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from callmood.audio import load_audio
from callmood.models.parallel_cnn_transformer import time_statistics
from callmood.training.config import load_training_config
from callmood.training.data import normalize_per_speaker
from callmood.training.evaluate import prepare_clip_set
from callmood.training.metrics import classification_metrics


def functionals(features: torch.Tensor) -> np.ndarray:
    """Mean, std, 10th/90th percentile per feature and the std of its deltas: (5 * F,)."""
    values = features.numpy()
    deltas = np.diff(values, axis=1)
    return np.concatenate(
        [
            values.mean(1),
            values.std(1),
            np.percentile(values, 10, axis=1),
            np.percentile(values, 90, axis=1),
            deltas.std(1),
        ]
    )


def prosody(path: str) -> np.ndarray:
    """Functionals of log F0 over voiced frames (pYIN) and of log energy: (12,)."""
    import librosa

    samples = load_audio(path).samples[0]
    f0, voiced, probability = librosa.pyin(
        samples, fmin=60, fmax=500, sr=16000, frame_length=1024, hop_length=160
    )
    energy = np.log(librosa.feature.rms(y=samples, frame_length=400, hop_length=160)[0] + 1e-5)
    pitch = np.log(f0[voiced]) if voiced.sum() > 2 else np.zeros(3)
    low, high = np.percentile(pitch, [10, 90])
    values = [pitch.mean(), pitch.std(), low, high, high - low, np.diff(pitch).std()]
    values += [voiced.mean(), energy.mean(), energy.std(), np.percentile(energy, 90)]
    values += [np.diff(energy).std(), probability.mean()]
    return np.nan_to_num(np.array(values))


def svm() -> SVC:
    return SVC(C=10, class_weight="balanced")


def linear() -> LogisticRegression:
    return LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)


def leave_one_speaker_out(
    x: np.ndarray,
    targets: np.ndarray,
    speakers: np.ndarray,
    classes: tuple[str, ...],
    classifier: Callable[[], Any] = svm,
) -> tuple[float, float]:
    """Mean UA and WA over folds that each test one speaker."""
    uas, was = [], []
    for speaker in np.unique(speakers):
        test = speakers == speaker
        scaler = StandardScaler().fit(x[~test])
        model = classifier().fit(scaler.transform(x[~test]), targets[~test])
        predicted = model.predict(scaler.transform(x[test]))
        metrics = classification_metrics(targets[test], predicted, classes)
        uas.append(metrics.unweighted_average_recall)
        was.append(metrics.weighted_accuracy)
    return float(np.mean(uas)), float(np.mean(was))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a training config (data, labels, features)")
    parser.add_argument(
        "--prosody", action="store_true", help="add pitch and energy functionals (slow: pYIN)"
    )
    args = parser.parse_args()
    config = load_training_config(args.config)
    # Whole, untrimmed, unnormalised clips: the config's data and features only.
    config = config.model_copy(update={"speaker_normalization": False, "trim_silence_db": None})
    clips = prepare_clip_set(config)
    speakers = np.array([row.speaker for row in clips.rows])
    x = np.stack([functionals(f) for f in clips.features])
    if args.prosody:
        x = np.hstack([x, np.stack([prosody(row.path) for row in clips.rows])])
    # The network's speaker normalisation standardises each speaker's frames; the
    # classic one standardises each speaker's functionals. Both, and each alone:
    frames = dataclasses.replace(clips, features=list(clips.features))
    normalize_per_speaker(frames)
    x_frames = np.stack([functionals(f) for f in frames.features])
    print(f"{len(clips)} clips, {len(np.unique(speakers))} speakers, classes {clips.classes}")
    print("| protocol | UA | WA |\n|---|---|---|")
    for name, values in (
        ("plain", x),
        ("speaker-normalised functionals", standardise_per_speaker(x, speakers)),
        ("speaker-normalised frames", x_frames),
        ("speaker-normalised frames and functionals", standardise_per_speaker(x_frames, speakers)),
    ):
        ua, wa = leave_one_speaker_out(values, clips.targets, speakers, clips.classes)
        print(f"| leave-one-speaker-out, {name} | {100 * ua:.1f} % | {100 * wa:.1f} % |")
    # What the network's statistics branch sees: its own statistics of the frames.
    statistics = np.stack(
        [time_statistics(f[None], deltas=True)[0].numpy() for f in frames.features]
    )
    print("\n| statistics branch input, speaker-normalised frames | classifier | UA | WA |")
    print("|---|---|---|---|")
    for name, values in (
        ("as they are", statistics),
        ("standardised per speaker", standardise_per_speaker(statistics, speakers)),
    ):
        for label, classifier in (("logistic regression", linear), ("SVM", svm)):
            ua, wa = leave_one_speaker_out(
                values, clips.targets, speakers, clips.classes, classifier
            )
            print(f"| {name} | {label} | {100 * ua:.1f} % | {100 * wa:.1f} % |")


def standardise_per_speaker(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Each speaker's rows standardised with that speaker's mean and std."""
    result = x.copy()
    for speaker in np.unique(speakers):
        mine = speakers == speaker
        result[mine] = (x[mine] - x[mine].mean(0)) / (x[mine].std(0) + 1e-6)
    return result


if __name__ == "__main__":
    main()
