"""A live stream's start message may carry the call's agent, queue, external call id and start
time (issue 18); they are checked before any audio and stored with the call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_stream import (  # noqa: F401 (fixtures)
    TOKEN,
    angry_speech,
    app,
    auth,
    client,
    expect_error,
    frames_of,
    model_available,
    pcm16,
    start_message,
    stream_through,
)


def test_stream_start_metadata_is_stored_with_the_call(client, angry_speech, model_available):  # noqa: F811
    messages = stream_through(
        client,
        frames_of(pcm16(angry_speech), 3200),
        agent=" Ana Ruiz ",
        queue="billing",
        external_call_id="pbx-77",
        started_at="2026-12-01T09:15:00+01:00",
    )
    summary = messages[-1]
    assert summary["type"] == "summary" and summary["stored"], summary
    stored = client.get(f"/api/calls/{summary['call_id']}/summary", headers=auth()).json()
    assert (stored["agent"], stored["queue"], stored["external_call_id"]) == (
        "Ana Ruiz",
        "billing",
        "pbx-77",
    )
    assert stored["started_at"].replace("+00:00", "Z") == "2026-12-01T08:15:00Z"
    listed = client.get("/api/calls", headers=auth(), params={"agent": "Ana Ruiz"}).json()
    assert [item["id"] for item in listed["items"]] == [summary["call_id"]]


def test_a_stream_without_a_start_time_started_its_length_before_it_was_stored(
    client,  # noqa: F811
    angry_speech,  # noqa: F811
    model_available,  # noqa: F811
):
    before = datetime.now(UTC)
    summary = stream_through(client, frames_of(pcm16(angry_speech), 3200))[-1]
    after = datetime.now(UTC)
    stored = client.get(f"/api/calls/{summary['call_id']}/summary", headers=auth()).json()
    started = datetime.fromisoformat(stored["started_at"])
    length = timedelta(seconds=summary["duration_seconds"])
    # The stream is sent faster than real time, so "now - length" may precede the connect.
    assert before - length - timedelta(seconds=1) <= started <= after - length
    assert stored["agent"] is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"started_at": "2026-12-01T09:15:00"},
            "started_at: started_at 2026-12-01T09:15:00 has no",
        ),
        ({"started_at": "1970-01-01T00:00:00Z"}, "implausible"),
        ({"agent": "a\x00b"}, "agent:"),
        ({"queue": "q" * 201}, "queue: queue is longer than 200"),
        ({"external_call_id": 42}, "external_call_id: external_call_id must be text"),
    ],
)
def test_bad_metadata_in_the_start_message_is_refused_naming_the_field(client, fields, named):  # noqa: F811
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message(**fields))
        message, code = expect_error(websocket)
    assert code == 1008
    assert named in message, message
