"""Genesys Cloud AudioHook Monitor connector: `/api/connectors/audiohook` (WebSocket).

Genesys Cloud (the client) opens a WebSocket, authenticates with an ``X-API-KEY`` header
and, when a client secret is configured, an HTTP message signature; then it runs an
``open`` / ``opened`` transaction that negotiates the media (PCMU at 8 kHz, the
``external`` channel = the customer, ``internal`` = the agent, interleaved in the order
negotiated), streams binary audio frames, pings, may pause and resume, and ends with a
``close`` / ``closed`` transaction. Every text message carries ``version`` "2", ``id``
(the session), ``seq`` (+1 per message, per side), the other side's last ``seq``
(``serverseq`` / ``clientseq``), the client's stream ``position`` (ISO 8601 duration) and
``parameters``. Implemented from Genesys's AudioHook protocol reference and its reference
implementation (purecloudlabs/audiohook-reference-implementation); see
docs/connectors-genesys.md for the Genesys configuration and the choices made here.

The audio goes through the same `LiveSession` as `/api/stream`: identical audio gives an
identical stored call.
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
import math
import re
import time
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from callmood.errors import CallmoodError
from callmood.service import deps
from callmood.service.routes.stream import (
    CLOSE_NORMAL,
    MAX_STREAM_SECONDS,
    LiveSession,
    StreamProtocolError,
    StreamStart,
    close_reason,
)
from callmood.store.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)
router = APIRouter()

PATH = "/api/connectors/audiohook"
PROTOCOL_VERSION = "2"
#: Largest text message, characters (the reference server refuses more than 64 KiB).
MAX_TEXT_CHARS = 65535
#: Largest binary audio frame, bytes: 4 s of stereo PCMU (Genesys sends about 0.1-0.2 s).
MAX_AUDIO_FRAME_BYTES = 65536
#: Seconds a client may take to send `open` after connecting.
OPEN_TIMEOUT_SECONDS = 10.0
#: Seconds without any message before the client counts as gone: Genesys pings every few
#: seconds and streams audio continuously, so a silent minute is a dead connection.
IDLE_TIMEOUT_SECONDS = 60.0
#: Seconds the server waits for the client's `close` after it sent `disconnect`.
CLOSE_WAIT_SECONDS = 5.0
#: Signature freshness: `created` at most this old, seconds, and this much clock skew.
MAX_SIGNATURE_AGE_SECONDS = 10
CLOCK_SKEW_SECONDS = 3
#: The stream's audio: G.711 mu-law at 8 kHz, one byte per sample and channel.
SAMPLE_RATE = 8000
#: Which speaker each AudioHook channel carries.
SPEAKER_OF_CHANNEL = {"external": "customer", "internal": "agent"}
#: Tag of calls that came through this connector (beside `live`).
AUDIOHOOK_TAG = "audiohook"
#: Covered components a signature must include (as the reference server requires).
REQUIRED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)

_UUID = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-"
    r"[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000)$"
)
_DURATION = re.compile(r"^PT((?:\d*\.)?\d+)S$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}-[A-Za-z]{2,3}$")
_DTMF_DIGITS = set("0123456789*#")
CLIENT_MESSAGE_TYPES = (
    "open",
    "close",
    "ping",
    "paused",
    "resumed",
    "update",
    "error",
    "discarded",
    "dtmf",
)
CLOSE_REASONS = ("end", "error", "disconnect", "reconnect")


class AudioHookProtocolError(CallmoodError):
    """The client broke the AudioHook protocol; the message is the `disconnect` info."""


class AudioHookUnauthorized(CallmoodError):
    """The connection's API key, signature or organisation is refused."""


# ------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class ClientMessage:
    """One validated text message from Genesys."""

    type: str
    seq: int
    serverseq: int
    id: str
    position: float  # seconds
    parameters: dict[str, Any]


def parse_duration(value: Any, field: str) -> float:
    """Seconds of an AudioHook duration (``PT1.25S``).

    Raises
    ------
    AudioHookProtocolError
        Not a string of that form, or too large to be a position in a call.
    """
    match = _DURATION.match(value) if isinstance(value, str) and len(value) <= 40 else None
    if match is None:
        raise AudioHookProtocolError(f"{field} {value!r:.60} is not a duration like 'PT1.5S'")
    seconds = float(match.group(1))
    if not math.isfinite(seconds) or seconds > 10 * MAX_STREAM_SECONDS:
        raise AudioHookProtocolError(f"{field} {value!r} is out of range")
    return seconds


