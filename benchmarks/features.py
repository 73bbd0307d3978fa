"""Feature extraction speed: callmood's batched torch MFCC / log-mel against librosa, same clips.

Measures audio-seconds processed per wall-clock second on real 3 s RAVDESS clips, medians over
repeats, in one run, and prints a table with the ratio to librosa at its faster numpy BLAS
thread setting (target: >= 5x). Methods are timed in turn, round by round, so that the load of a
shared machine falls on all of them alike.

    .venv/bin/python benchmarks/features.py [--clips 32] [--batch-size 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from callmood.audio import load_audio
from callmood.features import FeatureConfig, FeatureExtractor

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CALLMOOD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
CLIP_SECONDS = 3.0


def load_clips(count: int) -> np.ndarray:
    """`count` real RAVDESS clips, each cut or zero-padded to 3 s, shape (count, 48000)."""
    paths = sorted((SHARED_DATA / "ravdess").glob("Actor_*/*.flac"))[:: 1440 // count][:count]
    if len(paths) < count:
        raise SystemExit(f"need {count} RAVDESS clips under {SHARED_DATA / 'ravdess'}")
    samples = int(CLIP_SECONDS * 16000)
    clips = np.zeros((count, samples), dtype=np.float32)
    for row, path in enumerate(paths):
        audio = load_audio(path).samples[0][:samples]
        clips[row, : len(audio)] = audio
    return clips


def time_interleaved(runs: list, repeats: int) -> list[float]:
    """Median wall-clock seconds of each of `runs`, timed in turn round by round.

    Interleaving spreads the machine's load swings over every method alike (a shared machine's
    other jobs would otherwise favour whichever ran in a quiet moment). One warm-up run each.
    """
    for run in runs:
        run()
    timings: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, times in zip(runs, timings, strict=True):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in timings]


def ours(clips: np.ndarray, config: FeatureConfig, batch_size: int, threads: int):
    extractor = FeatureExtractor(config).eval()
    batches = [
        torch.from_numpy(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)
    ]

    def run() -> list[torch.Tensor]:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return [extractor(batch) for batch in batches]

    return run


def librosa_reference(clips: np.ndarray, config: FeatureConfig, blas_threads: int | None):
    """librosa, clip by clip as it is called; `blas_threads` limits numpy's BLAS (None: default)."""
    import librosa
    from threadpoolctl import threadpool_limits

    kwargs = dict(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        win_length=config.win_length,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        center=config.center,
    )

    def one(clip: np.ndarray) -> np.ndarray:
        if config.kind == "mfcc":
            return librosa.feature.mfcc(y=clip, n_mfcc=config.n_mfcc, **kwargs)
        return librosa.power_to_db(librosa.feature.melspectrogram(y=clip, **kwargs), top_db=80.0)

    def run() -> list[np.ndarray]:
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            return [one(clip) for clip in clips]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32, help="number of 3 s clips (default 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per torch batch (8)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per method (7)")
    arguments = parser.parse_args()

    clips = load_clips(arguments.clips)
    audio_seconds = len(clips) * CLIP_SECONDS
    print(
        f"{len(clips)} RAVDESS clips x {CLIP_SECONDS:g} s, torch batch {arguments.batch_size}, "
        f"median of {arguments.repeats} repeats, {os.cpu_count()} CPUs visible"
    )
    header = f"{'features':8} {'method':22} {'median s':>9} {'audio s / s':>12} {'vs librosa':>11}"
    print(header)
    print("-" * len(header))
    for kind in ("mfcc", "logmel"):
        config = FeatureConfig(kind=kind)
        rows = [
            ("librosa, BLAS default", librosa_reference(clips, config, None)),
            ("librosa, BLAS 1 thr", librosa_reference(clips, config, 1)),
        ]
        reference = np.stack(rows[0][1]())
        for threads in (1, 2):
            run = ours(clips, config, arguments.batch_size, threads)
            difference = np.abs(torch.cat(run()).numpy() - reference).max()
            assert difference < 1e-2, f"{kind}: differs from librosa by {difference}"
            rows.append((f"callmood torch, {threads} thr", run))
        medians = time_interleaved([run for _, run in rows], arguments.repeats)
        baseline = min(medians[:2])  # librosa at its faster setting
        for (label, _), seconds in zip(rows, medians, strict=True):
            speed = audio_seconds / seconds
            print(f"{kind:8} {label:22} {seconds:9.4f} {speed:12.0f} {baseline / seconds:10.1f}x")


if __name__ == "__main__":
    main()
