"""The live WebSocket stream `/api/stream`: audio in, window results and alerts out.

The protocol (documented for integrators in docs/streaming.md): a JSON ``start``
message, binary frames of interleaved audio, a JSON ``stop``; the server pushes
``window`` and ``alert`` messages as soon as the analyser determines them, and a
``summary`` after ``stop``, when the call is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ConfigDict, Field, ValidationError, field_validator

from callmood.call_metadata import CallMetadataFields
from callmood.errors import CallmoodError
from callmood.service import deps
from callmood.service.events import live_board
from callmood.service.jobs import LIVE_SUBDIR
from callmood.service.schemas import refuse_nul
from callmood.store import new_id, normalise_tags

log = logging.getLogger(__name__)
router = APIRouter()

#: Sample rates a client may stream at, Hz (telephony, wideband, and audio-interface rates).
SUPPORTED_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: Bytes per sample of each encoding: 16-bit little-endian PCM, or 8-bit G.711.
BYTES_PER_SAMPLE = {"pcm16": 2, "mulaw": 1, "alaw": 1}
#: The largest binary frame accepted, bytes (about 5 s of 48 kHz stereo pcm16).
MAX_FRAME_BYTES = 1_000_000
#: How long a client may wait before its start message, seconds.
START_TIMEOUT_SECONDS = 10.0
#: The longest stream, seconds of audio; a longer one is stopped as if the client sent stop.
MAX_STREAM_SECONDS = 4 * 3600.0

# Close codes (RFC 6455): 1003 = a kind of message this endpoint cannot take (binary before
# start); 1008 = a message that breaks the protocol (bad JSON, bad start fields, misaligned
# audio, bad token); 1009 = frame too large; 1011 = the server cannot analyse or store.
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_NORMAL = 1000
#: Longest close reason, UTF-8 bytes: a close frame carries 125 bytes, 2 of them the code.
MAX_CLOSE_REASON_BYTES = 123

#: Tags of stored live calls; `partial` marks a stream that ended without a stop message.
LIVE_TAG = "live"
PARTIAL_TAG = "partial"
#: Folder under the settings' audio_dir for the recordings of live streams.
RECORDINGS_SUBDIR = LIVE_SUBDIR


class StreamProtocolError(CallmoodError):
    """A client broke the streaming protocol; the message says how, `close_code` how we close."""

    def __init__(self, message: str, close_code: int = CLOSE_POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.close_code = close_code


class StreamStart(CallMetadataFields):
    """The first message of a stream: how the audio that follows is encoded, and optionally
    the call's agent, queue, external call id and start time (issue 18)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"]
    sample_rate: int = Field(description="Sample rate of the audio frames, Hz.")
    encoding: Literal["pcm16", "mulaw", "alaw"] = Field(
        description="pcm16 = 16-bit signed little-endian; mulaw/alaw = 8-bit G.711."
    )
    channels: list[Literal["customer", "agent"]] = Field(
        default_factory=lambda: ["customer"],
        min_length=1,
        max_length=2,
        description="Speaker of each interleaved channel, in order.",
    )
    name: str = Field("live call", min_length=1, max_length=300, description="Name of the call.")
    tags: list[str] = Field(default_factory=list, max_length=20)
    analyze_agent: bool = Field(
        False, description="Also infer the agent's emotions (opt-in, see the design notes)."
    )
    smoothing_windows: int = Field(
        3,
        ge=1,
        le=9,
        description="Width of the moving average over window probabilities (odd; 1 = none, "
        "each window's result arrives one hop sooner per step of width).",
    )

    @field_validator("sample_rate")
    @classmethod
    def _supported_rate(cls, value: int) -> int:
        if value not in SUPPORTED_SAMPLE_RATES:
            rates = ", ".join(str(rate) for rate in SUPPORTED_SAMPLE_RATES)
            raise ValueError(f"unsupported sample rate {value} Hz (supported: {rates})")
        return value

    @field_validator("channels")
    @classmethod
    def _distinct_channels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"channels {value} name a speaker twice")
        if "customer" not in value:
            raise ValueError(f"channels {value} must include the customer")
        return value

    _no_nul = field_validator("name", "tags")(refuse_nul)

    @field_validator("tags")
    @classmethod
    def _storable_tags(cls, value: list[str]) -> list[str]:
        # Checked as the store will check them, but now: not after the whole call.
        try:
            normalise_tags(value)
        except CallmoodError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("smoothing_windows")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (a centred average), got {value}")
        return value

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (one sample of every channel)."""
        return BYTES_PER_SAMPLE[self.encoding] * len(self.channels)


def parse_start(text: str) -> StreamStart:
    """Parse and validate a start message.

    Raises
    ------
    StreamProtocolError
        Not JSON, not a start message, or a field is missing or unsupported.
    """
    message = _parse_json(text)
    if message.get("type") != "start":
        raise StreamProtocolError(
            f"expected a start message first, got type {message.get('type')!r}"
        )
    try:
        return StreamStart.model_validate(message)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'message'}: "
            f"{item['msg'].removeprefix('Value error, ')}"
            for item in error.errors()
        )
        raise StreamProtocolError(f"invalid start message: {problems}") from None


def _parse_json(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except json.JSONDecodeError as error:
        raise StreamProtocolError(f"message is not valid JSON ({error.msg})") from None
    except (RecursionError, ValueError) as error:
        # Well-formed JSON the parser still refuses: nested too deeply, or an integer
        # longer than Python converts (4300 digits).
        problem = "nested too deeply" if isinstance(error, RecursionError) else "a number too long"
        raise StreamProtocolError(f"message is not valid JSON ({problem})") from None
    if not isinstance(message, dict):
        raise StreamProtocolError("message must be a JSON object with a 'type'")
    return message


class StreamDecoder:
    """Turns binary frames into float32 16 kHz audio per speaker, keeping resampler state.

    A stateful resampler (rather than resampling each frame on its own) keeps the
    filter history across frames, so frame boundaries leave no clicks in the audio.
    """

    def __init__(self, start: StreamStart) -> None:
        from callmood.audio import SAMPLE_RATE

        self.start = start
        self.target_rate = SAMPLE_RATE
        self.frames_received = 0
        self._resampler = None
        if start.sample_rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(
                start.sample_rate, SAMPLE_RATE, len(start.channels), dtype="float32"
            )

    @property
    def seconds_received(self) -> float:
        """Audio received so far, seconds."""
        return self.frames_received / self.start.sample_rate

    def decode(self, payload: bytes, *, last: bool = False) -> dict[str, np.ndarray]:
        """Decode one binary frame into ``{speaker: float32 samples at 16 kHz}``.

        Raises
        ------
        StreamProtocolError
            The frame's length is not a whole number of sample frames.
        """
        if len(payload) % self.start.frame_bytes:
            raise StreamProtocolError(
                f"binary frame of {len(payload)} bytes is not a whole number of "
                f"{self.start.frame_bytes}-byte sample frames ({self.start.encoding}, "
                f"{len(self.start.channels)} channel(s))"
            )
        if self.start.encoding == "pcm16":
            samples = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
        else:
            from callmood.audio import decode_g711

            samples = np.asarray(decode_g711(payload, self.start.encoding), dtype=np.float32)
        interleaved = samples.reshape(-1, len(self.start.channels))  # (frames, channels)
        self.frames_received += interleaved.shape[0]
        if self._resampler is not None:
            interleaved = self._resampler.resample_chunk(interleaved, last=last)
        return {
            speaker: np.ascontiguousarray(interleaved[:, index], dtype=np.float32)
            for index, speaker in enumerate(self.start.channels)
        }

    def flush(self) -> dict[str, np.ndarray]:
        """The resampler's last samples (call once, at the end of the stream)."""
        if self._resampler is None:
            return {}
        empty = np.zeros((0, len(self.start.channels)), dtype=np.float32)
        tail = self._resampler.resample_chunk(empty, last=True)
        return {
            speaker: np.ascontiguousarray(tail[:, index], dtype=np.float32)
            for index, speaker in enumerate(self.start.channels)
        }


