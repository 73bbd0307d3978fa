"""The Asterisk AudioSocket connector, against the real app and listener on loopback.

The test client speaks the protocol byte for byte as docs.asterisk.org and Asterisk's
res_audiosocket.c define it (kind byte, 16-bit big-endian length, payload; the UUID first;
slin 8 kHz little-endian in 20 ms messages) and streams the customer channel of
examples/demo_call.flac. The stored call must equal the same audio sent through
/api/stream; bad input closes the connection with a clear log line and keeps what was heard.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import require
from service_support import free_port, serving

from callmood.service.audiosocket import (
    AsteriskError,
    Audio,
    AudioSocketParser,
    AudioSocketProtocolError,
    Dtmf,
    Hangup,
    Identified,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_CALL = REPO / "examples" / "demo_call.flac"
TOKEN = "audiosocket-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PACKET = 320  # 20 ms of 8 kHz slin: what Asterisk sends


def message(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message, built from the protocol definition."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def uuid_message(call_uuid: uuid.UUID) -> bytes:
    return message(0x01, call_uuid.bytes)


def packets(pcm: bytes) -> list[bytes]:
    return [pcm[at : at + PACKET] for at in range(0, len(pcm), PACKET)]


@pytest.fixture(scope="session")
def customer_8k() -> bytes:
    """demo_call.flac's customer (left) channel as 8 kHz slin, 16-bit little-endian."""
    import soxr

    audio, rate = sf.read(DEMO_CALL, dtype="float32", always_2d=True)
    assert rate == 16000 and audio.shape[1] == 2  # left = customer, right = agent
    samples = soxr.resample(audio[:, 0], rate, 8000)
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="session")
def model_available() -> None:
    from callmood.inference import default_model_dir

    model_dir = Path(os.environ.get("CALLMOOD_MODEL_DIR") or default_model_dir())
    require((model_dir / "model.json").is_file(), f"no emotion model at {model_dir}")


@dataclass
class Served:
    """A running app: its HTTP port, its AudioSocket port, the app."""

    http: str
    audiosocket: tuple[str, int]
    app: object

    def connect(self) -> socket.socket:
        connection = socket.create_connection(self.audiosocket, timeout=30)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def get(self, path: str, **params) -> object:
        import httpx

        return httpx.get(f"{self.http}{path}", params=params, headers=AUTH, timeout=30)

    def stored_call(self, tag: str, timeout: float = 120.0) -> dict:
        """The stored call tagged `tag` (the call's UUID), waiting for it to be stored."""
        deadline = time.monotonic() + timeout
        while not (items := self.get("/api/calls", tag=tag).json()["items"]):
            assert time.monotonic() < deadline, f"no call tagged {tag} was stored"
            time.sleep(0.2)
        assert len(items) == 1, items
        call_id = items[0]["id"]
        return {
            "summary": items[0],
            "call": self.get(f"/api/calls/{call_id}").json(),
            "timeline": self.get(f"/api/calls/{call_id}/timeline").json(),
        }

    def no_call_stored(self, caplog, wait: float = 1.5) -> bool:
        time.sleep(wait)
        return "stored as call" not in caplog.text


@contextmanager
def running(tmp_path: Path, **settings) -> Iterator[Served]:
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    port = free_port()
    app = create_app(
        load_settings(
            data_dir=tmp_path / "data",
            auth_token=TOKEN,
            workers=1,
            audiosocket=f"127.0.0.1:{port}",
            **settings,
        )
    )
    with serving(app) as http_port:
        yield Served(f"http://127.0.0.1:{http_port}", ("127.0.0.1", port), app)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[Served]:
    # One app for most tests: each app loads the model, seconds on the shared machine.
    with running(tmp_path_factory.mktemp("audiosocket"), audiosocket_idle_seconds=5) as server:
        yield server


@pytest.fixture
def served(shared_server: Served, caplog) -> Iterator[Served]:
    caplog.set_level(logging.INFO, logger="callmood.service.audiosocket")
    yield shared_server
    assert "Traceback" not in caplog.text


def closed_by_server(connection: socket.socket, timeout: float = 30.0) -> bool:
    """Whether the server closed the connection (reads reach the end) within `timeout`."""
    connection.settimeout(timeout)
    try:
        while data := connection.recv(4096):
            raise AssertionError(f"the server sent {data!r}: it must send nothing")
    except ConnectionResetError:
        pass
    return True


def stream_api(server: Served, pcm: bytes, **start_fields) -> str:
    """The same audio through /api/stream, in the same 20 ms frames; returns the call id."""
    from websockets.sync.client import connect

    address = server.http.removeprefix("http://")
    with connect(f"ws://{address}/api/stream?token={TOKEN}", max_size=None) as websocket:
        websocket.send(json.dumps({"type": "start", **start_fields}))
        assert json.loads(websocket.recv(timeout=60))["type"] == "ready"
        for frame in packets(pcm):
            websocket.send(frame)
        websocket.send(json.dumps({"type": "stop"}))
        while (reply := json.loads(websocket.recv(timeout=300)))["type"] != "summary":
            assert reply["type"] in ("window", "alert"), reply
    return reply["call_id"]


