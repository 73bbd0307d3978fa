"""Benchmark call analysis: callmood vs the original project's way, on long calls from real clips.

Builds stereo calls (10 and 60 minutes, and a 4-hour one for memory) from
RAVDESS clips in a temp dir, then measures in fresh subprocesses:

(a) callmood: ``analyze_call`` (blockwise decode, VAD, batched torch features,
    ONNX Runtime, smoothing, alerts);
(b) baseline, the original project's way: ``librosa.load`` of the whole file,
    then window by window ``librosa.feature.mfcc`` and the eager torch model
    (same weights), in two variants:
    - "speech windows": over the same speech windows callmood analysed (the
      baseline is handed callmood's voice detection for free: the strict one);
    - "every window": over the whole customer channel, a window every hop (3 s
      windows, 1 s hop, as callmood's defaults), as a recording is analysed
      without voice detection.

Prints medians of wall time, x real time and peak RSS (ru_maxrss). "x real" is
call seconds per wall second; "x/ch" is channel-seconds per wall second (both
decode the two channels; callmood detects voice on both and infers the
customer's emotions, the baseline infers the customer's emotions on the windows
callmood found). The speed-up is the ratio of the median wall times.

Usage: python benchmarks/analyze.py [--minutes 10 60] [--repeats 3] [--long-hours 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RAVDESS = REPO_ROOT.parent / "shared" / "data" / "ravdess"
SAMPLE_RATE = 16000


def build_call(path: Path, seconds: float, seed: int = 0) -> Path:
    """Write a stereo FLAC of alternating turns (RAVDESS clips, pauses), block by block."""
    import soundfile as sf

    from callmood.audio import load_audio

    rng = np.random.default_rng(seed)
    files = sorted(RAVDESS.glob("Actor_*/*.flac"))
    if not files:
        sys.exit(f"no RAVDESS clips under {RAVDESS}")
    clips = [_trimmed(load_audio(f, channels=[0]).samples[0]) for f in rng.choice(files, 240)]
    total = int(seconds * SAMPLE_RATE)
    written = 0
    turn = 0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 2, subtype="PCM_16", format="FLAC") as out:
        while written < total:
            # A turn is one to four sentences of one actor's clips.
            clip = np.concatenate(
                [clips[i] for i in rng.integers(len(clips), size=rng.integers(1, 5))]
            )
            pause = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), np.float32)
            speech = np.stack([clip, np.zeros_like(clip)] if turn % 2 == 0 else [0 * clip, clip])
            block = np.concatenate([speech, np.stack([pause, pause])], axis=1)
            block = block[:, : total - written]
            out.write(block.T)
            written += block.shape[1]
            turn += 1
    return path


def _trimmed(samples: np.ndarray) -> np.ndarray:
    """A clip without its leading and trailing silence (RAVDESS clips have ~1 s of each)."""
    from callmood.segment import speech_segments

    found = speech_segments(samples)
    if not found:
        return samples
    return samples[int(found[0][0] * SAMPLE_RATE) : int(found[-1][1] * SAMPLE_RATE)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_callmood(path: Path, windows_out: Path | None, threads: int) -> dict:
    import torch

    from callmood.analysis import AnalysisOptions, analyze_call
    from callmood.inference import EmotionModel

    torch.set_num_threads(threads)
    model = EmotionModel.load(num_threads=threads)
    model.predict(np.zeros((1, model.window_samples), np.float32))  # warm-up, as for the baseline
    loaded_rss = peak_rss_mb()
    start = time.perf_counter()
    result = analyze_call(path, AnalysisOptions(num_threads=threads), model=model)
    wall = time.perf_counter() - start
    windows = [(w.start, w.end) for w in result.windows("customer")]
    if windows_out is not None:
        windows_out.write_text(json.dumps(windows))
    return {
        "wall": wall,
        "audio_seconds": result.duration_seconds,
        "channels": len(result.channels),
        "windows": len(windows),
        "rss_mb": peak_rss_mb(),
        "rss_after_load_mb": loaded_rss,
    }


def child_baseline(path: Path, windows_file: Path | None, threads: int) -> dict:
    """The original project's way; ``windows_file`` None: every window of the channel."""
    import librosa
    import torch

    torch.set_num_threads(threads)
    from callmood.analysis import AnalysisOptions
    from callmood.inference import pad_centered
    from callmood.models.package import load_model_package

    package = load_model_package(None)
    model, config = package.model.eval(), package.feature_config
    window_samples = int(package.window_seconds * SAMPLE_RATE)
    windows = None if windows_file is None else json.loads(windows_file.read_text())

    def predict(clip: np.ndarray) -> torch.Tensor:
        mfcc = librosa.feature.mfcc(
            y=clip,
            sr=SAMPLE_RATE,
            n_mfcc=config.n_mfcc,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            n_mels=config.n_mels,
            fmin=config.fmin,
            fmax=config.fmax,
            center=config.center,
            pad_mode="constant",
        )  # librosa's default top_db=80 is callmood's too
        features = torch.from_numpy(mfcc)[None].float()
        # The original way has no caller normalisation: a model with absolute statistics
        # gets the same maps as both of its inputs (the same work as one input, plus its
        # statistics).
        extra = {"absolute_features": features} if model.config.absolute_statistics else {}
        with torch.no_grad():
            return torch.softmax(model(features, **extra), dim=-1)

    predict(np.zeros(window_samples, np.float32))  # warm-up: librosa's numba compilation
    start = time.perf_counter()
    audio, rate = librosa.load(path, sr=SAMPLE_RATE, mono=False)
    customer = audio[0]
    if windows is None:
        seconds, hop = customer.size / rate, AnalysisOptions().hop_seconds
        window_seconds = package.window_seconds
        windows = [
            (begin, min(begin + window_seconds, seconds))
            for begin in np.arange(0, max(seconds - window_seconds, 0) + hop / 2, hop)
        ]
    for begin, end in windows:
        predict(pad_centered(customer[int(begin * rate) : int(end * rate)], window_samples))
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "audio_seconds": customer.size / rate,
        "channels": audio.shape[0],
        "windows": len(windows),
        "rss_mb": peak_rss_mb(),
    }


