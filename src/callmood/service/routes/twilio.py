"""The Twilio Media Streams connector `/api/connectors/twilio`: a phone call straight from Twilio.

Twilio opens a WebSocket to the ``url`` of a ``<Stream>`` in the call's TwiML and sends
JSON text messages (https://www.twilio.com/docs/voice/media-streams/websocket-messages):
``connected``, one ``start`` (the call's ids, its ``tracks``, ``customParameters`` from the
``<Parameter>`` nouns and the ``mediaFormat``: mu-law, 8000 Hz, mono), then ``media``
messages of base64 mu-law per track (``inbound`` = what the caller says = the customer,
``outbound`` = what Twilio plays into the call = the agent), ``mark`` and ``dtmf``, and
``stop`` when the stream ends. The two tracks come as separate messages;
`TwilioProtocol` checks every message against that reference and lines the tracks up
by their timestamps into the interleaved stereo audio `LiveSession` takes, so the call
is analysed, alerted on and stored exactly as one streamed to `/api/stream`.

Twilio reads nothing we send on a one-way (``<Start>``) stream, so errors go only into
the close frame's code and reason, and the server log. Configuration and authentication:
docs/connectors-twilio.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from callmood.errors import CallmoodError
from callmood.service import deps
from callmood.service.routes.stream import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    LiveSession,
    StreamProtocolError,
    StreamStart,
    _consume_outcome,
    _parse_json,
    close_reason,
    parse_start,
)
from callmood.service.routes.stream import _check_authorised as check_stream_credentials

log = logging.getLogger(__name__)
router = APIRouter()

ROUTE = "/api/connectors/twilio"
#: What Twilio streams, and the only format it streams: G.711 mu-law, 8 kHz, mono per track.
TWILIO_ENCODING = "audio/x-mulaw"
TWILIO_SAMPLE_RATE = 8000
SAMPLES_PER_MS = TWILIO_SAMPLE_RATE // 1000
#: Whose voice each track is: inbound = into Twilio from the caller, outbound = what
#: Twilio sends the caller (the agent's leg of a <Dial>).
TRACK_SPEAKERS = {"inbound": "customer", "outbound": "agent"}
#: The mu-law code of a zero sample (0xFF; 0x7F is "negative zero"): fills a track's gaps.
MULAW_SILENCE = b"\xff"
#: The longest text message accepted, characters. Twilio sends 20 ms (160 bytes, 216
#: base64 characters) per media message; this allows over 2 s per message.
MAX_MESSAGE_CHARS = 64_000
#: Timestamps within one 20 ms chunk of where a track's audio ends are taken as
#: contiguous (millisecond rounding and jitter); a larger jump is a gap filled with silence.
TIMESTAMP_TOLERANCE_MS = 20
#: A single jump of a track's timestamps beyond this is refused, not filled with silence.
MAX_GAP_SECONDS = 30.0
#: How far one track may run ahead of the other before the late one is taken as silent:
#: this bounds the audio held back for alignment to 2 s per track.
MAX_SKEW_SECONDS = 2.0
#: How long Twilio may take to send connected and start: it sends them at once.
TWILIO_START_TIMEOUT_SECONDS = 5.0
#: How long the stream may stay silent (no message at all) once it has started; Twilio
#: sends a media message every 20 ms per track, silence included.
IDLE_TIMEOUT_SECONDS = 30.0
#: The customParameters this connector reads (any others are ignored).
PARAMETER_NAMES = ("token", "name", "tags", "agent", "queue")
TWILIO_TAG = "twilio"
SIGNATURE_HEADER = "x-twilio-signature"

EVENTS = ("connected", "start", "media", "mark", "dtmf", "stop")


@dataclass(frozen=True)
class TwilioStart:
    """The call a stream carries, from its start message."""

    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]

    @property
    def channels(self) -> list[str]:
        """The speaker of each interleaved channel the aligner produces, in order."""
        return [TRACK_SPEAKERS[track] for track in ("inbound", "outbound") if track in self.tracks]


@dataclass(frozen=True)
class Step:
    """What one message meant: its event, the start (on start), audio ready to analyse."""

    event: str
    start: TwilioStart | None = None
    audio: bytes = b""


def _error(message: str, code: int = CLOSE_POLICY_VIOLATION) -> StreamProtocolError:
    return StreamProtocolError(f"Twilio stream: {message}", code)


def _text(container: dict[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise _error(f"{where}.{key} must be a non-empty string, got {_shown(value)}")
    return value


def _count(container: dict[str, Any], key: str, where: str) -> int:
    # Twilio writes sequence numbers, chunks and timestamps as strings of digits.
    value = container.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        return int(value)
    raise _error(f"{where}.{key} must be a whole number (a string of digits), got {_shown(value)}")


def _object(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise _error(f"{where}.{key} must be an object, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class _Track:
    buffer: bytearray = field(default_factory=bytearray)
    chunk: int = 0  # the last chunk number received
    timestamp: int = -1  # the last timestamp received, ms


class TwilioProtocol:
    """One stream's messages checked against Twilio's reference, the tracks aligned.

    `handle` takes each text message in turn and returns a `Step`; `finish` returns the
    audio still held back. The order is connected, start, then media / mark / dtmf, then
    stop; every message after connected carries the start's ``streamSid`` and a
    ``sequenceNumber`` one above the previous one (start is 1); each track's ``chunk``
    counts up from 1. Anything else raises StreamProtocolError naming the problem.

    Alignment: a track's chunk belongs at its ``timestamp`` (ms, relative to the first
    media message of the stream). A gap in one track is filled with mu-law silence so the
    parties stay in sync; a chunk that overlaps audio already placed loses the overlap.
    Audio is released as soon as every track has it; if one track runs more than
    MAX_SKEW_SECONDS ahead, the other is taken as silent up to that bound.
    """

    def __init__(self) -> None:
        self.state = "new"  # new -> connected -> streaming -> stopped
        self.start: TwilioStart | None = None
        self.sequence = 0
        self.origin_ms: int | None = None
        self.tracks: dict[str, _Track] = {}
        self.released = 0  # samples per track handed out so far
        self.padded_for_skew = 0  # samples of silence put in for a late track

    def handle(self, text: str) -> Step:
        """Check one message and return what it means."""
        if len(text) > MAX_MESSAGE_CHARS:
            raise _error(
                f"message of {len(text)} characters is larger than {MAX_MESSAGE_CHARS}",
                CLOSE_TOO_BIG,
            )
        try:
            message = _parse_json(text)
        except StreamProtocolError as error:
            raise _error(str(error)) from None
        event = message.get("event")
        if event not in EVENTS:
            raise _error(f"unknown event {_shown(event)} (Twilio sends {', '.join(EVENTS)})")
        if self.state == "stopped":
            raise _error(f"a {event} message after stop")
        if event == "connected":
            return self._connected(message)
        if self.state == "new":
            raise _error(f"a {event} message before the connected message")
        self._check_sequence(message, event)
        if event == "start":
            return self._start(message)
        if self.state != "streaming":
            raise _error(f"a {event} message before the start message")
        assert self.start is not None
        sid = message.get("streamSid")
        if sid != self.start.stream_sid:
            raise _error(
                f"{event} message for stream {_shown(sid)}, not this stream's "
                f"{self.start.stream_sid!r}"
            )
        if event == "media":
            return Step("media", audio=self._media(_object(message, "media", "media")))
        if event == "mark":
            _text(_object(message, "mark", "mark"), "name", "mark")
        elif event == "dtmf":
            dtmf = _object(message, "dtmf", "dtmf")
            _text(dtmf, "digit", "dtmf")
        else:
            stop = _object(message, "stop", "stop")
            if _text(stop, "callSid", "stop") != self.start.call_sid:
                raise _error(f"stop for call {stop['callSid']!r}, not {self.start.call_sid!r}")
            self.state = "stopped"
        return Step(event)

    def _connected(self, message: dict[str, Any]) -> Step:
        if self.state != "new":
            raise _error("a second connected message")
        protocol = message.get("protocol")
        if protocol != "Call":
            raise _error(f"connected.protocol must be 'Call', got {_shown(protocol)}")
        _text(message, "version", "connected")
        self.state = "connected"
        return Step("connected")

    def _check_sequence(self, message: dict[str, Any], event: str) -> None:
        number = _count(message, "sequenceNumber", event)
        if number != self.sequence + 1:
            raise _error(
                f"{event} message has sequenceNumber {number}, expected {self.sequence + 1} "
                "(a message was lost or repeated)"
            )
        self.sequence = number

    def _start(self, message: dict[str, Any]) -> Step:
        if self.state != "connected":
            raise _error("a second start message: one stream carries one call")
        start = _object(message, "start", "start")
        stream_sid = _text(start, "streamSid", "start")
        if message.get("streamSid", stream_sid) != stream_sid:
            raise _error("start.streamSid and streamSid differ")
        tracks = start.get("tracks")
        if (
            not isinstance(tracks, list)
            or not tracks
            or any(not isinstance(track, str) or track not in TRACK_SPEAKERS for track in tracks)
            or len(set(tracks)) != len(tracks)
        ):
            raise _error(
                f"start.tracks must list 'inbound' and/or 'outbound' once each, got "
                f"{_shown(tracks)}"
            )
        if "inbound" not in tracks:
            raise _error(
                "an outbound-only stream carries no customer audio: use "
                'track="inbound_track" or track="both_tracks" in the <Stream>'
            )
        media_format = _object(start, "mediaFormat", "start")
        found = (
            media_format.get("encoding"),
            media_format.get("sampleRate"),
            media_format.get("channels"),
        )
        if found != (TWILIO_ENCODING, TWILIO_SAMPLE_RATE, 1) or isinstance(found[1], bool):
            raise _error(
                f"start.mediaFormat must be {TWILIO_ENCODING} at {TWILIO_SAMPLE_RATE} Hz, "
                f"1 channel; got {_shown(media_format)}"
            )
        parameters = start.get("customParameters", {})
        if not isinstance(parameters, dict) or not all(
            isinstance(value, str) for value in parameters.values()
        ):
            raise _error("start.customParameters must be an object of strings")
        self.start = TwilioStart(
            stream_sid=stream_sid,
            account_sid=_text(start, "accountSid", "start"),
            call_sid=_text(start, "callSid", "start"),
            tracks=tuple(tracks),
            custom_parameters=parameters,
        )
        self.tracks = {track: _Track() for track in ("inbound", "outbound") if track in tracks}
        self.state = "streaming"
        return Step("start", start=self.start)

    def _media(self, media: dict[str, Any]) -> bytes:
        track_name = media.get("track")
        if not isinstance(track_name, str) or track_name not in self.tracks:
            raise _error(
                f"media.track {_shown(track_name)} is not one of this stream's tracks "
                f"{list(self.tracks)}"
            )
        track = self.tracks[track_name]
        chunk = _count(media, "chunk", "media")
        if chunk != track.chunk + 1:
            raise _error(
                f"{track_name} media has chunk {chunk}, expected {track.chunk + 1} "
                "(audio was lost or repeated)"
            )
        timestamp = _count(media, "timestamp", "media")
        if timestamp < track.timestamp:
            raise _error(
                f"{track_name} media timestamp went back from {track.timestamp} to {timestamp} ms"
            )
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise _error(f"media.payload must be a base64 string, got {_shown(payload)}")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _error(f"{track_name} media chunk {chunk}: payload is not valid base64") from None
        track.chunk, track.timestamp = chunk, timestamp
        self._place(track, timestamp, audio)
        return self._release()

    def _end(self, track: _Track) -> int:
        return self.released + len(track.buffer)

    def _place(self, track: _Track, timestamp: int, audio: bytes) -> None:
        if self.origin_ms is None:
            self.origin_ms = timestamp
        at = (timestamp - self.origin_ms) * SAMPLES_PER_MS
        gap = at - self._end(track)
        if gap > TIMESTAMP_TOLERANCE_MS * SAMPLES_PER_MS:
            if gap > MAX_GAP_SECONDS * TWILIO_SAMPLE_RATE:
                raise _error(
                    f"media timestamp {timestamp} ms jumps {gap / TWILIO_SAMPLE_RATE:.1f} s "
                    f"ahead (more than {MAX_GAP_SECONDS:g} s of missing audio)"
                )
            track.buffer += MULAW_SILENCE * gap
        elif gap < -TIMESTAMP_TOLERANCE_MS * SAMPLES_PER_MS:
            # Already placed (the track was late and taken as silent): keep what is new.
            audio = audio[-gap:]
        track.buffer += audio
        ends = [self._end(other) for other in self.tracks.values()]
        late_bound = max(ends) - int(MAX_SKEW_SECONDS * TWILIO_SAMPLE_RATE)
        for other in self.tracks.values():
            missing = late_bound - self._end(other)
            if missing > 0:
                other.buffer += MULAW_SILENCE * missing
                self.padded_for_skew += missing

    def _release(self, *, everything: bool = False) -> bytes:
        buffers = [track.buffer for track in self.tracks.values()]
        if not buffers:
            return b""
        if everything:
            longest = max(len(buffer) for buffer in buffers)
            for buffer in buffers:
                buffer += MULAW_SILENCE * (longest - len(buffer))
        ready = min(len(buffer) for buffer in buffers)
        if ready == 0:
            return b""
        if len(buffers) == 1:
            audio = bytes(buffers[0][:ready])
        else:
            interleaved = bytearray(ready * 2)
            interleaved[0::2] = buffers[0][:ready]
            interleaved[1::2] = buffers[1][:ready]
            audio = bytes(interleaved)
        for buffer in buffers:
            del buffer[:ready]
        self.released += ready
        return audio

    def finish(self) -> bytes:
        """The audio still held back for alignment, the shorter track filled with silence."""
        return self._release(everything=True)

    @property
    def held_samples(self) -> int:
        """Samples waiting for alignment, over all tracks (bounded by MAX_SKEW_SECONDS)."""
        return sum(len(track.buffer) for track in self.tracks.values())


# ------------------------------------------------------------------------------ auth


def signature_valid(auth_token: str, url: str, signature: str) -> bool:
    """Whether `signature` is Twilio's X-Twilio-Signature of `url` under `auth_token`.

    Twilio signs a request with HMAC-SHA1 keyed by the account's Auth Token over the full
    URL (followed by the sorted POST parameters, of which a WebSocket handshake has none),
    base64-encoded (https://www.twilio.com/docs/usage/webhooks/webhooks-security).
    """
    digest = hmac.new(auth_token.encode("utf-8"), url.encode("utf-8"), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest), signature.encode("utf-8", "replace"))


def _signed_urls(websocket: WebSocket) -> list[str]:
    """The URLs Twilio may have signed: the configured one, else this server's as wss://."""
    configured = websocket.app.state.settings.twilio_stream_url
    if configured:
        return [configured]
    host = websocket.headers.get("host", "")
    path = websocket.url.path + (f"?{websocket.url.query}" if websocket.url.query else "")
    urls = [f"wss://{host}{path}", f"{websocket.url.scheme}://{host}{path}"]
    # Twilio's own validators accept the URL with and without the default port.
    urls += [url.replace(":443/", "/", 1) for url in urls if ":443/" in url]
    return list(dict.fromkeys(urls))


def check_signature(websocket: WebSocket) -> bool:
    """True if the handshake carries a valid X-Twilio-Signature; False if it has none or no
    Auth Token is configured (the token parameter must then authenticate the stream).

    Raises
    ------
    StreamProtocolError
        A signature is sent but does not match: someone else than Twilio, or the Auth
        Token or twilio_stream_url is wrong.
    """
    secret = websocket.app.state.settings.twilio_auth_token
    signature = websocket.headers.get(SIGNATURE_HEADER)
    if secret is None or not secret.get_secret_value() or signature is None:
        return False
    if any(
        signature_valid(secret.get_secret_value(), url, signature)
        for url in _signed_urls(websocket)
    ):
        return True
    raise _error(
        "not authorised: X-Twilio-Signature does not match (check twilio_auth_token and "
        "twilio_stream_url)"
    )


def check_authorised(websocket: WebSocket, start: TwilioStart) -> None:
    """A stream without a signature or credentials on its handshake needs the API token as
    customParameter `token` (or authentication switched off)."""
    if websocket.app.state.settings.auth_disabled:
        return
    token = start.custom_parameters.get("token")
    if deps.token_matches(token, websocket.app.state.credentials.token_hash):
        return
    scoped = deps.scoped_token_actor(websocket, token)  # an integration token (docs/access.md)
    if scoped is not None:
        if deps.scope_refusal(scoped, "stream:write") is not None:
            raise _error("not authorised: the token parameter lacks the stream:write scope")
        websocket.state.actor = scoped
        return
    # Close reasons hold 123 bytes: short, and the docs page explains the rest.
    if token is not None:
        raise _error("not authorised: the token parameter is not the API token")
    if websocket.app.state.settings.twilio_auth_token is not None:
        raise _error("not authorised: no X-Twilio-Signature header and no token parameter")
    raise _error('not authorised: send the API token as <Parameter name="token">')


# ------------------------------------------------------------------------------ the call


def stream_start(start: TwilioStart) -> StreamStart:
    """The `/api/stream` start message equivalent to a Twilio stream's start.

    Raises
    ------
    StreamProtocolError
        A customParameter (name, tags, agent, queue) is not what a call may carry.
    """
    parameters = start.custom_parameters
    tags = [TWILIO_TAG, *(tag.strip() for tag in parameters.get("tags", "").split(","))]
    fields: dict[str, Any] = {
        "type": "start",
        "sample_rate": TWILIO_SAMPLE_RATE,
        "encoding": "mulaw",
        "channels": start.channels,
        "name": parameters.get("name") or f"Twilio call {start.call_sid}",
        "tags": [tag for tag in tags if tag],
        "agent": parameters.get("agent"),
        "queue": parameters.get("queue"),
        "external_call_id": start.call_sid,
    }
    try:
        return parse_start(json.dumps(fields))
    except StreamProtocolError as error:
        raise _error(f"customParameters: {error}") from None


class _Connection:
    """One Twilio WebSocket: the protocol state, and the live session once started."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.protocol = TwilioProtocol()
        self.session: LiveSession | None = None
        self.signed = False
        self.authorised = False  # by signature, handshake credentials or token parameter
        # Twilio (a signed stream, or one authorised by its token parameter) reads nothing
        # we send on a one-way stream: errors then go only into the close frame.
        self.quiet = False

    async def receive_text(self) -> str:
        """The next text message; raises on disconnect, silence, binary or a failed analysis."""
        timeout = TWILIO_START_TIMEOUT_SECONDS if self.session is None else IDLE_TIMEOUT_SECONDS
        receive = asyncio.ensure_future(self.websocket.receive())
        receive.add_done_callback(_consume_outcome)
        waiting: set[asyncio.Future[Any]] = {receive}
        if self.session is not None and self.session.worker is not None:
            waiting.add(self.session.worker)
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            receive.cancel()
            raise
        if receive not in done:
            receive.cancel()
            if self.session is not None:
                self.session.check_worker()  # re-raises the analysis error
            if self.session is not None:
                raise _error(f"no message within {timeout:g} s")
            # Whoever opens a socket and says nothing is refused as unauthenticated.
            raise _error(f"not authorised: no start message within {timeout:g} s")
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        if message.get("bytes") is not None:
            raise _error(
                "a binary message: Twilio sends JSON text messages only",
                CLOSE_UNSUPPORTED_DATA,
            )
        return message.get("text") or ""

    async def run(self) -> None:
        """Take messages until stop (or the stream's length limit)."""
        self.signed = self.authorised = self.quiet = check_signature(self.websocket)
        if not self.signed and deps.current_actor(self.websocket) is not None:
            # Credentials of /api/stream's kinds on the handshake (bearer header, ?token=,
            # a supervisor's login from this server's pages): checked as that route does.
            check_stream_credentials(self.websocket)
            self.authorised = True
        while True:
            step = self.protocol.handle(await self.receive_text())
            if step.start is not None:
                if not self.authorised:
                    check_authorised(self.websocket, step.start)
                    self.authorised = self.quiet = True
                start = stream_start(step.start)
                self.session = await LiveSession.open(self.websocket.app, start)
                self.session.start_analysis()
                log.info(
                    "Twilio stream %s of call %s: live call %s (%s)",
                    step.start.stream_sid,
                    step.start.call_sid,
                    self.session.call_id,
                    "+".join(step.start.tracks),
                )
            if step.audio and self.session is not None and await self.session.feed(step.audio):
                return
            if step.event == "stop":
                return

    async def conclude(self, partial_reason: str | None) -> None:
        """Store the call heard so far (the audio held for alignment included)."""
        if self.session is None:
            return
        tail = self.protocol.finish()
        if tail:
            await self.session.feed(tail)
        await self.session.conclude(partial_reason=partial_reason)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=close_reason(reason))


@router.websocket(ROUTE)
async def twilio_stream(websocket: WebSocket) -> None:
    """Analyse a call Twilio streams with <Start><Stream> or <Connect><Stream>: see
    docs/connectors-twilio.md."""
    await websocket.accept()
    connection = _Connection(websocket)
    partial_reason: str | None = None
    close: tuple[int, str] = (CLOSE_NORMAL, "")
    try:
        await connection.run()
    except StreamProtocolError as error:
        sid = connection.protocol.start.stream_sid if connection.protocol.start else "-"
        log.warning("Twilio stream %s refused: %s", sid, error)
        close = (error.close_code, str(error))
        if not connection.quiet:
            # Not (yet) known to be Twilio: tell a misconfigured client or a stranger in
            # a message too.
            with contextlib.suppress(Exception):
                await websocket.send_text(json.dumps({"type": "error", "message": str(error)}))
        partial_reason = str(error)  # the note on the stored call says why it ended
    except WebSocketDisconnect:
        partial_reason = "Twilio disconnected before stop"
    except asyncio.CancelledError:
        if connection.session is not None:
            await connection.session.abandon()
        raise
    except Exception as error:
        if isinstance(error, CallmoodError):
            log.error("Twilio stream failed: %s", error)
            message = str(error)
        else:
            log.exception("Twilio stream failed")
            message = f"internal error while analysing the stream ({type(error).__name__})"
        if connection.session is not None:
            await connection.session.abandon()
        await _close(websocket, CLOSE_SERVER_ERROR, message)
        return
    try:
        await connection.conclude(partial_reason)
    except Exception as error:
        assert connection.session is not None
        log.exception("Twilio stream of call %s: could not conclude", connection.session.call_id)
        await connection.session.abandon()
        close = (CLOSE_SERVER_ERROR, f"the call could not be stored: {error}")
    await _close(websocket, *close)