# -------------------------------------------------------------------- the same call, twice


def test_a_call_over_audiosocket_equals_the_same_audio_over_api_stream(
    served, customer_8k, model_available, caplog
):
    call_uuid = uuid.uuid4()
    with served.connect() as connection:
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(customer_8k):
            connection.sendall(message(0x10, packet))
        connection.sendall(message(0x00))  # hangup
        assert closed_by_server(connection)
    stored = served.stored_call(str(call_uuid))

    call_id = stream_api(
        served,
        customer_8k,
        sample_rate=8000,
        encoding="pcm16",
        channels=["customer"],
        name=f"audiosocket {call_uuid}",
        tags=["audiosocket", str(call_uuid)],
        external_call_id=str(call_uuid),
    )
    reference = served.get(f"/api/calls/{call_id}/timeline").json()

    assert stored["summary"]["name"] == f"audiosocket {call_uuid}"
    assert set(stored["summary"]["tags"]) == {"audiosocket", "live", str(call_uuid)}
    assert stored["summary"]["external_call_id"] == str(call_uuid)  # the UUID Asterisk knows
    assert stored["call"]["duration_seconds"] == pytest.approx(len(customer_8k) / 2 / 8000)
    assert [s["speaker"] for s in stored["timeline"]["speakers"]] == ["customer"]
    windows = stored["timeline"]["speakers"][0]["windows"]
    assert len(windows) >= 15
    assert windows == reference["speakers"][0]["windows"]
    assert stored["timeline"]["speakers"][0]["segments"] == reference["speakers"][0]["segments"]
    # demo_call's customer gets angry from about 0:31: the alert reaches the store.
    assert any(alert["speaker"] == "customer" for alert in stored["call"]["alerts"])
    assert not any("partial" in note for note in stored["call"]["notes"])
    assert f"AudioSocket call {call_uuid} connected from 127.0.0.1" in caplog.text


# ------------------------------------------------------------------------ how a call ends


def speech(customer_8k: bytes, seconds: float) -> bytes:
    return customer_8k[: int(seconds * 8000) * 2]


def test_closing_the_socket_is_a_normal_end_as_asterisk_does(served, customer_8k):
    # Asterisk's hangup closes the socket without a 0x00 message (chan_audiosocket.c).
    call_uuid = uuid.uuid4()
    with served.connect() as connection:
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(speech(customer_8k, 4)):
            connection.sendall(message(0x10, packet))
        connection.sendall(message(0x03, b"5"))  # a DTMF key: logged, not analysed
    stored = served.stored_call(str(call_uuid))
    assert "partial" not in stored["summary"]["tags"]
    assert stored["call"]["duration_seconds"] == pytest.approx(4.0)


def test_a_connection_dropped_inside_a_message_is_stored_partial(served, customer_8k, caplog):
    call_uuid = uuid.uuid4()
    with served.connect() as connection:
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(speech(customer_8k, 3)):
            connection.sendall(message(0x10, packet))
        connection.sendall(message(0x10, bytes(PACKET))[:100])  # the line drops mid-message
    stored = served.stored_call(str(call_uuid))
    assert "partial" in stored["summary"]["tags"]
    assert stored["call"]["duration_seconds"] == pytest.approx(3.0)
    assert any("partial call" in note for note in stored["call"]["notes"])
    assert "connection closed inside a 0x10 (audio, 8000 Hz) message: 97 of its 320" in caplog.text


def test_a_silent_client_is_cut_off_and_its_call_stored_partial(tmp_path, customer_8k, caplog):
    caplog.set_level(logging.INFO, logger="callmood.service.audiosocket")
    call_uuid = uuid.uuid4()
    with running(tmp_path, audiosocket_idle_seconds=1) as server, server.connect() as connection:
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(speech(customer_8k, 2)):
            connection.sendall(message(0x10, packet))
        started = time.monotonic()
        assert closed_by_server(connection)  # the server hangs up on the silence
        assert time.monotonic() - started < 20
        stored = server.stored_call(str(call_uuid))
    assert "partial" in stored["summary"]["tags"]
    assert any("no data for 1 s" in note for note in stored["call"]["notes"])


