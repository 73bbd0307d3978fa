"""Benchmark the service: does analysing uploads keep the API responsive, and how fast are jobs?

Starts the real app under uvicorn on loopback (a thread of this process, SQLite in a
temp dir, the bundled model), then measures with an HTTP client:

- `GET /api/calls` latency with the server idle (the baseline) and while
  `--uploads` uploaded calls are being analysed by the worker threads; if the
  analysis ran on the event loop, the second would wait for whole analyses;
- upload -> job done time per call, and seconds of call analysed per wall-second.

Calls are stereo FLAC built from real RAVDESS clips (alternating turns). Prints
medians and the ratio busy / idle.

Usage: python benchmarks/service.py [--call-seconds 60] [--uploads 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile
import uvicorn
from support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
RAVDESS = REPO_ROOT.parent / "shared" / "data" / "ravdess"
TOKEN = "benchmark-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def build_call(seconds: float, seed: int = 0) -> bytes:
    """A stereo FLAC call of alternating customer / agent turns from RAVDESS clips."""
    from callmood.audio import load_audio

    rng = np.random.default_rng(seed)
    clips = sorted(RAVDESS.glob("Actor_*/*.flac"))
    total = int(seconds * 16000)
    channels = np.zeros((2, total), np.float32)
    position, speaker = 0, 0
    while position < total:
        clip = load_audio(clips[rng.integers(len(clips))]).samples[0]
        end = min(total, position + len(clip))
        channels[speaker, position:end] = clip[: end - position]
        position = end + int(rng.uniform(0.2, 1.0) * 16000)
        speaker = 1 - speaker
    buffer = io.BytesIO()
    soundfile.write(buffer, channels.T, 16000, format="FLAC")
    return buffer.getvalue()


def latencies(client: httpx.Client, seconds: float) -> list[float]:
    """Milliseconds of `GET /api/calls`, one request after another for `seconds`."""
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        client.get("/api/calls", headers=AUTH).raise_for_status()
        samples.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--call-seconds", type=float, default=60.0, help="Length of each call.")
    parser.add_argument("--uploads", type=int, default=3, help="Calls uploaded at once.")
    parser.add_argument("--workers", type=int, default=1, help="Analysis worker threads.")
    arguments = parser.parse_args()
    if not RAVDESS.is_dir():
        sys.exit(f"RAVDESS not found at {RAVDESS}")

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    calls = [build_call(arguments.call_seconds, seed) for seed in range(arguments.uploads)]
    data_dir = Path(tempfile.mkdtemp(prefix="callmood-bench-"))
    settings = load_settings(data_dir=data_dir, auth_token=TOKEN, workers=arguments.workers)
    app = create_app(settings)
    app.state.model.get()  # loaded before timing, as `callmood serve` does
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        idle = latencies(client, 5.0)
        submitted = {}
        for index, call in enumerate(calls):
            response = client.post(
                "/api/calls", headers=AUTH, files={"file": (f"call{index}.flac", call)}
            )
            response.raise_for_status()
            submitted[response.json()["job_id"]] = time.perf_counter()
        # Latency is sampled on its own thread and connection while the jobs run.
        busy: list[float] = []
        sampling = threading.Event()

        def sample_busy() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as sampler:
                while not sampling.is_set():
                    busy.extend(latencies(sampler, 0.2))

        sampler_thread = threading.Thread(target=sample_busy)
        sampler_thread.start()
        done: dict[str, float] = {}
        while len(done) < len(submitted):
            time.sleep(0.05)
            for job_id in submitted.keys() - done.keys():
                job = client.get(f"/api/jobs/{job_id}", headers=AUTH).json()
                if job["state"] in ("done", "failed"):
                    assert job["state"] == "done", job["error"]
                    done[job_id] = time.perf_counter()
        sampling.set()
        sampler_thread.join()
    server.should_exit = True
    thread.join(30)

    first = min(submitted.values())
    job_seconds = [done[job] - submitted[job] for job in submitted]
    wall = max(done.values()) - first
    print(
        f"\n{arguments.uploads} uploads of {arguments.call_seconds:g} s stereo calls, "
        f"{arguments.workers} worker(s), bundled model\n"
    )
    print(f"{'GET /api/calls latency':<34}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}{'n':>6}")
    for label, samples in [("idle (baseline)", idle), ("while analysing uploads", busy)]:
        ordered = sorted(samples)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        print(
            f"{label:<34}{statistics.median(samples):>10.1f}{p95:>10.1f}"
            f"{max(samples):>10.1f}{len(samples):>6}"
        )
    ratio = statistics.median(busy) / statistics.median(idle)
    print(f"{'busy / idle median':<34}{ratio:>10.2f}")
    print(f"\nupload -> done, median per call: {statistics.median(job_seconds):.1f} s")
    print(
        f"all {arguments.uploads} calls done in {wall:.1f} s: "
        f"{arguments.uploads * arguments.call_seconds / wall:.1f} s of call per wall-second"
    )


if __name__ == "__main__":
    main()
