"""The Genesys Cloud AudioHook connector, driven by a client that speaks the protocol.

The client's messages are shaped on the examples of Genesys's AudioHook protocol reference
and its reference implementation (purecloudlabs/audiohook-reference-implementation): the
same envelope (version, id, type, seq, serverseq, position, parameters), headers and
signature. The audio is examples/demo_call.flac as 8 kHz PCMU, the customer (left) on the
external channel, the agent (right) on the internal one.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from callmood.service.routes import audiohook
from callmood.service.routes.audiohook import (
    AudioHookProtocolError,
    AudioHookUnauthorized,
    parse_client_message,
    signature_headers,
    verify_signature,
)

TOKEN = "audiohook-test-token-0123"
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"  # the protocol reference's example key
CLIENT_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
PATH = "/api/connectors/audiohook"
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_call.flac"
FRAME_BYTES = 1600  # 100 ms of stereo PCMU
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
EXTERNAL = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
INTERNAL = {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def demo_channels() -> np.ndarray:
    """The demo call at 16 kHz, (2, frames): customer (left), agent (right)."""
    from callmood.audio import load_audio

    return load_audio(DEMO, channels=[0, 1]).samples


@pytest.fixture(scope="module")
def demo_pcmu(demo_channels) -> bytes:
    """The demo call as Genesys sends it: 8 kHz mu-law, external and internal interleaved."""
    from callmood.audio import encode_telephone

    return encode_telephone(demo_channels, 16000, "mulaw")


@pytest.fixture(scope="session")
def model_available() -> None:
    from conftest import require

    from callmood.inference import default_model_dir

    require((default_model_dir() / "model.json").is_file(), "no bundled model")


def make_client(tmp_path: Path, **settings) -> TestClient:
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    fields = {"auth_token": TOKEN, "audiohook_api_key": API_KEY, "workers": 1, **settings}
    return TestClient(create_app(load_settings(data_dir=tmp_path / "data", **fields)))


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as test_client:
        yield test_client


@pytest.fixture
def signed_client(tmp_path):
    with make_client(tmp_path, audiohook_client_secret=CLIENT_SECRET) as test_client:
        yield test_client


class Genesys:
    """The client side of one AudioHook session over a TestClient WebSocket."""

    def __init__(self, websocket, session_id: str, organization_id: str) -> None:
        self.websocket = websocket
        self.id = session_id
        self.organization_id = organization_id
        self.seq = 0
        self.serverseq = 0
        self.samples = 0  # per channel, sent so far
        self.channels = 2

    def send(self, kind: str, parameters: dict | None = None, **overrides) -> None:
        self.seq += 1
        message = {
            "version": "2",
            "id": self.id,
            "type": kind,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": audiohook.format_duration(self.samples / 8000),
            "parameters": parameters if parameters is not None else {},
        }
        message.update(overrides)
        self.websocket.send_text(json.dumps(message))

    def receive(self) -> dict:
        message = self.websocket.receive_json()
        assert message["version"] == "2" and message["id"] == self.id, message
        assert message["seq"] == self.serverseq + 1, message  # the server counts too
        # The last client message the server took: a refused one is not counted.
        if message["type"] == "disconnect":
            assert message["clientseq"] in (self.seq - 1, self.seq), message
        else:
            assert message["clientseq"] == self.seq, message
        self.serverseq = message["seq"]
        return message

    def open_parameters(self, media: list[dict] | None = None) -> dict:
        self.conversation_id = str(uuid.uuid4())
        return {
            "organizationId": self.organization_id,
            "conversationId": self.conversation_id,
            "participant": {
                "id": str(uuid.uuid4()),
                "ani": "+1-555-555-1234",
                "aniName": "John Doe",
                "dnis": "+1-800-555-6789",
            },
            "media": media if media is not None else [STEREO, EXTERNAL, INTERNAL],
            "language": "en-US",
        }

    def open(self, media: list[dict] | None = None) -> dict:
        self.send("open", self.open_parameters(media))
        reply = self.receive()
        if reply["type"] == "opened":
            self.channels = len(reply["parameters"]["media"][0]["channels"])
        return reply

    def audio(self, payload: bytes, frame_bytes: int = FRAME_BYTES) -> None:
        for offset in range(0, len(payload), frame_bytes):
            frame = payload[offset : offset + frame_bytes]
            self.websocket.send_bytes(frame)
            self.samples += len(frame) // self.channels

    def close(self) -> dict:
        self.send("close", {"reason": "end"})
        return self.receive()

    def expect_disconnect(self, reason: str = "error") -> str:
        """The server's `disconnect`; answered with the close transaction, as Genesys does."""
        message = self.receive()
        assert message["type"] == "disconnect", message
        assert message["parameters"]["reason"] == reason, message
        self.send("close", {"reason": "disconnect"})
        assert self.receive()["type"] == "closed"
        return message["parameters"]["info"]


