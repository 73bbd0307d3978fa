"""Server push for the dashboard: an in-process event hub and the live board's call state.

`EventHub` fans events out to subscribers (the `/api/events` server-sent-event streams),
one bounded buffer each: a subscriber that reads too slowly loses its oldest events and
is told to resync, so a stuck browser never holds up the analysis of a call. Events may
be published from any thread (upload jobs finish on worker threads).

`LiveBoard` keeps what a tile on /board shows for each call in progress (the customer's
latest emotion, a negativity history, open alerts), fed by `LiveSession` in
routes/stream.py, so a board opened mid-call gets a complete `snapshot`, and throttles
`call_updated` to at most one per call per `UPDATE_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callmood.alerts import negativity

#: Events kept for one subscriber that has not read them yet; older ones are dropped.
SUBSCRIBER_BUFFER = 256
#: Simultaneous event streams per server (each holds a connection open).
MAX_SUBSCRIBERS = 100
#: Least time between two `call_updated` events of one call, seconds.
UPDATE_INTERVAL_SECONDS = 1.0
#: Call time of negativity history a tile's sparkline keeps, seconds.
HISTORY_SECONDS = 120.0


@dataclass(frozen=True)
class Event:
    """One server-sent event: its name (`call_started`, ...) and its JSON data."""

    name: str
    data: dict[str, Any]


class HubFullError(Exception):
    """The server already has `MAX_SUBSCRIBERS` event streams open."""


class HubClosedError(Exception):
    """The hub was closed (the server stops): the stream should end."""


class Subscriber:
    """One reader's bounded buffer of events, read on the event loop it subscribed from."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self.loop = loop
        self.capacity = capacity
        self.dropped = 0  # events lost since the reader last heard of it
        self.closed = False
        self._buffer: deque[Event] = deque()
        self._ready = asyncio.Event()

    def deliver(self, event: Event) -> None:
        """Add an event (on the subscriber's loop); the oldest goes when the buffer is full."""
        if len(self._buffer) >= self.capacity:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def take_dropped(self) -> int:
        """How many events were lost since the last call (and forget them)."""
        dropped, self.dropped = self.dropped, 0
        return dropped

    async def next(self, timeout_seconds: float) -> Event | None:
        """The next event, or None after `timeout_seconds` without one.

        Raises
        ------
        HubClosedError
            The hub was closed.
        """
        if not self._buffer and not self.closed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_seconds)
            except TimeoutError:
                return None
        if self._buffer:
            return self._buffer.popleft()
        raise HubClosedError


