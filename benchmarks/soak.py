"""Soak and fault test: uploads and live streams against a real `callmood serve`, a SIGKILL
mid-job and a restart; then a check that nothing was lost, orphaned or half-written.

Starts `callmood serve` on 127.0.0.1 (a free port, a temporary data folder; SQLite by
default, or a fresh schema of its own on the PostgreSQL database `--database URL`), then
at the same time:

- `--uploads` uploads, `--upload-concurrency` at a time: real stereo calls built from
  ../shared/data, and malformed ones (not audio, empty, a truncated FLAC, and uploads cut
  off mid-request by closing the connection);
- `--streams` live WebSocket streams at once (each slot streams call after call) of real
  speech paced at real time: pcm16 16 kHz mono and stereo, G.711 mu-law 8 kHz; some
  malformed (a misaligned frame mid-call, a start that is not JSON) or cut off (the
  client hangs up without stop).
- `--twilio` Twilio Media Streams (/api/connectors/twilio, both tracks, the API token as
  customParameter `token`) and `--audiohook` Genesys AudioHook sessions
  (/api/connectors/audiohook, signed with the client secret), streaming call after call
  in the same way, built by examples/twilio_client.py and examples/audiohook_client.py;
  a third of them drop the connection mid-call (no `stop` / `close`).

A third of the uploads go at the start; the next third follow in a burst behind one ten
times longer call, beside one upload that trickles in slowly. While jobs are queued and
running, streams are mid-call and the slow upload is mid-request (or after 40 % of
--minutes at the latest), the server gets SIGKILL and is started again on the same data
folder and database; streams go on and the last third of the uploads follow. Uploads the
kill interrupted are sent once more, as a phone system would. When every job has finished
(or at the time bound) the server is stopped and the database and the audio folder are
audited:

- lost = accepted uploads (a 202, or a job row whose answer the kill swallowed) that are
  neither analysed (job done, call stored) nor failed with a reason, nor still queued
  with their recording (a job still queued at the time bound resumes on the next start);
- jobs queued or running at the kill, and what became of them after the restart;
- orphans: files under audio/{calls,live,incoming} that no call or job refers to, and
  calls whose recording is missing;
- half rows: a done job without its call, a failed one without a reason, a running job,
  speakers / windows / segments / alerts / tags without their call;
- streams: one that ended (stop, hang-up, protocol error after audio) must have its call
  stored (marked partial unless it stopped); one the kill cut must leave nothing behind.
  A connector's call is found by the phone system's id (callSid, conversationId).

Usage: python benchmarks/soak.py [--minutes 4] [--uploads 24] [--call-seconds 60]
       [--streams 20] [--twilio 10] [--audiohook 10] [--stream-seconds 15] [--workers 1]
       [--database postgresql+psycopg://...]

Bounded: it stops by itself after --minutes (plus at most about 2 minutes to let the
last streams and jobs finish, stop the server and audit). Exit status 1 if anything was
lost, orphaned or half-written.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
from service import build_call
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from streams import speech
from support import free_port

from callmood.store import (
    AlertRecord,
    CallRecord,
    JobRecord,
    SegmentRecord,
    SpeakerRecord,
    WindowRecord,
    create_database_engine,
    make_session_factory,
    referenced_audio_paths,
)
from callmood.store.models import CallTag

REPO_ROOT = Path(__file__).resolve().parents[1]
# The connectors' clients are the examples' message builders, not a copy of them.
sys.path.insert(0, str(REPO_ROOT / "examples"))
from audiohook_client import AudioHookMessages, audiohook_headers, open_parameters  # noqa: E402
from twilio_client import twilio_messages  # noqa: E402

TOKEN = "soak-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE_RATE = 16000
FRAME_SECONDS = 0.1
# Every 12 uploads: 8 real calls and one of each kind of garbage.
UPLOAD_KINDS = ["call"] * 8 + ["not_audio", "empty", "truncated", "cut_off"]
# Every 10 streams: 6 well-behaved ones (three ways of encoding) and 4 faulty ones.
STREAM_KINDS = ["pcm16", "pcm16", "mulaw", "mulaw", "stereo", "pcm16"] + [
    "hang_up",
    "hang_up",
    "misaligned",
    "bad_start",
]
# Every 3 connector streams: 2 that end as the phone system ends a call (Twilio `stop`,
# AudioHook `close`) and 1 whose phone system drops the connection mid-call.
CONNECTOR_KINDS = {
    "twilio": ["twilio", "twilio", "twilio_hang_up"],
    "audiohook": ["audiohook", "audiohook", "audiohook_hang_up"],
}
AUDIOHOOK_KEY = "soak-audiohook-key-0123456789"
AUDIOHOOK_SECRET = base64.b64encode(b"soak-audiohook-client-secret").decode()
SERVER_CODE = "from callmood.cli import main; main()"
# A stream that hung up this long before the kill may not have been stored yet.
KILL_RACE_SECONDS = 5.0


# ---------------------------------------------------------------------------- the server


class Server:
    """`callmood serve` in a subprocess on one data folder and database, restartable."""

    def __init__(self, data_dir: Path, database_url: str, workers: int) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.workers = workers
        self.port = free_port()
        self.log_path = data_dir.parent / "server.log"
        self.process: subprocess.Popen | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.audio_dir = data_dir / "audio"

    def start(self) -> float:
        """Start the server and wait until it answers; returns the seconds that took."""
        began = time.monotonic()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, "serve", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--data-dir", str(self.data_dir)]
            + ["--database-url", self.database_url, "--workers", str(self.workers)]
            + ["--log-level", "warning"],
            env={
                **os.environ,
                "CALLMOOD_AUTH_TOKEN": TOKEN,  # Twilio streams send it as customParameter token
                "CALLMOOD_AUDIOHOOK_API_KEY": AUDIOHOOK_KEY,
                "CALLMOOD_AUDIOHOOK_CLIENT_SECRET": AUDIOHOOK_SECRET,  # requests are signed
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        log.close()
        deadline = began + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the server did not start; its log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/api/calls", headers=AUTH, timeout=2).is_success:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        sys.exit(f"the server did not start within 120 s; its log:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when the machine or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 90) -> bool:
        """SIGTERM and wait (a running analysis finishes first); False if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return True
        self.process.terminate()
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------- the load


