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

Across corpora (issue 13): `--protocol leave-corpus-out` trains on all corpora of
the config but one and tests on all of that one, for each corpus in turn;
`--protocol in-corpus` is the in-corpus context, leave-one-speaker-out inside each
corpus. Both read the clips as training does (the config's labels and
`trim_silence_db`), and take `--features mfcc|egemaps|compare|egemaps+mfcc`: the
MFCC functionals above, openSMILE's eGeMAPSv02 (88) or ComParE_2016 (6373)
functionals of each clip (the `opensmile` package, `test` extra), or eGeMAPS and
MFCC side by side; `--prosody` adds the pitch and energy functionals. Three
normalisations, in separate rows: *plain* (standardised with the training
clips' statistics only), *per-utterance* (then each clip's vector standardised
across its own values: nothing but the clip itself; for MFCC a second row with
functionals of per-utterance mean- and variance-normalised frames) -- both
usable by `callmood analyze` -- and, below them, *transductive, research only*
(each speaker's functionals standardised over all of that speaker's clips).
`--cache DIR` keeps each clip's features on disk, `--timing` times openSMILE
per 3-second window.

    python scripts/functionals_svm.py configs/default.yaml --protocol leave-corpus-out \
        --features egemaps --cache /work/runs/smile-cache
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from callmood.audio import load_audio
from callmood.models.parallel_cnn_transformer import time_statistics
from callmood.training.config import TrainingConfig, load_training_config
from callmood.training.data import (
    decode_clip,
    load_rows,
    map_labels,
    normalize_per_speaker,
    trim_silence,
)
from callmood.training.evaluate import prepare_clip_set
from callmood.training.folds import grouped_kfold
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


def prosody(source: str | np.ndarray) -> np.ndarray:
    """Functionals of log F0 over voiced frames (pYIN) and of log energy: (12,).

    `source` is a clip's path or its 16 kHz mono samples.
    """
    import librosa

    samples = load_audio(source).samples[0] if isinstance(source, str) else source
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
    parser.add_argument(
        "--protocol",
        choices=("leave-one-speaker-out", "leave-corpus-out", "in-corpus", "kfold"),
        default="leave-one-speaker-out",
        help="leave-one-speaker-out over all clips (untrimmed, the tables above; MFCC only), "
        "leave-corpus-out, leave-one-speaker-out inside each corpus, or the speaker-grouped "
        "k-fold of `callmood evaluate --protocol kfold` (the same folds; all three trimmed "
        "as training does)",
    )
    parser.add_argument(
        "--folds", type=int, default=3, help="folds of --protocol kfold (as callmood evaluate)"
    )
    parser.add_argument("--features", choices=FEATURE_SETS, default="mfcc")
    parser.add_argument("--cache", type=Path, help="a folder for each clip's features")
    parser.add_argument(
        "--timing", action="store_true", help="also time openSMILE per 3 s window (1 thread)"
    )
    args = parser.parse_args()
    config = load_training_config(args.config)
    if args.protocol != "leave-one-speaker-out":
        across_corpora(
            config, args.protocol, args.features, args.prosody, args.cache, folds=args.folds
        )
        if args.timing:
            print_timings(config)
        return
    if args.features != "mfcc":
        parser.error("--features other than mfcc need --protocol leave-corpus-out or in-corpus")
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


# --- Across corpora (issue 13): leave-corpus-out, openSMILE functionals --------------------

FEATURE_SETS = ("mfcc", "egemaps", "compare", "egemaps+mfcc")
OPENSMILE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
SAMPLE_RATE = 16000


def smile(kind: str) -> Any:
    """An openSMILE extractor of one clip's functionals: `kind` "egemaps" or "compare"."""
    import opensmile

    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, OPENSMILE_SETS[kind]),
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def opensmile_functionals(extractor: Any, samples: np.ndarray) -> np.ndarray:
    """The functionals of 16 kHz mono `samples`: (88,) for eGeMAPS, (6373,) for ComParE."""
    return extractor.process_signal(samples, SAMPLE_RATE).to_numpy(dtype=np.float64)[0]


def cmvn_functionals(features: torch.Tensor) -> np.ndarray:
    """`functionals` of the frames standardised with the clip's own mean and std (CMVN)."""
    mean, std = features.mean(1, keepdim=True), features.std(1, keepdim=True)
    return functionals((features - mean) / (std + 1e-5))


