"""`GET /api/events`: the dashboard's server-sent events (calls in progress, new calls).

The stream opens with `retry:` and a `snapshot` of every call in progress, then carries
`call_started`, `call_updated`, `alert_opened`, `alert_closed`, `call_ended` and
`call_stored` events (docs/service.md), with a comment line as heartbeat so proxies keep
the connection open. A reader that fell behind gets `resync` and a fresh `snapshot`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from callmood.service import deps
from callmood.service.events import (
    EventHub,
    HubClosedError,
    HubFullError,
    Subscriber,
    event_hub,
    live_board,
)
from callmood.service.routes.stream import live_sessions

router = APIRouter(tags=["events"])

#: Seconds between heartbeat comments on an idle stream.
HEARTBEAT_SECONDS = 15.0
#: How long a browser waits before reconnecting a dropped stream, milliseconds.
RETRY_MILLISECONDS = 3000


def sse_frame(name: str, data: dict[str, Any]) -> str:
    """One event in the text/event-stream format (compact JSON: a single data line)."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _snapshot(app: Any) -> str:
    # The registry decides which calls are in progress; the board knows what they show.
    return sse_frame("snapshot", live_board(app).snapshot(list(live_sessions(app))))


async def _stream(app: Any, hub: EventHub, subscriber: Subscriber) -> AsyncIterator[str]:
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        yield _snapshot(app)
        while True:
            try:
                event = await subscriber.next(HEARTBEAT_SECONDS)
            except HubClosedError:
                return
            if event is None:
                yield ": heartbeat\n\n"
                continue
            dropped = subscriber.take_dropped()
            if dropped:
                # Events were lost: say so, and send the whole state again.
                yield sse_frame("resync", {"dropped": dropped})
                yield _snapshot(app)
                # The snapshot holds the board's state; calls stored meanwhile are
                # told by the next event that gets through.
            yield sse_frame(event.name, event.data)
    finally:
        # Ends here on disconnect too (Starlette cancels the generator).
        hub.unsubscribe(subscriber)


@router.get(
    "/api/events",
    dependencies=[Depends(deps.require_api_token)],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        503: {"description": "Too many streams"},
    },
)
async def events(request: Request) -> StreamingResponse:
    """Server-sent events: calls in progress and calls as they are stored."""
    hub = event_hub(request.app)
    try:
        subscriber = hub.subscribe()
    except (HubFullError, HubClosedError) as error:
        raise HTTPException(503, str(error), headers={"Retry-After": "30"}) from None
    return StreamingResponse(
        _stream(request.app, hub, subscriber),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