def test_asterisk_error_codes(served, customer_8k, caplog):
    hung_up, broken = uuid.uuid4(), uuid.uuid4()
    for call_uuid, code in [(hung_up, 0x01), (broken, 0x02)]:
        with served.connect() as connection:
            connection.sendall(uuid_message(call_uuid))
            for packet in packets(speech(customer_8k, 2)):
                connection.sendall(message(0x10, packet))
            connection.sendall(message(0xFF, bytes([code])))
            assert closed_by_server(connection)
    # 0x01, "hangup of calling party", is how a call ends; 0x02 is a fault: partial.
    assert "partial" not in served.stored_call(str(hung_up))["summary"]["tags"]
    stored = served.stored_call(str(broken))
    assert "partial" in stored["summary"]["tags"]
    assert "Asterisk reported error 0x02 (frame forwarding error)" in caplog.text


def test_shutdown_mid_call_stores_the_call_partial(tmp_path, customer_8k, caplog):
    from callmood.service.schemas import CallSummary
    from callmood.store import list_calls, session_scope

    call_uuid = uuid.uuid4()
    with running(tmp_path) as server:
        connection = server.connect()
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(speech(customer_8k, 3)):
            connection.sendall(message(0x10, packet))
        time.sleep(1.0)  # received, mid-call
        app = server.app
    # The server stopped: the call heard so far is in the database, marked partial.
    connection.close()
    with session_scope(app.state.session_factory) as db:
        records, _ = list_calls(db)
        calls = [CallSummary.from_record(record) for record in records]
    assert [call.name for call in calls] == [f"audiosocket {call_uuid}"]
    assert "partial" in calls[0].tags
    assert "the server shut down" in caplog.text


# ------------------------------------------------------------------------------ bad input