def genesys_headers(*, api_key: str = API_KEY, secret: str | None = None, **overrides) -> dict:
    headers = {
        "Audiohook-Organization-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": str(uuid.uuid4()),
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "X-API-KEY": api_key,
    }
    if secret is not None:
        headers |= signature_headers(
            request_target=PATH,
            authority="testserver",
            headers=headers,
            api_key=api_key,
            client_secret=base64.b64decode(secret),
        )
    headers.update(overrides)
    return headers


def connect(client: TestClient, headers: dict | None = None):
    return client.websocket_connect(PATH, headers=headers or genesys_headers())


def session_of(websocket, headers: dict) -> Genesys:
    return Genesys(websocket, headers["Audiohook-Session-Id"], headers["Audiohook-Organization-Id"])


def stream_call(client: TestClient, payload: bytes, media: list[dict] | None = None) -> Genesys:
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        opened = genesys.open(media)
        assert opened["type"] == "opened", opened
        genesys.audio(payload)
        genesys.send("ping", {})
        assert genesys.receive()["type"] == "pong"
        assert genesys.close()["type"] == "closed"
    return genesys


def the_only_call(client: TestClient, wait: float = 30.0) -> dict:
    deadline = time.monotonic() + wait
    while not (page := client.get("/api/calls", headers=AUTH).json())["items"]:
        assert time.monotonic() < deadline, "the call was never stored"
        time.sleep(0.2)
    assert page["total"] == 1, page
    summary = page["items"][0]
    return client.get(f"/api/calls/{summary['id']}", headers=AUTH).json() | {"summary": summary}


def through_api_stream(client: TestClient, payload: bytes, channels: list[str]) -> dict:
    """The same audio through /api/stream, 100 ms frames, with the start fields AudioHook uses."""
    start = {
        "type": "start",
        "sample_rate": 8000,
        "encoding": "mulaw",
        "channels": channels,
        "name": "through /api/stream",
        "tags": ["audiohook"],
    }
    frame = FRAME_BYTES * len(channels) // 2
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(json.dumps(start))
        assert websocket.receive_json()["type"] == "ready"
        for offset in range(0, len(payload), frame):
            websocket.send_bytes(payload[offset : offset + frame])
        websocket.send_text('{"type": "stop"}')
        while (message := websocket.receive_json())["type"] != "summary":
            pass
    return client.get(f"/api/calls/{message['call_id']}", headers=AUTH).json()


def without_ids(alerts: list[dict]) -> list[dict]:
    """Alerts without their ids, values rounded (float rounding, see assert_same_windows)."""
    return [
        {
            key: round(value, 4) if isinstance(value, float) else value
            for key, value in alert.items()
            if "id" not in key
        }
        for alert in alerts
    ]


def windows(call: dict) -> dict[str, list[dict]]:
    return {speaker: result["windows"] for speaker, result in call["speakers"].items()}


def assert_same_windows(call: dict, reference: dict) -> None:
    """Window for window the same times, emotions and levels; probabilities equal to float
    rounding (the model sees the windows in batches that depend on timing, and a batch's
    size changes the last bits of its results)."""
    got, expected = windows(call), windows(reference)
    assert got.keys() == expected.keys()
    for speaker in got:
        assert len(got[speaker]) == len(expected[speaker]), speaker
        for ours, theirs in zip(got[speaker], expected[speaker], strict=True):
            assert {k: v for k, v in ours.items() if k not in ("probabilities", "confidence")} == {
                k: v for k, v in theirs.items() if k not in ("probabilities", "confidence")
            }
            assert ours["confidence"] == pytest.approx(theirs["confidence"], abs=1e-4)
            for label, probability in ours["probabilities"].items():
                assert probability == pytest.approx(theirs["probabilities"][label], abs=1e-4)