@dataclass
class Run:
    """What the load did and saw, shared by the upload and stream tasks."""

    deadline: float
    streams_until: float
    server_up: asyncio.Event = field(default_factory=asyncio.Event)
    kills: int = 0  # SIGKILLs so far: a stream opened before one was cut by it
    killed_at: float | None = None  # time.monotonic() of the kill
    kill_window: bool = False  # the server is dead or starting again
    requests: Counter = field(default_factory=Counter)  # upload kind -> requests sent
    answers: Counter = field(default_factory=Counter)  # (kind, status or outcome) -> count
    reasons: dict = field(default_factory=dict)  # (kind, status) -> one example detail
    accepted: dict = field(default_factory=dict)  # job id -> upload kind
    streams: list = field(default_factory=list)  # one dict per stream
    streams_in_call: int = 0
    most_in_call: int = 0  # the most streams mid-call at once


def upload_body(kind: str, call: bytes) -> tuple[bytes, str]:
    """The multipart body and its content type for one upload of `kind`."""
    data = {
        "call": call,
        "truncated": call[: len(call) * 2 // 5],
        "not_audio": b"this is a text file, not a call\n" * 200,
        "empty": b"",
        "cut_off": call,
        "slow_call": call,
    }[kind]
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{kind}.flac"\r\n'
        "Content-Type: audio/flac\r\n\r\n"
    ).encode() + data
    body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="tags"\r\n\r\n'.encode()
    body += f"soak,{kind}\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def cut_off_upload(port: int, body: bytes, content_type: str) -> None:
    """Send the headers and 40 % of the body, then drop the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[: len(body) * 2 // 5])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()


async def trickle(body: bytes) -> AsyncIterator[bytes]:
    """`body` in 16 KiB pieces, five a second (about 30 s for a one-minute call)."""
    for first in range(0, len(body), 16384):
        yield body[first : first + 16384]
        await asyncio.sleep(0.2)


async def one_upload(
    run: Run, client: httpx.AsyncClient, port: int, kind: str, call: bytes
) -> None:
    body, content_type = upload_body(kind, call)
    for attempt in range(2):  # once more if the kill swallowed the answer
        await run.server_up.wait()
        run.requests[kind] += 1
        if kind == "cut_off":
            try:
                await cut_off_upload(port, body, content_type)
                run.answers[(kind, "cut off by the client")] += 1
            except OSError:
                run.answers[(kind, "refused: server down")] += 1
            return
        # The slow call trickles in, so that the kill catches it mid-request; its retry does not.
        content = trickle(body) if kind == "slow_call" and attempt == 0 else body
        try:
            response = await client.post(
                "/api/calls",
                content=content,
                headers={**AUTH, "Content-Type": content_type},
            )
        except httpx.TransportError as error:
            outcome = "no answer: killed" if run.kill_window else f"error {type(error).__name__}"
            run.answers[(kind, outcome)] += 1
            if run.kill_window and attempt == 0:
                continue
            return
        status = response.status_code
        run.answers[(kind, status)] += 1
        if status == 202:
            run.accepted[response.json()["job_id"]] = kind
        else:
            detail = response.json().get("detail", response.text)
            run.reasons.setdefault((kind, status), str(detail)[:90])
        return


async def uploads(run: Run, port: int, calls: list[tuple[str, bytes]], concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:

        async def limited(kind: str, call: bytes) -> None:
            async with limit:
                await one_upload(run, client, port, kind, call)

        await asyncio.gather(*(limited(kind, call) for kind, call in calls))


def stream_frames(kind: str, audio: np.ndarray, other: np.ndarray) -> tuple[dict, list[bytes]]:
    """The start message and the 100 ms binary frames of one stream of `kind`."""
    start = {"type": "start", "sample_rate": SAMPLE_RATE, "encoding": "pcm16", "name": kind}
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    step = int(FRAME_SECONDS * SAMPLE_RATE)
    if kind == "mulaw":
        from callmood.audio import encode_telephone

        payload = encode_telephone(audio, SAMPLE_RATE, "mulaw")  # 8 kHz, 1 byte a sample
        start.update(sample_rate=8000, encoding="mulaw")
        return start, [payload[i : i + 800] for i in range(0, len(payload), 800)]
    if kind == "stereo":
        agent = (np.clip(other[: len(audio)], -1, 1) * 32767).astype("<i2")
        pcm = np.stack([pcm[: len(agent)], agent], axis=1).reshape(-1)
        start["channels"] = ["customer", "agent"]
        step *= 2
    frames = [pcm[i : i + step].tobytes() for i in range(0, len(pcm), step)]
    if kind == "misaligned":
        frames[len(frames) // 2] += b"\x00"  # half a sample: breaks the protocol
    return start, frames


def new_stream(run: Run, protocol: str, kind: str, external_id: str | None = None) -> dict:
    """The record of one stream, shared with the audit (which finds a connector's call by
    `external_id`: Twilio's callSid or Genesys's conversationId, as the server stores it)."""
    record = {
        "protocol": protocol,
        "kind": kind,
        "call_id": None,
        "external_id": external_id,
        "outcome": None,
        "windows": 0,
        "kills": run.kills,
    }
    run.streams.append(record)
    return record


@contextmanager
def stream_ending(run: Run, record: dict) -> Iterator[Callable[[], None]]:
    """Around one stream: the function it yields counts the stream as mid-call; a connection
    error is the kill's doing while the server is down or was killed since the stream
    opened, any other a failure of the server; the end time is noted either way."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    in_call = False

    def call_started() -> None:
        nonlocal in_call
        in_call = True
        run.streams_in_call += 1
        run.most_in_call = max(run.most_in_call, run.streams_in_call)

    try:
        yield call_started
    # A handshake the kill interrupts fails with InvalidMessage (an InvalidHandshake).
    except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as error:
        if run.kill_window or run.kills > record["kills"]:
            record["outcome"] = "cut by the kill"
        else:
            record["outcome"] = f"failed: {type(error).__name__}"
    finally:
        record["ended"] = time.monotonic()
        if in_call:
            run.streams_in_call -= 1


