"""Benchmark: N concurrent live streams of real speech against a real callmood server.

Starts `uvicorn` with the service in a subprocess on 127.0.0.1 (temporary data
folder), then for N = 1, 10, 20, 50 opens N WebSocket streams at once, each
sending real RAVDESS speech as 100 ms pcm16 frames paced at real time. For every
window result it measures the latency from the moment the last sample of the
window's audio was sent to the moment the result arrived. Prints a table
(p50/p95 latency, ratio to N = 1 as the baseline of the same run) and the largest
N that stays real time.

Usage: .venv/bin/python benchmarks/streams.py [--streams 1,10,20,50] [--seconds 20]
       [--smoothing 1] [--model-dir DIR]

`--smoothing 1` (the default here) measures processing latency; with the stream's
default smoothing of 3 windows each result also waits one hop (1 s) for the next
window by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
RAVDESS = Path(os.environ.get("CALLMOOD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TOKEN = "benchmark-token-0123"
SAMPLE_RATE = 16000
FRAME_SECONDS = 0.1
# Real time: every result within one hop (1 s) of its audio, so none piles up behind.
REAL_TIME_P95_SECONDS = 1.0
TARGET_P95_SECONDS = 0.2

SERVER_CODE = """
import sys, uvicorn
from callmood.service.app import create_app
from callmood.settings import load_settings
data_dir, token, port, model_dir = sys.argv[1:5]
settings = load_settings(data_dir=data_dir, auth_token=token, model_dir=model_dir or None)
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(port), log_level="warning")
"""


def speech(seconds: float) -> np.ndarray:
    """`seconds` of real speech: RAVDESS clips of several emotions, silence trimmed."""
    clips = sorted((RAVDESS / "ravdess").glob("Actor_0[1-4]/03-01-0[1-8]-02-01-01-*.flac"))
    if not clips:
        sys.exit(f"no RAVDESS clips under {RAVDESS / 'ravdess'}")
    pieces, total = [], 0
    while total < seconds * SAMPLE_RATE:
        for clip in clips:
            audio, _ = sf.read(clip, dtype="float32")
            voiced = np.flatnonzero(np.abs(audio) > 0.01)
            piece = audio[voiced[0] : voiced[-1]] if len(voiced) else audio
            pieces.append(piece)
            total += len(piece)
    return np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]


def start_server(data_dir: Path, port: int, model_dir: str) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, str(data_dir), TOKEN, str(port), model_dir],
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the server did not start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server did not start within 60 s")


def determination_frames(audio: np.ndarray, smoothing: int, model_dir: str) -> dict:
    """For each window, the 100 ms frame after which the analyser itself can emit it.

    Windows at the end of a stretch of speech wait for the voice-activity detector to
    hear the silence after it, and smoothing waits for the next windows: that delay is
    the analyser's design, not the server's. Feeding the same frames to a
    StreamingAnalyzer in this process tells the two apart.
    """
    from callmood.analysis import AnalysisOptions, StreamingAnalyzer
    from callmood.inference import EmotionModel

    model = EmotionModel.load(model_dir or None)
    options = AnalysisOptions(channels={"customer": 0}, smoothing_windows=smoothing)
    analyzer = StreamingAnalyzer(options, model)
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    frames = {}
    for index, first in enumerate(range(0, len(audio), frame)):
        for event in analyzer.feed({"customer": audio[first : first + frame]}):
            if event.event == "window":
                frames[(round(event.window.start, 3), round(event.window.end, 3))] = index
    return frames


async def one_stream(
    url: str, audio: np.ndarray, smoothing: int, delay: float, determined: dict
) -> dict:
    """Stream `audio` paced at real time; return the latencies of its window results."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    payload = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    frame = int(FRAME_SECONDS * SAMPLE_RATE)
    sent_at: list[float] = []  # wall time when frame i had been sent
    # (arrival, latency from the window's last sample, latency from when it was determinable)
    latencies: list[tuple[float, float, float]] = []
    async with connect(url, max_size=2**22) as websocket:
        await websocket.send(
            json.dumps(
                {
                    "type": "start",
                    "sample_rate": SAMPLE_RATE,
                    "encoding": "pcm16",
                    "name": "benchmark",
                    "smoothing_windows": smoothing,
                }
            )
        )
        ready = json.loads(await websocket.recv())
        assert ready["type"] == "ready", ready

        async def receive() -> dict:
            async for message in websocket:
                data = json.loads(message)
                if data["type"] == "window":
                    arrived = time.perf_counter()
                    # The frame that carried the window's last sample, and the frame
                    # after which the analyser could determine the window.
                    last = min(len(sent_at) - 1, int(np.ceil(data["end"] / FRAME_SECONDS)) - 1)
                    key = (round(data["start"], 3), round(data["end"], 3))
                    ready = min(len(sent_at) - 1, determined.get(key, last))
                    latencies.append(
                        (arrived, arrived - sent_at[last], arrived - sent_at[max(ready, last)])
                    )
                elif data["type"] in ("summary", "error"):
                    return data
            return {"type": "closed"}

        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for index, first in enumerate(range(0, len(payload), frame)):
            # Pace by the absolute schedule, so a late wake-up does not slow the stream.
            await asyncio.sleep(max(0.0, start + index * FRAME_SECONDS - time.perf_counter()))
            await websocket.send(payload[first : first + frame].tobytes())
            sent_at.append(time.perf_counter())
        stopped = time.perf_counter()
        await websocket.send(json.dumps({"type": "stop"}))
        summary = await asyncio.wait_for(receiver, timeout=120)
    # Results flushed by stop (the last windows) are not live latencies.
    live = [item[1:] for item in latencies if item[0] < stopped]
    return {"latencies": live, "summary": summary}