# ------------------------------------------------------------------- the call, end to end


def test_demo_call_in_stereo_pcmu_equals_the_same_audio_through_api_stream(
    tmp_path, demo_pcmu, model_available
):
    with make_client(tmp_path / "a") as client:
        genesys = stream_call(client, demo_pcmu)
        call = the_only_call(client)
        reference = through_api_stream(client, demo_pcmu, ["customer", "agent"])
    assert call["duration_seconds"] == pytest.approx(len(demo_pcmu) / 2 / 8000, abs=0.01)
    assert_same_windows(call, reference)
    assert without_ids(call["alerts"]) == without_ids(reference["alerts"])
    # external = customer (left, channel 0), internal = agent; the customer gets angry.
    assert call["speakers"]["customer"]["channel"] == 0
    assert call["speakers"]["agent"]["channel"] == 1
    customer = call["speakers"]["customer"]["windows"]
    assert len(customer) >= 10 and any(w["emotion"] == "angry" for w in customer[-5:])
    assert {"live", "audiohook"} <= set(call["summary"]["tags"])
    assert "partial" not in call["summary"]["tags"]
    assert call["summary"]["external_call_id"] == genesys.conversation_id


def test_channels_follow_the_negotiated_order_internal_first(
    tmp_path, demo_channels, demo_pcmu, model_available
):
    from callmood.audio import encode_telephone

    # Genesys may list internal first: then the frames carry the agent's sample first.
    swapped = encode_telephone(demo_channels[::-1].copy(), 16000, "mulaw")
    reversed_media = {**STEREO, "channels": ["internal", "external"]}
    with make_client(tmp_path / "a") as client:
        stream_call(client, swapped, [reversed_media])
        call = the_only_call(client)
        reference = through_api_stream(client, demo_pcmu, ["customer", "agent"])
    assert_same_windows(call, reference)
    assert call["speakers"]["customer"]["channel"] == 1


def test_external_only_offer_is_taken_as_the_customer_alone(
    tmp_path, demo_channels, model_available
):
    from callmood.audio import encode_telephone

    mono = encode_telephone(demo_channels[0], 16000, "mulaw")
    with make_client(tmp_path / "a") as client:
        stream_call(client, mono, [INTERNAL, EXTERNAL])
        call = the_only_call(client)
        reference = through_api_stream(client, mono, ["customer"])
    assert set(call["speakers"]) == {"customer"}
    assert_same_windows(call, reference)


def test_opened_chooses_stereo_pcmu_and_starts_unpaused(client, model_available):
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        opened = genesys.open([EXTERNAL, {**STEREO, "format": "L16"}, STEREO])
        assert opened["type"] == "opened"
        assert opened["parameters"] == {"media": [STEREO], "startPaused": False}
        genesys.close()


def test_no_acceptable_media_is_refused_with_a_disconnect(client, model_available):
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        genesys.send(
            "open",
            {
                "organizationId": genesys.organization_id,
                "conversationId": str(uuid.uuid4()),
                "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
                "media": [INTERNAL, {**STEREO, "format": "L16"}],
            },
        )
        info = genesys.expect_disconnect("error")
    assert "no acceptable media" in info


def test_pause_inserts_the_discarded_time_as_silence(tmp_path, demo_pcmu, model_available):
    first, second = demo_pcmu[: 8000 * 2 * 5], demo_pcmu[8000 * 2 * 5 : 8000 * 2 * 10]
    with make_client(tmp_path / "a") as client:
        headers = genesys_headers()
        with connect(client, headers) as websocket:
            genesys = session_of(websocket, headers)
            genesys.open()
            genesys.audio(first)
            genesys.send("paused", {})
            genesys.send("paused", {})  # a repeated paused only confirms it
            genesys.send("resumed", {"start": "PT5S", "discarded": "PT2.5S"})
            genesys.audio(second)
            genesys.close()
        call = the_only_call(client)
    assert call["duration_seconds"] == pytest.approx(12.5, abs=0.01)


# ------------------------------------------------------------------------ authentication