async def one_stream(run: Run, url: str, kind: str, audio: np.ndarray, other: np.ndarray) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    record = new_stream(run, "native", kind)
    start, frames = stream_frames(kind, audio, other)
    with stream_ending(run, record) as call_started:
        async with connect(url, max_size=2**22, open_timeout=30, close_timeout=5) as websocket:
            if kind == "bad_start":
                await websocket.send("{not json")
                reply = json.loads(await asyncio.wait_for(websocket.recv(), 30))
                record["outcome"] = "refused" if reply["type"] == "error" else "unexpected"
                return
            await websocket.send(json.dumps(start))
            ready = json.loads(await asyncio.wait_for(websocket.recv(), 60))
            record["call_id"] = ready.get("call_id")
            call_started()

            async def receive() -> dict:
                async for message in websocket:
                    data = json.loads(message)
                    record["windows"] += data["type"] == "window"
                    if data["type"] in ("summary", "error"):
                        return data
                return {"type": "closed"}

            receiver = asyncio.create_task(receive())
            hang_up_at = len(frames) // 2 if kind == "hang_up" else None
            began = time.perf_counter()
            for index, frame in enumerate(frames):
                if index == hang_up_at:
                    receiver.cancel()
                    record["outcome"] = "hung up"
                    return  # leaving the block closes the connection without stop
                if receiver.done():
                    break  # the server answered early (the misaligned frame)
                # Paced by the absolute schedule, so a late wake-up does not slow the stream.
                await asyncio.sleep(max(0.0, began + index * FRAME_SECONDS - time.perf_counter()))
                try:
                    await websocket.send(frame)
                except ConnectionClosed:
                    break  # the receiver tells why (an error message, or the kill)
            if not receiver.done():
                with contextlib.suppress(ConnectionClosed):
                    await websocket.send(json.dumps({"type": "stop"}))
            final = await asyncio.wait_for(receiver, 180)
            if final["type"] == "summary" and final.get("stored"):
                record["outcome"] = "completed"
            elif final["type"] == "error" and kind == "misaligned":
                record["outcome"] = "protocol error"
            else:
                record["outcome"] = f"unexpected {final['type']}"


