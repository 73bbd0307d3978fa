"""Agents, queues, external call ids and real start times through the API (issue 18): set on
upload, returned by the list and the call, filtered and sorted on, in the CSV, changed by
PATCH; bad values are a clear 422. Real uploads, real model, SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from test_api import (  # noqa: F401 (fixtures)
    AUTH,
    client,
    finished_job,
    leftover_files,
    make_client,
    model_dir,
    stereo_call,
    upload,
)

from callmood import store
from callmood.call_metadata import CallMetadata


def store_calls(client) -> None:  # noqa: F811
    """Three calls: Ana's two in billing and sales, Bo's in billing; stored in one order,
    started in another."""
    stored = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
    calls = [
        ("ana-late", "Ana", "sales", "pbx-3", datetime(2026, 11, 3, 8, 0, tzinfo=UTC)),
        ("bo", "Bo", "billing", "pbx-2", datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
        ("ana-early", "Ana", "billing", "pbx-1", datetime(2026, 11, 1, 8, 0, tzinfo=UTC)),
    ]
    with store.session_scope(client.app.state.session_factory) as session:
        for number, (call_id, agent, queue, external, started) in enumerate(calls):
            store.save_call_result(
                session,
                make_call_result(call_id),
                created_at=stored + timedelta(minutes=number),
                metadata=CallMetadata(
                    agent=agent, queue=queue, external_call_id=external, started_at=started
                ),
            )


def listed(client, **params) -> list[str]:  # noqa: F811
    response = client.get("/api/calls", headers=AUTH, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_an_upload_carries_agent_queue_external_id_and_start_time(client, stereo_call):  # noqa: F811
    response = upload(
        client,
        stereo_call,
        agent=" Ana Ruiz ",
        queue="billing",
        external_call_id="pbx-4711",
        started_at="2026-12-01T09:15:00+01:00",
    )
    assert response.status_code == 202, response.text
    call_id = finished_job(client, response.json()["job_id"])["call_id"]
    started = "2026-12-01T08:15:00Z"
    (item,) = client.get("/api/calls", headers=AUTH).json()["items"]
    assert (item["agent"], item["queue"], item["external_call_id"]) == (
        "Ana Ruiz",
        "billing",
        "pbx-4711",
    )
    assert item["started_at"].replace("+00:00", "Z") == started
    result = client.get(f"/api/calls/{call_id}", headers=AUTH).json()
    assert result["metadata"]["agent"] == "Ana Ruiz"
    assert result["metadata"]["started_at"].replace("+00:00", "Z") == started
    summary = client.get(f"/api/calls/{call_id}/summary", headers=AUTH).json()
    assert summary["external_call_id"] == "pbx-4711"


def test_an_upload_without_a_start_time_started_when_it_was_stored(client, stereo_call):  # noqa: F811
    call_id = finished_job(client, upload(client, stereo_call).json()["job_id"])["call_id"]
    item = client.get(f"/api/calls/{call_id}/summary", headers=AUTH).json()
    assert item["started_at"] == item["created_at"]
    assert (item["agent"], item["queue"], item["external_call_id"]) == (None, None, None)


def test_bad_metadata_on_upload_is_a_422_naming_the_field_and_keeps_no_file(client, stereo_call):  # noqa: F811
    for fields, message in [
        ({"started_at": "2026-12-01T09:15:00"}, "started_at: started_at 2026-12-01T09:15:00 has"),
        ({"started_at": "1990-01-01T00:00:00Z"}, "implausible"),
        ({"started_at": "next tuesday"}, "not an ISO 8601 time"),
        ({"agent": "a" * 201}, "agent: agent is longer than 200"),
        ({"queue": "x\x00y"}, "queue: queue must not contain control characters"),
    ]:
        response = upload(client, stereo_call, **fields)
        assert response.status_code == 422, fields
        assert message in response.json()["detail"], response.json()
    assert leftover_files(client) == []


def test_the_list_filters_by_agent_queue_and_external_id_and_sorts_by_start(client):  # noqa: F811
    store_calls(client)
    assert listed(client) == ["ana-early", "bo", "ana-late"]  # newest stored first
    assert listed(client, sort="started_at") == ["ana-early", "bo", "ana-late"]
    assert listed(client, sort="-started_at") == ["ana-late", "bo", "ana-early"]
    assert listed(client, agent="Ana", sort="started_at") == ["ana-early", "ana-late"]
    assert listed(client, queue="billing", sort="-started_at") == ["bo", "ana-early"]
    assert listed(client, agent="Ana", queue="billing") == ["ana-early"]
    assert listed(client, external_call_id="pbx-2") == ["bo"]
    assert listed(client, agent="Nobody") == []
    too_long = client.get("/api/calls", headers=AUTH, params={"agent": "a" * 201})
    assert too_long.status_code == 422


def test_the_csv_carries_the_metadata_with_the_same_filter(client):  # noqa: F811
    store_calls(client)
    response = client.get(
        "/api/calls.csv", headers=AUTH, params={"agent": "Ana", "sort": "-started_at"}
    )
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [
        (row["id"], row["agent"], row["queue"], row["external_call_id"], row["started_at_utc"])
        for row in rows
    ] == [
        ("ana-late", "Ana", "sales", "pbx-3", "2026-11-03T08:00:00Z"),
        ("ana-early", "Ana", "billing", "pbx-1", "2026-11-01T08:00:00Z"),
    ]


def test_patch_sets_and_clears_agent_and_queue(client):  # noqa: F811
    store_calls(client)
    response = client.patch("/api/calls/bo", headers=AUTH, json={"agent": " Cy ", "queue": ""})
    assert response.status_code == 200, response.text
    assert (response.json()["agent"], response.json()["queue"]) == ("Cy", None)
    assert listed(client, agent="Cy") == ["bo"]
    # The call's full result follows the change (the columns are what counts).
    assert client.get("/api/calls/bo", headers=AUTH).json()["metadata"]["agent"] == "Cy"
    # Only what was sent changes.
    kept = client.patch("/api/calls/bo", headers=AUTH, json={"name": "Renamed"}).json()
    assert (kept["agent"], kept["queue"], kept["external_call_id"]) == ("Cy", None, "pbx-2")
    for change in ({"agent": "a" * 201}, {"queue": "x\ny"}, {"started_at": "2026-11-01T00:00Z"}):
        assert client.patch("/api/calls/bo", headers=AUTH, json=change).status_code == 422, change
