"""The live WebSocket stream /api/stream, driven by Python clients with real speech.

Protocol errors are checked with Starlette's TestClient; streams of real RAVDESS
speech, concurrency and disconnects against a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import require
from service_support import expect_error, serving

TOKEN = "stream-test-token"

# Strong-intensity angry RAVDESS utterances (emotion 05, intensity 02) of four actors.
ANGRY_CLIPS = (
    "Actor_01/03-01-05-02-01-01-01.flac",
    "Actor_03/03-01-05-02-02-01-03.flac",
    "Actor_05/03-01-05-02-01-02-05.flac",
    "Actor_07/03-01-05-02-02-02-07.flac",
)
NEUTRAL_CLIP = "Actor_02/03-01-01-01-01-01-02.flac"


def trimmed(path: Path, top_db: float = 35.0) -> np.ndarray:
    """A clip without its leading and trailing silence (RAVDESS pads ~1 s each side)."""
    import librosa

    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    speech, _ = librosa.effects.trim(audio, top_db=top_db)
    return speech


@pytest.fixture(scope="session")
def angry_speech(ravdess_dir: Path) -> np.ndarray:
    """About 10 s of continuous angry speech at 16 kHz (float32, mono)."""
    return np.concatenate([trimmed(ravdess_dir / clip) for clip in ANGRY_CLIPS * 2])


@pytest.fixture(scope="session")
def neutral_speech(ravdess_dir: Path) -> np.ndarray:
    return trimmed(ravdess_dir / NEUTRAL_CLIP)


def pcm16(samples: np.ndarray) -> bytes:
    """float32 (frames,) or (frames, channels) -> interleaved 16-bit little-endian bytes."""
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def settings_for(data_dir: Path):
    from callmood.settings import load_settings

    return load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1)


@pytest.fixture(scope="session")
def model_available() -> None:
    """The emotion model the service loads (the bundled one, or CALLMOOD_MODEL_DIR)."""
    from callmood.inference import default_model_dir

    model_dir = Path(os.environ.get("CALLMOOD_MODEL_DIR") or default_model_dir())
    require((model_dir / "model.json").is_file(), f"no emotion model at {model_dir}")


@pytest.fixture
def app(tmp_path: Path):
    from callmood.service.app import create_app

    return create_app(settings_for(tmp_path / "data"))


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


def start_message(**fields) -> str:
    message = {"type": "start", "sample_rate": 16000, "encoding": "pcm16", "name": "test call"}
    message.update(fields)
    return json.dumps(message)


# ---------------------------------------------------------------------------- protocol errors


def test_binary_audio_before_start_is_refused_with_1003(client):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_bytes(b"\x00\x01" * 800)
        message, code = expect_error(websocket)
    assert code == 1003
    assert "before the start message" in message


def test_start_that_is_not_json_is_refused_with_1008(client):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text("{type: start")
        message, code = expect_error(websocket)
    assert code == 1008
    assert "not valid JSON" in message


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"encoding": "opus"}, "encoding"),
        ({"sample_rate": 7000}, "unsupported sample rate 7000"),
        ({"channels": ["customer", "customer"]}, "channels"),
        ({"channels": ["caller"]}, "channels"),
        ({"sample_rate": "fast"}, "sample_rate"),
        ({"volume": 11}, "volume"),
    ],
)
def test_invalid_start_message_names_the_field(client, fields, named):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message(**fields))
        message, code = expect_error(websocket)
    assert code == 1008
    assert named in message


def test_stream_without_token_is_refused(client):
    with client.websocket_connect("/api/stream?token=wrong") as websocket:
        message, code = expect_error(websocket)
    assert code == 1008
    assert "not authorised" in message


def test_login_cookie_opens_a_stream_only_from_the_dashboard_itself(client, model_available):
    assert client.post("/api/auth/login", json={"token": TOKEN}).status_code == 200
    with client.websocket_connect("/api/stream", headers={"origin": "http://testserver"}) as ws:
        ws.send_text(start_message())
        assert ws.receive_json()["type"] == "ready"
    # Another site's page in the same signed-in browser gets no stream.
    with client.websocket_connect("/api/stream", headers={"origin": "http://evil.example"}) as ws:
        message, code = expect_error(ws)
    assert code == 1008
    assert "evil.example" in message


def test_odd_byte_count_in_pcm16_is_refused(client, model_available):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message(channels=["customer", "agent"]))
        assert websocket.receive_json()["type"] == "ready"
        websocket.send_bytes(b"\x00" * 4002)  # 1000.5 stereo pcm16 sample frames
        message, code = expect_error(websocket)
    assert code == 1008
    assert "4002 bytes" in message and "4-byte sample frames" in message


def test_stop_before_any_audio_stores_no_call(client, model_available):
    messages = stream_through(client, [])
    assert messages[-1]["type"] == "summary"
    assert messages[-1]["stored"] is False and messages[-1]["url"] is None
    assert client.get("/api/calls", headers=auth()).json()["total"] == 0


def test_unknown_message_type_mid_stream_is_refused(client, model_available):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message())
        assert websocket.receive_json()["type"] == "ready"
        websocket.send_text(json.dumps({"type": "pause"}))
        message, code = expect_error(websocket)
    assert code == 1008
    assert "'pause'" in message


# ---------------------------------------------------------------------------- real streams


def stream_through(client, frames: list[bytes], **start_fields) -> list[dict]:
    """Send a start message, the frames, and stop; return every message received."""
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message(**start_fields))
        messages = [websocket.receive_json()]
        assert messages[0]["type"] == "ready", messages[0]
        for frame in frames:
            websocket.send_bytes(frame)
        websocket.send_text(json.dumps({"type": "stop"}))
        while messages[-1]["type"] not in ("summary", "error"):
            messages.append(websocket.receive_json())
    return messages


def frames_of(payload: bytes, frame_bytes: int) -> list[bytes]:
    return [payload[i : i + frame_bytes] for i in range(0, len(payload), frame_bytes)]


def test_angry_pcm16_stream_yields_windows_an_alert_and_a_stored_call(
    client, angry_speech, model_available
):
    # 100 ms frames of 16-bit PCM at 16 kHz, as the dashboard's Live page sends them.
    messages = stream_through(client, frames_of(pcm16(angry_speech), 3200), name="angry caller")
    windows = [m for m in messages if m["type"] == "window"]
    alerts = [m for m in messages if m["type"] == "alert"]
    summary = messages[-1]
    assert summary["type"] == "summary" and summary["stored"] and not summary["partial"]
    assert len(windows) >= 3
    assert all(w["speaker"] == "customer" for w in windows)
    assert windows == sorted(windows, key=lambda w: w["at"])
    assert sum(w["emotion"] == "angry" for w in windows) > len(windows) / 2
    assert any(a["event"] == "open" and a["alert"]["speaker"] == "customer" for a in alerts)
    assert summary["duration_seconds"] == pytest.approx(len(angry_speech) / 16000, abs=0.05)

    stored = client.get(f"/api/calls/{summary['call_id']}", headers=auth()).json()
    assert stored["call_id"] == summary["call_id"]
    assert len(stored["alerts"]) == summary["alert_count"] >= 1
    assert (
        "live"
        in client.get(f"/api/calls/{summary['call_id']}/summary", headers=auth()).json()["tags"]
    )
    assert client.get(f"/api/calls/{summary['call_id']}/audio", headers=auth()).status_code == 200


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_telephone_stream_in_mulaw_at_8khz_is_analysed(client, angry_speech, model_available):
    from callmood.audio import encode_telephone

    payload = encode_telephone(angry_speech, 16000, "mulaw")  # 8 kHz, 1 byte per sample
    messages = stream_through(
        client, frames_of(payload, 160), sample_rate=8000, encoding="mulaw"
    )  # 20 ms RTP-sized frames
    windows = [m for m in messages if m["type"] == "window"]
    assert messages[-1]["type"] == "summary"
    assert len(windows) >= 3
    assert sum(w["emotion"] == "angry" for w in windows) > len(windows) / 2
    assert messages[-1]["duration_seconds"] == pytest.approx(len(angry_speech) / 16000, abs=0.05)


def test_stereo_stream_analyses_the_customer_channel_only_by_default(
    client, angry_speech, neutral_speech, model_available
):
    agent = np.zeros_like(angry_speech)
    agent[: len(neutral_speech)] = neutral_speech
    # Agent first: the channels list, not a fixed order, says which channel is whose.
    interleaved = np.stack([agent, angry_speech], axis=1)
    messages = stream_through(
        client,
        frames_of(pcm16(interleaved), 6400),
        channels=["agent", "customer"],
        sample_rate=16000,
    )
    windows = [m for m in messages if m["type"] == "window"]
    assert windows and {w["speaker"] for w in windows} == {"customer"}
    assert messages[-1]["scores"]["customer"]["emotions_analyzed"] is True
    assert messages[-1]["scores"]["agent"]["emotions_analyzed"] is False


# ---------------------------------------------------------------------------- real server


@contextmanager
def running_server(data_dir: Path) -> Iterator[str]:
    """A real uvicorn server for the service on a free 127.0.0.1 port; yields its address."""
    from callmood.service.app import create_app

    with serving(create_app(settings_for(data_dir))) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path / "data") as address:
        yield address


def test_misbehaving_stream_does_not_disturb_a_concurrent_one(
    server, angry_speech, model_available
):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    results: dict[str, object] = {}

    def good_client() -> None:
        with connect(f"ws://{server}/api/stream?token={TOKEN}") as websocket:
            websocket.send(start_message(name="good"))
            received = [json.loads(websocket.recv(timeout=30))]
            for frame in frames_of(pcm16(angry_speech), 3200):
                websocket.send(frame)
            websocket.send(json.dumps({"type": "stop"}))
            while received[-1]["type"] not in ("summary", "error"):
                received.append(json.loads(websocket.recv(timeout=60)))
        results["good"] = received

    def bad_client() -> None:
        with connect(f"ws://{server}/api/stream?token={TOKEN}") as websocket:
            websocket.send(start_message(name="bad"))
            websocket.recv(timeout=30)
            websocket.send(pcm16(angry_speech[:16000]))
            websocket.send(b"\x01\x02\x03")  # a torn frame: 1.5 samples
            error = json.loads(websocket.recv(timeout=30))
            try:
                websocket.recv(timeout=30)
            except ConnectionClosed as closed:
                results["bad"] = (error, closed.rcvd.code if closed.rcvd else None)

    threads = [threading.Thread(target=good_client), threading.Thread(target=bad_client)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    error, code = results["bad"]
    assert error["type"] == "error" and code == 1008
    good = results["good"]
    assert good[-1]["type"] == "summary" and good[-1]["stored"]
    assert sum(message["type"] == "window" for message in good) >= 3


def test_disconnect_mid_stream_stores_a_call_marked_partial(server, angry_speech, model_available):
    import httpx
    from websockets.sync.client import connect

    with connect(f"ws://{server}/api/stream?token={TOKEN}") as websocket:
        websocket.send(start_message(name="dropped call"))
        ready = json.loads(websocket.recv(timeout=30))
        for frame in frames_of(pcm16(angry_speech[: 8 * 16000]), 3200):
            websocket.send(frame)
        # Wait until the server has analysed something, then drop the line without stop.
        while json.loads(websocket.recv(timeout=30))["type"] != "window":
            pass
    call_url = f"http://{server}/api/calls/{ready['call_id']}"
    deadline = time.monotonic() + 30
    while (response := httpx.get(call_url, headers=auth())).status_code == 404:
        assert time.monotonic() < deadline, "the partial call was never stored"
        time.sleep(0.2)
    call = response.json()
    assert any("partial" in note for note in call["notes"])
    assert 0 < call["duration_seconds"] <= 8.05
    summary = httpx.get(f"{call_url}/summary", headers=auth()).json()
    assert "partial" in summary["tags"]


def test_stream_ending_before_any_audio_stores_nothing(server, model_available):
    import httpx
    from websockets.sync.client import connect

    with connect(f"ws://{server}/api/stream?token={TOKEN}") as websocket:
        websocket.send(start_message(name="hung up at once"))
        json.loads(websocket.recv(timeout=30))
    time.sleep(1.0)
    calls = httpx.get(f"http://{server}/api/calls", headers=auth()).json()
    assert calls["total"] == 0


def test_a_call_in_progress_is_listed_until_it_is_stored(client, model_available):
    """The live board's source: every stream is in `live_sessions` from ready to summary."""
    from callmood.service.routes.stream import live_sessions

    app = client.app
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message(name="in progress"))
        ready = websocket.receive_json()
        assert list(live_sessions(app)) == [ready["call_id"]]
        assert live_sessions(app)[ready["call_id"]].start.name == "in progress"
        websocket.send_bytes(np.zeros(16000, dtype="<i2").tobytes())
        websocket.send_text('{"type": "stop"}')
        while websocket.receive_json()["type"] != "summary":
            pass
    assert live_sessions(app) == {}