async def one_twilio_stream(
    run: Run, url: str, kind: str, audio: np.ndarray, other: np.ndarray
) -> None:
    """A Twilio Media Stream (both tracks): the caller is `audio`, the agent `other`; the
    hang-up kind drops the connection halfway without `stop`."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from callmood.audio import encode_telephone

    call_sid = "CA" + uuid.uuid4().hex
    record = new_stream(run, "twilio", kind, call_sid)
    tracks = {
        "inbound": encode_telephone(audio, SAMPLE_RATE, "mulaw"),
        "outbound": encode_telephone(other[: len(audio)], SAMPLE_RATE, "mulaw"),
    }
    parameters = {"token": TOKEN, "name": kind, "agent": "soak", "queue": "soak"}
    messages = list(twilio_messages(tracks, parameters, call_sid=call_sid))
    hang_up_at = len(messages) // 2 if kind.endswith("hang_up") else None
    with stream_ending(run, record) as call_started:
        async with connect(url, open_timeout=30, close_timeout=5) as websocket:
            call_started()
            began = time.perf_counter()
            for index, message in enumerate(messages):
                if index == hang_up_at:
                    record["outcome"] = "hung up"
                    return  # leaving the block closes the connection without stop
                if message["event"] == "media":
                    # Chunk n of each track leaves at n * 20 ms, as Twilio sends it.
                    due = began + int(message["media"]["timestamp"]) / 1000
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await websocket.send(json.dumps(message))
            # Twilio expects nothing back: the server closes normally once the call is stored.
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), 180)
            code = websocket.close_code
            record["outcome"] = "completed" if code == 1000 else f"unexpected close {code}"


async def one_audiohook_stream(
    run: Run, url: str, kind: str, audio: np.ndarray, other: np.ndarray
) -> None:
    """A signed Genesys AudioHook session: `open` / `opened`, stereo PCMU frames of 100 ms
    (external = customer = `audio`, internal = agent = `other`), pings, `close` / `closed`;
    the hang-up kind drops the connection halfway without `close`."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from callmood.audio import encode_telephone

    session_id, organization_id, conversation = (str(uuid.uuid4()) for _ in range(3))
    record = new_stream(run, "audiohook", kind, conversation)
    secret = base64.b64decode(AUDIOHOOK_SECRET)
    headers = audiohook_headers(url, AUDIOHOOK_KEY, secret, session_id, organization_id)
    messages = AudioHookMessages(session_id)
    payload = encode_telephone(np.stack([audio, other[: len(audio)]]), SAMPLE_RATE, "mulaw")
    step = int(FRAME_SECONDS * 8000) * 2  # two channels, one byte a sample
    frames = [payload[i : i + step] for i in range(0, len(payload), step)]
    hang_up_at = len(frames) // 2 if kind.endswith("hang_up") else None
    with stream_ending(run, record) as call_started:
        async with connect(url, additional_headers=headers, open_timeout=30) as websocket:

            async def receive() -> dict:
                async for text in websocket:
                    reply = messages.received(text)
                    if reply["type"] in ("opened", "closed", "disconnect"):
                        return reply
                return {"type": "gone"}

            await websocket.send(
                messages.message("open", open_parameters(organization_id, conversation))
            )
            opened = await asyncio.wait_for(receive(), 60)
            if opened["type"] != "opened":
                record["outcome"] = f"unexpected {opened['type']}"
                return
            call_started()
            receiver = asyncio.create_task(receive())
            began = time.perf_counter()
            for index, frame in enumerate(frames):
                if index == hang_up_at:
                    receiver.cancel()
                    record["outcome"] = "hung up"
                    return  # leaving the block closes the connection without close
                if receiver.done():
                    break  # the server disconnected (the receiver tells why)
                await asyncio.sleep(max(0.0, began + index * FRAME_SECONDS - time.perf_counter()))
                try:
                    await websocket.send(frame)
                    messages.sent_samples += len(frame) // 2
                    if index % 50 == 49:
                        await websocket.send(messages.message("ping", {}))  # 5 s, as Genesys
                except ConnectionClosed:
                    break  # the receiver tells why (a disconnect message, or the kill)
            if not receiver.done():
                with contextlib.suppress(ConnectionClosed):
                    await websocket.send(messages.message("close", {"reason": "end"}))
            final = await asyncio.wait_for(receiver, 180)
            record["outcome"] = (
                "completed" if final["type"] == "closed" else f"unexpected {final['type']}"
            )


async def stream_slot(
    run: Run, port: int, slot: int, audio: np.ndarray, seconds: float, protocol: str = "native"
) -> None:
    """Stream call after call until the load ends (waiting out the server's restart)."""
    url, kinds, stream = {
        "native": (f"ws://127.0.0.1:{port}/api/stream?token={TOKEN}", STREAM_KINDS, one_stream),
        "twilio": (f"ws://127.0.0.1:{port}/api/connectors/twilio", None, one_twilio_stream),
        "audiohook": (
            f"ws://127.0.0.1:{port}/api/connectors/audiohook",
            None,
            one_audiohook_stream,
        ),
    }[protocol]
    kinds = kinds or CONNECTOR_KINDS[protocol]
    rng = random.Random(f"{protocol}{slot}")
    await asyncio.sleep(rng.uniform(0, 2.0))  # independent calls do not start in step
    number = slot
    while True:
        await run.server_up.wait()
        if time.monotonic() + seconds > run.streams_until:
            return
        kind = kinds[number % len(kinds)]
        first = rng.randrange(0, len(audio) - int(seconds * SAMPLE_RATE))
        piece = audio[first : first + int(seconds * SAMPLE_RATE)]
        await stream(run, url, kind, piece, np.roll(audio, SAMPLE_RATE * 3)[first:])
        number += len(kinds) // 2 + 1  # walk through the kinds in another order