def event_message(event: Any) -> dict[str, Any]:
    """The JSON message a client receives for one analyser event (window or alert)."""
    data = event.model_dump(mode="json")
    if data["event"] == "window":
        return {"type": "window", "at": data["at"], **data["window"]}
    return {
        "type": "alert",
        "event": "open" if data["event"] == "alert_open" else "close",
        "at": data["at"],
        "alert": data["alert"],
    }


def _executor(app: Any) -> ThreadPoolExecutor:
    # One small pool per app for every stream's analysis, off the event loop. As many
    # threads as cores: more only make the model calls and the event loop fight over
    # the GIL and the cores (measured: 40 simulated streams on 2 cores, p95 20 ms with
    # 2 threads against 500-700 ms with 32 threads batching into one model thread).
    executor = getattr(app.state, "stream_executor", None)
    if executor is None:
        executor = ThreadPoolExecutor(
            max_workers=max(2, min(8, os.cpu_count() or 2)), thread_name_prefix="callmood-stream"
        )
        app.state.stream_executor = executor
    return executor


class _Recording:
    """The stream's audio, written as 16 kHz FLAC next to uploaded calls, for the player."""

    def __init__(self, audio_dir: Path, call_id: str, speakers: list[str]) -> None:
        import soundfile

        self.relative_path = f"{RECORDINGS_SUBDIR}/{call_id}.flac"
        self.path = audio_dir / self.relative_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.speakers = speakers
        self.frames = 0
        self._file = soundfile.SoundFile(
            self.path, "w", samplerate=16000, channels=len(speakers), format="FLAC"
        )

    def write(self, audio: dict[str, np.ndarray]) -> None:
        frames = np.stack([audio[speaker] for speaker in self.speakers], axis=1)
        self._file.write(frames)
        self.frames += len(frames)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class LiveSession:
    """One live call's state: decoder, analyser, recording, and audio waiting for analysis.

    Transport-agnostic: `/api/stream` and the phone-system connectors (Twilio Media
    Streams, Genesys AudioHook, Asterisk AudioSocket) each speak their own protocol and
    hand this class the call's raw audio, so identical audio gives an identical call.
    `send` delivers window, alert and summary messages to a client that wants them (None:
    the transport has no use for them, as a phone system has not).
    """

    def __init__(
        self,
        app: Any,
        start: StreamStart,
        analyzer: Any,
        send: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.start = start
        self.decoder = StreamDecoder(start)
        self.analyzer = analyzer
        self.call_id: str = analyzer.call_id
        self.executor = _executor(app)
        self.recording = _Recording(
            app.state.settings.resolved_audio_dir, self.call_id, list(start.channels)
        )
        self.pending: asyncio.Queue[dict[str, np.ndarray] | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self._send = send
        self.client_gone = send is None

    @classmethod
    async def open(
        cls,
        app: Any,
        start: StreamStart,
        send: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> LiveSession:
        """A session with its analyser (loading the model off the event loop if needed)."""
        return cls(app, start, await make_analyzer(app, start), send)

    async def send(self, message: dict[str, Any]) -> None:
        """Send a message unless the client has gone (a vanished client is not an error)."""
        if self.client_gone or self._send is None:
            return
        try:
            await self._send(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.client_gone = True

    async def feed(self, payload: bytes) -> bool:
        """Queue one frame of the start message's encoding for analysis.

        Returns True once the stream reached its length limit (the transport then ends it
        as if the client had stopped).

        Raises
        ------
        StreamProtocolError
            The frame is too large or not a whole number of sample frames.
        """
        if len(payload) > MAX_FRAME_BYTES:
            raise StreamProtocolError(
                f"binary frame of {len(payload)} bytes is larger than {MAX_FRAME_BYTES}",
                CLOSE_TOO_BIG,
            )
        await self.pending.put(self.decoder.decode(payload))
        return self.decoder.seconds_received >= MAX_STREAM_SECONDS

    def check_worker(self) -> None:
        """Re-raise the analysis error of a worker that ended before the stream did."""
        if self.worker is not None and self.worker.done():
            self.worker.result()
            raise CallmoodError("the analysis of the stream ended unexpectedly")

    async def in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def start_analysis(self) -> None:
        self.worker = asyncio.create_task(self._analyse_pending())
        live_sessions(self.app)[self.call_id] = self
        live_board(self.app).started(self)

    def _leave_registry(self, summary: dict[str, Any] | None = None) -> None:
        live_sessions(self.app).pop(self.call_id, None)
        live_board(self.app).ended(self.call_id, summary)

    async def _analyse_pending(self) -> None:
        # Coalesce whatever arrived while the model was busy into one feed: a stream
        # that falls behind catches up in bigger batches instead of drifting further.
        while True:
            chunks = [await self.pending.get()]
            while not self.pending.empty():
                chunks.append(self.pending.get_nowait())
            audio = _concatenate([chunk for chunk in chunks if chunk is not None])
            if audio:
                await self.push(await self.in_thread(self._feed, audio))
            if chunks[-1] is None:
                return

    def _feed(self, audio: dict[str, np.ndarray]) -> list[Any]:
        self.recording.write(audio)
        return self.analyzer.feed(audio)

    async def push(self, events: list[Any]) -> None:
        alert_events = [event for event in events if event.event != "window"]
        if alert_events:
            self.app.state.webhooks.dispatch_alerts(
                alert_events, call_id=self.call_id, call_name=self.start.name
            )
        live_board(self.app).analysed(self, events)
        for event in events:
            await self.send(event_message(event))

    async def drain(self) -> None:
        """Let the analysis catch up with every frame received (and the resampler's tail)."""
        tail = self.decoder.flush()
        if tail and any(samples.size for samples in tail.values()):
            await self.pending.put(tail)
        await self.pending.put(None)
        if self.worker is not None:
            await self.worker

    async def conclude(self, *, partial_reason: str | None) -> dict[str, Any] | None:
        """Finish the analysis and store the call; returns the summary message.

        A stream that ended without stop (`partial_reason`) is stored marked partial.
        A stream without any audio stores nothing (returns None).
        """
        summary = None
        try:
            summary = await self._conclude(partial_reason)
            return summary
        finally:
            self._leave_registry(summary)

    async def _conclude(self, partial_reason: str | None) -> dict[str, Any] | None:
        await self.drain()
        if self.decoder.frames_received == 0:
            await self.in_thread(self.recording.discard)
            return None
        await self.push(await self.in_thread(self.analyzer.close))
        await self.in_thread(self.recording.close)
        result = self.analyzer.result()
        tags = [LIVE_TAG, *self.start.tags]
        if partial_reason is not None:
            tags.append(PARTIAL_TAG)
            note = (
                f"partial call: {partial_reason} after {result.duration_seconds:.1f} s; "
                "this is what was analysed until then"
            )
            result = result.model_copy(update={"notes": [*result.notes, note]})
        await self.in_thread(self._store, result, tags)
        return {
            "type": "summary",
            "call_id": self.call_id,
            "url": f"/calls/{self.call_id}",
            "stored": True,
            "partial": partial_reason is not None,
            "duration_seconds": result.duration_seconds,
            "alert_count": len(result.alerts),
            "scores": {
                speaker: speaker_result.scores.model_dump(mode="json")
                for speaker, speaker_result in result.speakers.items()
            },
            "alerts": [alert.model_dump(mode="json") for alert in result.alerts],
        }

    def _store(self, result: Any, tags: list[str]) -> None:
        from datetime import UTC, datetime, timedelta

        from callmood.store import save_call_result, session_scope

        metadata = self.start.call_metadata()
        if metadata.started_at is None:
            # Stored at the end of the stream: the call started its length earlier.
            started = datetime.now(UTC) - timedelta(seconds=result.duration_seconds)
            metadata = metadata.model_copy(update={"started_at": started})
        try:
            with session_scope(self.app.state.session_factory) as db:
                save_call_result(
                    db,
                    result,
                    name=self.start.name,
                    tags=tags,
                    audio_path=self.recording.relative_path,
                    audio_media_type="audio/flac",
                    metadata=metadata,
                )
        except BaseException:
            # No row without its audio and no audio without its row.
            self.recording.discard()
            raise

    async def abandon(self) -> None:
        """Drop everything of a stream that cannot be concluded (the analysis failed)."""
        self._leave_registry()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
            with contextlib.suppress(BaseException):
                await self.worker
        with contextlib.suppress(Exception):
            await self.in_thread(self.recording.discard)


def live_sessions(app: Any) -> dict[str, LiveSession]:
    """The calls in progress on this server, by call id, whatever transport brought them."""
    sessions = getattr(app.state, "live_sessions", None)
    if sessions is None:
        sessions = app.state.live_sessions = {}
    return sessions


def _concatenate(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {}
    speakers = chunks[0].keys()
    audio = {speaker: np.concatenate([chunk[speaker] for chunk in chunks]) for speaker in speakers}
    return audio if any(samples.size for samples in audio.values()) else {}


async def _send_error(websocket: WebSocket, error: StreamProtocolError) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"type": "error", "message": str(error)}))
    with contextlib.suppress(Exception):
        await websocket.close(code=error.close_code, reason=close_reason(str(error)))


def close_reason(message: str) -> str:
    """The message cut to fit a close frame: at most 123 bytes of UTF-8 (RFC 6455 5.5).

    A longer reason (120 accented characters are 240 bytes) makes the server drop the
    connection without any close frame, so the client would see neither code nor reason.
    """
    return message.encode("utf-8", "replace")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


@router.websocket("/api/stream")
async def stream_call(websocket: WebSocket) -> None:
    """Analyse one live call: see docs/streaming.md for the protocol."""
    await websocket.accept()
    session: LiveSession | None = None
    partial_reason: str | None = None
    try:
        _check_authorised(websocket)
        start = await _receive_start(websocket)
        session = await LiveSession.open(
            websocket.app, start, lambda message: websocket.send_text(json.dumps(message))
        )
        await session.send(_ready_message(session))
        session.start_analysis()
        await _receive_audio(websocket, session)
    except StreamProtocolError as error:
        await _send_error(websocket, error)
        partial_reason = "the client broke the protocol"
    except WebSocketDisconnect:
        partial_reason = "the client disconnected before stop"
    except asyncio.CancelledError:
        # The server is shutting down (or the loop ending) mid-stream: the call cannot be
        # concluded, so stop its analysis task (else asyncio logs "Task was destroyed but
        # it is pending") and drop its unfinished recording, as for a failed analysis.
        if session is not None:
            await session.abandon()
        raise
    except Exception as error:
        # Not the client's fault (rules file edited into nonsense, model unloadable, ...):
        # this stream ends with an explanation; the server and other streams carry on.
        if isinstance(error, CallmoodError):
            log.error("live stream failed: %s", error)
            message = str(error)
        else:
            log.exception("live stream failed")
            message = f"internal error while analysing the stream ({type(error).__name__})"
        await _send_error(websocket, StreamProtocolError(message, CLOSE_SERVER_ERROR))
        if session is not None:
            await session.abandon()
        return
    if session is None:
        return
    try:
        summary = await session.conclude(partial_reason=partial_reason)
    except Exception as error:
        log.exception("live stream %s: could not conclude", session.call_id)
        await session.abandon()
        await _send_error(
            websocket,
            StreamProtocolError(f"the call could not be stored: {error}", CLOSE_SERVER_ERROR),
        )
        return
    if partial_reason is None:
        await session.send(summary or _empty_summary(session))
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_NORMAL)


def _empty_summary(session: LiveSession) -> dict[str, Any]:
    # stop before any audio: there is no call to store.
    return {
        "type": "summary",
        "call_id": session.call_id,
        "url": None,
        "stored": False,
        "partial": False,
        "duration_seconds": 0.0,
        "alert_count": 0,
        "scores": {},
        "alerts": [],
    }


def _check_authorised(websocket: WebSocket) -> None:
    """Token, bearer header or login cookie; the cookie only from a dashboard page.

    Browsers send cookies along with a WebSocket handshake started by any site, so a
    cookie-authenticated stream must come from this server's own pages (its Origin).
    """
    found = deps.authenticate_connection(websocket)
    websocket.state.actor = found[1] if found else None
    if found is None:
        raise StreamProtocolError(
            "not authorised: pass the API token as ?token=... or log in to the dashboard"
        )
    method, actor = found
    problem = deps.role_refusal(actor, "supervisor") or deps.scope_refusal(actor, "stream:write")
    if problem is not None:
        raise StreamProtocolError(f"not authorised: {problem}")
    origin = websocket.headers.get("origin")
    if websocket.app.state.settings.auth_disabled or not origin:
        return
    if method == "cookie" and _host_of(origin) != websocket.headers.get("host"):
        raise StreamProtocolError(
            f"not authorised: a login cookie is only accepted from this server's pages, "
            f"not from {origin}; pass the API token as ?token=..."
        )


def _host_of(origin: str) -> str | None:
    # An Origin urlsplit cannot read ("http://[") is no page of this server.
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return None


async def _receive_start(websocket: WebSocket) -> StreamStart:
    try:
        message = await asyncio.wait_for(websocket.receive(), START_TIMEOUT_SECONDS)
    except TimeoutError:
        raise StreamProtocolError(f"no start message within {START_TIMEOUT_SECONDS:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
    if message.get("bytes") is not None:
        raise StreamProtocolError(
            "binary audio before the start message: send the JSON start message first",
            CLOSE_UNSUPPORTED_DATA,
        )
    return parse_start(message.get("text") or "")


def _consume_outcome(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


async def _receive_audio(websocket: WebSocket, session: LiveSession) -> None:
    """Receive frames until stop (or the length limit); a disconnect raises."""
    assert session.worker is not None
    while True:
        receive = asyncio.ensure_future(websocket.receive())
        # A receive left behind (the analysis failed, or this coroutine was cancelled by a
        # disconnect) may still fail once the socket closes: consume that error, so it is
        # not logged as a traceback ("Task exception was never retrieved").
        receive.add_done_callback(_consume_outcome)
        # A failing analysis must end the stream, not leave the client waiting.
        try:
            done, _ = await asyncio.wait({receive, session.worker}, return_when=FIRST_COMPLETED)
        except asyncio.CancelledError:
            receive.cancel()  # the handler is cancelled: leave no receive task pending
            raise
        if receive not in done:
            receive.cancel()
            session.check_worker()  # re-raises the analysis error
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        payload = message.get("bytes")
        if payload is not None:
            if await session.feed(payload):
                return
            continue
        kind = _parse_json(message.get("text") or "").get("type")
        if kind == "stop":
            return
        if kind == "start":
            raise StreamProtocolError("a second start message: one stream carries one call")
        raise StreamProtocolError(f"unknown message type {kind!r} (expected binary audio or stop)")


async def make_analyzer(app: Any, start: StreamStart) -> Any:
    """The streaming analyser for a call that starts with `start`."""
    from callmood.analysis import AnalysisOptions, StreamingAnalyzer

    state = app.state
    loop = asyncio.get_running_loop()
    # The first stream may load the model from disk: not on the event loop.
    model = await loop.run_in_executor(_executor(app), state.model.get)
    options = AnalysisOptions(
        channels={speaker: index for index, speaker in enumerate(start.channels)},
        analyze_agent=start.analyze_agent,
        smoothing_windows=start.smoothing_windows,
    )
    return StreamingAnalyzer(
        options, model, state.rules.current(), call_id=new_id(), source="<stream>"
    )


def _ready_message(session: LiveSession) -> dict[str, Any]:
    analyzer = session.analyzer
    return {
        "type": "ready",
        "call_id": session.call_id,
        "labels": list(analyzer.model.labels),
        "window_seconds": analyzer.window_seconds,
        "hop_seconds": analyzer.options.hop_seconds,
        "analyzed_speakers": list(analyzer.analyzed),
        "sample_rate": session.decoder.target_rate,
    }