async def run_level(
    url: str, audio: np.ndarray, streams: int, smoothing: int, determined: dict
) -> dict:
    # Stagger starts over one hop, as independent calls would be.
    delays = [random.uniform(0, 1.0) for _ in range(streams)]
    results = await asyncio.gather(
        *(one_stream(url, audio, smoothing, delay, determined) for delay in delays)
    )
    pairs = [pair for result in results for pair in result["latencies"]]
    from_audio = [pair[0] for pair in pairs]
    from_ready = [pair[1] for pair in pairs]
    failed = sum(result["summary"]["type"] != "summary" for result in results)

    def percentile(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    return {
        "streams": streams,
        "windows": len(pairs),
        "p50": percentile(from_audio, 50),
        "p95": percentile(from_audio, 95),
        "max": max(from_audio, default=float("nan")),
        "server_p50": percentile(from_ready, 50),
        "server_p95": percentile(from_ready, 95),
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,10,20,50", help="Concurrent stream counts.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Audio per stream, seconds.")
    parser.add_argument(
        "--smoothing", type=int, default=1, help="smoothing_windows of each stream (odd)."
    )
    parser.add_argument("--model-dir", default="", help="Model package (default: bundled).")
    args = parser.parse_args()
    levels = [int(value) for value in args.streams.split(",")]
    random.seed(0)
    audio = speech(args.seconds)
    determined = determination_frames(audio, args.smoothing, args.model_dir)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="callmood-bench-") as data_dir:
        server = start_server(Path(data_dir), port, args.model_dir)
        try:
            url = f"ws://127.0.0.1:{port}/api/stream?token={TOKEN}"
            warm_up = audio[: 5 * SAMPLE_RATE]
            asyncio.run(run_level(url, warm_up, 1, args.smoothing, determined))
            rows = []
            for streams in levels:
                row = asyncio.run(run_level(url, audio, streams, args.smoothing, determined))
                rows.append(row)
                print(
                    f"  N={streams:3d}: p50 {row['p50'] * 1000:7.1f} ms, "
                    f"p95 {row['p95'] * 1000:7.1f} ms",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    print_table(rows, args)


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    baseline = rows[0]
    load = os.getloadavg()[0]
    print()
    print(
        f"Live streams: {args.seconds:g} s of real speech each, 100 ms pcm16 frames at real "
        f"time, smoothing_windows={args.smoothing}; {os.cpu_count()} CPU cores, "
        f"load average {load:.1f} at the end"
    )
    print("latency      = result received - last sample of the window sent (what a user sees)")
    print("server       = result received - frame after which the analyser could emit it")
    print(f"ratios: p50 against the N={baseline['streams']} baseline of this run")
    header = (
        f"{'streams':>7} {'windows':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'server p50':>10} {'server p95':>10} {'p50/base':>8} {'failed':>6} "
        f"{'real time':>9} {'p95<200ms':>9} {'server p95<200ms':>16}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        real_time = row["p95"] < REAL_TIME_P95_SECONDS and not row["failed"]
        print(
            f"{row['streams']:>7} {row['windows']:>7} {row['p50'] * 1000:>8.1f} "
            f"{row['p95'] * 1000:>8.1f} {row['max'] * 1000:>8.1f} "
            f"{row['server_p50'] * 1000:>10.1f} {row['server_p95'] * 1000:>10.1f} "
            f"{row['p50'] / baseline['p50']:>8.2f} {row['failed']:>6} "
            f"{'yes' if real_time else 'NO':>9} "
            f"{'yes' if row['p95'] < TARGET_P95_SECONDS else 'no':>9} "
            f"{'yes' if row['server_p95'] < TARGET_P95_SECONDS else 'no':>16}"
        )
    keeping_up = [
        row["streams"] for row in rows if row["p95"] < REAL_TIME_P95_SECONDS and not row["failed"]
    ]
    print()
    print(
        f"largest N that stays real time (p95 < {REAL_TIME_P95_SECONDS:g} s, no failed stream): "
        f"{max(keeping_up) if keeping_up else 'none'}"
    )


if __name__ == "__main__":
    main()
