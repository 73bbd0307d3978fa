"""Asterisk AudioSocket connector: a TCP listener that analyses the calls Asterisk streams in.

AudioSocket (docs.asterisk.org, Configuration/Channel-Drivers/AudioSocket; Asterisk's
res/res_audiosocket.c) is a plain TCP protocol. Asterisk connects, and every message is a
3-byte header, one byte of kind and a 16-bit big-endian payload length, then the payload:

- ``0x00`` hangup (no payload); closing the socket is an equally valid end of the call
  (Asterisk itself ends a call by closing the socket, it never sends 0x00),
- ``0x01`` the call's UUID, 16 bytes, always the first message,
- ``0x03`` one ASCII DTMF digit (Asterisk 20+); ignored here,
- ``0x10`` signed linear 16-bit little-endian mono audio at 8 kHz, and ``0x11``-``0x18``
  the same at 12, 16, 24, 32, 44.1, 48, 96 and 192 kHz (added in 2025 for channels made
  with a slin codec of that rate; the first version of that change, asterisk PR 1492,
  numbered slin16 0x11: we follow the table published since, where 0x11 is 12 kHz),
- ``0xff`` an error on the Asterisk side, payload an optional bit-packed error code
  (0x01 hangup of the calling party, 0x02 frame forwarding error, 0x04 memory error).

The connector feeds the call to the same `LiveSession` as `/api/stream`, so the same audio
gives the same stored call. It sends nothing back: AudioSocket would play any audio we sent
to the caller, and a hangup message would hang the caller up. On bad input it logs the
problem and closes the socket; the call heard so far is stored marked partial. The
protocol has no authentication: the listener binds to loopback unless told otherwise, and
`audiosocket_allow` restricts the client addresses (docs/connectors-asterisk.md).

`AudioSocketParser` is the protocol without any I/O (bytes in, messages out), so that
tests and the fuzzer drive exactly the code the listener runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callmood.errors import CallmoodError

log = logging.getLogger(__name__)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_ERROR = 0xFF
#: Audio kinds and their sample rates, Hz: signed linear 16-bit little-endian mono.
AUDIO_KINDS = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
#: Asterisk's error codes (bit-packed: one error byte may carry several).
ERROR_CODES = {
    0x01: "hangup of the calling party",
    0x02: "frame forwarding error",
    0x04: "memory (allocation) error",
}
HEADER_BYTES = 3
UUID_BYTES = 16
#: The longest audio packet accepted, seconds: Asterisk sends 20 ms packets (320 bytes at
#: 8 kHz); a packet of seconds of audio is not Asterisk's and is refused from its header.
MAX_PACKET_SECONDS = 1.0
#: The longest error payload accepted, bytes (Asterisk's is one byte).
MAX_ERROR_PAYLOAD = 64
#: Bytes asked of the socket per read (about 0.8 s of 8 kHz audio when it is waiting).
READ_BYTES = 16384
#: How long shutdown waits for calls in progress to be stored before it drops them, s.
SHUTDOWN_SECONDS = 30.0


class AudioSocketProtocolError(CallmoodError):
    """A client broke the AudioSocket protocol; the message says how."""


@dataclass(frozen=True)
class Identified:
    """The call's UUID (the first message)."""

    call_uuid: str


@dataclass(frozen=True)
class Audio:
    """One packet of 16-bit little-endian mono PCM at `sample_rate`."""

    sample_rate: int
    payload: bytes


@dataclass(frozen=True)
class Dtmf:
    """A key the caller pressed."""

    digit: str


@dataclass(frozen=True)
class Hangup:
    """The call ended (a 0x00 message)."""


@dataclass(frozen=True)
class AsteriskError:
    """Asterisk reported an error (a 0xff message); `code` is None without a payload."""

    code: int | None

    @property
    def caller_hung_up(self) -> bool:
        """Only the calling party hung up: the call ended normally."""
        return self.code == 0x01

    def describe(self) -> str:
        if self.code is None:
            return "Asterisk reported an error (no error code)"
        names = [name for bit, name in ERROR_CODES.items() if self.code & bit]
        unknown = self.code & ~sum(ERROR_CODES)
        if unknown or not names:
            names.append(f"unknown code bits 0x{unknown or self.code:02x}")
        return f"Asterisk reported error 0x{self.code:02x} ({', '.join(names)})"