def run_child(kind: str, path: Path, extra: Path | None, threads: int) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--child", kind, str(path)]
    if extra is not None:
        command.append(str(extra))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{kind} on {path.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-hours", type=float, default=4.0, help="0 skips the long call")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and ONNX Runtime in both (default 1: fair on a shared machine)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        extra = Path(rest[0]) if rest else None
        runner = child_callmood if kind == "callmood" else child_baseline
        print(json.dumps(runner(Path(path), extra, args.threads)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="callmood-bench-") as tmp:
        tmp = Path(tmp)
        for minutes in args.minutes:
            path = build_call(tmp / f"call_{minutes:g}min.flac", minutes * 60)
            windows = tmp / f"windows_{minutes:g}.json"
            ours, speech, every = [], [], []
            for _ in range(args.repeats):  # interleaved: a shared machine's load hits all alike
                ours.append(run_child("callmood", path, windows, args.threads))
                speech.append(run_child("baseline", path, windows, args.threads))
                every.append(run_child("baseline", path, None, args.threads))
            rows.append((f"{minutes:g} min", ours, speech, every))
            print(f"measured {minutes:g} min", file=sys.stderr)
        long_row = None
        if args.long_hours > 0:
            path = build_call(tmp / "call_long.flac", args.long_hours * 3600, seed=1)
            long_row = run_child("callmood", path, None, args.threads)

    def median(results: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(
        f"\ncall analysis, {args.threads} thread(s), medians of {args.repeats}; "
        "x real = call seconds / wall seconds, x/ch = channel-seconds / wall seconds;\n"
        "baselines: the original way over callmood's speech windows (strict) and over "
        "every window of the customer channel"
    )
    header = (
        f"{'call':>8} | {'callmood s':>10} {'windows':>7} {'x real':>7} {'x/ch':>6} "
        f"{'RSS MB':>7} | {'speech windows s':>16} {'speed-up':>8} | "
        f"{'every window s':>14} {'windows':>7} {'speed-up':>8} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, ours, speech, every in rows:
        seconds, channels = ours[0]["audio_seconds"], ours[0]["channels"]
        wall = median(ours, "wall")
        speech_wall, every_wall = median(speech, "wall"), median(every, "wall")
        print(
            f"{name:>8} | {wall:>10.2f} {ours[0]['windows']:>7} {seconds / wall:>7.0f} "
            f"{channels * seconds / wall:>6.0f} {median(ours, 'rss_mb'):>7.0f} | "
            f"{speech_wall:>16.2f} {speech_wall / wall:>7.1f}x | "
            f"{every_wall:>14.2f} {every[0]['windows']:>7} {every_wall / wall:>7.1f}x "
            f"{median(every, 'rss_mb'):>7.0f}"
        )
        print(
            f"{'':>8} | all runs, s: callmood {[round(r['wall'], 2) for r in ours]}, "
            f"speech windows {[round(r['wall'], 2) for r in speech]}, "
            f"every window {[round(r['wall'], 2) for r in every]}"
        )
    if long_row is not None:
        hours = long_row["audio_seconds"] / 3600
        print(
            f"\nlong call {hours:.1f} h: callmood {long_row['wall']:.1f} s "
            f"({long_row['audio_seconds'] / long_row['wall']:.0f}x real time), "
            f"peak RSS {long_row['rss_mb']:.0f} MB "
            f"(of which {long_row['rss_after_load_mb']:.0f} MB after imports and model load)"
        )


if __name__ == "__main__":
    main()