def test_documented_signature_example_verifies():
    """The AudioHook documentation's signed request (as the reference verifier tests it)."""
    headers = {
        "host": "audiohook.example.com",
        "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
        "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
        "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
        "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
        "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
        '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
        'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
        'alg="hmac-sha256";created=1641013200;expires=3282026430',
    }
    secret = base64.b64decode(CLIENT_SECRET)
    verify = {"request_target": "/api/v1/voicebiometrics/ws", "client_secret": secret}
    verify_signature(headers, now=1641013201, **verify)
    with pytest.raises(AudioHookUnauthorized, match="does not verify"):
        verify_signature(
            {**headers, "audiohook-session-id": str(uuid.uuid4())}, now=1641013201, **verify
        )
    with pytest.raises(AudioHookUnauthorized, match="does not verify"):
        verify_signature(headers, now=1641013201, **{**verify, "client_secret": b"other"})
    with pytest.raises(AudioHookUnauthorized, match="expired"):
        verify_signature(headers, now=1641013200 + 60, **verify)
    with pytest.raises(AudioHookUnauthorized, match="in the future"):
        verify_signature(headers, now=1641013200 - 60, **verify)
    with pytest.raises(AudioHookUnauthorized, match="keyid"):
        verify_signature({**headers, "x-api-key": "another-key"}, now=1641013201, **verify)
    uncovered = headers["signature-input"].replace(' "x-api-key"', "")
    with pytest.raises(AudioHookUnauthorized, match="does not cover x-api-key"):
        verify_signature({**headers, "signature-input": uncovered}, now=1641013201, **verify)


def test_signature_headers_match_the_documented_example():
    """Our signer (used by examples/audiohook_client.py) gives the documented signature."""
    request = {
        "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
        "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
        "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "x-api-key": API_KEY,
    }
    signed = signature_headers(
        request_target="/api/v1/voicebiometrics/ws",
        authority="audiohook.example.com",
        headers=request,
        api_key=API_KEY,
        client_secret=base64.b64decode(CLIENT_SECRET),
        created=1641013200,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
    )
    # The documented example expires at 3282026430, ours 30 s after created: the input
    # differs only there, and each signs its own input.
    assert signed["Signature-Input"].startswith('sig1=("@request-target" "@authority" ')
    assert signed["Signature-Input"].endswith(";created=1641013200;expires=1641013230")
    verify_signature(
        {**request, "host": "audiohook.example.com", **signed},
        request_target="/api/v1/voicebiometrics/ws",
        client_secret=base64.b64decode(CLIENT_SECRET),
        now=1641013201,
    )


def test_signed_connection_is_accepted(signed_client, model_available):
    headers = genesys_headers(secret=CLIENT_SECRET)
    with connect(signed_client, headers) as websocket:
        genesys = session_of(websocket, headers)
        assert genesys.open()["type"] == "opened"
        assert genesys.close()["type"] == "closed"


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        (lambda: genesys_headers(), "not signed"),
        (lambda: genesys_headers(secret=base64.b64encode(b"not the secret").decode()), "verify"),
        (
            lambda: genesys_headers(
                secret=CLIENT_SECRET, **{"Audiohook-Session-Id": str(uuid.uuid4())}
            ),
            "does not verify",
        ),
        (lambda: genesys_headers(api_key="a-wrong-api-key-0123"), "X-API-KEY"),
    ],
    ids=["unsigned", "wrong-secret", "tampered-header", "wrong-key"],
)
def test_unsigned_or_badly_signed_connection_is_refused(signed_client, headers, named):
    headers = headers()
    with connect(signed_client, headers) as websocket:
        info = session_of(websocket, headers).expect_disconnect("unauthorized")
    assert named in info


def test_wrong_or_missing_api_key_is_refused(client):
    for headers in (genesys_headers(api_key="a-wrong-api-key-0123"), {"X-API-KEY": ""}):
        with connect(client, headers) as websocket:
            refusal = websocket.receive_json()
        assert refusal["type"] == "disconnect"
        assert refusal["parameters"] == {
            "reason": "unauthorized",
            "info": "wrong or missing X-API-KEY",
        }


def test_unconfigured_connector_refuses_every_connection(tmp_path):
    with make_client(tmp_path, audiohook_api_key=None) as client:
        with connect(client) as websocket:
            refusal = websocket.receive_json()
    assert refusal["parameters"]["reason"] == "unauthorized"
    assert "not configured" in refusal["parameters"]["info"]