async def job_states(client: httpx.AsyncClient, job_ids: list[str]) -> dict[str, str]:
    """The state of each job, as the API tells it."""
    states = {}
    for job_id in job_ids:
        try:
            states[job_id] = (await client.get(f"/api/jobs/{job_id}", headers=AUTH)).json()["state"]
        except (httpx.HTTPError, KeyError, ValueError):
            states[job_id] = "unknown"
    return states


async def kill_and_restart(
    run: Run,
    server: Server,
    burst: asyncio.Event,
    slow_call: bytes,
    kill_by: float,
    after_seconds: float,
) -> dict:
    """After `after_seconds`, a burst of uploads; SIGKILL as soon as one of its jobs runs and
    another waits (and streams are mid-call), or at `kill_by`, while a slow upload is still
    sending; then start the server again (the slow upload is sent once more)."""
    began = time.monotonic()
    await asyncio.sleep(after_seconds)
    burst.set()
    uploader = httpx.AsyncClient(base_url=server.base_url, timeout=120)
    slow = asyncio.create_task(one_upload(run, uploader, server.port, "slow_call", slow_call))
    finished: set[str] = set()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        while time.monotonic() < kill_by:
            await asyncio.sleep(0.1)
            # Only the jobs not seen finished: a short poll does not miss the moment.
            states = await job_states(client, [j for j in run.accepted if j not in finished])
            finished |= {job for job, state in states.items() if state in ("done", "failed")}
            if {"queued", "running"} <= set(states.values()) and run.streams_in_call >= 5:
                break
    run.kill_window = True
    run.server_up.clear()
    in_call = run.streams_in_call
    killed_at = time.monotonic() - began
    server.kill()
    run.kills += 1
    run.killed_at = time.monotonic()
    at_kill = await asyncio.to_thread(unfinished_at_kill, server.database_url, server.audio_dir)
    restart_seconds = await asyncio.to_thread(server.start)
    run.kill_window = False
    run.server_up.set()
    await slow
    await uploader.aclose()
    return {
        "killed_at": killed_at,
        "restart_seconds": restart_seconds,
        "streams_in_call": in_call,
        **at_kill,
    }


async def drain_jobs(run: Run, server: Server) -> Counter:
    """Wait until every accepted job is done or failed, or the time bound."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        while True:
            states = Counter((await job_states(client, list(run.accepted))).values())
            if not (states["queued"] or states["running"]) or time.monotonic() > run.deadline:
                return states
            await asyncio.sleep(2.0)


async def soak(arguments: argparse.Namespace, server: Server) -> tuple[Run, dict, Counter]:
    began = time.monotonic()
    deadline = began + arguments.minutes * 60
    run = Run(deadline=deadline, streams_until=deadline - arguments.drain_seconds)
    run.server_up.set()
    rng = np.random.default_rng(0)
    calls = []
    for number in range(arguments.uploads):
        kind = UPLOAD_KINDS[number % len(UPLOAD_KINDS)]
        seconds = float(rng.uniform(0.5, 1.5) * arguments.call_seconds)
        calls.append((kind, b"" if kind in ("not_audio", "empty") else build_call(seconds, number)))
    audio = speech(max(60.0, 2 * arguments.stream_seconds))
    # A third at the start, a third in a burst just before the kill (so that jobs are
    # queued and running when it strikes), a third after the restart.
    third = len(calls) // 3
    concurrency = arguments.upload_concurrency

    counts = {
        "native": arguments.streams,
        "twilio": arguments.twilio,
        "audiohook": arguments.audiohook,
    }
    slots = [
        asyncio.create_task(
            stream_slot(run, server.port, slot, audio, arguments.stream_seconds, protocol)
        )
        for protocol, count in counts.items()
        for slot in range(count)
    ]
    first = asyncio.create_task(uploads(run, server.port, calls[:third], concurrency))
    burst_start = asyncio.Event()

    # The burst opens with a ten times longer call: its analysis takes seconds even on a
    # fast machine, a window in which the kill finds it running and the others queued.
    long_call = ("call", build_call(10 * arguments.call_seconds, seed=arguments.uploads + 1))

    async def burst_uploads() -> None:
        await burst_start.wait()
        await uploads(run, server.port, [long_call, *calls[third : 2 * third]], concurrency)

    burst = asyncio.create_task(burst_uploads())
    kill_by = began + arguments.minutes * 60 * 0.4
    # After the first streams have completed, so that both kinds of ending are seen.
    slow_call = build_call(arguments.call_seconds, seed=arguments.uploads)
    kill = await kill_and_restart(
        run, server, burst_start, slow_call, kill_by, arguments.stream_seconds + 5
    )
    await asyncio.gather(first, burst)
    await uploads(run, server.port, calls[2 * third :], concurrency)
    await asyncio.gather(*slots)
    states = await drain_jobs(run, server)
    return run, kill, states


# ---------------------------------------------------------------------------- the audit


@contextmanager
def store_session(database_url: str) -> Iterator[Session]:
    """A session on the server's database, read by the soak itself (the server is down)."""
    engine = create_database_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def unfinished_at_kill(database_url: str, audio_dir: Path) -> dict:
    """Right after the kill: the ids of the jobs queued and running, and how many live
    recordings no call refers to (streams cut off: the restart must remove them)."""
    with store_session(database_url) as session:
        rows = session.execute(select(JobRecord.id, JobRecord.state)).all()
        referenced = referenced_audio_paths(session)
    live = [f"live/{path.name}" for path in (audio_dir / "live").glob("*")]
    return {
        "queued": {job_id for job_id, state in rows if state == "queued"},
        "running": {job_id for job_id, state in rows if state == "running"},
        "cut_recordings": sum(path not in referenced for path in live),
        "cut_uploads": len(list((audio_dir / "incoming").glob(".upload-*"))),
    }