@dataclasses.dataclass
class CorpusClips:
    """The config's clips as training reads them, and their features by kind."""

    ids: list[str]
    corpora: np.ndarray
    speakers: np.ndarray
    targets: np.ndarray
    classes: tuple[str, ...]
    features: dict[str, np.ndarray]


def config_clips(config: TrainingConfig) -> tuple[list[Any], np.ndarray, tuple[str, ...]]:
    """The config's manifest rows with a class in its label set, their targets and classes."""
    rows, labels = map_labels(load_rows(config), config.label_set)
    classes = config.class_names()
    kept = [(row, label) for row, label in zip(rows, labels, strict=True) if label in classes]
    targets = np.array([classes.index(label) for _, label in kept])
    return [row for row, _ in kept], targets, classes


def extract(config: TrainingConfig, kinds: set[str], cache: Path | None = None) -> CorpusClips:
    """Decode and trim each clip once (as training does) and compute the feature `kinds`.

    Kinds: "mfcc", "mfcc-cmvn" (the config's features), "egemaps", "compare" and
    "prosody". With `cache`, each kind's matrix is kept there, keyed by the clips and the
    trimming, so it is computed once.
    """
    from callmood.features import FeatureExtractor

    rows, targets, classes = config_clips(config)
    ids = [row.id for row in rows]
    trim = config.trim_silence_db
    key = hashlib.sha1("\n".join(f"{r.id} {r.path}" for r in rows).encode()).hexdigest()[:12]
    feature_config = config.feature_config()
    # The MFCC settings name the MFCC caches; openSMILE and pYIN depend on the audio only.
    mfcc_key = hashlib.sha1(repr(feature_config).encode()).hexdigest()[:8]

    def path_of(kind: str) -> Path | None:
        if cache is None:
            return None
        suffix = f"-{mfcc_key}" if kind.startswith("mfcc") else ""
        return cache / f"{kind}{suffix}-trim{trim}-{key}.npy"

    features: dict[str, np.ndarray] = {}
    for kind in kinds:
        path = path_of(kind)
        if path is not None and path.exists():
            features[kind] = np.load(path)
    missing = sorted(kinds - set(features))
    if missing:
        extractor = FeatureExtractor(feature_config).eval()
        smiles = {kind: smile(kind) for kind in missing if kind in OPENSMILE_SETS}
        values: dict[str, list[np.ndarray]] = {kind: [] for kind in missing}
        for number, row in enumerate(rows):
            samples = decode_clip(row.path, SAMPLE_RATE)
            if trim is not None:
                samples = trim_silence(samples, SAMPLE_RATE, trim)
            if {"mfcc", "mfcc-cmvn"} & set(missing):
                with torch.no_grad():
                    frames = extractor(torch.from_numpy(samples)[None])[0]
            for kind in missing:
                if kind == "mfcc":
                    values[kind].append(functionals(frames))
                elif kind == "mfcc-cmvn":
                    values[kind].append(cmvn_functionals(frames))
                elif kind == "prosody":
                    values[kind].append(prosody(samples))
                else:
                    values[kind].append(opensmile_functionals(smiles[kind], samples))
            if (number + 1) % 200 == 0:
                print(f"  {', '.join(missing)}: {number + 1}/{len(rows)} clips", flush=True)
        for kind in missing:
            features[kind] = np.stack(values[kind])
            path = path_of(kind)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, features[kind])
    return CorpusClips(
        ids=ids,
        corpora=np.array([row.corpus for row in rows], dtype=object),
        speakers=np.array([row.speaker for row in rows], dtype=object),
        targets=targets,
        classes=classes,
        features=features,
    )