def test_open_for_another_organisation_is_refused(client):
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        genesys.organization_id = str(uuid.uuid4())
        genesys.send(
            "open",
            {
                "organizationId": genesys.organization_id,
                "conversationId": str(uuid.uuid4()),
                "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
                "media": [STEREO],
            },
        )
        info = genesys.expect_disconnect("unauthorized")
    assert "organizationId" in info


# ---------------------------------------------------------------------------- bad input


@contextmanager
def _opened(client) -> Iterator[Genesys]:
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        assert genesys.open()["type"] == "opened"
        yield genesys


def test_audio_before_open_is_refused(client):
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        websocket.send_bytes(b"\xff" * FRAME_BYTES)
        info = session_of(websocket, headers).expect_disconnect()
    assert "audio before the open transaction" in info


def test_a_message_other_than_open_first_is_refused(client):
    headers = genesys_headers()
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        genesys.send("ping", {})
        info = genesys.expect_disconnect()
    assert "expected an 'open' message first, got 'ping'" in info


@pytest.mark.parametrize(
    ("send", "named"),
    [
        (lambda g: g.send("bogus", {}), "'bogus' is not a supported client message"),
        (lambda g: g.send("ping", {}, seq=g.seq + 5), "sequence gap"),
        (lambda g: g.send("ping", {}, serverseq=99), "invalid serverseq 99"),
        (lambda g: g.send("ping", {}, id=str(uuid.uuid4())), "is not this session's"),
        (lambda g: g.send("ping", {}, version="1"), "unsupported protocol version"),
        (lambda g: g.send("ping", {}, position="12 seconds"), "is not a duration"),
        (lambda g: g.send("close", {"reason": "bored"}), "reason must be one of"),
        (lambda g: g.websocket.send_text("{not json"), "not valid JSON"),
        (lambda g: g.websocket.send_bytes(b"\xff" * 65538), "larger than 65536"),
        (lambda g: g.websocket.send_bytes(b"\xff" * 1601), "not a whole number"),
        (lambda g: (g.send("paused", {}), g.websocket.send_bytes(b"\xff" * 1600)), "paused"),
        (lambda g: g.send("open", g.open_parameters()), "a second 'open' message"),
    ],
    ids=[
        "unknown-type",
        "sequence-gap",
        "serverseq-ahead",
        "other-session",
        "version-1",
        "bad-position",
        "bad-close-reason",
        "not-json",
        "frame-over-limit",
        "torn-frame",
        "audio-while-paused",
        "second-open",
    ],
)
def test_protocol_errors_end_the_session_with_a_disconnect(client, model_available, send, named):
    with _opened(client) as genesys:
        genesys.audio(b"\xff" * FRAME_BYTES * 5)
        send(genesys)
        info = genesys.expect_disconnect()
    assert named in info
    # Half a second of silence was heard: the call is stored, marked partial.
    call = the_only_call(client)
    assert "partial" in call["summary"]["tags"]


def test_silent_client_is_disconnected_and_its_call_kept(
    client, demo_pcmu, model_available, monkeypatch
):
    monkeypatch.setattr(audiohook, "IDLE_TIMEOUT_SECONDS", 0.5)
    with _opened(client) as genesys:
        genesys.audio(demo_pcmu[: 8000 * 2 * 4])
        info = genesys.expect_disconnect()
    assert "no message from the client for 0.5 s" in info
    call = the_only_call(client)
    assert "partial" in call["summary"]["tags"]
    assert call["duration_seconds"] == pytest.approx(4.0, abs=0.01)


class _SyncWebSocket:
    """A websockets client connection with the TestClient method names Genesys uses."""

    def __init__(self, connection) -> None:
        self.connection = connection

    def send_text(self, text: str) -> None:
        self.connection.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.connection.send(data)

    def receive_json(self) -> dict:
        return json.loads(self.connection.recv(timeout=30))