def format_duration(seconds: float) -> str:
    """An AudioHook duration for `seconds` (``PT12.34S``)."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def _is_sequence_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def parse_client_message(text: str) -> ClientMessage:
    """Parse and validate one text message from the client (Genesys Cloud).

    The envelope is checked as the reference server checks it (version "2", a UUID ``id``,
    a string ``type``, non-negative integer ``seq`` and ``serverseq``, a duration
    ``position``, an object ``parameters``), then the parameters of the message's type.

    Raises
    ------
    AudioHookProtocolError
        Too long, not JSON, not a well-formed client message, or an unknown type.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise AudioHookProtocolError(
            f"text message of {len(text)} characters is larger than {MAX_TEXT_CHARS}"
        )
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise AudioHookProtocolError("text message is not valid JSON") from None
    if not isinstance(message, dict):
        raise AudioHookProtocolError("message is not a JSON object")
    if message.get("version") != PROTOCOL_VERSION:
        raise AudioHookProtocolError(
            f"unsupported protocol version {message.get('version')!r:.40} (expected '2')"
        )
    kind = message.get("type")
    if not isinstance(kind, str):
        raise AudioHookProtocolError("message has no string 'type'")
    if not isinstance(message.get("id"), str) or not _UUID.match(message["id"]):
        raise AudioHookProtocolError(f"message 'id' {message.get('id')!r:.60} is not a UUID")
    for field in ("seq", "serverseq"):
        if not _is_sequence_number(message.get(field)):
            raise AudioHookProtocolError(f"message '{field}' is not a non-negative integer")
    position = parse_duration(message.get("position"), "position")
    parameters = message.get("parameters")
    if not isinstance(parameters, dict):
        raise AudioHookProtocolError("message 'parameters' is not an object")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise AudioHookProtocolError(f"'{kind:.40}' is not a supported client message")
    _check_parameters(kind, parameters)
    return ClientMessage(
        type=kind,
        seq=message["seq"],
        serverseq=message["serverseq"],
        id=message["id"],
        position=position,
        parameters=parameters,
    )


def _check_parameters(kind: str, parameters: dict[str, Any]) -> None:
    def bad(detail: str) -> AudioHookProtocolError:
        return AudioHookProtocolError(f"invalid '{kind}' message: {detail}")

    if kind == "open":
        for field in ("organizationId", "conversationId"):
            if not isinstance(parameters.get(field), str) or not _UUID.match(parameters[field]):
                raise bad(f"{field} is not a UUID")
        participant = parameters.get("participant")
        if not isinstance(participant, dict):
            raise bad("participant is not an object")
        if not isinstance(participant.get("id"), str) or not _UUID.match(participant["id"]):
            raise bad("participant.id is not a UUID")
        for field in ("ani", "aniName", "dnis"):
            if not isinstance(participant.get(field), str):
                raise bad(f"participant.{field} is not a string")
        media = parameters.get("media")
        if not isinstance(media, list) or not all(_is_media(offer) for offer in media):
            raise bad("media is not a list of {type, format, channels, rate} offers")
        language = parameters.get("language")
        if language is not None and not (isinstance(language, str) and _LANGUAGE.match(language)):
            raise bad(f"language {language!r:.40} is not a code like 'en-US'")
        if "customConfig" in parameters and not isinstance(parameters["customConfig"], dict):
            raise bad("customConfig is not an object")
    elif kind == "close":
        if parameters.get("reason") not in CLOSE_REASONS:
            raise bad(f"reason must be one of {', '.join(CLOSE_REASONS)}")
    elif kind == "ping":
        if "rtt" in parameters:
            parse_duration(parameters["rtt"], "rtt")
    elif kind in ("resumed", "discarded"):
        parse_duration(parameters.get("start"), "start")
        parse_duration(parameters.get("discarded"), "discarded")
    elif kind == "update":
        language = parameters.get("language")
        if not (isinstance(language, str) and _LANGUAGE.match(language)):
            raise bad("language is not a code like 'en-US'")
    elif kind == "error":
        code = parameters.get("code")
        if not (isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 10000):
            raise bad("code is not an error code (400-9999)")
        if not isinstance(parameters.get("message"), str):
            raise bad("message is not a string")
    elif kind == "dtmf":
        # The DTMF event of later protocol revisions: one key per message.
        if parameters.get("digit") not in _DTMF_DIGITS:
            raise bad("digit is not one of 0-9 * #")


