"""A `callmood serve` killed with SIGKILL mid-job and started again loses nothing and leaves
nothing behind: the job that was running and the one queued behind it are analysed, and the
recording of a live stream the kill cut off is removed. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from analysis_fixtures import build_two_party_call, write_audio
from conftest import require
from service_support import database_url, free_port  # noqa: F401 (fixture)

from callmood import store
from callmood.inference import default_model_dir

CALLMOOD = Path(sys.executable).with_name("callmood")
TOKEN = "recovery-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def calls(ravdess_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Two stereo FLAC calls of real speech, customer and agent taking turns: a long one
    (about 6 minutes: its analysis takes seconds, long enough to be killed in the middle)
    and a short one (about 20 s) to wait behind it."""
    samples, _ = build_two_party_call(ravdess_dir, turns=6, pause_seconds=0.5)
    folder = tmp_path_factory.mktemp("calls")
    long_call = write_audio(folder / "long.flac", np.tile(samples, 18))
    return long_call, write_audio(folder / "short.flac", samples)


@contextmanager
def serve(data_dir: Path, database: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`callmood serve` with one analysis worker; yields the process and its base URL."""
    model = os.environ.get("CALLMOOD_MODEL_DIR") or str(default_model_dir())
    require(Path(model, "model.json").is_file(), "no bundled model")
    port = free_port()
    server = subprocess.Popen(
        [str(CALLMOOD), "serve", "--port", str(port), "--data-dir", str(data_dir)]
        + ["--database-url", database, "--workers", "1", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CALLMOOD_MODEL_DIR": model, "CALLMOOD_AUTH_TOKEN": TOKEN},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url), "the server did not start", server)
        yield server, url
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/calls", headers=AUTH, timeout=2).is_success
    except httpx.HTTPError:
        return False


def wait_until(condition, message: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert server.poll() is None, f"the server exited: {message}"
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def job_states(database: str) -> dict[str, str]:
    engine = store.create_database_engine(database)
    try:
        with store.make_session_factory(engine)() as session:
            return {job.id: job.state for job in session.query(store.JobRecord)}
    finally:
        engine.dispose()


def test_a_server_killed_mid_job_resumes_its_jobs_and_leaves_no_orphans(
    database_url,  # noqa: F811
    calls,
    tmp_path,
):
    from websockets.sync.client import connect

    data_dir = tmp_path / "data"
    audio_dir = data_dir / "audio"

    def one_running_one_queued() -> bool:
        states = list(job_states(database_url).values())
        return "running" in states and "queued" in states

    with serve(data_dir, database_url) as (server, url):
        job_ids = []
        for call in calls:  # one worker: the short call waits behind the long one
            with call.open("rb") as audio:
                response = httpx.post(
                    f"{url}/api/calls",
                    headers=AUTH,
                    files={"file": (call.name, audio, "audio/flac")},
                    timeout=60,
                )
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["job_id"])
        # A live call in progress: its recording is on disk, its call not stored yet.
        with connect(f"ws{url[4:]}/api/stream?token={TOKEN}") as stream:
            stream.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm16"}))
            live_call = json.loads(stream.recv(timeout=30))["call_id"]
            stream.send(np.random.default_rng(0).normal(0, 3000, 32000).astype("<i2").tobytes())
            recording = audio_dir / "live" / f"{live_call}.flac"
            wait_until(recording.exists, "no live recording", server)
            wait_until(one_running_one_queued, "no job ran while another waited", server)
            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    assert job_states(database_url) == {job_ids[0]: "running", job_ids[1]: "queued"}

    with serve(data_dir, database_url) as (server, url):
        assert not recording.exists()  # removed on start: no call will ever refer to it

        def finished() -> bool:
            return all(state in ("done", "failed") for state in job_states(database_url).values())

        wait_until(finished, "the jobs left by the kill were not resumed", server)
        for job_id in job_ids:
            job = httpx.get(f"{url}/api/jobs/{job_id}", headers=AUTH).json()
            assert job["state"] == "done", job
            call = httpx.get(f"{url}/api/calls/{job['call_id']}", headers=AUTH)
            assert call.status_code == 200
            assert httpx.get(f"{url}/api/calls/{job['call_id']}/audio", headers=AUTH).is_success
    kept = sorted(p.relative_to(audio_dir).as_posix() for p in audio_dir.rglob("*") if p.is_file())
    assert kept == sorted(f"calls/{job_id}.flac" for job_id in job_ids)
