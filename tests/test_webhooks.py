"""Alert webhooks reach a real HTTP receiver, signed, and are retried when it fails."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from service_support import make_call_result

from callmood.service.webhooks import (
    SIGNATURE_HEADER,
    WebhookDispatcher,
    sign_payload,
    verify_signature,
)

SECRET = "s3cret-for-tests"


class Receiver:
    """A webhook receiver on loopback that answers with the queued status codes."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receivers = []

    def start(statuses=()):
        receivers.append(Receiver(statuses))
        return receivers[-1]

    yield start
    for item in receivers:
        item.close()


def test_signature_verifies_only_the_exact_body():
    body = b'{"event":"alert_open"}'
    signature = sign_payload(body, SECRET)
    assert signature.startswith("sha256=")
    assert verify_signature(body, SECRET, signature)
    assert not verify_signature(body + b" ", SECRET, signature)
    assert not verify_signature(body, "other secret", signature)
    assert not verify_signature(body, SECRET, None)


def test_alert_reaches_the_receiver_signed(receiver):
    hook = receiver()
    dispatcher = WebhookDispatcher([hook.url], secret=SECRET)
    alert = make_call_result().alerts[0]
    dispatcher.dispatch_alerts([alert], call_id="call-1", call_name="Refund")
    assert dispatcher.wait_idle(10)
    dispatcher.close()
    [(headers, body)] = hook.requests
    assert verify_signature(body, SECRET, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["event"] == "alert_open"
    assert payload["call_id"] == "call-1" and payload["call_name"] == "Refund"
    assert payload["alert"]["rule"] == "angry_customer"
    assert dispatcher.history[-1].delivered


def test_server_errors_are_retried_with_backoff_until_delivered(receiver):
    hook = receiver(statuses=[500, 503])
    dispatcher = WebhookDispatcher([hook.url], secret=SECRET, backoff_seconds=0.05)
    dispatcher.dispatch({"event": "alert_open", "call_id": "c"})
    assert dispatcher.wait_idle(10)
    dispatcher.close()
    assert len(hook.requests) == 3
    # Every attempt carries the same body and delivery id, so receivers can deduplicate.
    assert len({body for _, body in hook.requests}) == 1
    assert len({headers["X-Callmood-Delivery"] for headers, _ in hook.requests}) == 1
    record = dispatcher.history[-1]
    assert record.delivered and record.attempts == 3


def test_client_errors_are_not_retried_and_failure_is_logged(receiver, caplog):
    hook = receiver(statuses=[404])
    dispatcher = WebhookDispatcher([hook.url], backoff_seconds=0.05)
    dispatcher.dispatch({"event": "alert_open"})
    assert dispatcher.wait_idle(10)
    dispatcher.close()
    assert len(hook.requests) == 1
    assert not dispatcher.history[-1].delivered
    assert "failed for good" in caplog.text


def test_unreachable_receiver_gives_up_after_max_attempts(caplog):
    # A port nobody listens on: connection refused on every attempt.
    dispatcher = WebhookDispatcher(
        ["http://127.0.0.1:9/hook"], max_attempts=3, backoff_seconds=0.01
    )
    dispatcher.dispatch({"event": "alert_open"})
    assert dispatcher.wait_idle(10)
    dispatcher.close()
    record = dispatcher.history[-1]
    assert not record.delivered and record.attempts == 3 and record.last_error
    assert "retrying" in caplog.text


def test_a_failing_receiver_does_not_hold_up_another(receiver):
    down = receiver(statuses=[500] * 10)
    up = receiver()
    dispatcher = WebhookDispatcher([down.url, up.url], max_attempts=10, backoff_seconds=5.0)
    dispatcher.dispatch({"event": "alert_open"})
    with up.arrived:
        assert up.arrived.wait_for(lambda: len(up.requests) == 1, timeout=10)
    dispatcher.close()
    assert len(down.requests) == 1  # its retry waits 5 s; the other receiver did not wait


def test_dispatch_without_urls_does_nothing():
    dispatcher = WebhookDispatcher([])
    dispatcher.dispatch({"event": "alert_open"})
    assert dispatcher.wait_idle(1)
    assert dispatcher.history == []