def leave_corpus_out_splits(corpora: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(test corpus, train indices, test indices): each corpus tested whole, trained on the rest."""
    splits = []
    for corpus in sorted(set(corpora)):
        test = corpora == corpus
        splits.append((str(corpus), np.flatnonzero(~test), np.flatnonzero(test)))
    return splits


def in_corpus_splits(
    corpora: np.ndarray, speakers: np.ndarray
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(corpus, train, test) leaving out one speaker at a time, trained on the same corpus."""
    splits = []
    for corpus in sorted(set(corpora)):
        for speaker in sorted(set(speakers[corpora == corpus])):
            test = speakers == speaker
            train = (corpora == corpus) & ~test
            splits.append((str(corpus), np.flatnonzero(train), np.flatnonzero(test)))
    return splits


def kfold_splits(
    corpora: np.ndarray, speakers: np.ndarray, num_folds: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(fold, train, test) of `callmood evaluate --protocol kfold`: the very same folds.

    Both use `grouped_kfold` on the clips' speakers and corpora, so the network and the
    SVM are compared on identical train/test speakers (docs/results.md, "Fold assignment").
    """
    folds = grouped_kfold(list(speakers), num_folds, corpora=list(corpora))
    return [(fold.name, fold.train_indices, fold.test_indices) for fold in folds]


def per_utterance(x: np.ndarray) -> np.ndarray:
    """Each row standardised across its own values: uses nothing but the clip itself."""
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)


def predict_splits(
    x: np.ndarray,
    targets: np.ndarray,
    splits: list[tuple[str, np.ndarray, np.ndarray]],
    *,
    utterance_normalised: bool = False,
) -> np.ndarray:
    """Each clip's prediction by the SVM of the split that tests it (-1 for untested clips).

    The scaler is fitted on each split's training clips only; with `utterance_normalised`
    each scaled row is then standardised on its own (:func:`per_utterance`).
    """
    predicted = np.full(len(targets), -1)
    for _, train, test in splits:
        scaler = StandardScaler().fit(x[train])
        x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
        if utterance_normalised:
            x_train, x_test = per_utterance(x_train), per_utterance(x_test)
        model = svm().fit(x_train, targets[train])
        predicted[test] = model.predict(x_test)
    return predicted


def per_corpus_scores(clips: CorpusClips, predicted: np.ndarray) -> dict[str, tuple[float, float]]:
    """UA and WA of each test corpus's clips (all of its predictions pooled)."""
    scores = {}
    for corpus in sorted(set(clips.corpora)):
        mine = (clips.corpora == corpus) & (predicted >= 0)
        metrics = classification_metrics(clips.targets[mine], predicted[mine], clips.classes)
        scores[corpus] = (metrics.unweighted_average_recall, metrics.weighted_accuracy)
    return scores


def across_corpora(
    config: TrainingConfig,
    protocol: str,
    feature_set: str,
    with_prosody: bool,
    cache: Path | None,
    *,
    folds: int = 3,
) -> None:
    """Print UA / WA per test corpus and their mean, one row per normalisation."""
    base = ["egemaps", "mfcc"] if feature_set == "egemaps+mfcc" else [feature_set]
    kinds = set(base) | ({"mfcc-cmvn"} if "mfcc" in base else set())
    kinds |= {"prosody"} if with_prosody else set()
    clips = extract(config, kinds, cache)
    extra = [clips.features["prosody"]] if with_prosody else []
    x = np.hstack([clips.features[kind] for kind in base] + extra)
    if protocol == "leave-corpus-out":
        splits = leave_corpus_out_splits(clips.corpora)
    elif protocol == "kfold":
        splits = kfold_splits(clips.corpora, clips.speakers, folds)
    else:
        splits = in_corpus_splits(clips.corpora, clips.speakers)
    name = feature_set + (" + prosody" if with_prosody else "")
    rows: list[tuple[str, np.ndarray]] = [
        ("plain", predict_splits(x, clips.targets, splits)),
        (
            "per-utterance",
            predict_splits(x, clips.targets, splits, utterance_normalised=True),
        ),
    ]
    if "mfcc" in base:
        x_cmvn = np.hstack(
            [clips.features["mfcc-cmvn" if kind == "mfcc" else kind] for kind in base] + extra
        )
        rows.append(("per-utterance (CMVN frames)", predict_splits(x_cmvn, clips.targets, splits)))
    x_speaker = standardise_per_speaker(x, clips.speakers)
    rows.append(("transductive, research only", predict_splits(x_speaker, clips.targets, splits)))
    corpora = sorted(set(clips.corpora))
    print(f"{len(clips.ids)} clips, {protocol}, features {name} ({x.shape[1]}), {clips.classes}")
    heading = " | ".join(f"{protocol_column(protocol, c, corpora)} UA / WA" for c in corpora)
    print(f"| features | normalisation | {heading} | mean UA / WA |")
    print("|---|---|" + "---|" * (len(corpora) + 1))
    for label, predicted in rows:
        scores = per_corpus_scores(clips, predicted)
        cells = [f"{100 * ua:.1f} / {100 * wa:.1f}" for ua, wa in scores.values()]
        mean_ua = np.mean([ua for ua, _ in scores.values()])
        mean_wa = np.mean([wa for _, wa in scores.values()])
        cells.append(f"{100 * mean_ua:.1f} / {100 * mean_wa:.1f}")
        print(f"| {name} | {label} | {' | '.join(cells)} |")
    print(f"\nRecall per class ({', '.join(clips.classes)}), per test corpus:")
    for label, predicted in rows:
        cells = []
        for corpus in corpora:
            mine = (clips.corpora == corpus) & (predicted >= 0)
            metrics = classification_metrics(clips.targets[mine], predicted[mine], clips.classes)
            recalls = "/".join(f"{100 * metrics.per_class_recall[c]:.0f}" for c in clips.classes)
            cells.append(f"{corpus} {recalls}")
        print(f"  {label}: {'; '.join(cells)}")


def protocol_column(protocol: str, corpus: str, corpora: list[str]) -> str:
    if protocol == "leave-corpus-out":
        return f"{'+'.join(c for c in corpora if c != corpus)} -> {corpus}"
    if protocol == "kfold":
        return f"{corpus} (speaker k-fold)"
    return f"{corpus} (in-corpus)"


def print_timings(config: TrainingConfig, windows: int = 50) -> None:
    """Median time of openSMILE functionals (and of the MFCC functionals) per 3 s window."""
    import time

    from callmood.features import FeatureExtractor

    torch.set_num_threads(1)
    rows, _, _ = config_clips(config)
    step = max(1, len(rows) // 40)
    signal = np.concatenate([decode_clip(row.path, SAMPLE_RATE) for row in rows[::step]])
    width, hop = 3 * SAMPLE_RATE, SAMPLE_RATE
    cuts = [signal[i : i + width] for i in range(0, len(signal) - width, hop)][:windows]
    extractor = FeatureExtractor(config.feature_config()).eval()

    def mfcc(samples: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return functionals(extractor(torch.from_numpy(samples)[None])[0])

    methods: dict[str, Callable[[np.ndarray], Any]] = {"mfcc functionals (callmood)": mfcc}
    for kind in OPENSMILE_SETS:
        methods[f"openSMILE {OPENSMILE_SETS[kind]}"] = partial(opensmile_functionals, smile(kind))
    heading = f"median per 3 s window, wall / CPU ({len(cuts)} windows)"
    print(f"\n| extractor, one thread | {heading} | x real time at 1 s hop (CPU) |")
    print("|---|---|---|")
    for label, method in methods.items():
        method(cuts[0])  # warm-up
        wall, cpu = [], []
        for cut in cuts:
            start, start_cpu = time.perf_counter(), time.process_time()
            method(cut)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        median_wall, median_cpu = float(np.median(wall)), float(np.median(cpu))
        print(
            f"| {label} | {1000 * median_wall:.1f} / {1000 * median_cpu:.1f} ms "
            f"| {1 / median_cpu:.0f}x |"
        )
    # How much of that is openSMILE's set-up per call: a 0.1 s call, and the frame-level
    # descriptors of 60 s in one call (what an analyzer computing them once per call and
    # windowed functionals itself would pay per second of audio).
    import opensmile

    minute = np.resize(signal, 60 * SAMPLE_RATE)
    for kind, name in OPENSMILE_SETS.items():
        tiny = smile(kind)
        lld = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, name),
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
        tiny.process_signal(cuts[0], SAMPLE_RATE)
        costs = []
        for _ in range(5):
            start = time.process_time()
            tiny.process_signal(cuts[0][: SAMPLE_RATE // 10], SAMPLE_RATE)
            costs.append(time.process_time() - start)
        start = time.process_time()
        lld.process_signal(minute, SAMPLE_RATE)
        per_second = (time.process_time() - start) / 60
        print(
            f"| openSMILE {name}: one call on 0.1 s (set-up) | - / "
            f"{1000 * float(np.median(costs)):.1f} ms | - |"
        )
        print(
            f"| openSMILE {name}: frame-level descriptors of 60 s in one call, per second "
            f"| - / {1000 * per_second:.1f} ms | {1 / per_second:.0f}x |"
        )


if __name__ == "__main__":
    main()
