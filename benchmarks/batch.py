"""Batch throughput: audio hours analysed per hour with 1 and 2 Dask workers, against the
same calls analysed in one process by `analyze_call` in a loop (the baseline, same run).

    .venv/bin/python benchmarks/batch.py [--calls 12] [--call-seconds 30] [--repeats 3]

Calls are built from ../shared/data: stereo turn-taking, RAVDESS actors on the
customer channel and EmoDB actors on the agent channel. The batch times include
everything a user waits for: cluster start-up, hashing, moving results, Parquet.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CALLMOOD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SAMPLE_RATE = 16000
PAUSE_SECONDS = 0.5


def build_calls(folder: Path, calls: int, call_seconds: float) -> list[Path]:
    """Write ``calls`` stereo WAV calls of about ``call_seconds`` each, turn by turn."""
    from callmood.audio import load_audio

    customer_clips = sorted((SHARED_DATA / "ravdess").glob("Actor_*/*.flac"))
    agent_clips = sorted((SHARED_DATA / "emodb" / "wav").glob("*.flac"))
    rng = np.random.default_rng(0)
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    paths = []
    for number in range(calls):
        customer_turns, agent_turns = [], []
        length = 0
        while length < call_seconds * SAMPLE_RATE:
            said = load_audio(customer_clips[rng.integers(len(customer_clips))]).samples[0]
            answer = load_audio(agent_clips[rng.integers(len(agent_clips))]).samples[0]
            # The customer speaks while the agent is silent, then the other way round.
            customer_turns += [said, pause, np.zeros_like(answer), pause]
            agent_turns += [np.zeros_like(said), pause, answer, pause]
            length += len(said) + len(answer) + 2 * len(pause)
        call = np.stack([np.concatenate(customer_turns), np.concatenate(agent_turns)], axis=1)
        path = folder / f"call-{number:03d}.wav"
        soundfile.write(path, call, SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def random_model(folder: Path) -> Path:
    """A model package with random weights (same network and cost as a trained one)."""
    import torch

    from callmood.features import FeatureConfig
    from callmood.labels import LABEL_SETS
    from callmood.models.package import save_model_package
    from callmood.models.parallel_cnn_transformer import ModelConfig, ParallelCNNTransformer

    torch.manual_seed(0)
    labels = LABEL_SETS["iemocap4"]
    network = ParallelCNNTransformer(ModelConfig(num_classes=len(labels))).eval()
    return save_model_package(
        folder / "random-model",
        network,
        labels=labels,
        feature_config=FeatureConfig(),
        window_seconds=3.0,
        extra={"name": "random-benchmark-model"},
    )


def in_process(calls: list[Path], model_dir: Path | None) -> tuple[float, float, float]:
    """(wall s, audio s, steady audio s per s) of analyze_call in a loop, one model, one thread."""
    import torch

    from callmood.analysis import analyze_call
    from callmood.inference import EmotionModel

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = EmotionModel.load(model_dir, num_threads=1)
    loaded = time.perf_counter()
    audio_seconds = sum(analyze_call(path, None, model).duration_seconds for path in calls)
    finished = time.perf_counter()
    return finished - started, audio_seconds, audio_seconds / (finished - loaded)


def on_dask(folder: Path, workers: int, model_dir: Path | None) -> tuple[float, float, float]:
    """(wall s, audio s, steady audio s per s) of run_batch into a fresh output folder.

    Steady: from the first call finished to the last, so without the cluster start-up.
    """
    from callmood.batch import BatchOptions, BatchProgress, run_batch

    finished: list[tuple[float, float]] = []  # (time, audio seconds done) per call

    def progress(state: BatchProgress) -> None:
        if state.stage == "analysing":
            finished.append((time.perf_counter(), state.audio_seconds))

    with tempfile.TemporaryDirectory() as out:
        options = BatchOptions(workers=workers, model_dir=model_dir)
        started = time.perf_counter()
        summary = run_batch(folder, out, options, progress=progress)
        wall = time.perf_counter() - started
    if summary.errors:
        raise SystemExit(f"benchmark calls failed: {summary.error_messages}")
    (first_time, first_audio), (last_time, last_audio) = finished[0], finished[-1]
    steady = (last_audio - first_audio) / (last_time - first_time)
    return wall, summary.audio_seconds, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="calls in the archive")
    parser.add_argument("--call-seconds", type=float, default=90.0, help="length of each call")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (median shown)")
    parser.add_argument("--model", type=Path, default=None, help="model package (default: bundled)")
    args = parser.parse_args()

    from callmood.inference import default_model_dir

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_dir = args.model
        model_name = str(model_dir) if model_dir else "bundled"
        if model_dir is None and not (default_model_dir() / "model.json").is_file():
            model_dir = random_model(scratch)
            model_name = "random weights (no bundled model yet)"
        archive = scratch / "archive"
        archive.mkdir()
        calls = build_calls(archive, args.calls, args.call_seconds)

        modes = {
            "analyze_call loop, 1 process": lambda: in_process(calls, model_dir),
            "callmood batch, 1 worker": lambda: on_dask(archive, 1, model_dir),
            "callmood batch, 2 workers": lambda: on_dask(archive, 2, model_dir),
        }
        walls: dict[str, list[float]] = {name: [] for name in modes}
        steadies: dict[str, list[float]] = {name: [] for name in modes}
        audio_seconds = 0.0
        for _ in range(args.repeats):
            for name, run in modes.items():  # interleaved, so load changes hit every mode
                wall, audio_seconds, steady = run()
                walls[name].append(wall)
                steadies[name].append(steady)

    loop = "analyze_call loop, 1 process"
    baseline_wall = statistics.median(walls[loop])
    baseline_steady = statistics.median(steadies[loop])
    print(
        f"\n{args.calls} calls x ~{args.call_seconds:.0f} s = {audio_seconds / 3600:.3f} h audio; "
        f"model: {model_name}; {args.repeats} runs each, medians; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"{'mode':<30} {'wall s':>7} {'audio h/h':>10} {'vs loop':>8}   "
        f"{'steady h/h':>10} {'vs loop':>8}"
    )
    for name in modes:
        wall, steady = statistics.median(walls[name]), statistics.median(steadies[name])
        speed = audio_seconds / wall
        print(
            f"{name:<30} {wall:>7.2f} {speed:>10.1f} {baseline_wall / wall:>7.2f}x   "
            f"{steady:>10.1f} {steady / baseline_steady:>7.2f}x"
        )
    print(
        "\nwall: everything a user waits for (Dask start-up, hashing, Parquet). steady: audio per\n"
        "second between the first and the last call finished (the loop: after the model load).\n"
        "audio h/h = hours of audio analysed per hour = x real time."
    )


if __name__ == "__main__":
    main()