def test_disconnect_without_close_stores_the_call_marked_partial(
    tmp_path, demo_pcmu, model_available
):
    """A real server (a TestClient cancels the app when the client leaves)."""
    import httpx
    from service_support import serving
    from websockets.sync.client import connect as ws_connect

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data", auth_token=TOKEN, audiohook_api_key=API_KEY, workers=1
    )
    headers = genesys_headers()
    with serving(create_app(settings)) as port:
        with ws_connect(f"ws://127.0.0.1:{port}{PATH}", additional_headers=headers) as ws:
            genesys = session_of(_SyncWebSocket(ws), headers)
            assert genesys.open()["type"] == "opened"
            genesys.audio(demo_pcmu[: 8000 * 2 * 6])
            genesys.send("ping", {})
            assert genesys.receive()["type"] == "pong"
        # The line dropped mid-call, without close: what was heard is stored, partial.
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}/api/calls"
        while not (page := httpx.get(url, headers=AUTH).json())["items"]:
            assert time.monotonic() < deadline, "the partial call was never stored"
            time.sleep(0.3)
        summary = page["items"][0]
        call = httpx.get(f"{url}/{summary['id']}", headers=AUTH).json()
    assert "partial" in summary["tags"]
    assert any("Genesys disconnected without a close message" in note for note in call["notes"])
    assert call["duration_seconds"] == pytest.approx(6.0, abs=0.01)


def test_client_messages_update_error_dtmf_and_discarded_are_taken(client, model_available):
    with _opened(client) as genesys:
        genesys.audio(b"\xff" * 16000)  # 1 s
        genesys.send("update", {"language": "fr-FR"})
        genesys.send("dtmf", {"digit": "5"})
        genesys.send("discarded", {"start": "PT1S", "discarded": "PT0.5S"})
        genesys.send("error", {"code": 500, "message": "a client-side hiccup"})
        genesys.send("ping", {"rtt": "PT0.05S"})
        assert genesys.receive()["type"] == "pong"
        assert genesys.close()["type"] == "closed"
    assert the_only_call(client)["duration_seconds"] == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[]", "not a JSON object"),
        ('{"version": "2"}', "no string 'type'"),
        ("[" * 60_000, "not valid JSON"),
        ("x" * 70_000, "larger than 65535"),
    ],
)
def test_parser_refuses_malformed_messages(text, named):
    with pytest.raises(AudioHookProtocolError, match=named):
        parse_client_message(text)


def test_example_client_streams_the_demo_call_to_a_real_server(tmp_path, model_available):
    """examples/audiohook_client.py against uvicorn, signed, at full speed (--fast)."""
    import subprocess
    import sys

    from service_support import serving

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path / "data",
        auth_token=TOKEN,
        audiohook_api_key=API_KEY,
        audiohook_client_secret=CLIENT_SECRET,
        workers=1,
    )
    with serving(create_app(settings)) as port:
        done = subprocess.run(
            [
                sys.executable,
                str(DEMO.parent / "audiohook_client.py"),
                f"ws://127.0.0.1:{port}{PATH}",
                str(DEMO),
                "--api-key",
                API_KEY,
                "--client-secret",
                CLIENT_SECRET,
                "--fast",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "sent 63.5 s of audio" in done.stdout
        import httpx

        deadline = time.monotonic() + 60
        while not (calls := httpx.get(f"http://127.0.0.1:{port}/api/calls", headers=AUTH).json())[
            "items"
        ]:
            assert time.monotonic() < deadline, "the call was never stored"
            time.sleep(0.3)
    assert calls["items"][0]["duration_seconds"] == pytest.approx(63.5, abs=0.05)
    assert "partial" not in calls["items"][0]["tags"]


def test_a_stream_write_token_is_an_api_key_and_other_scopes_or_revoked_ones_are_not(client):
    """Genesys may send a revocable callmood token as its X-API-KEY (docs/access.md)."""
    from callmood import store
    from callmood.store.tokens import create_token, revoke_token

    factory = client.app.state.session_factory
    with store.session_scope(factory) as session:
        phone = create_token(session, "genesys", ["stream:write"], "test")[1]
        reader = create_token(session, "bi-tool", ["calls:read"], "test")[1]
    headers = genesys_headers(api_key=phone)
    with connect(client, headers) as websocket:
        genesys = session_of(websocket, headers)
        assert genesys.open()["type"] == "opened"
        assert genesys.close()["type"] == "closed"
    with connect(client, genesys_headers(api_key=reader)) as websocket:
        refusal = websocket.receive_json()
    assert refusal["parameters"]["reason"] == "unauthorized"
    assert "stream:write" in refusal["parameters"]["info"]
    with store.session_scope(factory) as session:
        revoke_token(session, "genesys")
    with connect(client, genesys_headers(api_key=phone)) as websocket:
        refusal = websocket.receive_json()
    assert refusal["parameters"]["info"] == "the X-API-KEY is not an active callmood token"