class EventHub:
    """Fan-out of events to every subscriber; thread-safe publishing."""

    def __init__(
        self, *, capacity: int = SUBSCRIBER_BUFFER, max_subscribers: int = MAX_SUBSCRIBERS
    ) -> None:
        self.capacity = capacity
        self.max_subscribers = max_subscribers
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self.closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        """A new subscriber on the running event loop.

        Raises
        ------
        HubFullError
            `max_subscribers` are subscribed already.
        HubClosedError
            The hub was closed (the server is stopping).
        """
        subscriber = Subscriber(asyncio.get_running_loop(), self.capacity)
        with self._lock:
            if self.closed:
                raise HubClosedError("the server is stopping")
            if len(self._subscribers) >= self.max_subscribers:
                raise HubFullError(
                    f"{self.max_subscribers} event streams are open already; try again later"
                )
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber; never blocks (a full buffer drops its oldest)."""
        event = Event(name, data)
        with self._lock:
            subscribers = list(self._subscribers)
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for subscriber in subscribers:
            if subscriber.loop is current:
                subscriber.deliver(event)
            else:
                # Buffers belong to their loop: hand the event over rather than touch them.
                try:
                    subscriber.loop.call_soon_threadsafe(subscriber.deliver, event)
                except RuntimeError:
                    self.unsubscribe(subscriber)  # its loop has closed

    def close(self) -> None:
        """End every stream and take no more (the server stops: open streams would hold
        it up)."""
        self.closed = True
        self.end_streams()

    def end_streams(self) -> None:
        """End the open streams (their readers reconnect, as after a restart)."""
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.close)
            except RuntimeError:
                pass


# ---------------------------------------------------------------------------- the live board


@dataclass
class _Tile:
    """What the board shows of one call in progress."""

    call_id: str
    name: str
    agent: str | None
    queue: str | None
    tags: list[str]
    started_at: str
    call_seconds: float = 0.0
    emotion: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    negativity: float | None = None
    history: deque[tuple[float, float]] = field(default_factory=deque)
    open_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsent_points: list[tuple[float, float]] = field(default_factory=list)
    last_update: float = 0.0  # monotonic time of the last call_updated
    pending: asyncio.TimerHandle | None = None

    def view(self) -> dict[str, Any]:
        """The whole tile (for call_started and the snapshot)."""
        return {
            "call_id": self.call_id,
            "name": self.name,
            "agent": self.agent,
            "queue": self.queue,
            "tags": self.tags,
            "started_at": self.started_at,
            "history": [list(point) for point in self.history],
            **self.update(),
        }

    def update(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "call_seconds": round(self.call_seconds, 2),
            "emotion": self.emotion,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "negativity": self.negativity,
            "open_alerts": len(self.open_alerts),
            "alerts": list(self.open_alerts.values()),
        }


def _alert_view(alert: Any) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity,
        "speaker": alert.speaker,
        "opened_at": alert.opened_at,
        "message": alert.message,
    }


class LiveBoard:
    """The calls in progress as the board shows them; publishes their events on `hub`."""

    def __init__(self, hub: EventHub, *, interval_seconds: float = UPDATE_INTERVAL_SECONDS):
        self.hub = hub
        self.interval_seconds = interval_seconds
        self._tiles: dict[str, _Tile] = {}

    def started(self, session: Any) -> None:
        """A call started (`session` is a LiveSession): publish `call_started`."""
        start = session.start
        tile = _Tile(
            call_id=session.call_id,
            name=start.name,
            # Optional start fields (the phone-system connectors send them).
            agent=getattr(start, "agent", None),
            queue=getattr(start, "queue", None),
            tags=list(start.tags),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._tiles[tile.call_id] = tile
        self.hub.publish("call_started", tile.view())

    def analysed(self, session: Any, events: list[Any]) -> None:
        """Window and alert events of a call: alerts published now, windows throttled."""
        tile = self._tiles.get(session.call_id)
        if tile is None:
            return
        tile.call_seconds = session.decoder.seconds_received
        changed = False
        for event in events:
            if event.event == "window":
                window = event.window
                if window.speaker != "customer":
                    continue
                tile.emotion = window.emotion
                tile.confidence = round(window.confidence, 3)
                tile.probabilities = {k: round(v, 3) for k, v in window.probabilities.items()}
                tile.negativity = round(negativity(window.probabilities), 3)
                point = (round(event.at, 2), tile.negativity)
                tile.history.append(point)
                tile.unsent_points.append(point)
                while tile.history and tile.history[0][0] < event.at - HISTORY_SECONDS:
                    tile.history.popleft()
                changed = True
            else:
                alert = _alert_view(event.alert)
                if event.event == "alert_open":
                    tile.open_alerts[alert["id"]] = alert
                    name = "alert_opened"
                else:
                    tile.open_alerts.pop(alert["id"], None)
                    name = "alert_closed"
                self.hub.publish(
                    name,
                    {
                        "call_id": tile.call_id,
                        "name": tile.name,
                        "at": event.at,
                        "alert": alert,
                        "open_alerts": len(tile.open_alerts),
                    },
                )
                changed = True
        if changed:
            self._schedule_update(tile)

    def _schedule_update(self, tile: _Tile) -> None:
        # At most one update per interval; the latest state goes out at the interval's end.
        if tile.pending is not None:
            return
        wait = tile.last_update + self.interval_seconds - time.monotonic()
        if wait <= 0:
            self._send_update(tile)
        else:
            tile.pending = asyncio.get_running_loop().call_later(wait, self._send_update, tile)

    def _send_update(self, tile: _Tile) -> None:
        tile.pending = None
        if self._tiles.get(tile.call_id) is not tile:
            return  # ended meanwhile
        tile.last_update = time.monotonic()
        points, tile.unsent_points = tile.unsent_points, []
        self.hub.publish("call_updated", {**tile.update(), "points": [list(p) for p in points]})

    def ended(self, call_id: str, summary: dict[str, Any] | None) -> None:
        """A call left the registry: stored (`summary`), empty or abandoned (None)."""
        tile = self._tiles.get(call_id)
        if tile is None:
            return
        if tile.pending is not None:
            # The last windows (the analyser's tail comes at the end) go out before the end.
            tile.pending.cancel()
            self._send_update(tile)
        del self._tiles[call_id]
        stored = bool(summary and summary.get("stored"))
        self.hub.publish(
            "call_ended",
            {
                "call_id": call_id,
                "name": tile.name,
                "stored": stored,
                "url": summary.get("url") if summary and stored else None,
                "partial": bool(summary and summary.get("partial")),
                "duration_seconds": summary.get("duration_seconds") if summary else None,
                "alert_count": summary.get("alert_count", 0) if summary else 0,
            },
        )

    def snapshot(self, call_ids: list[str] | None = None) -> dict[str, Any]:
        """Every call in progress (those of `call_ids`, the registry's, when given)."""
        ids = list(self._tiles) if call_ids is None else call_ids
        return {"calls": [self._tiles[i].view() for i in ids if i in self._tiles]}


def call_stored(hub: EventHub, *, call_id: str, name: str, alert_count: int) -> None:
    """Tell the pages that an uploaded call was analysed and stored (from any thread)."""
    hub.publish(
        "call_stored",
        {"call_id": call_id, "name": name, "url": f"/calls/{call_id}", "alert_count": alert_count},
    )


def event_hub(app: Any) -> EventHub:
    """The app's event hub (made on first use)."""
    hub = getattr(app.state, "event_hub", None)
    if hub is None:
        hub = app.state.event_hub = EventHub()
    return hub


def live_board(app: Any) -> LiveBoard:
    """The app's live board (made on first use, publishing on the app's hub)."""
    board = getattr(app.state, "live_board", None)
    if board is None:
        board = app.state.live_board = LiveBoard(event_hub(app))
    return board
