"""Training-epoch throughput: cached features vs recomputing features with librosa every epoch.

The original project decoded every file and computed MFCCs with librosa inside each epoch.
callmood decodes each clip once and caches its clean features (the fast path), or computes
features of augmented audio in one batched torch call. Same model, same clips, same run.

    .venv/bin/python benchmarks/training.py [--clips 160] [--epochs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from callmood.corpora import prepare_emodb
from callmood.training.config import load_training_config
from callmood.training.data import build_clip_set, epoch_batches, map_labels, random_crop
from callmood.training.loop import build_model, class_weights

REPO_ROOT = Path(__file__).resolve().parents[1]


def train_step(model, optimizer, features, targets, weights) -> None:
    loss = F.cross_entropy(model(features), targets, weight=weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def librosa_features(path: str, feature_config) -> torch.Tensor:
    """The original project's way: decode and compute MFCCs with librosa, per file, per epoch."""
    import librosa

    audio, _ = librosa.load(path, sr=feature_config.sample_rate)
    mfcc = librosa.feature.mfcc(
        y=audio,
        sr=feature_config.sample_rate,
        n_mfcc=feature_config.n_mfcc,
        n_mels=feature_config.n_mels,
        n_fft=feature_config.n_fft,
        win_length=feature_config.win_length,
        hop_length=feature_config.hop_length,
        fmin=feature_config.fmin,
    )
    return torch.from_numpy(mfcc.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=160, help="EmoDB clips used (default 160)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per method")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_training_config(REPO_ROOT / "configs" / "default.yaml", check_paths=False)
    config = config.model_copy(update={"label_set": "emodb7"})
    feature_config = config.feature_config()
    rows, labels = map_labels(prepare_emodb(args.data / "emodb"), "emodb7")
    rows, labels = rows[: args.clips], labels[: args.clips]
    classes = config.class_names()

    started = time.perf_counter()
    clips = build_clip_set(rows, labels, classes, feature_config, keep_waveforms=True)
    cache_seconds = time.perf_counter() - started

    crop_samples = round(config.crop_seconds * feature_config.sample_rate)
    crop_frames = feature_config.frames_for(crop_samples)
    indices = np.arange(len(clips))
    weights = class_weights(clips.subset_counts(indices))
    from callmood.features import FeatureExtractor

    extractor = FeatureExtractor(feature_config)

    def cached_batch(batch, rng):
        return torch.stack([random_crop(clips.features[i], crop_frames, rng) for i in batch])

    def torch_batch(batch, rng):
        waveforms = np.stack(
            [random_crop(clips.waveforms[i].astype(np.float32), crop_samples, rng) for i in batch]
        )
        with torch.no_grad():
            return extractor(torch.from_numpy(waveforms))

    def librosa_batch(batch, rng):
        return torch.stack(
            [
                random_crop(librosa_features(clips.rows[i].path, feature_config), crop_frames, rng)
                for i in batch
            ]
        )

    methods = {
        "librosa, every epoch (original)": librosa_batch,
        "torch features of cached audio": torch_batch,
        "cached clean features (default)": cached_batch,
    }
    results = {}
    for name, make_batch in methods.items():
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = build_model(config, feature_config.num_features, len(classes))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        times = []
        for _ in range(args.epochs):
            epoch_started = time.perf_counter()
            for batch in epoch_batches(
                indices, clips.targets, config.batch_size, rng, balanced=False
            ):
                targets = torch.from_numpy(clips.targets[batch])
                train_step(model, optimizer, make_batch(batch, rng), targets, weights)
            times.append(time.perf_counter() - epoch_started)
        results[name] = statistics.median(times)

    baseline = results["librosa, every epoch (original)"]
    clips_per_epoch = (len(clips) // config.batch_size) * config.batch_size
    print(
        f"\nOne training epoch, {clips_per_epoch} EmoDB clips, {config.crop_seconds:g} s crops, "
        f"default model, {args.threads} thread(s), median of {args.epochs} epochs"
    )
    print(f"(one-time decode + feature cache of {len(clips)} clips: {cache_seconds:.1f} s)\n")
    print(f"{'method':<34} {'s/epoch':>8} {'clips/s':>8} {'speed-up':>9}")
    for name, seconds in results.items():
        print(
            f"{name:<34} {seconds:8.2f} {clips_per_epoch / seconds:8.1f} {baseline / seconds:8.2f}x"
        )


if __name__ == "__main__":
    main()
