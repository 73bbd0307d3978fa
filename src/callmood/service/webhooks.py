"""Alert events POSTed to the configured webhook URLs: signed, retried, never in the way.

Each delivery is a JSON body signed with HMAC-SHA256 of the raw body under the
shared secret, sent in the header ``X-Callmood-Signature: sha256=<hex>``. A
delivery answered with a 5xx, 408 or 429, or failing to connect, is retried after
``backoff_seconds * 2**(attempt - 1)``; other 4xx answers are final. Deliveries run
on one background thread, so analysis and requests never wait for a receiver.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from callmood.results import Alert, AlertEvent

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Callmood-Signature"
EVENT_HEADER = "X-Callmood-Event"
DELIVERY_HEADER = "X-Callmood-Delivery"
RETRY_STATUS_CODES = frozenset({408, 429})


def sign_payload(body: bytes, secret: str) -> str:
    """The signature header value for `body`: ``sha256=`` and the hex HMAC-SHA256."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, secret: str, signature_header: str | None) -> bool:
    """Whether `signature_header` is the valid signature of `body` (constant-time compare).

    Receivers call this with the raw request body, before parsing the JSON.
    """
    if not signature_header:
        return False
    return hmac.compare_digest(sign_payload(body, secret), signature_header.strip())


def alert_event_payload(
    event: str, alert: Alert, *, call_id: str, call_name: str | None = None
) -> dict[str, Any]:
    """The JSON document sent for an alert opening or closing.

    Parameters
    ----------
    event
        "alert_open" or "alert_close" (as in :class:`callmood.results.AlertEvent`).
    alert
        The alert; times in it are seconds from the start of the call.
    call_id, call_name
        Which call raised it.
    """
    return {
        "event": event,
        "delivery_id": uuid.uuid4().hex,
        "sent_at": datetime.now(UTC).isoformat(),
        "call_id": call_id,
        "call_name": call_name,
        "alert": alert.model_dump(mode="json"),
    }


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    event: str = field(compare=False)
    delivery_id: str = field(compare=False)
    attempt: int = field(default=1, compare=False)


@dataclass
class DeliveryRecord:
    """The outcome of one delivery, kept for inspection (newest last, bounded)."""

    url: str
    event: str
    delivery_id: str
    attempts: int
    delivered: bool
    last_status: int | None
    last_error: str | None


class WebhookDispatcher:
    """Queue alert events for delivery to webhook URLs on a background thread.

    Parameters
    ----------
    urls
        Receivers; an event goes to each of them. With none, `dispatch` does nothing.
    secret
        HMAC key for the signature header; None sends unsigned events.
    max_attempts
        Tries per delivery, the first included.
    backoff_seconds
        Wait before the first retry, seconds; doubled for each further retry.
    timeout_seconds
        Time a receiver has to answer one POST, seconds.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        secret: str | None = None,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.urls = list(urls)
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.history: list[DeliveryRecord] = []
        self._queue: list[_Delivery] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- producer side

    def dispatch(self, payload: dict[str, Any]) -> None:
        """Queue `payload` (a JSON-able dict with an "event" key) for every URL; returns at once."""
        if not self.urls:
            return
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        event = str(payload.get("event", "event"))
        delivery_id = str(payload.get("delivery_id") or uuid.uuid4().hex)
        with self._condition:
            for url in self.urls:
                heapq.heappush(
                    self._queue,
                    _Delivery(time.monotonic(), next(self._order), url, body, event, delivery_id),
                )
            self._condition.notify()
        self._ensure_thread()

    def dispatch_alerts(
        self, alerts: list[Alert] | list[AlertEvent], *, call_id: str, call_name: str | None = None
    ) -> None:
        """Queue alerts of a finished call (as "alert_open") or live alert events."""
        for item in alerts:
            if isinstance(item, AlertEvent):
                payload = alert_event_payload(
                    item.event, item.alert, call_id=call_id, call_name=call_name
                )
            else:
                payload = alert_event_payload(
                    "alert_open", item, call_id=call_id, call_name=call_name
                )
            self.dispatch(payload)

    def wait_idle(self, timeout_seconds: float = 30.0) -> bool:
        """Block until nothing is queued or being sent (for shutdown and tests).

        Returns
        -------
        bool
            True when idle, False when `timeout_seconds` passed first.
        """
        deadline = time.monotonic() + timeout_seconds
        with self._condition:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Stop the thread; deliveries still waiting for a retry are dropped (and logged)."""
        with self._condition:
            self._stopping = True
            dropped = len(self._queue)
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
        if dropped:
            logger.warning("webhooks: %d deliveries dropped at shutdown", dropped)

    # -------------------------------------------------------------- consumer side

    def _ensure_thread(self) -> None:
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="callmood-webhooks", daemon=True
                )
                self._thread.start()

    def _next_due(self) -> _Delivery | None:
        with self._condition:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._queue)
                    self._condition.wait(wait)
                else:
                    self._condition.wait()
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_seconds) as client:
            while (delivery := self._next_due()) is not None:
                try:
                    self._attempt(client, delivery)
                except Exception:  # a bug here must not kill the thread for later events
                    logger.exception("webhooks: delivery to %s crashed", delivery.url)
                finally:
                    with self._condition:
                        self._in_flight -= 1
                        self._condition.notify_all()

    def _attempt(self, client: httpx.Client, delivery: _Delivery) -> None:
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.delivery_id,
            "User-Agent": "callmood-webhooks",
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign_payload(delivery.body, self.secret)
        status: int | None = None
        error: str | None = None
        try:
            response = client.post(delivery.url, content=delivery.body, headers=headers)
            status = response.status_code
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        delivered = status is not None and 200 <= status < 300
        retryable = not delivered and (
            status is None or status >= 500 or status in RETRY_STATUS_CODES
        )
        if retryable and delivery.attempt < self.max_attempts:
            delay = self.backoff_seconds * 2 ** (delivery.attempt - 1)
            logger.warning(
                "webhook %s to %s failed (attempt %d/%d: %s); retrying in %.1f s",
                delivery.event,
                delivery.url,
                delivery.attempt,
                self.max_attempts,
                error or f"HTTP {status}",
                delay,
            )
            with self._condition:
                delivery.attempt += 1
                delivery.due = time.monotonic() + delay
                heapq.heappush(self._queue, delivery)
            return
        if not delivered:
            logger.error(
                "webhook %s to %s failed for good after %d attempts: %s",
                delivery.event,
                delivery.url,
                delivery.attempt,
                error or f"HTTP {status}",
            )
        self.history.append(
            DeliveryRecord(
                url=delivery.url,
                event=delivery.event,
                delivery_id=delivery.delivery_id,
                attempts=delivery.attempt,
                delivered=delivered,
                last_status=status,
                last_error=error,
            )
        )
        del self.history[:-1000]