def audit(database_url: str, audio_dir: Path, run: Run, kill: dict) -> dict:
    """Lost uploads, orphan files and half-written rows, from the database and the disk."""
    with store_session(database_url) as session:
        jobs = {
            row.id: row
            for row in session.execute(
                select(
                    JobRecord.id,
                    JobRecord.state,
                    JobRecord.error,
                    JobRecord.call_id,
                    JobRecord.upload_path,
                )
            )
        }
        calls = {
            row.id: row for row in session.execute(select(CallRecord.id, CallRecord.audio_path))
        }
        tags = Counter(session.scalars(select(CallTag.tag)))
        # A connector's client never learns the call id: the call carries the phone
        # system's own id (Twilio's callSid, Genesys's conversationId).
        by_external_id = dict(
            session.execute(
                select(CallRecord.external_call_id, CallRecord.id).where(
                    CallRecord.external_call_id.is_not(None)
                )
            ).all()
        )
        partial = set(session.scalars(select(CallTag.call_id).where(CallTag.tag == "partial")))
        referenced = referenced_audio_paths(session)
        headless = {
            model.__tablename__: session.scalar(
                select(func.count())
                .select_from(model)
                .where(model.call_id.not_in(select(CallRecord.id)))
            )
            for model in (SpeakerRecord, WindowRecord, SegmentRecord, AlertRecord, CallTag)
        }

    lost, failed_reasons, outcomes, unfinished = [], Counter(), Counter(), 0
    for job_id in set(run.accepted) | set(jobs):  # also jobs whose 202 the kill swallowed
        job = jobs.get(job_id)
        if job is None:
            lost.append((job_id, "no job row"))
        elif job.state == "done":
            outcomes["analysed"] += 1
            if job.call_id not in calls:
                lost.append((job_id, "done but no call stored"))
        elif job.state == "failed":
            outcomes["failed with a reason"] += bool(job.error)
            failed_reasons[(job.error or "")[:70]] += 1
            if not job.error:
                lost.append((job_id, "failed without a reason"))
        elif job.state == "queued" and job.upload_path and (audio_dir / job.upload_path).is_file():
            unfinished += 1  # resumes on the next start: the time bound came first
        else:
            lost.append((job_id, f"{job.state}, recording {job.upload_path}"))
    resumed = Counter()
    for state in ("queued", "running"):
        for job_id in kill[state]:
            job = jobs.get(job_id)
            # The kind tells an expected failure (a truncated file) from a lost job.
            kind = run.accepted.get(job_id, "answer lost in the kill")
            resumed[(state, job.state if job else "missing", kind)] += 1

    on_disk = [
        path.relative_to(audio_dir).as_posix()
        for subdir in ("calls", "live", "incoming")
        for path in (audio_dir / subdir).glob("*")
        if path.is_file()
    ]
    orphan_files = [path for path in on_disk if path not in referenced]
    missing_audio = [
        call.id for call in calls.values() if call.audio_path and call.audio_path not in on_disk
    ]
    half_rows = {f"{table} without their call": count for table, count in headless.items()}
    half_rows["done jobs without their call"] = sum(
        job.state == "done" and job.call_id not in calls for job in jobs.values()
    )
    half_rows["failed jobs without a reason"] = sum(
        job.state == "failed" and not job.error for job in jobs.values()
    )
    half_rows["jobs still running"] = sum(job.state == "running" for job in jobs.values())

    # Streams: what ended must be stored (partial unless it stopped); what the kill cut, not.
    stream_problems = []
    for stream in run.streams:
        if stream["external_id"] is not None:
            stream["call_id"] = by_external_id.get(stream["external_id"])
        call_id, outcome = stream["call_id"], stream["outcome"]
        if outcome == "completed" and call_id not in calls:
            stream_problems.append((stream["protocol"], stream["kind"], "completed but not stored"))
        elif outcome in ("hung up", "protocol error"):
            # The server stores such a call after the client has gone: a kill a moment
            # later takes it along, as it takes the streams it cuts.
            just_before_kill = run.killed_at is not None and (
                0 <= run.killed_at - stream["ended"] < KILL_RACE_SECONDS
            )
            if call_id not in calls and just_before_kill:
                stream["outcome"] = "ended as killed"
            elif call_id not in calls:
                stream_problems.append(
                    (stream["protocol"], stream["kind"], f"{outcome} but not stored")
                )
            elif call_id not in partial:
                stream_problems.append(
                    (stream["protocol"], stream["kind"], f"{outcome} but not marked partial")
                )
        if (
            stream["outcome"] in ("cut by the kill", "ended as killed")
            and (audio_dir / "live" / f"{call_id}.flac").exists()
        ):
            stream_problems.append(
                (stream["protocol"], stream["kind"], "cut by the kill, recording left")
            )
    return {
        "lost": lost,
        "outcomes": outcomes,
        "failed_reasons": failed_reasons,
        "unfinished": unfinished,
        "resumed": resumed,
        "jobs": len(jobs),
        "calls": len(calls),
        "call_ids": set(calls),
        "live_calls": tags["live"],
        "tagged": {protocol: tags[protocol] for protocol in CONNECTOR_KINDS},
        "orphan_files": orphan_files,
        "missing_audio": missing_audio,
        "half_rows": half_rows,
        "stream_problems": stream_problems,
    }