Message = Identified | Audio | Dtmf | Hangup | AsteriskError


def kind_name(kind: int) -> str:
    """A message kind as the protocol reference names it, for error messages."""
    if kind in AUDIO_KINDS:
        return f"0x{kind:02x} (audio, {AUDIO_KINDS[kind]} Hz)"
    names = {KIND_HANGUP: "hangup", KIND_UUID: "UUID", KIND_DTMF: "DTMF", KIND_ERROR: "error"}
    return f"0x{kind:02x} ({names.get(kind, 'unknown')})"


class AudioSocketParser:
    """The AudioSocket protocol as a byte-stream parser: `feed` bytes, get messages.

    Checks the order (the UUID first and once), each kind's payload length from the
    header before the payload arrives, and that the audio keeps one sample rate that the
    stream analysis supports. After a hangup or error message the parser is `ended` and
    ignores anything more.

    Raises
    ------
    AudioSocketProtocolError
        From `feed`, at the first message that breaks the protocol; from `end_of_stream`
        when the connection closed in the middle of a message.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: tuple[int, int] | None = None
        self.call_uuid: str | None = None
        self.sample_rate: int | None = None
        self.ended = False

    def feed(self, data: bytes) -> Iterator[Message]:
        """The complete messages in `data` (with what was left over from before).

        A generator, so that the messages before a bad one are handled (the audio heard
        is kept) before the bad one raises.
        """
        if self.ended:
            return
        self._buffer += data
        while not self.ended:
            if self._header is None:
                if len(self._buffer) < HEADER_BYTES:
                    break
                kind, length = self._buffer[0], int.from_bytes(self._buffer[1:3], "big")
                del self._buffer[:HEADER_BYTES]
                self._check_header(kind, length)
                if kind == KIND_HANGUP:
                    # As Asterisk does: a hangup ends the call whatever its length says.
                    self.ended = True
                    self._buffer.clear()
                    yield Hangup()
                    return
                self._header = (kind, length)
            kind, length = self._header
            if len(self._buffer) < length:
                break
            payload = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._header = None
            yield self._message(kind, payload)
        if self.ended:
            self._buffer.clear()

    def end_of_stream(self) -> None:
        """The client closed the connection: fine between messages, not inside one."""
        if self.ended:
            return
        if self._header is not None:
            kind, length = self._header
            raise AudioSocketProtocolError(
                f"connection closed inside a {kind_name(kind)} message: {len(self._buffer)} "
                f"of its {length} payload bytes arrived"
            )
        if self._buffer:
            raise AudioSocketProtocolError(
                f"connection closed inside a message header: {len(self._buffer)} of its "
                f"{HEADER_BYTES} bytes arrived"
            )

    def _check_header(self, kind: int, length: int) -> None:
        if self.call_uuid is None and kind != KIND_UUID:
            raise AudioSocketProtocolError(
                f"the first message must be the call's UUID (kind 0x01), got kind {kind_name(kind)}"
            )
        if kind == KIND_UUID:
            if self.call_uuid is not None:
                raise AudioSocketProtocolError(
                    "a second UUID message: one connection carries one call"
                )
            if length != UUID_BYTES:
                raise AudioSocketProtocolError(
                    f"UUID message with a {length}-byte payload (a UUID is {UUID_BYTES} bytes)"
                )
        elif kind in AUDIO_KINDS:
            self._check_audio_header(kind, length)
        elif kind == KIND_DTMF:
            if length != 1:
                raise AudioSocketProtocolError(
                    f"DTMF message with a {length}-byte payload (a DTMF digit is 1 byte)"
                )
        elif kind == KIND_ERROR:
            if length > MAX_ERROR_PAYLOAD:
                raise AudioSocketProtocolError(
                    f"error message with a {length}-byte payload (at most {MAX_ERROR_PAYLOAD})"
                )
        elif kind != KIND_HANGUP:
            raise AudioSocketProtocolError(
                f"unknown message kind 0x{kind:02x} (AudioSocket has 0x00 hangup, 0x01 UUID, "
                "0x03 DTMF, 0x10-0x18 audio, 0xff error)"
            )

    def _check_audio_header(self, kind: int, length: int) -> None:
        from callmood.service.routes.stream import SUPPORTED_SAMPLE_RATES

        rate = AUDIO_KINDS[kind]
        if rate not in SUPPORTED_SAMPLE_RATES:
            raise AudioSocketProtocolError(
                f"audio kind {kind_name(kind)} is not supported: send slin at 8-48 kHz "
                "(kinds 0x10-0x16)"
            )
        if self.sample_rate is not None and rate != self.sample_rate:
            raise AudioSocketProtocolError(
                f"audio kind {kind_name(kind)} after audio at {self.sample_rate} Hz: "
                "one call keeps one sample rate"
            )
        if length == 0 or length % 2:
            raise AudioSocketProtocolError(
                f"audio message of {length} bytes: signed linear 16-bit audio comes in "
                "whole 2-byte samples, at least one"
            )
        limit = int(MAX_PACKET_SECONDS * rate) * 2
        if length > limit:
            raise AudioSocketProtocolError(
                f"audio message of {length} bytes is {length / 2 / rate:.2f} s of {rate} Hz "
                f"audio; at most {MAX_PACKET_SECONDS:g} s ({limit} bytes) per message "
                "(Asterisk sends 20 ms)"
            )
        self.sample_rate = rate

    def _message(self, kind: int, payload: bytes) -> Message:
        if kind == KIND_UUID:
            self.call_uuid = str(uuid.UUID(bytes=payload))
            return Identified(self.call_uuid)
        if kind in AUDIO_KINDS:
            return Audio(AUDIO_KINDS[kind], payload)
        if kind == KIND_DTMF:
            return Dtmf(payload.decode("latin-1"))
        self.ended = True  # KIND_ERROR: Asterisk stops sending after an error
        return AsteriskError(payload[0] if payload else None)


# ------------------------------------------------------------------------------ listener


def allowed_networks(
    entries: list[str],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The allowlist's entries (addresses or CIDR networks) as networks."""
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def is_allowed(host: str, networks: list[Any]) -> bool:
    """Whether a client address may connect (an empty allowlist allows everyone)."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
    return any(address in network for network in networks)


def split_host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets, `[::1]:9092`) as (host, port).

    Raises
    ------
    ValueError
        Not HOST:PORT, or the port is not 1-65535.
    """
    host, separator, port_text = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(
            f"{value!r} is not HOST:PORT with a port 1-65535 (e.g. 127.0.0.1:9092, [::1]:9092)"
        )
    return host, int(port_text)


