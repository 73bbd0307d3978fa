"""Server push (/api/events): the event hub, the live board's state, and the SSE stream.

The hub and the board are checked on their own (fan-out, bounded buffers that drop the
oldest and ask for a resync, the subscriber cap, throttled updates); the stream against a
real uvicorn server with an HTTP client, and with a real live call of RAVDESS speech.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from service_support import make_call_result, serving
from test_stream import (
    TOKEN,
    angry_speech,  # noqa: F401 (a fixture)
    model_available,  # noqa: F401 (a fixture)
    pcm16,
    settings_for,
    start_message,
)

from callmood.results import AlertEvent, WindowEvent, WindowResult
from callmood.service.events import (
    EventHub,
    HubClosedError,
    HubFullError,
    LiveBoard,
)

# ---------------------------------------------------------------------------- the hub


def test_every_subscriber_gets_every_event_in_order():
    async def scenario():
        hub = EventHub()
        first, second = hub.subscribe(), hub.subscribe()
        hub.publish("a", {"n": 1})
        hub.publish("b", {"n": 2})
        return [
            [(await subscriber.next(1.0)).name for _ in range(2)] for subscriber in (first, second)
        ]

    assert asyncio.run(scenario()) == [["a", "b"], ["a", "b"]]


def test_a_slow_subscriber_loses_the_oldest_events_and_is_told_how_many():
    async def scenario():
        hub = EventHub(capacity=3)
        slow, fast = hub.subscribe(), hub.subscribe()
        got_fast = []
        for n in range(5):
            hub.publish("e", {"n": n})
            got_fast.append((await fast.next(1.0)).data["n"])
        got_slow = [(await slow.next(1.0)).data["n"] for _ in range(3)]
        return got_fast, got_slow, slow.take_dropped(), slow.take_dropped(), fast.take_dropped()

    fast, slow, dropped, again, fast_dropped = asyncio.run(scenario())
    assert fast == [0, 1, 2, 3, 4]
    assert slow == [2, 3, 4]
    assert (dropped, again, fast_dropped) == (2, 0, 0)


def test_next_times_out_with_none_and_a_closed_hub_ends_its_streams():
    async def scenario():
        hub = EventHub()
        subscriber = hub.subscribe()
        idle = await subscriber.next(0.05)
        hub.close()
        with pytest.raises(HubClosedError):
            await subscriber.next(1.0)
        with pytest.raises(HubClosedError, match="stopping"):
            hub.subscribe()
        return idle, hub.subscriber_count

    assert asyncio.run(scenario()) == (None, 0)


def test_the_subscriber_cap_refuses_one_more_until_one_leaves():
    async def scenario():
        hub = EventHub(max_subscribers=2)
        first = hub.subscribe()
        hub.subscribe()
        with pytest.raises(HubFullError, match="2 event streams"):
            hub.subscribe()
        hub.unsubscribe(first)
        hub.subscribe()
        return hub.subscriber_count

    assert asyncio.run(scenario()) == 2


def test_events_published_from_another_thread_arrive_on_the_loop():
    async def scenario():
        hub = EventHub()
        subscriber = hub.subscribe()
        thread = threading.Thread(target=hub.publish, args=("call_stored", {"call_id": "x"}))
        thread.start()
        event = await subscriber.next(2.0)
        thread.join()
        return event

    event = asyncio.run(scenario())
    assert event is not None and event.name == "call_stored" and event.data == {"call_id": "x"}


# ---------------------------------------------------------------------------- the board


def _session(call_id: str = "c1", seconds: float = 0.0, **start_fields):
    start = SimpleNamespace(name="Board call", tags=["vip"], **start_fields)
    return SimpleNamespace(
        call_id=call_id, start=start, decoder=SimpleNamespace(seconds_received=seconds)
    )


def _window(at: float, emotion: str, speaker: str = "customer") -> WindowEvent:
    probabilities = {"neutral": 0.1, "happy": 0.1, "sad": 0.1, "angry": 0.1}
    probabilities[emotion] = 0.7
    window = WindowResult(
        speaker=speaker,
        start=at - 3,
        end=at,
        emotion=emotion,
        probabilities=probabilities,
        confidence=0.7,
        peak_dbfs=-6.0,
        rms_dbfs=-20.0,
    )
    return WindowEvent(at=at, window=window)


def _alert(kind: str, at: float) -> AlertEvent:
    (alert,) = make_call_result(alert_rules=("angry_customer",)).alerts
    return AlertEvent(event=kind, at=at, alert=alert)


def test_the_board_throttles_updates_and_sends_the_latest_state_at_the_end():
    async def scenario():
        hub = EventHub()
        reader = hub.subscribe()
        board = LiveBoard(hub, interval_seconds=0.3)
        session = _session(agent="Ana", queue="billing")
        board.started(session)
        for index in range(5):
            session.decoder.seconds_received = 3.0 + index
            board.analysed(session, [_window(3.0 + index, "angry" if index else "neutral")])
            await asyncio.sleep(0.01)
        # The agent's windows do not change the customer's tile.
        board.analysed(session, [_window(9.0, "happy", speaker="agent")])
        await asyncio.sleep(0.5)
        events = []
        while (event := await reader.next(0.05)) is not None:
            events.append(event)
        return events, board.snapshot(["c1"])

    events, snapshot = asyncio.run(scenario())
    names = [event.name for event in events]
    assert names == ["call_started", "call_updated", "call_updated"]
    started, first, last = (event.data for event in events)
    assert (started["agent"], started["queue"], started["tags"]) == ("Ana", "billing", ["vip"])
    assert first["emotion"] == "neutral" and first["points"] == [[3.0, 0.2]]
    assert last["emotion"] == "angry" and last["call_seconds"] == 7.0
    assert [point[0] for point in last["points"]] == [4.0, 5.0, 6.0, 7.0]
    assert last["negativity"] == pytest.approx(0.8)
    (tile,) = snapshot["calls"]
    assert len(tile["history"]) == 5 and tile["emotion"] == "angry"


def test_alerts_are_sent_at_once_and_counted_on_the_tile_and_ended_calls_leave():
    async def scenario():
        hub = EventHub()
        reader = hub.subscribe()
        board = LiveBoard(hub, interval_seconds=10.0)
        session = _session()
        board.started(session)
        board.analysed(session, [_alert("alert_open", 6.0)])
        open_snapshot = board.snapshot()
        board.analysed(session, [_alert("alert_close", 9.0)])
        board.ended("c1", {"stored": True, "url": "/calls/c1", "duration_seconds": 9.5})
        board.ended("c1", None)  # abandoned after concluding: told once only
        events = []
        while (event := await reader.next(0.05)) is not None:
            events.append(event)
        return events, open_snapshot, board.snapshot()

    events, open_snapshot, after = asyncio.run(scenario())
    assert [event.name for event in events] == [
        "call_started",
        "alert_opened",
        "call_updated",
        "alert_closed",
        "call_updated",  # the pending update goes out before the end
        "call_ended",
    ]
    assert events[1].data["open_alerts"] == 1 and events[3].data["open_alerts"] == 0
    assert open_snapshot["calls"][0]["open_alerts"] == 1
    assert events[4].data["open_alerts"] == 0
    assert events[5].data["url"] == "/calls/c1" and events[5].data["stored"] is True
    assert after == {"calls": []}


def test_a_subscriber_that_fell_behind_gets_resync_and_a_fresh_snapshot():
    from callmood.service.routes.events import _stream

    async def scenario():
        hub = EventHub(capacity=2)
        app = SimpleNamespace(state=SimpleNamespace(event_hub=hub))
        subscriber = hub.subscribe()
        frames = _stream(app, hub, subscriber)
        assert (await anext(frames)).startswith("retry: ")
        assert (await anext(frames)).startswith("event: snapshot\n")
        for n in range(5):
            hub.publish("call_stored", {"n": n})
        got = [await anext(frames) for _ in range(4)]
        await frames.aclose()
        return got, hub.subscriber_count

    got, left = asyncio.run(scenario())
    assert got[0] == 'event: resync\ndata: {"dropped":3}\n\n'
    assert got[1] == 'event: snapshot\ndata: {"calls":[]}\n\n'
    assert got[2:] == [
        'event: call_stored\ndata: {"n":3}\n\n',
        'event: call_stored\ndata: {"n":4}\n\n',
    ]
    assert left == 0, "a closed stream must leave the hub"


# ---------------------------------------------------------------------------- over HTTP


@pytest.fixture
def app(tmp_path: Path):
    from callmood.service.app import create_app

    return create_app(settings_for(tmp_path / "data"))


@pytest.fixture
def server(app) -> Iterator[str]:
    with serving(app) as port:
        yield f"127.0.0.1:{port}"


class EventReader:
    """Reads server-sent events from an open httpx streaming response, in a thread."""

    def __init__(self, response) -> None:
        self.events: list[tuple[str, dict]] = []
        self.comments: list[str] = []
        self.retry: str | None = None
        self._lines = response.iter_lines()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name, data = None, []
        try:
            for line in self._lines:
                if line == "":
                    if name is not None:
                        self.events.append((name, json.loads("\n".join(data))))
                    name, data = None, []
                elif line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("retry: "):
                    self.retry = line.removeprefix("retry: ")
                elif line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data.append(line.removeprefix("data: "))
        except Exception:
            return  # the response was closed

    def wait_for(self, predicate, timeout: float = 60.0) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if predicate(*event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no such event in {[name for name, _ in self.events]}")


def test_events_need_the_token_or_the_login_cookie(server):
    import httpx

    anonymous = httpx.get(f"http://{server}/api/events", timeout=10)
    assert anonymous.status_code == 401
    client = httpx.Client(base_url=f"http://{server}", timeout=10)
    login = client.post("/login", data={"token": TOKEN, "next": "/board"})
    assert login.status_code == 303
    with client.stream("GET", "/api/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        assert next(lines) == "retry: 3000"
    client.close()


def test_the_subscriber_cap_answers_503_and_a_closed_stream_frees_its_place(app, server):
    import httpx

    app.state.event_hub.max_subscribers = 1
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("GET", f"http://{server}/api/events", headers=headers, timeout=10) as first:
        assert first.status_code == 200
        lines = first.iter_lines()  # kept: a discarded line iterator closes the connection
        assert next(lines) == "retry: 3000"
        refused = httpx.get(f"http://{server}/api/events", headers=headers, timeout=10)
        assert refused.status_code == 503 and "Retry-After" in refused.headers
    deadline = time.monotonic() + 10
    while app.state.event_hub.subscriber_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.event_hub.subscriber_count == 0, "a disconnected stream must unsubscribe"


def test_a_live_call_and_an_upload_reach_an_open_event_stream(
    app,
    server,
    angry_speech,  # noqa: F811
    model_available,  # noqa: F811
    ravdess_dir,
    monkeypatch,
):
    import httpx
    from websockets.sync.client import connect

    from callmood.service.routes import events as events_route

    monkeypatch.setattr(events_route, "HEARTBEAT_SECONDS", 0.5)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream(
        "GET", f"http://{server}/api/events", headers=headers, timeout=30
    ) as response:
        reader = EventReader(response)
        reader.wait_for(lambda name, data: name == "snapshot" and data == {"calls": []})
        assert reader.retry == "3000"
        began = time.monotonic()
        with connect(f"ws://{server}/api/stream?token={TOKEN}") as websocket:
            websocket.send(start_message(name="SSE call"))
            call_id = json.loads(websocket.recv(timeout=30))["call_id"]
            _, started = reader.wait_for(lambda name, data: name == "call_started")
            assert started["call_id"] == call_id and started["name"] == "SSE call"
            audio = pcm16(angry_speech)
            for offset in range(0, len(audio), 6400):  # 0.2 s frames
                websocket.send(audio[offset : offset + 6400])
            _, update = reader.wait_for(lambda name, data: name == "call_updated")
            assert update["emotion"] in ("neutral", "happy", "sad", "angry")
            assert 0 <= update["negativity"] <= 1 and update["points"]
            websocket.send(json.dumps({"type": "stop"}))
            while json.loads(websocket.recv(timeout=60))["type"] != "summary":
                pass
        _, ended = reader.wait_for(lambda name, data: name == "call_ended")
        took = time.monotonic() - began
        assert ended["call_id"] == call_id and ended["url"] == f"/calls/{call_id}"
        updates = [data for name, data in reader.events if name == "call_updated"]
        windows = sum(len(update["points"]) for update in updates)
        # At most one update a second per call: the first at once, then one a second, and
        # the one still pending flushed before call_ended. Every window reaches the board.
        assert len(updates) <= took + 2, (len(updates), took)
        assert windows >= len(updates)
        clip = ravdess_dir / "Actor_02/03-01-01-01-01-01-02.flac"
        with clip.open("rb") as audio_file:
            upload = httpx.post(
                f"http://{server}/api/calls",
                headers=headers,
                files={"file": (clip.name, audio_file, "audio/flac")},
                timeout=30,
            )
        assert upload.status_code == 202, upload.text
        _, stored = reader.wait_for(lambda name, data: name == "call_stored")
        assert stored["name"] == clip.name and stored["url"].startswith("/calls/")
        reader.wait_for(lambda name, data: bool(reader.comments), timeout=5)
        assert reader.comments[0] == ": heartbeat"
    assert np.isfinite(ended["duration_seconds"])


def test_callmood_serve_stops_on_ctrl_c_with_an_event_stream_open(tmp_path):
    """uvicorn waits for open responses before it stops; an event stream never ends by
    itself, so `callmood serve` must end them on Ctrl-C (else it hangs until a second one)."""
    import os
    import signal
    import subprocess
    import sys

    import httpx
    from conftest import require
    from service_support import free_port

    from callmood.inference import default_model_dir

    model = os.environ.get("CALLMOOD_MODEL_DIR") or str(default_model_dir())
    require(Path(model, "model.json").is_file(), "no bundled model")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("callmood")), "serve", "--port", str(port)]
        + ["--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CALLMOOD_MODEL_DIR": model, "CALLMOOD_AUTH_TOKEN": TOKEN},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/api/events", headers=headers, timeout=60
        ) as response:
            reader = EventReader(response)
            reader.wait_for(lambda name, data: name == "snapshot")
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