# ---------------------------------------------------------------------------- the report


def print_report(
    arguments: argparse.Namespace, backend: str, run: Run, kill: dict, result: dict, seconds: float
) -> bool:
    """Print the tables; True if anything was lost, orphaned, half-written or failed."""
    print(
        f"\nSoak: {backend}, {seconds / 60:.1f} min, {arguments.streams} stream slots "
        f"(+ {arguments.twilio} Twilio, {arguments.audiohook} AudioHook), "
        f"{arguments.uploads} uploads of {arguments.call_seconds:g} s calls on average "
        f"({arguments.upload_concurrency} at a time), "
        f"{arguments.workers} worker(s), {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        "\nUploads: requests sent and answers (one is sent again if the kill swallowed its answer)"
    )
    print(f"{'kind':<11}{'requests':>9}  answers")
    for kind in [*dict.fromkeys(UPLOAD_KINDS), "slow_call"]:
        answers = ", ".join(
            f"{outcome}: {count}"
            for (answered, outcome), count in sorted(run.answers.items(), key=str)
            if answered == kind
        )
        print(f"{kind:<11}{run.requests[kind]:>9}  {answers}")
    print("\nRejection reasons (one example per kind and status)")
    for (kind, status), detail in sorted(run.reasons.items(), key=str):
        print(f"  {kind} {status}: {detail}")

    requests = sum(run.requests.values())
    rejected = sum(c for (k, o), c in run.answers.items() if isinstance(o, int) and o != 202)
    print(
        f"\n{'requests':>9}{'accepted':>9}{'rejected':>9}{'job rows':>9}{'analysed':>9}"
        f"{'failed':>7}{'queued*':>8}{'lost':>5}"
    )
    print(
        f"{requests:>9}{len(run.accepted):>9}{rejected:>9}{result['jobs']:>9}"
        f"{result['outcomes']['analysed']:>9}{result['outcomes']['failed with a reason']:>7}"
        f"{result['unfinished']:>8}{len(result['lost']):>5}"
    )
    print("  * still queued with their recording at the time bound (resume on the next start)")
    for reason, count in result["failed_reasons"].most_common():
        print(f"  failed x{count}: {reason}")
    for job_id, why in result["lost"]:
        print(f"  LOST {job_id}: {why}")

    print(
        f"\nSIGKILL after {kill['killed_at']:.0f} s with {len(kill['queued'])} job(s) queued, "
        f"{len(kill['running'])} running and {kill['streams_in_call']} stream(s) mid-call; "
        f"serving again {kill['restart_seconds']:.1f} s later; "
        f"left on disk by the kill: {kill['cut_recordings']} recording(s) of cut streams, "
        f"{kill['cut_uploads']} partial upload(s)"
    )
    for (before, after, kind), count in sorted(result["resumed"].items()):
        print(f"  {before} at the kill -> {after} at the end: {count} ({kind})")

    outcomes = Counter(stream["outcome"] for stream in run.streams)
    windows = sum(stream["windows"] for stream in run.streams)
    ready = sum(stream["call_id"] is not None for stream in run.streams)
    print(
        f"\nStreams: {len(run.streams)} opened ({ready} got ready, at most {run.most_in_call} "
        f"at once), {windows} window results, {result['live_calls']} live calls stored"
    )
    for outcome, count in outcomes.most_common():
        kinds = Counter(s["kind"] for s in run.streams if s["outcome"] == outcome)
        print(f"  {outcome:<18}{count:>4}  ({', '.join(f'{k} {n}' for k, n in kinds.items())})")
    for protocol, kind, problem in result["stream_problems"]:
        print(f"  PROBLEM {protocol} {kind}: {problem}")
    print(
        f"\n{'protocol':<10}{'opened':>7}{'completed':>10}{'hung up':>8}{'cut*':>5}"
        f"{'stored':>7}{'tagged':>7}{'lost':>5}"
    )
    # Every live call is tagged live; a connector's is tagged with its name too.
    tagged = {"native": result["live_calls"] - sum(result["tagged"].values()), **result["tagged"]}
    for protocol in ("native", *CONNECTOR_KINDS):
        mine = [stream for stream in run.streams if stream["protocol"] == protocol]
        if not mine:
            continue
        ends = Counter(stream["outcome"] for stream in mine)
        stored = sum(stream["call_id"] in result["call_ids"] for stream in mine)
        lost = sum(problem[0] == protocol for problem in result["stream_problems"])
        print(
            f"{protocol:<10}{len(mine):>7}{ends['completed']:>10}{ends['hung up']:>8}"
            f"{ends['cut by the kill'] + ends['ended as killed']:>5}{stored:>7}"
            f"{tagged[protocol]:>7}{lost:>5}"
        )
    print(
        "  * cut by the kill (or ended just before it): nothing stored, as for native streams;"
        " tagged = calls stored with the tag live / twilio / audiohook"
    )

    failures = sum(
        count
        for outcome, count in outcomes.items()
        if outcome
        not in (
            "completed",
            "hung up",
            "protocol error",
            "refused",
            "cut by the kill",
            "ended as killed",
        )
    )
    # Uploads: a 5xx, or a connection error that the kill does not explain.
    failures += sum(
        count
        for (_, outcome), count in run.answers.items()
        if (isinstance(outcome, int) and outcome >= 500) or str(outcome).startswith("error")
    )
    half = sum(result["half_rows"].values())
    print(
        f"\nOrphan files: {len(result['orphan_files'])}, calls whose audio is missing: "
        f"{len(result['missing_audio'])}, half-written rows: {half}"
    )
    for path in result["orphan_files"][:10]:
        print(f"  orphan {path}")
    for what, count in result["half_rows"].items():
        if count:
            print(f"  {what}: {count}")
    print(
        f"\nrequests {requests}, streams {len(run.streams)}, failures {failures}, "
        f"lost {len(result['lost'])}, orphans "
        f"{len(result['orphan_files']) + len(result['missing_audio'])}, half rows {half}, "
        f"stream problems {len(result['stream_problems'])}"
    )
    return bool(
        result["lost"]
        or result["orphan_files"]
        or result["missing_audio"]
        or half
        or result["stream_problems"]
        or failures
    )


