"""The Twilio Media Streams connector /api/connectors/twilio, spoken to as Twilio does.

The client is examples/twilio_client.py's message generator, shaped on the example
messages of Twilio's WebSocket reference (checked below field by field); it streams
examples/demo_call.flac as 8 kHz mu-law, both tracks, through Starlette's TestClient.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from starlette.websockets import WebSocketDisconnect

from callmood.service.routes import twilio
from callmood.service.routes.stream import StreamProtocolError
from callmood.service.routes.twilio import MULAW_SILENCE, ROUTE, TwilioProtocol, signature_valid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
from twilio_client import mulaw_tracks, twilio_messages, twilio_signature  # noqa: E402

TOKEN = "twilio-test-token-0123"
TWILIO_AUTH_TOKEN = "12345678901234567890abcdefabcdef"
DEMO_CALL = REPO / "examples" / "demo_call.flac"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def demo_tracks() -> dict[str, bytes]:
    return mulaw_tracks(DEMO_CALL)


def make_client(tmp_path: Path, **settings):
    from fastapi.testclient import TestClient

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    app = create_app(
        load_settings(data_dir=tmp_path / "data", auth_token=TOKEN, workers=1, **settings)
    )
    return TestClient(app)


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as test_client:
        yield test_client


@pytest.fixture
def model_available() -> None:
    from conftest import require

    from callmood.inference import default_model_dir

    require((default_model_dir() / "model.json").is_file(), "no bundled model")


def send_all(websocket, messages) -> None:
    for message in messages:
        websocket.send_text(message if isinstance(message, str) else json.dumps(message))


def closed(websocket) -> tuple[int, str, list[dict]]:
    """Read until the server closes: (code, reason, the JSON messages it sent)."""
    received = []
    with pytest.raises(WebSocketDisconnect) as disconnect:
        while True:
            received.append(websocket.receive_json())
    return disconnect.value.code, disconnect.value.reason, received


def stored_calls(client) -> list[dict]:
    return client.get("/api/calls", headers=AUTH).json()["items"]


def short_tracks(demo_tracks, seconds: float) -> dict[str, bytes]:
    return {track: audio[: int(seconds * 8000)] for track, audio in demo_tracks.items()}


# --------------------------------------------------------------- the documented message shapes


def test_the_client_speaks_the_documented_messages(demo_tracks):
    messages = list(twilio_messages(short_tracks(demo_tracks, 0.1), {"token": TOKEN}))
    connected, start, first, second, *rest = messages
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert set(start) == {"event", "sequenceNumber", "start", "streamSid"}
    assert start["sequenceNumber"] == "1"
    assert set(start["start"]) == {
        "accountSid", "streamSid", "callSid", "tracks", "mediaFormat", "customParameters"
    }  # fmt: skip
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    assert set(first) == {"event", "sequenceNumber", "media", "streamSid"}
    assert set(first["media"]) == {"track", "chunk", "timestamp", "payload"}
    assert (first["media"]["track"], second["media"]["track"]) == ("inbound", "outbound")
    assert first["media"]["chunk"] == second["media"]["chunk"] == "1"
    assert len(base64.b64decode(first["media"]["payload"])) == 160  # 20 ms
    stop = rest[-1]
    assert stop["event"] == "stop" and set(stop["stop"]) == {"accountSid", "callSid"}
    numbers = [int(message["sequenceNumber"]) for message in messages[1:]]
    assert numbers == list(range(1, len(messages)))


# --------------------------------------------------------------- the demo call, both tracks


def stream_twilio(client, messages, headers=None) -> tuple[int, str]:
    with client.websocket_connect(ROUTE, headers=headers or {}) as websocket:
        send_all(websocket, messages)
        code, reason, _ = closed(websocket)
    return code, reason


def windows_of(call: dict) -> dict[str, list]:
    return {speaker: result["windows"] for speaker, result in call["speakers"].items()}


def test_demo_call_through_twilio_equals_the_same_audio_through_api_stream(
    client, demo_tracks, model_available
):
    parameters = {
        "token": TOKEN,
        "name": "demo via Twilio",
        "tags": "billing, vip",
        "agent": "agent-17",
        "queue": "complaints",
    }
    code, reason = stream_twilio(client, twilio_messages(demo_tracks, parameters))
    assert (code, reason) == (1000, "")
    [summary] = stored_calls(client)
    assert summary["name"] == "demo via Twilio"
    assert {"live", "twilio", "billing", "vip"} <= set(summary["tags"])
    assert "partial" not in summary["tags"]
    assert (summary["agent"], summary["queue"]) == ("agent-17", "complaints")
    assert summary["external_call_id"].startswith("CA")  # Twilio's CallSid
    via_twilio = client.get(f"/api/calls/{summary['id']}", headers=AUTH).json()

    # The same mu-law audio, interleaved customer/agent, through the native protocol.
    interleaved = bytearray(2 * len(demo_tracks["inbound"]))
    interleaved[0::2], interleaved[1::2] = demo_tracks["inbound"], demo_tracks["outbound"]
    start = {"type": "start", "sample_rate": 8000, "encoding": "mulaw"}
    start |= {"channels": ["customer", "agent"], "name": "demo via /api/stream"}
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(json.dumps(start))
        assert websocket.receive_json()["type"] == "ready"
        for offset in range(0, len(interleaved), 320):
            websocket.send_bytes(bytes(interleaved[offset : offset + 320]))
        websocket.send_text('{"type": "stop"}')
        while (message := websocket.receive_json())["type"] != "summary":
            pass
    native = client.get(f"/api/calls/{message['call_id']}", headers=AUTH).json()

    assert windows_of(via_twilio) == windows_of(native)
    assert via_twilio["duration_seconds"] == native["duration_seconds"]
    assert via_twilio["channels"] == {"customer": 0, "agent": 1}
    customer = via_twilio["speakers"]["customer"]["windows"]
    assert len(customer) > 10
    # The demo's customer (the left channel, Twilio's inbound track) turns angry late on.
    assert any(window["emotion"] == "angry" for window in customer[len(customer) // 2 :])

    # Inbound = customer: the stored recording's first channel is the file's left channel.
    audio = client.get(f"/api/calls/{summary['id']}/audio", headers=AUTH).content
    recorded, rate = sf.read(io.BytesIO(audio), dtype="float32")
    original, _ = sf.read(DEMO_CALL, dtype="float32")
    frames = min(len(recorded), len(original)) // 1600 * 1600
    envelope = [np.abs(column[:frames]).reshape(-1, 1600).mean(axis=1) for column in
                (recorded[:, 0], original[:, 0], original[:, 1])]  # fmt: skip
    assert rate == 16000
    assert np.corrcoef(envelope[0], envelope[1])[0, 1] > 0.9
    assert np.corrcoef(envelope[0], envelope[2])[0, 1] < 0.3


def test_inbound_only_stream_is_a_customer_only_call(client, demo_tracks, model_available):
    tracks = {"inbound": demo_tracks["inbound"][: 12 * 8000]}
    code, _ = stream_twilio(client, twilio_messages(tracks, {"token": TOKEN}))
    assert code == 1000
    [summary] = stored_calls(client)
    call = client.get(f"/api/calls/{summary['id']}", headers=AUTH).json()
    assert call["channels"] == {"customer": 0}
    assert call["duration_seconds"] == pytest.approx(12.0, abs=0.05)
    assert summary["name"].startswith("Twilio call CA")


# ------------------------------------------------------------------------ bad input


def prefix(demo_tracks, seconds: float, **parameters) -> list[dict]:
    """connected, start and `seconds` of media of a stream, without stop."""
    tracks = short_tracks(demo_tracks, seconds)
    return list(twilio_messages(tracks, {"token": TOKEN, **parameters}, stop=False))


@pytest.mark.parametrize(
    ("messages", "code", "expected"),
    [
        (['{"event": "ringing"}'], 1008, "unknown event 'ringing'"),
        (["not json"], 1008, "not valid JSON"),
        ([{"event": "connected", "protocol": "Call", "version": "1.0.0"},
          {"event": "media", "sequenceNumber": "1", "streamSid": "MZ1",
           "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": ""}}],
         1008, "a media message before the start message"),
        ([{"event": "start", "sequenceNumber": "1"}], 1008, "before the connected message"),
        (["x" * 70_000], 1009, "larger than 64000"),
    ],
    ids=["unknown-event", "not-json", "media-before-start", "start-before-connected", "too-big"],
)  # fmt: skip
def test_bad_first_messages_are_refused_with_a_reason(client, messages, code, expected):
    with client.websocket_connect(ROUTE) as websocket:
        send_all(websocket, messages)
        got_code, reason, received = closed(websocket)
    assert got_code == code and expected in reason
    # Not yet known to be Twilio: the reason comes as a message too.
    assert received[-1]["type"] == "error" and expected in received[-1]["message"]
    assert stored_calls(client) == []


def test_binary_message_is_refused_with_1003(client):
    with client.websocket_connect(ROUTE) as websocket:
        websocket.send_bytes(b"\xff" * 160)
        code, reason, _ = closed(websocket)
    assert code == 1003 and "JSON text messages only" in reason


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [({}, 'send the API token as <Parameter name="token">'),
     ({"token": "wrong-token-0123456789"}, "the token parameter is not the API token")],
    ids=["no-token", "wrong-token"],
)  # fmt: skip
def test_a_stream_without_the_token_is_refused(client, demo_tracks, parameters, expected):
    messages = list(twilio_messages(short_tracks(demo_tracks, 1), parameters))
    with client.websocket_connect(ROUTE) as websocket:
        send_all(websocket, messages[:2])
        code, reason, received = closed(websocket)
    assert (
        code == 1008 and reason.startswith("Twilio stream: not authorised") and expected in reason
    )
    assert received[0]["type"] == "error"
    assert stored_calls(client) == []


def test_a_scoped_token_with_stream_write_may_stream_and_others_may_not(
    client, demo_tracks, model_available
):
    # A phone system's own integration token (docs/access.md), as its token parameter.
    from callmood import store
    from callmood.store.tokens import create_token

    with store.session_scope(client.app.state.session_factory) as session:
        phone = create_token(session, "twilio", ["stream:write"], "test")[1]
        reader = create_token(session, "bi", ["calls:read"], "test")[1]
    tracks = short_tracks(demo_tracks, 1)
    with client.websocket_connect(ROUTE) as websocket:
        send_all(websocket, list(twilio_messages(tracks, {"token": reader}))[:2])
        code, reason, _ = closed(websocket)
    assert code == 1008 and "lacks the stream:write scope" in reason
    code, reason = stream_twilio(client, twilio_messages(tracks, {"token": phone}))
    assert code == 1000, reason
    assert len(stored_calls(client)) == 1


def test_silence_before_start_is_refused_as_unauthorised(client, monkeypatch):
    monkeypatch.setattr(twilio, "TWILIO_START_TIMEOUT_SECONDS", 0.3)
    with client.websocket_connect(ROUTE) as websocket:
        code, reason, _ = closed(websocket)
    assert code == 1008 and "not authorised: no start message within 0.3 s" in reason


def damaged(messages: list[dict], index: int, **media) -> list[dict]:
    copy = json.loads(json.dumps(messages))
    copy[index]["media"].update(media)
    return copy


def following(messages: list[dict]) -> str:
    return str(int(messages[-1]["sequenceNumber"]) + 1)


def assert_stored_partial(client, seconds: float) -> None:
    [summary] = stored_calls(client)
    assert "partial" in summary["tags"] and "twilio" in summary["tags"]
    assert 0 < summary["duration_seconds"] <= seconds + 0.05
    call = client.get(f"/api/calls/{summary['id']}", headers=AUTH).json()
    assert any("partial call" in note for note in call["notes"])


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda m: damaged(m, -1, payload="not base64!"), "payload is not valid base64"),
        (lambda m: damaged(m, -1, chunk="999"), "chunk 999, expected"),
        (lambda m: m[:-2] + [{**m[-1], "sequenceNumber": str(int(m[-1]["sequenceNumber"]) + 5)}],
         "sequenceNumber"),
        (lambda m: damaged(m, -1, track="inbound_track"), "media.track 'inbound_track'"),
        (lambda m: [*m, {**m[-1], "sequenceNumber": following(m), "streamSid": "MZother"}],
         "not this stream's"),
        (lambda m: [*m, {**m[1], "sequenceNumber": following(m)}], "a second start message"),
        (lambda m: [*m, {"event": "hold", "sequenceNumber": "999"}], "unknown event 'hold'"),
        (lambda m: [*m, "y" * 70_000], "larger than 64000"),
    ],
    ids=["bad-base64", "chunk-gap", "sequence-gap", "unknown-track", "other-stream",
         "second-start", "unknown-event", "too-big"],
)  # fmt: skip
def test_bad_message_mid_call_closes_and_stores_the_call_heard_so_far(
    client, demo_tracks, model_available, damage, expected
):
    messages = damage(prefix(demo_tracks, 4.0))
    with client.websocket_connect(ROUTE) as websocket:
        send_all(websocket, messages)
        code, reason, received = closed(websocket)
    assert code in (1008, 1009) and expected in reason, reason
    assert received == []  # Twilio reads nothing on a one-way stream: the close says it all
    assert_stored_partial(client, 4.0)


def test_a_disconnect_without_stop_stores_the_call_marked_partial(
    tmp_path, demo_tracks, model_available
):
    # A real server: the line drops as a phone call's does, mid-stream, without stop.
    import httpx
    from service_support import serving
    from websockets.sync.client import connect

    with make_client(tmp_path) as client, serving(client.app) as port:
        with connect(f"ws://127.0.0.1:{port}{ROUTE}") as websocket:
            for message in prefix(demo_tracks, 5.0):
                websocket.send(json.dumps(message))
        deadline = time.monotonic() + 60
        calls_url = f"http://127.0.0.1:{port}/api/calls"
        while not httpx.get(calls_url, headers=AUTH).json()["items"]:
            assert time.monotonic() < deadline, "the partial call was never stored"
            time.sleep(0.2)
        assert_stored_partial(client, 5.0)


def test_a_silent_stream_is_closed_and_stored(client, demo_tracks, model_available, monkeypatch):
    monkeypatch.setattr(twilio, "IDLE_TIMEOUT_SECONDS", 0.5)
    with client.websocket_connect(ROUTE) as websocket:
        send_all(websocket, prefix(demo_tracks, 3.0))
        code, reason, _ = closed(websocket)
    assert code == 1008 and "no message within 0.5 s" in reason
    assert_stored_partial(client, 3.0)


# ------------------------------------------------------------------------ the signature


def test_signature_is_twilio_hmac_sha1_of_the_url():
    # HMAC-SHA1 in base64, as Twilio's webhook-security reference describes it.
    url = "wss://example.com/api/connectors/twilio"
    expected = twilio_signature(TWILIO_AUTH_TOKEN, url)
    assert signature_valid(TWILIO_AUTH_TOKEN, url, expected)
    assert not signature_valid(TWILIO_AUTH_TOKEN, url + "x", expected)
    assert not signature_valid("another-auth-token-000000000000", url, expected)


@pytest.mark.parametrize(
    ("signed_url", "settings", "accepted"),
    [
        ("wss://testserver/api/connectors/twilio", {}, True),
        ("ws://testserver/api/connectors/twilio", {}, True),
        ("wss://evil.example/api/connectors/twilio", {}, False),
        ("wss://calls.example.com/twilio", {"twilio_stream_url": "wss://calls.example.com/twilio"},
         True),
    ],
    ids=["wss-host", "ws-host", "other-url", "configured-url"],
)  # fmt: skip
def test_x_twilio_signature_authenticates_the_stream(
    tmp_path, demo_tracks, model_available, signed_url, settings, accepted
):
    headers = {"X-Twilio-Signature": twilio_signature(TWILIO_AUTH_TOKEN, signed_url)}
    messages = twilio_messages(short_tracks(demo_tracks, 2.0), {})  # no token parameter
    with make_client(tmp_path, twilio_auth_token=TWILIO_AUTH_TOKEN, **settings) as client:
        code, reason = stream_twilio(client, messages, headers)
        if accepted:
            assert code == 1000
            assert len(stored_calls(client)) == 1
        else:
            assert code == 1008 and "X-Twilio-Signature does not match" in reason
            assert stored_calls(client) == []


def test_with_an_auth_token_configured_the_token_parameter_still_works(
    tmp_path, demo_tracks, model_available
):
    messages = twilio_messages(short_tracks(demo_tracks, 2.0), {"token": TOKEN})
    with make_client(tmp_path, twilio_auth_token=TWILIO_AUTH_TOKEN) as client:
        assert stream_twilio(client, messages)[0] == 1000
        messages = twilio_messages(short_tracks(demo_tracks, 2.0), {})
        code, reason = stream_twilio(client, messages)
        assert code == 1008 and "no X-Twilio-Signature header" in reason


# ------------------------------------------------------------------------ alignment


def start_of(protocol: TwilioProtocol, tracks: list[str]) -> None:
    protocol.handle(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    protocol.handle(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ1",
                "start": {
                    "accountSid": "AC1",
                    "streamSid": "MZ1",
                    "callSid": "CA1",
                    "tracks": tracks,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": {},
                },
            }
        )
    )


def media(protocol: TwilioProtocol, track: str, chunk: int, timestamp: int, audio: bytes) -> bytes:
    message = {
        "event": "media",
        "sequenceNumber": str(protocol.sequence + 1),
        "streamSid": "MZ1",
        "media": {
            "track": track,
            "chunk": str(chunk),
            "timestamp": str(timestamp),
            "payload": base64.b64encode(audio).decode(),
        },
    }
    return protocol.handle(json.dumps(message)).audio


def test_tracks_are_interleaved_customer_first():
    protocol = TwilioProtocol()
    start_of(protocol, ["inbound", "outbound"])
    assert media(protocol, "inbound", 1, 0, b"\x01" * 160) == b""  # waits for the agent
    assert media(protocol, "outbound", 1, 0, b"\x02" * 160) == b"\x01\x02" * 160


def test_a_gap_in_one_track_is_filled_with_silence():
    protocol = TwilioProtocol()
    start_of(protocol, ["inbound", "outbound"])
    out = b""
    out += media(protocol, "inbound", 1, 0, b"\x01" * 160)
    out += media(protocol, "outbound", 1, 0, b"\x02" * 160)
    out += media(protocol, "inbound", 2, 20, b"\x01" * 160)
    # The agent's next chunk comes 100 ms late by its timestamp: 80 ms are missing.
    out += media(protocol, "outbound", 2, 100, b"\x02" * 160)
    out += media(protocol, "inbound", 3, 40, b"\x01" * 160)
    out += protocol.finish()
    agent = out[1::2]
    assert agent == b"\x02" * 160 + MULAW_SILENCE * 640 + b"\x02" * 160
    assert out[0::2] == b"\x01" * 480 + MULAW_SILENCE * 480  # padded at the end only


def test_a_track_that_stops_is_taken_as_silent_beyond_two_seconds():
    protocol = TwilioProtocol()
    start_of(protocol, ["inbound", "outbound"])
    released = b""
    for chunk in range(1, 251):  # 5 s of the caller, nothing from the agent
        released += media(protocol, "inbound", chunk, (chunk - 1) * 20, b"\x01" * 160)
        assert protocol.held_samples <= 2 * 8000 + 160
    assert len(released) == 2 * (5 - 2) * 8000
    assert set(released[1::2]) == set(MULAW_SILENCE)
    # The agent's late audio for time already released is dropped, the rest placed.
    late = media(protocol, "outbound", 1, 0, b"\x02" * 160)
    assert late == b""


def test_a_timestamp_going_back_is_refused():
    protocol = TwilioProtocol()
    start_of(protocol, ["inbound"])
    media(protocol, "inbound", 1, 100, b"\x01" * 160)
    with pytest.raises(StreamProtocolError, match="timestamp went back from 100 to 80"):
        media(protocol, "inbound", 2, 80, b"\x01" * 160)


def test_an_outbound_only_stream_is_refused():
    with pytest.raises(StreamProtocolError, match="outbound-only stream carries no customer"):
        start_of(TwilioProtocol(), ["outbound"])


def test_a_jump_of_minutes_is_refused_not_filled():
    protocol = TwilioProtocol()
    start_of(protocol, ["inbound"])
    media(protocol, "inbound", 1, 0, b"\x01" * 160)
    with pytest.raises(StreamProtocolError, match="jumps 600.0 s ahead"):
        media(protocol, "inbound", 2, 600_020, b"\x01" * 160)


def test_the_api_stream_credentials_on_the_handshake_also_open_a_stream(
    client, demo_tracks, model_available
):
    # For a Twilio-compatible bridge that can set headers: Bearer, as /api/stream takes it.
    messages = list(twilio_messages(short_tracks(demo_tracks, 2.0), {}))
    assert stream_twilio(client, messages, headers=AUTH)[0] == 1000
    assert len(stored_calls(client)) == 1
