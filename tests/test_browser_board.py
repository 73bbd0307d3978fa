"""The live board (/board) in Debian's headless Chromium, with two real calls streaming in.

Two Python clients stream RAVDESS speech into /api/stream at real pace, as a phone system
would; the board shows a tile for each, updates them, and lets one go when its call ends
while the other stays. /calls offers the stored call without reloading, and the board's
event stream comes back after the server ends it (as a restart does).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import test_browser
from service_support import serving
from test_browser import TIMEOUT_MS, TOKEN, log_in
from test_browser_dashboard import LAPTOP, PHONE, doc_screenshot
from test_stream import ANGRY_CLIPS, NEUTRAL_CLIP, pcm16, trimmed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright = test_browser.playwright
browser = test_browser.browser
model_available = test_browser.model_available

FRAME_SECONDS = 0.1
FRAME_BYTES = int(16000 * FRAME_SECONDS) * 2  # 16-bit mono at 16 kHz


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("board") / "data"
    return create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    with serving(app, ws="auto") as port:
        yield f"127.0.0.1:{port}"


class StreamingCall:
    """A live call from a Python WebSocket client, sending speech at real pace (looping it)
    until `stop()`, in a thread."""

    def __init__(self, server: str, name: str, speech: np.ndarray, **start_fields) -> None:
        self.server = server
        self.name = name
        self.start_fields = start_fields
        self.audio = pcm16(speech)
        self.call_id: str | None = None
        self.summary: dict | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(60), f"{name}: no ready message"
        assert self.error is None, self.error

    def _run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(f"ws://{self.server}/api/stream?token={TOKEN}") as websocket:
                start = {"type": "start", "sample_rate": 16000, "encoding": "pcm16"}
                websocket.send(json.dumps({**start, "name": self.name, **self.start_fields}))
                self.call_id = json.loads(websocket.recv(timeout=60))["call_id"]
                self._ready.set()
                offset, next_send = 0, time.monotonic()
                while not self._stop.is_set():
                    websocket.send(self.audio[offset : offset + FRAME_BYTES])
                    offset = (offset + FRAME_BYTES) % (len(self.audio) - FRAME_BYTES)
                    next_send += FRAME_SECONDS
                    time.sleep(max(0.0, next_send - time.monotonic()))
                websocket.send(json.dumps({"type": "stop"}))
                while True:
                    message = json.loads(websocket.recv(timeout=120))
                    if message["type"] in ("summary", "error"):
                        self.summary = message
                        return
        except BaseException as error:  # reported by stop() / the ready check
            self.error = error
            self._ready.set()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=180)
        assert self.error is None, self.error
        assert self.summary is not None and self.summary["type"] == "summary", self.summary
        return self.summary


def tile_time(page, call_id: str) -> int:
    text = page.locator(f'.tile[data-call-id="{call_id}"] .tile-time').inner_text()
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)


def test_two_live_calls_appear_update_and_leave_on_the_board(
    app, browser, server, model_available, ravdess_dir
):
    base = f"http://{server}"
    angry = np.concatenate([trimmed(ravdess_dir / clip) for clip in ANGRY_CLIPS])
    neutral = np.tile(trimmed(ravdess_dir / NEUTRAL_CLIP), 4)

    board_context = browser.new_context(viewport=LAPTOP)
    board = board_context.new_page()
    errors: list[str] = []
    board.on("pageerror", lambda error: errors.append(str(error)))
    log_in(board, base)
    board.goto(f"{base}/board")
    board.locator("#board-status").wait_for(state="hidden", timeout=30_000)
    assert board.locator("#board-empty").is_visible()

    calls_page = board_context.new_page()
    calls_page.goto(f"{base}/calls")
    calls_page.evaluate("() => { window.sameDocument = true; }")
    assert calls_page.locator("#new-items").is_hidden()
    alerts_page = board_context.new_page()
    alerts_page.goto(f"{base}/alerts")

    first = StreamingCall(server, "Angry caller", angry, agent="Ana Ruiz", queue="billing")
    second = StreamingCall(server, "Calm caller", neutral)
    try:
        tiles = board.locator(".tile")
        for call in (first, second):
            tile = board.locator(f'.tile[data-call-id="{call.call_id}"]')
            tile.wait_for(timeout=30_000)
            assert call.name in tile.locator(".tile-name").inner_text()
        who = board.locator(f'.tile[data-call-id="{first.call_id}"] .tile-who').inner_text()
        assert who == "agent Ana Ruiz · queue billing"
        assert board.locator(f'.tile[data-call-id="{second.call_id}"] .tile-who').is_hidden()
        assert tiles.count() == 2 and not board.locator("#board-empty").is_visible()
        # The angry (and loud) caller raises an alert: its tile and the alerts page say so.
        board.locator(f'.tile.has-alerts[data-call-id="{first.call_id}"]').wait_for(
            timeout=TIMEOUT_MS
        )
        live_note = alerts_page.locator("#live-alerts")
        live_note.wait_for(state="visible", timeout=30_000)
        assert "open on calls in progress" in live_note.inner_text()
        # Both update: an emotion from the server, the talk time going on.
        for call in (first, second):
            badge = board.locator(f'.tile[data-call-id="{call.call_id}"] .badge.emotion')
            board.wait_for_function(
                "(element) => !element.textContent.includes('listening')",
                arg=badge.element_handle(),
                timeout=TIMEOUT_MS,
            )
        before = tile_time(board, first.call_id)
        board.wait_for_timeout(2500)
        assert tile_time(board, first.call_id) >= before + 2
        history = board.evaluate(
            "(id) => document.querySelector(`.tile[data-call-id='${id}'] canvas`).width",
            first.call_id,
        )
        assert history > 0
        doc_screenshot(board, "board-1366")

        # The server ends every event stream (as when it restarts): the board reconnects,
        # gets a snapshot and keeps both tiles.
        hub = app.state.event_hub
        assert hub.subscriber_count == 3  # the board, the calls and the alerts page
        hub.end_streams()
        deadline = time.monotonic() + 30
        while hub.subscriber_count < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hub.subscriber_count == 3, "the pages did not reconnect"
        assert tiles.count() == 2

        # One call ends: its tile is marked ended with a link, then leaves; the other stays.
        summary = first.stop()
        assert summary["stored"] and summary["alert_count"] >= 1
        ended = board.locator(f'.tile.ended[data-call-id="{first.call_id}"]')
        ended.wait_for(timeout=30_000)
        assert ended.locator("a").get_attribute("href") == f"/calls/{first.call_id}"
        ended.wait_for(state="detached", timeout=30_000)
        remaining = board.locator(".tile")
        assert remaining.count() == 1
        assert remaining.first.get_attribute("data-call-id") == second.call_id
        assert "ended" not in (remaining.first.get_attribute("class") or "")

        # /calls offers the stored call without a reload, and shows it on request.
        banner = calls_page.locator("#new-items")
        banner.wait_for(state="visible", timeout=30_000)
        assert "1 new call" in banner.inner_text()
        calls_page.click("#new-items-show")
        calls_page.locator(f'#calls tr[data-call-id="{first.call_id}"]').wait_for(timeout=30_000)
        assert banner.is_hidden()
        assert calls_page.evaluate("() => window.sameDocument === true"), "reloaded"

        # /alerts offers the stored call's alerts the same way.
        alerts_banner = alerts_page.locator("#new-items")
        alerts_banner.wait_for(state="visible", timeout=30_000)
        assert f"{summary['alert_count']} new alert" in alerts_banner.inner_text()
        alerts_page.click("#new-items-show")
        alerts_page.locator(f'#alerts a[href^="/calls/{first.call_id}"]').first.wait_for(
            timeout=30_000
        )

        # At phone width the tiles stack and nothing sticks out.
        phone_context = browser.new_context(viewport=PHONE)
        phone = phone_context.new_page()
        log_in(phone, base)
        phone.goto(f"{base}/board")
        phone.locator(f'.tile[data-call-id="{second.call_id}"]').wait_for(timeout=30_000)
        assert phone.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        doc_screenshot(phone, "board-390")
        phone_context.close()
    finally:
        for call in (first, second):
            if not call._stop.is_set():
                call.stop()
    board.locator(".tile.ended").wait_for(timeout=30_000)
    assert errors == []
    board_context.close()
