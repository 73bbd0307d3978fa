"""A live stream whose handler is cancelled (server shutdown) leaves no task pending.

Drives the real app over ASGI on a private event loop with real speech and the real
model, cancels the handler mid-stream as a shutting-down server does, and checks that
the analysis task is not left pending ("Task was destroyed but it is pending!").
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import numpy as np
from test_stream import (  # noqa: F401  (fixtures used by name)
    TOKEN,
    angry_speech,
    model_available,
    pcm16,
    settings_for,
    start_message,
)


async def _cancel_mid_stream(app, audio: np.ndarray) -> tuple[list[asyncio.Task], list[dict]]:
    inbox: asyncio.Queue[dict] = asyncio.Queue()
    sent: list[dict] = []
    window_seen = asyncio.Event()

    async def receive() -> dict:
        return await inbox.get()

    async def send(message: dict) -> None:
        sent.append(message)
        if message.get("text") and json.loads(message["text"])["type"] == "window":
            window_seen.set()

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/api/stream",
        "raw_path": b"/api/stream",
        "query_string": f"token={TOKEN}".encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    await inbox.put({"type": "websocket.connect"})
    await inbox.put({"type": "websocket.receive", "text": start_message(name="cancelled")})
    payload = pcm16(audio)
    for offset in range(0, len(payload), 3200):
        await inbox.put({"type": "websocket.receive", "bytes": payload[offset : offset + 3200]})
    handler = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(window_seen.wait(), 60)
    handler.cancel()  # what a server shutting down does to its connection tasks
    try:
        await handler
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(0.1)
    leftover = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    return [task for task in leftover if not task.done()], sent


def test_cancelled_stream_leaves_no_pending_analysis_task(
    tmp_path: Path,
    angry_speech,  # noqa: F811  (the fixture imported above)
    model_available,  # noqa: F811
    caplog,
):
    from callmood.service.app import create_app

    app = create_app(settings_for(tmp_path / "data"))
    loop = asyncio.new_event_loop()
    try:
        pending, sent = loop.run_until_complete(_cancel_mid_stream(app, angry_speech[: 8 * 16000]))
        pending_names = [repr(task.get_coro()) for task in pending]
    finally:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.close()
            del loop
            pending = []  # drop our references, so gc destroys any task left pending
            gc.collect()
    assert pending_names == []
    assert "Task was destroyed but it is pending" not in caplog.text
    # A cancelled server cannot conclude the call: its unfinished recording is not left behind.
    assert not list((tmp_path / "data").rglob("*.flac"))