def schema_url(server_url: str) -> tuple[str, str]:
    """A fresh schema on the PostgreSQL server, and the URL that uses it."""
    from sqlalchemy import create_engine, text

    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    separator = "&" if "?" in server_url else "?"
    return schema, f"{server_url}{separator}options={quote(f'-csearch_path={schema}')}"


def drop_schema(server_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="Length of the load.")
    parser.add_argument("--uploads", type=int, default=24, help="Uploads in all (1/3 garbage).")
    parser.add_argument(
        "--call-seconds", type=float, default=60.0, help="Mean length of an uploaded call."
    )
    parser.add_argument("--upload-concurrency", type=int, default=4, help="Uploads at once.")
    parser.add_argument("--streams", type=int, default=20, help="Live streams at once.")
    parser.add_argument("--twilio", type=int, default=10, help="Twilio Media Streams at once.")
    parser.add_argument(
        "--audiohook", type=int, default=10, help="Genesys AudioHook streams at once."
    )
    parser.add_argument("--stream-seconds", type=float, default=15.0, help="Audio per stream.")
    parser.add_argument("--workers", type=int, default=1, help="Analysis workers of the server.")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=60.0,
        help="No new stream starts this long before the end, so queued jobs can finish.",
    )
    parser.add_argument(
        "--database", default=None, help="PostgreSQL URL (a schema of its own is used)."
    )
    arguments = parser.parse_args()
    if arguments.streams < 1 or arguments.uploads < 4 or arguments.minutes <= 0:
        sys.exit("--streams >= 1, --uploads >= 4 and --minutes > 0, please")
    if arguments.twilio < 0 or arguments.audiohook < 0:
        sys.exit("--twilio and --audiohook must be >= 0 (0 leaves that connector out)")

    with tempfile.TemporaryDirectory(prefix="callmood-soak-") as folder:
        data_dir = Path(folder) / "data"
        schema = None
        if arguments.database:
            schema, database_url = schema_url(arguments.database)
            backend = "PostgreSQL"
        else:
            database_url = f"sqlite:///{data_dir / 'callmood.db'}"
            backend = "SQLite"
        server = Server(data_dir, database_url, arguments.workers)
        began = time.monotonic()
        try:
            server.start()
            run, kill, _ = asyncio.run(soak(arguments, server))
            if not server.stop():
                print("the server did not stop within 90 s of SIGTERM and was killed")
            result = audit(database_url, data_dir / "audio", run, kill)
            bad = print_report(arguments, backend, run, kill, result, time.monotonic() - began)
        finally:
            server.kill()
            if schema is not None:
                drop_schema(arguments.database, schema)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