def _is_media(offer: Any) -> bool:
    return (
        isinstance(offer, dict)
        and offer.get("type") == "audio"
        and offer.get("format") in ("PCMU", "L16")
        and offer.get("rate") == 8000
        and isinstance(offer.get("channels"), list)
        and 1 <= len(offer["channels"]) <= 2
        and all(channel in SPEAKER_OF_CHANNEL for channel in offer["channels"])
        and len(set(offer["channels"])) == len(offer["channels"])
    )


def choose_media(offers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The offer to accept: stereo PCMU (both parties) first, else the customer alone.

    Returns None when no offer carries the customer (the external channel) in PCMU: L16
    and an internal-only stream are not taken.
    """
    pcmu = [offer for offer in offers if offer["format"] == "PCMU"]
    for wanted in ({"external", "internal"}, {"external"}):
        for offer in pcmu:
            if set(offer["channels"]) == wanted:
                return offer
    return None


# ------------------------------------------------------------------------ authentication


def _header(headers: Any, name: str) -> str | None:
    """A header's canonical value (RFC 9421 2.1): repeated fields joined with ', '."""
    if hasattr(headers, "getlist"):  # Starlette's headers: case-insensitive, repeatable
        values = headers.getlist(name)
    else:
        values = [value for key, value in headers.items() if key.lower() == name]
    if not values:
        return None
    return ", ".join(re.sub(r"[ \t]*\r\n[ \t]+", " ", value.strip()) for value in values)


_SF_KEY = r"[a-z*][a-z0-9_\-.*]*"
_SF_STRING = r'"(?:[^"\\\x00-\x1f\x7f]|\\["\\])*"'
_SF_TOKEN = r"[A-Za-z*][\w:/!#$%&'*+\-.^`|~]*"
_SF_PARAM = rf"(?:;\s*{_SF_KEY}(?:=(?:{_SF_STRING}|-?\d{{1,15}}|\?[01]|{_SF_TOKEN}))?)"
_SIGNATURE_INPUT = re.compile(
    rf"^(?P<label>{_SF_KEY})=\((?P<items>(?:\s*{_SF_STRING}{_SF_PARAM}*)*)\s*\)"
    rf"(?P<params>{_SF_PARAM}*)$"
)
_SIGNATURE = re.compile(rf"^(?P<label>{_SF_KEY})=:(?P<value>[A-Za-z0-9+/=]*):$")


@dataclass(frozen=True)
class SignatureInput:
    """One parsed ``Signature-Input`` member: its label, covered components, parameters."""

    label: str
    components: list[str]
    parameters: list[tuple[str, str | int | bool]]

    def serialized(self) -> str:
        """The inner list re-encoded as RFC 8941 serialises it (the signature base's
        last line), so the signer must have been strict, as the reference verifier does."""
        items = " ".join(_sf_string(name) for name in self.components)
        params = "".join(_sf_param(key, value) for key, value in self.parameters)
        return f"({items}){params}"

    def parameter(self, key: str) -> str | int | bool | None:
        return next((value for name, value in self.parameters if name == key), None)


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sf_param(key: str, value: str | int | bool) -> str:
    if value is True:
        return f";{key}"
    if value is False:
        return f";{key}=?0"
    if isinstance(value, int):
        return f";{key}={value}"
    return f";{key}={_sf_string(value)}"


def _parse_sf_params(text: str) -> list[tuple[str, str | int | bool]]:
    params: list[tuple[str, str | int | bool]] = []
    for match in re.finditer(rf"{_SF_PARAM}", text):
        raw = match.group(0).lstrip(";").strip()
        key, _, value = raw.partition("=")
        parsed: str | int | bool
        if not value or value == "?1":
            parsed = True
        elif value == "?0":
            parsed = False
        elif value.startswith('"'):
            parsed = re.sub(r"\\([\"\\])", r"\1", value[1:-1])
        elif re.fullmatch(r"-?\d+", value):
            parsed = int(value)
        else:
            raise AudioHookUnauthorized(f"signature parameter {key} has an unsupported value")
        params.append((key, parsed))
    return params


def parse_signature_input(value: str) -> SignatureInput:
    """Parse a one-member ``Signature-Input`` dictionary.

    Raises
    ------
    AudioHookUnauthorized
        Not an inner list of strings with parameters, or a component with parameters.
    """
    match = _SIGNATURE_INPUT.match(value) if len(value) <= 4096 else None
    if match is None:
        raise AudioHookUnauthorized("the Signature-Input header is not a valid signature input")
    components: list[str] = []
    for item in re.finditer(rf"({_SF_STRING})({_SF_PARAM}*)", match.group("items")):
        if item.group(2):
            raise AudioHookUnauthorized("signature components with parameters are not supported")
        components.append(re.sub(r"\\([\"\\])", r"\1", item.group(1)[1:-1]))
    return SignatureInput(match.group("label"), components, _parse_sf_params(match["params"]))


def signature_base(signature_input: SignatureInput, values: dict[str, str]) -> str:
    """The text HMAC-signed: one ``"name": value`` line per covered component, then the
    ``"@signature-params"`` line (draft-ietf-httpbis-message-signatures, as AudioHook)."""
    lines = [f"{_sf_string(name)}: {values[name]}" for name in signature_input.components]
    lines.append(f'"@signature-params": {signature_input.serialized()}')
    return "\n".join(lines)


def verify_signature(
    headers: Any,
    *,
    request_target: str,
    client_secret: bytes,
    now: float | None = None,
) -> None:
    """Check the request's HMAC-SHA256 message signature against the client secret.

    Raises
    ------
    AudioHookUnauthorized
        Unsigned, malformed, stale, not covering the required components, keyed to another
        API key, or a wrong signature.
    """
    input_header = _header(headers, "signature-input")
    signature_header = _header(headers, "signature")
    if not input_header or not signature_header:
        raise AudioHookUnauthorized("the request is not signed (Signature, Signature-Input)")
    signature_input = parse_signature_input(input_header)
    signature_match = _SIGNATURE.match(signature_header)
    if signature_match is None or signature_match["label"] != signature_input.label:
        raise AudioHookUnauthorized("the Signature header does not match the Signature-Input")
    try:
        signature = base64.b64decode(signature_match["value"], validate=True)
    except binascii.Error:
        raise AudioHookUnauthorized("the Signature header is not base64") from None
    missing = [name for name in REQUIRED_COMPONENTS if name not in signature_input.components]
    if missing:
        raise AudioHookUnauthorized(f"the signature does not cover {', '.join(missing)}")
    if len(set(signature_input.components)) != len(signature_input.components):
        raise AudioHookUnauthorized("the signature covers a component twice")
    if signature_input.parameter("alg") not in (None, "hmac-sha256"):
        raise AudioHookUnauthorized("only hmac-sha256 signatures are supported")
    if signature_input.parameter("keyid") != _header(headers, "x-api-key"):
        raise AudioHookUnauthorized("the signature keyid is not the X-API-KEY")
    nonce = signature_input.parameter("nonce")
    if not isinstance(nonce, str) or len(nonce) < 22:
        raise AudioHookUnauthorized("the signature has no nonce of at least 22 characters")
    now = time.time() if now is None else now
    created = signature_input.parameter("created")
    expires = signature_input.parameter("expires")
    if not isinstance(created, int) or isinstance(created, bool):
        raise AudioHookUnauthorized("the signature has no 'created' time")
    if created > now + CLOCK_SKEW_SECONDS:
        raise AudioHookUnauthorized("the signature was created in the future")
    if created + MAX_SIGNATURE_AGE_SECONDS < now - CLOCK_SKEW_SECONDS:
        raise AudioHookUnauthorized("the signature has expired (created too long ago)")
    if isinstance(expires, int) and expires < now - CLOCK_SKEW_SECONDS:
        raise AudioHookUnauthorized("the signature has expired")
    values: dict[str, str] = {}
    for name in signature_input.components:
        if name == "@request-target":
            value: str | None = request_target
        elif name == "@authority":
            value = (_header(headers, "host") or "").lower() or None
        elif name.startswith("@") or name in ("signature", "signature-input"):
            raise AudioHookUnauthorized(f"signature component {name} is not supported")
        else:
            value = _header(headers, name)
        if value is None:
            raise AudioHookUnauthorized(f"the signed component {name} is not in the request")
        values[name] = value
    expected = hmac.new(
        client_secret, signature_base(signature_input, values).encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise AudioHookUnauthorized("the signature does not verify")


def signature_headers(
    *,
    request_target: str,
    authority: str,
    headers: dict[str, str],
    api_key: str,
    client_secret: bytes,
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` headers Genesys sends (the client side, for
    examples/audiohook_client.py and the tests): `headers` holds the three audiohook-*
    headers and ``x-api-key``; the signature covers REQUIRED_COMPONENTS, lives 30 s."""
    import secrets

    created = int(time.time()) if created is None else created
    signature_input = SignatureInput(
        label="sig1",
        components=list(REQUIRED_COMPONENTS),
        parameters=[
            ("keyid", api_key),
            ("nonce", nonce or base64.b64encode(secrets.token_bytes(18)).decode()),
            ("alg", "hmac-sha256"),
            ("created", created),
            ("expires", created + 30),
        ],
    )
    values = {"@request-target": request_target, "@authority": authority.lower()}
    values.update({name.lower(): value for name, value in headers.items()})
    digest = hmac.new(
        client_secret, signature_base(signature_input, values).encode(), hashlib.sha256
    ).digest()
    return {
        "Signature-Input": f"sig1={signature_input.serialized()}",
        "Signature": f"sig1=:{base64.b64encode(digest).decode()}:",
    }


def decode_client_secret(secret: str) -> bytes:
    """The key bytes of a base64 client secret, as Genesys shows it."""
    return base64.b64decode(secret, validate=True)


def check_authorised(websocket: WebSocket) -> None:
    """The API key, and the signature when a client secret is configured.

    Raises
    ------
    AudioHookUnauthorized
        The connector is not configured, or the request does not authenticate.
    """
    settings = websocket.app.state.settings
    if settings.auth_disabled:
        return
    api_key = _header(websocket.headers, "x-api-key") or ""
    # The key Genesys sends is either the configured audiohook_api_key or a callmood
    # integration token with the stream:write scope (revocable on its own, docs/access.md).
    is_token = api_key.startswith(TOKEN_PREFIX)
    token = deps.scoped_token_actor(websocket, api_key) if is_token else None
    if token is not None:
        problem = deps.scope_refusal(token, "stream:write")
        if problem is not None:
            raise AudioHookUnauthorized(problem)
    elif is_token:
        raise AudioHookUnauthorized("the X-API-KEY is not an active callmood token")
    elif settings.audiohook_api_key is None:
        raise AudioHookUnauthorized(
            "the AudioHook connector is not configured (set audiohook_api_key)"
        )
    elif not hmac.compare_digest(
        api_key.encode(), settings.audiohook_api_key.get_secret_value().encode()
    ):
        raise AudioHookUnauthorized("wrong or missing X-API-KEY")
    if settings.audiohook_client_secret is not None:
        scope = websocket.scope
        # The path as sent (still percent-encoded), which is what Genesys signed.
        raw_path = scope.get("raw_path") or scope.get("path", "").encode()
        target = raw_path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        verify_signature(
            websocket.headers,
            request_target=target,
            client_secret=decode_client_secret(settings.audiohook_client_secret.get_secret_value()),
        )


# ---------------------------------------------------------------------------- the session


def _consume_outcome(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class AudioHookConnection:
    """One AudioHook WebSocket: sequence numbers, session id, state and the call's audio."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.seq = 0  # our last server seq
        self.clientseq = 0  # the client's last seq
        self.id: str | None = _header(websocket.headers, "audiohook-session-id")
        self.organization_id = _header(websocket.headers, "audiohook-organization-id")
        self.session: LiveSession | None = None
        self.paused = False
        self.position = 0.0  # the client's last reported position, seconds
        self.channels = 1

    async def send(self, kind: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        message = {
            "version": PROTOCOL_VERSION,
            "type": kind,
            "seq": self.seq,
            "clientseq": self.clientseq,
            "id": self.id or "00000000-0000-0000-0000-000000000000",
            "parameters": parameters,
        }
        await self.websocket.send_text(json.dumps(message))

    async def receive(self, timeout: float) -> str | bytes:
        """The next message (text or bytes); also ends when the analysis fails.

        Raises
        ------
        WebSocketDisconnect
            The client went away.
        AudioHookProtocolError
            Nothing arrived within `timeout` seconds.
        """
        receive = asyncio.ensure_future(self.websocket.receive())
        # A receive left behind (the analysis failed, or we were cancelled) may still fail
        # once the socket closes: consume that error so it is not logged as unretrieved.
        receive.add_done_callback(_consume_outcome)
        waiting: set[asyncio.Future] = {receive}
        worker = self.session.worker if self.session is not None else None
        if worker is not None:
            waiting.add(worker)
        try:
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=FIRST_COMPLETED)
        except asyncio.CancelledError:
            receive.cancel()
            raise
        if receive not in done:
            receive.cancel()
            if self.session is not None:
                self.session.check_worker()  # re-raises the analysis error
            raise AudioHookProtocolError(f"no message from the client for {timeout:g} s")
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        if message.get("bytes") is not None:
            return message["bytes"]
        return message.get("text") or ""

    def accept_message(self, text: str) -> ClientMessage:
        """Parse a text message and check its sequence numbers and session id."""
        message = parse_client_message(text)
        if message.seq != self.clientseq + 1:
            raise AudioHookProtocolError(
                f"invalid seq {message.seq}: expected {self.clientseq + 1} (a sequence gap)"
            )
        self.clientseq = message.seq
        if message.serverseq > self.seq:
            raise AudioHookProtocolError(
                f"invalid serverseq {message.serverseq}: the server has sent only {self.seq}"
            )
        if self.id is None:
            self.id = message.id
        elif message.id != self.id:
            raise AudioHookProtocolError(f"session id {message.id} is not this session's")
        if message.position + 0.001 < self.position:
            raise AudioHookProtocolError(
                f"position {format_duration(message.position)} went back from "
                f"{format_duration(self.position)}"
            )
        self.position = message.position
        return message

    async def disconnect(self, reason: str, info: str) -> None:
        """Send `disconnect`: Genesys then runs the close transaction (`finish`)."""
        with contextlib.suppress(Exception):
            await self.send("disconnect", {"reason": reason, "info": info[:1000]})

    async def finish(self, info: str) -> None:
        """Answer the client's `close` with `closed` (waiting a little for it), then close."""
        with contextlib.suppress(Exception):
            deadline = asyncio.get_running_loop().time() + CLOSE_WAIT_SECONDS
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                received = await asyncio.wait_for(self.websocket.receive(), left)
                if received["type"] == "websocket.disconnect":
                    return
                text = received.get("text")
                if text and _message_type(text) == "close":
                    with contextlib.suppress(AudioHookProtocolError):
                        self.clientseq = parse_client_message(text).seq
                    await self.send("closed", {})
                    break
        with contextlib.suppress(Exception):
            await self.websocket.close(code=CLOSE_NORMAL, reason=close_reason(info))


def _message_type(text: str) -> str | None:
    with contextlib.suppress(ValueError, RecursionError, AttributeError):
        return json.loads(text).get("type")
    return None


async def _receive_open(connection: AudioHookConnection) -> ClientMessage:
    received = await connection.receive(OPEN_TIMEOUT_SECONDS)
    if isinstance(received, bytes):
        raise AudioHookProtocolError("audio before the open transaction")
    message = connection.accept_message(received)
    if message.type != "open":
        raise AudioHookProtocolError(f"expected an 'open' message first, got '{message.type}'")
    if (
        connection.organization_id is not None
        and message.parameters["organizationId"] != connection.organization_id
    ):
        raise AudioHookUnauthorized(
            "organizationId of the open message is not the audiohook-organization-id header"
        )
    return message


def stream_start(open_message: ClientMessage, media: dict[str, Any]) -> StreamStart:
    """The `/api/stream` start message equivalent to an accepted `open`."""
    conversation = open_message.parameters["conversationId"]
    return StreamStart(
        type="start",
        sample_rate=SAMPLE_RATE,
        encoding="mulaw",
        channels=[SPEAKER_OF_CHANNEL[channel] for channel in media["channels"]],
        name=f"Genesys call {conversation}",
        tags=[AUDIOHOOK_TAG],
        external_call_id=conversation,  # Genesys's conversation id, to find the call there
    )


async def _feed_silence(connection: AudioHookConnection, seconds: float) -> bool:
    """Feed `seconds` of silence (paused or discarded audio) in frames of at most 1 s."""
    session = connection.session
    assert session is not None
    room = MAX_STREAM_SECONDS - session.decoder.seconds_received
    samples = round(min(seconds, max(room, 0.0)) * SAMPLE_RATE)
    silence = b"\xff" * (SAMPLE_RATE * connection.channels)  # mu-law 0xFF is zero
    while samples > 0:
        count = min(samples, SAMPLE_RATE)
        if await session.feed(silence[: count * connection.channels]):
            return True
        samples -= count
    return session.decoder.seconds_received >= MAX_STREAM_SECONDS


async def _receive_call(connection: AudioHookConnection) -> None:
    """Audio and control messages until `close` (answered by the caller) or the length limit."""
    session = connection.session
    assert session is not None
    while True:
        received = await connection.receive(IDLE_TIMEOUT_SECONDS)
        if isinstance(received, bytes):
            if connection.paused:
                raise AudioHookProtocolError("audio while the stream is paused")
            if len(received) > MAX_AUDIO_FRAME_BYTES:
                raise AudioHookProtocolError(
                    f"audio frame of {len(received)} bytes is larger than {MAX_AUDIO_FRAME_BYTES}"
                )
            try:
                if await session.feed(received):
                    return
            except StreamProtocolError as error:
                raise AudioHookProtocolError(str(error)) from None
            continue
        message = connection.accept_message(received)
        kind = message.type
        if kind == "close":
            return
        if kind == "ping":
            await connection.send("pong", {})
        elif kind == "open":
            raise AudioHookProtocolError("a second 'open' message: the session is already open")
        elif kind == "paused":
            connection.paused = True  # repeated 'paused' only confirms the pause
        elif kind in ("resumed", "discarded"):
            # Audio Genesys did not send: silence of its length keeps the call's clock, so
            # window and alert times match the conversation (see docs/connectors-genesys.md).
            if kind == "resumed":
                if not connection.paused:
                    continue  # a resume of a pause never reported changes nothing
                connection.paused = False
            gap = parse_duration(message.parameters["discarded"], "discarded")
            if await _feed_silence(connection, gap):
                return
        elif kind == "error":
            log.warning(
                "AudioHook client error %s: %.200s",
                message.parameters["code"],
                message.parameters["message"],
            )
        # update (language) and dtmf change nothing in the analysis.


@router.websocket(PATH)
async def audiohook(websocket: WebSocket) -> None:
    """One Genesys Cloud AudioHook Monitor session: see docs/connectors-genesys.md."""
    await websocket.accept()
    connection = AudioHookConnection(websocket)
    partial_reason: str | None = None
    ending = "the call is stored"  # the close frame's reason
    gone = False  # the client left without a close transaction
    try:
        check_authorised(websocket)
        open_message = await _receive_open(connection)
        media = choose_media(open_message.parameters["media"])
        if media is None:
            offered = json.dumps(open_message.parameters["media"])[:300]
            raise AudioHookProtocolError(
                f"no acceptable media: callmood takes PCMU at 8000 Hz with the external "
                f"channel (offered {offered})"
            )
        connection.channels = len(media["channels"])
        start = stream_start(open_message, media)
        connection.session = await LiveSession.open(websocket.app, start)
        connection.session.start_analysis()
        await connection.send("opened", {"media": [media], "startPaused": False})
        await _receive_call(connection)
    except AudioHookUnauthorized as error:
        log.warning("AudioHook connection refused: %s", error)
        ending = str(error)
        await connection.disconnect("unauthorized", ending)
        partial_reason = "the AudioHook client was refused"
    except AudioHookProtocolError as error:
        ending = f"Client Error: {error}"
        await connection.disconnect("error", ending)
        partial_reason = "the AudioHook client broke the protocol"
    except WebSocketDisconnect:
        partial_reason = "Genesys disconnected without a close message"
        gone = True
    except asyncio.CancelledError:
        # Server shutdown mid-call: stop the analysis and drop the unfinished recording.
        if connection.session is not None:
            await connection.session.abandon()
        raise
    except Exception as error:
        # Not the client's fault (model unloadable, rules broken, ...): this call ends.
        log.exception("AudioHook session failed")
        ending = f"Server error: {type(error).__name__}"
        await connection.disconnect("error", ending)
        if connection.session is not None:
            await connection.session.abandon()
        await connection.finish(ending)
        return
    session = connection.session
    if session is not None:
        # Stored before `closed`: at real-time pace the analysis is a hop behind, so this
        # takes a moment, and `closed` then means the call is safe.
        try:
            await session.conclude(partial_reason=partial_reason)
        except Exception:
            log.exception("AudioHook call %s: could not conclude", session.call_id)
            await session.abandon()
    if partial_reason is None:
        with contextlib.suppress(Exception):
            await connection.send("closed", {})
            await websocket.close(code=CLOSE_NORMAL)
    elif not gone:
        await connection.finish(ending)