class AudioSocketListener:
    """The TCP listener, run in the web app's event loop so calls share its state."""

    def __init__(self, app: Any) -> None:
        settings = app.state.settings
        self.app = app
        self.host, self.port = split_host_port(settings.audiosocket)
        self.idle_seconds: float = settings.audiosocket_idle_seconds
        self.networks = allowed_networks(settings.audiosocket_allow)
        self.stopping = False
        self._server: asyncio.Server | None = None
        # Each call's task and its socket, so that shutdown can end them.
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        """Listen.

        Raises
        ------
        CallmoodError
            The address cannot be bound (in use, not this machine's, no permission).
        """
        try:
            self._server = await asyncio.start_server(self._connected, self.host, self.port)
        except OSError as error:
            raise CallmoodError(
                f"audiosocket: cannot listen on {self.host}:{self.port}: {error.strerror or error}"
            ) from None
        log.info("AudioSocket listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening; calls in progress are stored as partial (dropped after 30 s)."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = list(self._connections)
        for writer in self._connections.values():
            writer.close()  # the call's read sees the end; it is stored as partial
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        client = f"{peer[0]}:{peer[1]}"
        if not is_allowed(str(peer[0]), self.networks):
            log.warning("AudioSocket: refused %s: not in audiosocket_allow", client)
            return
        await _Call(self, client).run(reader, writer)


class _Call:
    """One connection: parse, feed the live session, conclude or abandon it."""

    def __init__(self, listener: AudioSocketListener, client: str) -> None:
        self.listener = listener
        self.client = client
        self.parser = AudioSocketParser()
        self.session: Any = None
        self.connected_at = datetime.now(UTC)  # when Asterisk connected: the call's start

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                partial_reason = await self._receive(reader)
            finally:
                # Asterisk learns at once that the call is over; storing it can take seconds.
                writer.close()
        except AudioSocketProtocolError as error:
            log.warning("AudioSocket %s: %s; closing the connection", self._who(), error)
            partial_reason = f"the client broke the protocol ({error})"
        except asyncio.CancelledError:
            # Shutdown gave up waiting: the call cannot be concluded (as /api/stream does).
            if self.session is not None:
                await self.session.abandon()
            raise
        except Exception as error:
            # Not the client's fault (model or rules unusable): this call ends, the
            # listener and other calls carry on.
            if isinstance(error, CallmoodError):
                log.error("AudioSocket %s: analysis failed: %s", self._who(), error)
            else:
                log.exception("AudioSocket %s: analysis failed", self._who())
            if self.session is not None:
                await self.session.abandon()
            return
        if partial_reason is not None:
            log.warning(
                "AudioSocket %s: %s; storing the call as partial", self._who(), partial_reason
            )
        await self._conclude(partial_reason)

    def _who(self) -> str:
        if self.parser.call_uuid is None:
            return f"connection from {self.client}"
        return f"call {self.parser.call_uuid} from {self.client}"

    async def _receive(self, reader: asyncio.StreamReader) -> str | None:
        """Read until the call ends; returns why it ended early (None: a normal end)."""
        idle = self.listener.idle_seconds
        while True:
            try:
                data = await asyncio.wait_for(reader.read(READ_BYTES), idle)
            except TimeoutError:
                return f"no data for {idle:g} s"
            except ConnectionError as error:
                return f"the connection failed ({error.__class__.__name__})"
            if not data:
                if self.listener.stopping:
                    return "the server shut down"
                self.parser.end_of_stream()  # a torn message raises
                return None  # Asterisk ends a call by closing the socket
            for message in self.parser.feed(data):
                reason = await self._handle(message)
                if reason is not _CONTINUE:
                    return reason
            if self.session is not None:
                self.session.check_worker()

    async def _handle(self, message: Message) -> str | None | object:
        """Act on one message; `_CONTINUE`, or the end of the call (as `_receive` returns)."""
        if isinstance(message, Audio):
            if self.session is None:
                await self._open(message.sample_rate)
            if await self.session.feed(message.payload):
                log.warning("AudioSocket %s: reached the longest call; ending it", self._who())
                return None
        elif isinstance(message, Identified):
            log.info("AudioSocket call %s connected from %s", message.call_uuid, self.client)
        elif isinstance(message, Dtmf):
            log.debug("AudioSocket %s: DTMF %r (not analysed)", self._who(), message.digit)
        elif isinstance(message, Hangup):
            return None
        elif isinstance(message, AsteriskError):
            if message.caller_hung_up:
                return None
            return message.describe()
        return _CONTINUE

    async def _open(self, sample_rate: int) -> None:
        from callmood.service.routes.stream import LiveSession, StreamStart

        call_uuid = self.parser.call_uuid
        start = StreamStart(
            type="start",
            sample_rate=sample_rate,
            encoding="pcm16",
            channels=["customer"],
            name=f"audiosocket {call_uuid}",
            tags=["audiosocket", str(call_uuid)],
            external_call_id=call_uuid,
            started_at=self.connected_at,
        )
        self.session = await LiveSession.open(self.listener.app, start)
        self.session.start_analysis()

    async def _conclude(self, partial_reason: str | None) -> None:
        if self.session is None:
            log.info("AudioSocket %s ended before any audio: nothing stored", self._who())
            return
        try:
            summary = await self.session.conclude(partial_reason=partial_reason)
        except Exception:
            log.exception("AudioSocket %s: the call could not be stored", self._who())
            await self.session.abandon()
            return
        if summary is not None:
            log.info(
                "AudioSocket %s stored as call %s (%.1f s%s)",
                self._who(),
                summary["call_id"],
                summary["duration_seconds"],
                ", partial" if summary["partial"] else "",
            )


_CONTINUE = object()