BAD_INPUTS = {
    # name: (bytes after the UUID and 1 s of audio, or the whole input; the logged error)
    "unknown_kind": (message(0x02, bytes(6)), "unknown message kind 0x02"),
    "odd_length_audio": (message(0x10, bytes(321)), "audio message of 321 bytes"),
    "empty_audio": (message(0x10), "audio message of 0 bytes"),
    "oversize_audio": (
        message(0x10, bytes(16002)),
        "audio message of 16002 bytes is 1.00 s of 8000 Hz audio; at most 1 s (16000 bytes)",
    ),
    "second_uuid": (uuid_message(uuid.uuid4()), "a second UUID message"),
    "rate_change": (message(0x12, bytes(640)), "audio kind 0x12 (audio, 16000 Hz) after audio"),
    "unsupported_rate": (
        message(0x17, bytes(640)),
        "audio kind 0x17 (audio, 96000 Hz) is not supported",
    ),
    "bad_dtmf_length": (message(0x03, b"12"), "DTMF message with a 2-byte payload"),
    "truncated_header": (b"\x10\x01", "connection closed inside a message header: 2 of its 3"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_closes_the_connection_and_keeps_the_call(kind, served, customer_8k, caplog):
    bad, logged = BAD_INPUTS[kind]
    call_uuid = uuid.uuid4()
    with served.connect() as connection:
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(speech(customer_8k, 1)):
            connection.sendall(message(0x10, packet))
        connection.sendall(bad)
        if kind == "truncated_header":
            connection.shutdown(socket.SHUT_WR)  # the client goes, two bytes into a header
        assert closed_by_server(connection)
    stored = served.stored_call(str(call_uuid))
    assert "partial" in stored["summary"]["tags"]
    assert stored["call"]["duration_seconds"] == pytest.approx(1.0)
    assert logged in caplog.text


@pytest.mark.parametrize(
    ("first", "logged"),
    [
        (message(0x10, bytes(PACKET)), "the first message must be the call's UUID (kind 0x01), "
         "got kind 0x10 (audio, 8000 Hz)"),
        (message(0x01, bytes(15)), "UUID message with a 15-byte payload (a UUID is 16 bytes)"),
        (b"GET / HTTP/1.1\r\n\r\n", "got kind 0x47 (unknown)"),
    ],
    ids=["audio_before_uuid", "short_uuid", "http_request"],
)  # fmt: skip
def test_a_connection_that_does_not_start_with_a_uuid_is_closed(first, logged, served, caplog):
    with served.connect() as connection:
        connection.sendall(first)
        assert closed_by_server(connection)
    assert served.no_call_stored(caplog)
    assert logged in caplog.text


def test_clients_outside_the_allowlist_are_refused(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="callmood.service.audiosocket")
    with running(tmp_path, audiosocket_allow=["10.0.0.0/8"]) as server:
        with server.connect() as connection:
            # Closed on accepting, before any byte is read (so a send may already fail).
            assert closed_by_server(connection)
        assert server.no_call_stored(caplog)
    assert "refused 127.0.0.1" in caplog.text and "not in audiosocket_allow" in caplog.text


# ------------------------------------------------------------------------- parser (sans IO)


def test_parser_gives_the_same_messages_byte_by_byte():
    call_uuid = uuid.uuid4()
    data = (
        uuid_message(call_uuid)
        + message(0x10, bytes(range(160)) * 2)
        + message(0x03, b"#")
        + message(0xFF, b"\x01")
    )
    whole = list(AudioSocketParser().feed(data))
    parser = AudioSocketParser()
    piecewise = [item for at in range(len(data)) for item in parser.feed(data[at : at + 1])]
    assert (
        whole
        == piecewise
        == [
            Identified(str(call_uuid)),
            Audio(8000, bytes(range(160)) * 2),
            Dtmf("#"),
            AsteriskError(0x01),
        ]
    )
    parser.end_of_stream()  # ended by the error message: nothing torn


def test_parser_stops_at_hangup_and_reads_no_further():
    parser = AudioSocketParser()
    messages = list(parser.feed(uuid_message(uuid.uuid4()) + message(0x00) + b"\x99garbage"))
    assert isinstance(messages[-1], Hangup) and parser.ended
    assert list(parser.feed(b"\x02\x00\x00")) == []


def test_parser_refuses_an_oversize_message_from_its_header():
    parser = AudioSocketParser()
    list(parser.feed(uuid_message(uuid.uuid4())))
    with pytest.raises(AudioSocketProtocolError, match="65534 bytes"):
        list(parser.feed(b"\x10\xff\xfe"))  # only the header: refused before the payload arrives


# ------------------------------------------------------------------------ CLI and example


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    from callmood.cli import main

    monkeypatch.setattr(sys, "argv", ["callmood", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("address", ["9092", "localhost:", "127.0.0.1:99999", "host:port", ":9092"])
def test_serve_with_a_bad_audiosocket_address_is_one_clear_error(
    address, monkeypatch, capsys, tmp_path
):
    code, err = run_cli(
        monkeypatch, capsys, "serve", "--data-dir", tmp_path, "--audiosocket", address
    )
    assert code == 2
    assert "invalid setting: audiosocket" in err and "is not HOST:PORT" in err
    assert "Traceback" not in err


def test_serve_audiosocket_option_starts_the_listener(monkeypatch, capsys, tmp_path):
    import uvicorn

    served: dict[str, object] = {}
    # `serve` runs a uvicorn.Server of its own: record its app instead of serving it.
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: served.update(app=server.config.app))
    address = f"127.0.0.1:{free_port()}"
    code, err = run_cli(
        monkeypatch, capsys, "serve", "--data-dir", tmp_path, "--audiosocket", address
    )
    assert code == 0, err
    assert served["app"].state.settings.audiosocket == address
    assert f"AudioSocket listening on {address} (clients: any address)" in err


def test_example_client_streams_the_demo_call(served, model_available):
    call_uuid = uuid.uuid4()
    host, port = served.audiosocket
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "audiosocket_client.py"),
            "--address",
            f"{host}:{port}",
            "--uuid",
            str(call_uuid),
            "--seconds",
            "5",
            "--fast",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    stored = served.stored_call(str(call_uuid))
    assert stored["call"]["duration_seconds"] == pytest.approx(5.0)
    assert "partial" not in stored["summary"]["tags"]


def test_audiosocket_settings_from_the_environment_and_bad_allowlist(monkeypatch):
    from callmood.settings import SettingsError, load_settings

    monkeypatch.setenv("CALLMOOD_AUDIOSOCKET", "[::1]:9092")
    monkeypatch.setenv("CALLMOOD_AUDIOSOCKET_ALLOW", "10.0.5.10, 192.168.0.0/16")
    settings = load_settings()
    assert settings.audiosocket == "[::1]:9092"
    assert settings.audiosocket_allow == ["10.0.5.10", "192.168.0.0/16"]
    monkeypatch.setenv("CALLMOOD_AUDIOSOCKET_ALLOW", "asterisk.internal")
    with pytest.raises(SettingsError, match="audiosocket_allow.*'asterisk.internal' does not"):
        load_settings()


def test_a_call_in_progress_is_on_the_live_board_until_it_is_stored(served, customer_8k):
    from callmood.service.routes.stream import live_sessions

    call_uuid = uuid.uuid4()
    name = f"audiosocket {call_uuid}"
    with served.connect() as connection:
        connection.sendall(uuid_message(call_uuid))
        for packet in packets(speech(customer_8k, 2)):
            connection.sendall(message(0x10, packet))
        deadline = time.monotonic() + 30
        # The same registry the live board reads for /api/stream calls.
        while name not in [s.start.name for s in list(live_sessions(served.app).values())]:
            assert time.monotonic() < deadline, "the call never showed as in progress"
            time.sleep(0.05)
    served.stored_call(str(call_uuid))
    deadline = time.monotonic() + 10  # it leaves the registry just after the row is written
    while name in [s.start.name for s in list(live_sessions(served.app).values())]:
        assert time.monotonic() < deadline, "the stored call is still listed as in progress"
        time.sleep(0.05)
