"""Helpers shared by the store and API tests: databases on both backends, and call results.

`database_url` gives each test an empty database: a SQLite file, or its own schema on
the PostgreSQL server named by CALLMOOD_TEST_POSTGRES_URL (dropped afterwards), so
test runs on one server never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from conftest import require
from sqlalchemy import create_engine, text
from starlette.requests import Request

from callmood.results import (
    Alert,
    CallResult,
    EvidenceWindow,
    ModelInfo,
    SpeakerResult,
    SpeakerScores,
    SpeakerSegment,
    SpeechStretch,
    WindowResult,
)

POSTGRES_ENV = "CALLMOOD_TEST_POSTGRES_URL"
BOUNDARY = "callmood-test-boundary"
LABELS = ["neutral", "happy", "sad", "angry"]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """An empty database for one test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'callmood.db'}"
        return
    server_url = os.environ.get(POSTGRES_ENV)
    require(bool(server_url), f"PostgreSQL tests need {POSTGRES_ENV} (see .ci/run)")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in server_url else "?"
    yield f"{server_url}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _window(speaker: str, start: float, emotion: str, confidence: float = 0.7) -> WindowResult:
    rest = (1 - confidence) / (len(LABELS) - 1)
    probabilities = {label: (confidence if label == emotion else rest) for label in LABELS}
    return WindowResult(
        speaker=speaker,
        start=start,
        end=start + 3.0,
        emotion=emotion,
        probabilities=probabilities,
        confidence=confidence,
        peak_dbfs=-6.0,
        rms_dbfs=-20.0,
    )


def make_call_result(
    call_id: str = "call-1",
    *,
    customer_emotions: tuple[str, ...] = ("neutral", "angry", "angry"),
    alert_rules: tuple[str, ...] = ("angry_customer",),
    source: str = "call.flac",
) -> CallResult:
    """A small finished call: the customer's windows with the given emotions, an agent
    channel measured but not analysed, and one alert per rule name."""
    windows = [_window("customer", 3.0 * i, emotion) for i, emotion in enumerate(customer_emotions)]
    duration = 3.0 * len(windows) + 1.0
    negative = sum(w.probabilities["angry"] + w.probabilities["sad"] for w in windows)
    negativity = negative / len(windows) if windows else None
    shares = {label: sum(w.emotion == label for w in windows) / len(windows) for label in LABELS}
    dominant = max(shares, key=shares.get) if windows else None
    customer = SpeakerResult(
        speaker="customer",
        channel=0,
        speech=[SpeechStretch(start=0.0, end=3.0 * len(windows))],
        windows=windows,
        segments=[
            SpeakerSegment(
                speaker="customer",
                start=w.start,
                end=w.end,
                emotion=w.emotion,
                confidence=w.confidence,
                window_count=1,
            )
            for w in windows
        ],
        scores=SpeakerScores(
            speaker="customer",
            talk_seconds=3.0 * len(windows),
            silence_share=1.0 / duration,
            emotions_analyzed=True,
            window_count=len(windows),
            emotion_shares=shares,
            dominant_emotion=dominant,
            negativity=negativity,
        ),
    )
    agent = SpeakerResult(
        speaker="agent",
        channel=1,
        speech=[SpeechStretch(start=0.5, end=2.0)],
        windows=[],
        segments=[],
        scores=SpeakerScores(
            speaker="agent",
            talk_seconds=1.5,
            silence_share=1 - 1.5 / duration,
            emotions_analyzed=False,
            window_count=0,
        ),
    )
    alerts = [
        Alert(
            id=f"{rule}:customer:{3000 + index}",
            rule=rule,
            kind="sustained",
            speaker="customer",
            severity="critical",
            opened_at=3.0,
            closed_at=9.0,
            value=0.7,
            evidence=[EvidenceWindow(start=3.0, end=6.0, value=0.7)],
            message=f"{rule}: the customer sounds angry",
        )
        for index, rule in enumerate(alert_rules)
    ]
    return CallResult(
        call_id=call_id,
        source=source,
        duration_seconds=duration,
        channels={"customer": 0, "agent": 1},
        analyzed_speakers=["customer"],
        speakers={"customer": customer, "agent": agent},
        has_speech=True,
        alerts=alerts,
        model=ModelInfo(name="test-model", labels=LABELS, backend="onnx", window_seconds=3.0),
        options={"customer_channel": 0, "agent_channel": 1},
    )


def expect_error(websocket) -> tuple[str, int]:
    """The error message a live stream (TestClient WebSocket) sends, and the close code."""
    from starlette.websockets import WebSocketDisconnect

    message = websocket.receive_json()
    assert message["type"] == "error", message
    with pytest.raises(WebSocketDisconnect) as closed:
        websocket.receive_json()
    return message["message"], closed.value.code


def request_from_chunks(chunks: list[bytes], *, disconnect_after: bool = False, headers=None):
    """An ASGI request whose body arrives in `chunks`, optionally cut off by the client."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    if disconnect_after:
        for message in messages:
            message["more_body"] = True
        messages.append({"type": "http.disconnect"})
    received = []

    async def receive():
        message = messages.pop(0)
        received.append(message)
        return message

    default_headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/calls",
        "headers": [
            # ASGI headers are bytes; Starlette reads them as latin-1, as HTTP sends them.
            (key.encode("latin-1"), value.encode("latin-1"))
            for key, value in (headers or default_headers).items()
        ],
    }
    return Request(scope, receive), received


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(app: object, **uvicorn_options: object) -> Iterator[int]:
    """Serve `app` with a real uvicorn server on a free 127.0.0.1 port in a thread.

    Yields the port once the server accepts connections; stops it on exit.
    """
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        # Open event streams (/api/events) would hold the shutdown up: end them first.
        hub = getattr(getattr(app, "state", None), "event_hub", None)
        if hub is not None:
            hub.close()
        server.should_exit = True
        thread.join(timeout=30)
