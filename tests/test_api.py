"""The REST API, end to end: real uploads analysed by the real model, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import require
from fastapi.testclient import TestClient
from service_support import database_url, make_call_result  # noqa: F401 (fixture)

from callmood import store
from callmood.audio import load_audio
from callmood.inference import default_model_dir
from callmood.service.app import create_app
from callmood.service.webhooks import SIGNATURE_HEADER, verify_signature
from callmood.settings import load_settings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def model_dir():
    """The model the service runs: CALLMOOD_MODEL_DIR if set, else the bundled one."""
    configured = os.environ.get("CALLMOOD_MODEL_DIR")
    directory = configured or default_model_dir()
    require(bool(configured) or (default_model_dir() / "model.json").is_file(), "no bundled model")
    return directory


@pytest.fixture(scope="session")
def stereo_call(ravdess_dir, model_dir) -> bytes:
    """A 12 s stereo FLAC call from real RAVDESS speech: an angry customer on the left
    channel, a neutral agent answering on the right. (Tests that upload it need the model.)"""
    actor = ravdess_dir / "Actor_01"
    angry = load_audio(actor / "03-01-05-02-01-01-01.flac").samples[0]
    neutral = load_audio(actor / "03-01-01-01-01-01-01.flac").samples[0]
    pause = np.zeros(8000, np.float32)
    customer = np.concatenate([angry, pause, np.zeros_like(neutral), angry])
    agent = np.concatenate([np.zeros_like(angry), pause, neutral, np.zeros_like(angry)])
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([customer, agent], axis=1), 16000, format="FLAC")
    return buffer.getvalue()


@pytest.fixture
def make_client(database_url, tmp_path):  # noqa: F811
    """Start the service with settings overrides; yields a TestClient (lifespan running)."""
    clients = []

    def start(**overrides):
        settings = load_settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            model_dir=os.environ.get("CALLMOOD_MODEL_DIR"),  # None: the bundled model
            auth_token=TOKEN,
            **overrides,
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def upload(client, data: bytes, filename="call.flac", **fields):
    return client.post(
        "/api/calls",
        headers=AUTH,
        files={"file": (filename, data, "audio/flac")},
        data={key: str(value) for key, value in fields.items()},
    )


def finished_job(client, job_id: str) -> dict:
    client.app.state.jobs.wait(job_id, timeout_seconds=120)
    return client.get(f"/api/jobs/{job_id}", headers=AUTH).json()


def leftover_files(client) -> list[str]:
    audio_dir = client.app.state.settings.resolved_audio_dir
    return sorted(str(p.relative_to(audio_dir)) for p in audio_dir.rglob("*") if p.is_file())


def store_result(client, result, **kwargs):
    with store.session_scope(client.app.state.session_factory) as session:
        store.save_call_result(session, result, **kwargs)


# ---------------------------------------------------------------------------- auth


def test_api_refuses_requests_without_the_token(client):
    for method, path in [
        ("GET", "/api/calls"),
        ("POST", "/api/calls"),
        ("GET", "/api/alerts"),
        ("PUT", "/api/rules"),
        ("GET", "/api/model"),
        ("GET", "/openapi.json"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/api/calls", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and "API token" in wrong.json()["detail"]
    assert client.get("/api/calls", headers=AUTH).status_code == 200


def test_login_sets_a_session_cookie_the_api_accepts(client):
    assert client.post("/api/auth/login", json={"token": "wrong"}).status_code == 401
    assert client.get("/api/auth/status").json()["authenticated"] is False
    response = client.post("/api/auth/login", json={"token": TOKEN})
    assert response.status_code == 200
    assert "httponly" in response.headers["set-cookie"].lower()
    assert client.get("/api/calls").status_code == 200  # the cookie, no header
    client.post("/api/auth/logout")
    assert client.get("/api/calls").status_code == 401


def test_a_token_is_created_on_first_start_and_kept(make_client, tmp_path, database_url):  # noqa: F811
    settings = load_settings(data_dir=tmp_path / "fresh", database_url=database_url)
    announced = []
    first = create_app(settings, announce_token=announced.append)
    token_file = tmp_path / "fresh" / "api_token.sha256"
    assert len(announced) == 1 and len(announced[0]) >= 32
    assert announced[0] not in token_file.read_text()  # only its hash is kept
    assert token_file.stat().st_mode & 0o077 == 0  # readable by the owner only
    second = create_app(settings, announce_token=announced.append)
    assert len(announced) == 1
    with TestClient(second) as client:
        headers = {"Authorization": f"Bearer {announced[0]}"}
        assert client.get("/api/calls", headers=headers).status_code == 200
    second.state.engine.dispose()
    first.state.engine.dispose()


def test_auth_disabled_serves_without_a_token(make_client):
    client = make_client(auth_disabled=True)
    assert client.get("/api/calls").status_code == 200


# ---------------------------------------------------------------------------- uploads


def test_stereo_call_analyses_customer_channel_by_default(client, stereo_call):
    response = upload(client, stereo_call, name="Refund dispute", tags="refund, VIP")
    assert response.status_code == 202
    accepted = response.json()
    job = finished_job(client, accepted["job_id"])
    assert job["state"] == "done", job["error"]
    call_id = job["call_id"]

    result = client.get(f"/api/calls/{call_id}", headers=AUTH).json()
    assert result["analyzed_speakers"] == ["customer"]
    assert result["source"] == "call.flac"
    assert result["duration_seconds"] == pytest.approx(12.0, abs=0.1)
    customer, agent = result["speakers"]["customer"], result["speakers"]["agent"]
    assert customer["windows"] and customer["scores"]["emotions_analyzed"]
    assert agent["windows"] == [] and agent["scores"]["talk_seconds"] > 0.5

    [summary] = client.get("/api/calls", headers=AUTH).json()["items"]
    assert summary["id"] == call_id and summary["name"] == "Refund dispute"
    assert summary["tags"] == ["refund", "vip"] and summary["has_audio"]
    assert summary["dominant_emotion"] == customer["scores"]["dominant_emotion"]

    timeline = client.get(f"/api/calls/{call_id}/timeline", headers=AUTH).json()
    by_speaker = {entry["speaker"]: entry for entry in timeline["speakers"]}
    assert by_speaker["customer"]["segments"] and not by_speaker["agent"]["emotions_analyzed"]

    audio = client.get(f"/api/calls/{call_id}/audio", headers=AUTH)
    assert audio.content == stereo_call and audio.headers["content-type"] == "audio/flac"
    ranged = client.get(f"/api/calls/{call_id}/audio", headers={**AUTH, "Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"fLaC"


def test_agent_emotions_only_on_opt_in(client, stereo_call):
    job = finished_job(client, upload(client, stereo_call, analyze_agent="true").json()["job_id"])
    result = client.get(f"/api/calls/{job['call_id']}", headers=AUTH).json()
    assert sorted(result["analyzed_speakers"]) == ["agent", "customer"]
    assert result["speakers"]["agent"]["windows"]


def test_swapped_channel_mapping_puts_the_customer_on_the_right(client, stereo_call):
    accepted = upload(client, stereo_call, customer_channel=1).json()
    result = client.get(
        f"/api/calls/{finished_job(client, accepted['job_id'])['call_id']}", headers=AUTH
    ).json()
    assert result["channels"] == {"customer": 1, "agent": 0}


def test_exports_in_every_format(client, stereo_call):
    call_id = finished_job(client, upload(client, stereo_call).json()["job_id"])["call_id"]
    expected_start = {
        "json": "{",
        "csv": "call_id,",
        "windows-csv": "call_id,speaker,start,end,emotion",
        "rttm": "SPEAKER",
        "emotionml": "<?xml",
    }
    for export_format, start in expected_start.items():
        response = client.get(f"/api/calls/{call_id}/export/{export_format}", headers=AUTH)
        assert response.status_code == 200, export_format
        assert response.text.startswith(start), export_format
        # Named after the call ("call.flac"), not its hex id.
        assert 'filename="call.' in response.headers["content-disposition"]
    assert json.loads(client.get(f"/api/calls/{call_id}/export/json", headers=AUTH).text)[
        "call_id"
    ] == (call_id)
    assert client.get(f"/api/calls/{call_id}/export/mp3", headers=AUTH).status_code == 422


def silent_wav(seconds: float, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    frames = np.zeros((int(seconds * 16000), channels), np.float32)
    soundfile.write(buffer, frames, 16000, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("filename", "data", "status", "message"),
    [
        ("notes.wav", b"These are meeting notes, not a recording.\n" * 50, 415, "not an audio"),
        ("empty.wav", b"", 400, "empty"),
        ("broken.flac", b"fLaC\x00\x00\x00\x22" + b"\x00" * 200, 422, "broken.flac"),
        ("header_only.wav", silent_wav(0), 422, "no samples"),
        ("blip.wav", silent_wav(0.1), 422, "at least 1 s"),
        ("conference.wav", silent_wav(2, channels=6), 422, "customer_channel"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing_behind(client, filename, data, status, message):
    response = upload(client, data, filename=filename)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert ".upload-" not in response.json()["detail"]  # names the client's file
    assert leftover_files(client) == []
    assert client.get("/api/calls", headers=AUTH).json()["total"] == 0


def test_oversized_upload_is_413_and_leaves_nothing(make_client, stereo_call):
    client = make_client(max_upload_mb=0.05)  # 50 kB; the call is ~150 kB
    response = upload(client, stereo_call)
    assert response.status_code == 413
    assert "max_upload_mb" in response.json()["detail"]
    assert leftover_files(client) == []


def test_upload_needs_a_multipart_file_part(client, stereo_call):
    raw = client.post("/api/calls", headers={**AUTH, "Content-Type": "audio/flac"}, content=b"x")
    assert raw.status_code == 415
    no_file = client.post("/api/calls", headers=AUTH, data={"name": "x"}, files={"z": ("", b"")})
    assert no_file.status_code == 400
    assert "file" in no_file.json()["detail"]


def test_invalid_upload_options_are_422_naming_the_option(client, stereo_call):
    for fields, named in [
        ({"customer_channel": "left"}, "customer_channel"),
        ({"customer_channel": "5"}, "channel 5"),
        ({"customer_channel": "0", "agent_channel": "0"}, "different channels"),
        ({"colour": "blue"}, "colour"),
    ]:
        response = upload(client, stereo_call, **fields)
        assert response.status_code == 422, fields
        assert named in response.json()["detail"], fields
    assert leftover_files(client) == []


# ---------------------------------------------------------------------------- calls


def test_call_list_filters_and_pages(client):
    store_result(client, make_call_result("calm", customer_emotions=("neutral",), alert_rules=()))
    store_result(client, make_call_result("angry"), name="Angry refund", tags=["refund"])
    page = client.get("/api/calls", headers=AUTH, params={"limit": 1}).json()
    assert [c["id"] for c in page["items"]] == ["angry"] and page["total"] == 2

    def ids(**params):
        response = client.get("/api/calls", headers=AUTH, params=params)
        assert response.status_code == 200, response.text
        return [call["id"] for call in response.json()["items"]]

    assert ids(has_alerts="true") == ["angry"]
    assert ids(has_alerts="false") == ["calm"]
    assert ids(dominant_emotion="angry") == ["angry"]
    assert ids(min_negativity=0.5) == ["angry"]
    assert ids(q="refund") == ["angry"]
    assert ids(tag="refund") == ["angry"]
    assert ids(created_from="2000-01-01T00:00:00") == ["angry", "calm"]
    assert ids(created_to="2000-01-01") == []
    bad = client.get("/api/calls", headers=AUTH, params={"min_negativity": 2})
    assert bad.status_code == 422


def _store_backdated_calls(client, count: int, *, with_alerts_every: int = 2) -> list[str]:
    """`count` calls stored a minute apart (so the order is certain); newest first ids."""
    now = datetime.now(UTC)
    ids = []
    for index in range(count):
        alerting = index % with_alerts_every == 0
        call_id = f"call-{index:03d}"
        store_result(
            client,
            make_call_result(call_id, alert_rules=("angry_customer",) if alerting else ()),
            created_at=now - timedelta(minutes=index + 1),
        )
        ids.append(call_id)
    return ids


def _follow_pages(client, first: str) -> list[dict]:
    pages, link = [], first
    while link is not None:
        response = client.get(link, headers=AUTH)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        link = pages[-1]["next"]
        assert len(pages) < 50, "the next links never end"
    return pages


def test_call_list_pages_through_every_call_with_next_links(client):
    expected = _store_backdated_calls(client, 8)
    pages = _follow_pages(client, "/api/calls?limit=3")
    assert [len(page["items"]) for page in pages] == [3, 3, 2]
    assert [call["id"] for page in pages for call in page["items"]] == expected
    assert [page["offset"] for page in pages] == [0, 3, 6]
    assert [page["next_offset"] for page in pages] == [3, 6, None]
    assert all(page["total"] == 8 and page["limit"] == 3 for page in pages)
    assert pages[1]["next"] == "/api/calls?limit=3&offset=6"
    assert [page["previous"] for page in pages] == [None, "/api/calls?limit=3", pages[0]["next"]]
    # Past the end: nothing on the page, and the way back leads to the last page with calls.
    beyond = client.get("/api/calls", headers=AUTH, params={"limit": 3, "offset": 30}).json()
    assert beyond["items"] == [] and beyond["next"] is None
    assert beyond["previous"] == "/api/calls?limit=3&offset=6"
    default = client.get("/api/calls", headers=AUTH).json()
    assert default["limit"] == 50 and default["next"] is None and len(default["items"]) == 8


def test_call_list_paging_keeps_the_filters(client):
    expected = _store_backdated_calls(client, 9, with_alerts_every=2)
    alerting = [call_id for index, call_id in enumerate(expected) if index % 2 == 0]
    pages = _follow_pages(client, "/api/calls?has_alerts=true&dominant_emotion=angry&limit=2")
    assert [call["id"] for page in pages for call in page["items"]] == alerting
    assert all("has_alerts=true" in page["next"] for page in pages[:-1])
    assert all(page["total"] == len(alerting) for page in pages)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "lots"}, "'limit'"),
        ({"limit": 0}, "'limit'"),
        ({"limit": 501}, "'limit'"),
        ({"offset": -1}, "'offset'"),
        ({"offset": "1.5"}, "'offset'"),
        ({"has_alerts": "maybe"}, "'has_alerts'"),
    ],
)
def test_bad_paging_parameters_are_422_naming_the_parameter(client, params, named):
    response = client.get("/api/calls", headers=AUTH, params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and named in detail and "query parameter" in detail


def test_unknown_ids_are_404_everywhere(client):
    for path in [
        "/api/calls/nope",
        "/api/calls/nope/timeline",
        "/api/calls/nope/audio",
        "/api/calls/nope/summary",
        "/api/calls/nope/export/json",
        "/api/jobs/nope",
    ]:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404, path
        assert "nope" in response.json()["detail"]
    assert client.delete("/api/calls/nope", headers=AUTH).status_code == 404
    assert client.post("/api/alerts/12345/resolve", headers=AUTH).status_code == 404


def test_delete_removes_the_call_its_alerts_and_its_audio(client, stereo_call):
    call_id = finished_job(client, upload(client, stereo_call).json()["job_id"])["call_id"]
    assert leftover_files(client) != []
    store_result(client, make_call_result("other"))
    assert client.delete(f"/api/calls/{call_id}", headers=AUTH).status_code == 204
    assert client.get(f"/api/calls/{call_id}", headers=AUTH).status_code == 404
    assert leftover_files(client) == []
    alerts = client.get("/api/alerts", headers=AUTH).json()["items"]
    assert {alert["call_id"] for alert in alerts} == {"other"}


# ---------------------------------------------------------------------------- alerts


def test_alerts_newest_first_acknowledge_and_resolve(client):
    store_result(client, make_call_result("first"), name="First")
    store_result(client, make_call_result("second"), name="Second")
    page = client.get("/api/alerts", headers=AUTH).json()
    assert [alert["call_name"] for alert in page["items"]] == ["Second", "First"]
    alert_id = page["items"][1]["id"]
    acknowledged = client.post(f"/api/alerts/{alert_id}/acknowledge", headers=AUTH).json()
    assert acknowledged["state"] == "acknowledged" and acknowledged["acknowledged_at"]
    resolved = client.post(f"/api/alerts/{alert_id}/resolve", headers=AUTH).json()
    assert resolved["state"] == "resolved" and resolved["resolved_at"]
    open_alerts = client.get("/api/alerts", headers=AUTH, params={"state": "open"}).json()
    assert [alert["call_id"] for alert in open_alerts["items"]] == ["second"]


# ---------------------------------------------------------------------------- rules, model


def test_rules_are_validated_and_replaced(client):
    defaults = client.get("/api/rules", headers=AUTH).json()
    assert defaults["rules"]
    invalid = {"rules": [{"name": "too_loud", "kind": "loudness", "peak_dbfs": 3}]}
    response = client.put("/api/rules", headers=AUTH, json=invalid)
    assert response.status_code == 422
    assert "too_loud" in response.json()["detail"] and "peak_dbfs" in response.json()["detail"]
    assert client.get("/api/rules", headers=AUTH).json() == defaults  # unchanged

    new_rules = {"rules": [{"name": "shouting", "kind": "loudness", "peak_dbfs": -3.0}]}
    assert client.put("/api/rules", headers=AUTH, json=new_rules).status_code == 200
    [rule] = client.get("/api/rules", headers=AUTH).json()["rules"]
    assert (rule["name"], rule["peak_dbfs"]) == ("shouting", -3.0)
    as_yaml = client.get("/api/rules", headers=AUTH, params={"format": "yaml"}).text
    assert "shouting" in as_yaml
    yaml_put = client.put(
        "/api/rules",
        headers={**AUTH, "Content-Type": "application/yaml"},
        content=b"rules:\n  - {name: quiet, kind: silence, speaker: any, min_seconds: 9}\n",
    )
    assert yaml_put.status_code == 200 and yaml_put.json()["rules"][0]["name"] == "quiet"
    garbage = client.put("/api/rules", headers=AUTH, content=b"{not json")
    assert garbage.status_code == 422


def test_openapi_document_describes_every_route_and_the_upload_form(client):
    document = client.get("/openapi.json", headers=AUTH).json()
    for path in ["/api/calls", "/api/jobs/{job_id}", "/api/alerts", "/api/rules", "/api/model"]:
        assert path in document["paths"], path
    upload_form = document["paths"]["/api/calls"]["post"]["requestBody"]["content"]
    fields = upload_form["multipart/form-data"]["schema"]["properties"]
    assert {"file", "customer_channel", "analyze_agent", "tags"} <= set(fields)
    # 422s are documented as sent: one `detail` string.
    invalid = document["components"]["schemas"]["HTTPValidationError"]
    assert invalid["properties"]["detail"]["type"] == "string"
    assert {"next", "next_offset", "total"} <= set(
        document["components"]["schemas"]["CallPage"]["required"]
    )


def test_model_endpoint_describes_the_loaded_model(client, model_dir):
    model = client.get("/api/model", headers=AUTH).json()
    assert model["labels"] and model["window_seconds"] > 0
    assert model["metadata"]["labels"] == model["labels"]


# ---------------------------------------------------------------------------- webhooks


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []
    arrived = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args):
        pass


def test_alert_of_an_uploaded_call_reaches_the_webhook_signed(make_client, stereo_call):
    _Receiver.received, _Receiver.arrived = [], threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_client(
            webhook_urls=[f"http://127.0.0.1:{server.server_address[1]}/hook"],
            webhook_secret="hook-secret",
        )
        # A rule any speech trips, so the test does not depend on what the model hears.
        rules = {"rules": [{"name": "any_voice", "kind": "loudness", "peak_dbfs": -60}]}
        assert client.put("/api/rules", headers=AUTH, json=rules).status_code == 200
        job = finished_job(client, upload(client, stereo_call, name="Hooked").json()["job_id"])
        assert _Receiver.arrived.wait(10)
    finally:
        server.shutdown()
        server.server_close()
    headers, body = _Receiver.received[0]
    assert verify_signature(body, "hook-secret", headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["event"] == "alert_open" and payload["call_id"] == job["call_id"]
    assert payload["call_name"] == "Hooked" and payload["alert"]["rule"] == "any_voice"


# ---------------------------------------------------------------------------- restarts


def test_jobs_left_by_a_stopped_server_are_resumed_on_start(
    database_url,  # noqa: F811
    model_dir,
    tmp_path,
    stereo_call,
):
    settings = load_settings(
        data_dir=tmp_path / "data", database_url=database_url, model_dir=model_dir, auth_token=TOKEN
    )
    engine = store.create_database_engine(settings.resolved_database_url)
    store.upgrade_database(engine)
    sessions = store.make_session_factory(engine)
    kept = settings.resolved_audio_dir / "calls" / "interrupted.flac"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(stereo_call)
    with store.session_scope(sessions) as session:
        interrupted = store.create_job(
            session, name="interrupted", upload_path="calls/interrupted.flac"
        )
        store.mark_job_running(session, interrupted.id)
        lost = store.create_job(session, name="lost", upload_path="calls/gone.flac")
    engine.dispose()
    # Left by a server killed mid-upload, and between keeping a file and queuing its job.
    cut_off = settings.resolved_audio_dir / "incoming" / ".upload-0123"
    cut_off.parent.mkdir(parents=True)
    cut_off.write_bytes(stereo_call[:1000])
    unqueued = settings.resolved_audio_dir / "calls" / "never-queued.flac"
    unqueued.write_bytes(stereo_call)

    app = create_app(settings)
    with TestClient(app) as client:
        app.state.jobs.wait(interrupted.id, timeout_seconds=120)
        headers = AUTH
        resumed = client.get(f"/api/jobs/{interrupted.id}", headers=headers).json()
        assert resumed["state"] == "done" and resumed["call_id"]
        failed = client.get(f"/api/jobs/{lost.id}", headers=headers).json()
        assert failed["state"] == "failed" and "lost" in failed["error"]
    assert not cut_off.exists() and not unqueued.exists()
    assert kept.exists()  # the resumed call's recording stays


# ---------------------------------------------------------------------------- retention


def _backdated_call_with_audio(client, call_id: str, days_ago: float) -> Path:
    audio = client.app.state.settings.resolved_audio_dir / "calls" / f"{call_id}.flac"
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.write_bytes(b"fLaC" + call_id.encode())
    store_result(
        client,
        make_call_result(call_id),
        audio_path=f"calls/{call_id}.flac",
        audio_media_type="audio/flac",
        created_at=datetime.now(UTC) - timedelta(days=days_ago),
    )
    return audio


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_retention_pass_deletes_expired_calls_with_their_audio(make_client):
    client = make_client(retention_days=30, retention_interval_minutes=600)
    retention = client.app.state.retention
    _wait_for(lambda: retention.runs >= 1)  # the pass at start, on an empty database
    expired = _backdated_call_with_audio(client, "expired", days_ago=31)
    kept = _backdated_call_with_audio(client, "kept", days_ago=29)
    assert client.portal.call(retention.run_once) == 1
    assert client.get("/api/calls/expired", headers=AUTH).status_code == 404
    assert client.get("/api/alerts", headers=AUTH).json()["total"] == 1  # "kept"'s only
    assert not expired.exists() and kept.exists()
    assert leftover_files(client) == ["calls/kept.flac"]
    assert client.get("/api/calls/kept/audio", headers=AUTH).status_code == 200


def test_lifespan_runs_the_retention_loop_and_stops_it(tmp_path, database_url):  # noqa: F811
    # A 60 ms interval: the loop itself removes a call that expires while the server runs.
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        auth_token=TOKEN,
        retention_days=1,
        retention_interval_minutes=0.001,
    )
    app = create_app(settings)
    retention = app.state.retention
    assert not retention.running  # only the lifespan starts it
    with TestClient(app) as client:
        assert retention.running
        expired = _backdated_call_with_audio(client, "expired", days_ago=2)
        _wait_for(lambda: not expired.exists())
        assert client.get("/api/calls", headers=AUTH).json()["total"] == 0
        runs = retention.runs
        _wait_for(lambda: retention.runs > runs)  # it keeps going
    assert not retention.running
    runs = retention.runs
    time.sleep(0.2)
    assert retention.runs == runs  # stopped for good


def test_no_retention_loop_without_retention_days(tmp_path, database_url):  # noqa: F811
    config = tmp_path / "callmood.yaml"
    config.write_text("retention_days: null\n", encoding="utf-8")
    settings = load_settings(
        config, data_dir=tmp_path / "data", database_url=database_url, auth_token=TOKEN
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.retention is None
        assert client.get("/api/calls", headers=AUTH).status_code == 200


# ---------------------------------------------------------------------------- login throttling


def test_repeated_wrong_tokens_get_429_with_retry_after(make_client):
    client = make_client(login_max_failures=3, login_window_seconds=120)
    for _ in range(3):
        assert client.post("/api/auth/login", json={"token": "guess"}).status_code == 401
    throttled = client.post("/api/auth/login", json={"token": "guess"})
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 120
    assert "too many failed logins" in throttled.json()["detail"]
    # Even the right token waits: otherwise the 429 would not slow down guessing.
    right = client.post("/api/auth/login", json={"token": TOKEN})
    assert right.status_code == 429 and "set-cookie" not in right.headers
    # The dashboard's form counts against the same client.
    form = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert form.status_code == 429 and "Too many failed logins" in form.text
    assert form.headers["Retry-After"]
    # API requests with the Bearer token are not login attempts and still work.
    assert client.get("/api/calls", headers=AUTH).status_code == 200


def test_a_successful_login_resets_the_failure_count(make_client):
    client = make_client(login_max_failures=3)
    for _ in range(2):
        assert client.post("/api/auth/login", json={"token": "guess"}).status_code == 401
    assert client.post("/api/auth/login", json={"token": TOKEN}).status_code == 200
    for _ in range(2):
        assert client.post("/api/auth/login", json={"token": "guess"}).status_code == 401
    assert client.post("/api/auth/login", json={"token": TOKEN}).status_code == 200


# ---------------------------------------------------------------------------- /docs offline


def test_swagger_ui_is_served_from_the_server_itself(client):
    assert client.get("/docs").status_code == 401
    page = client.get("/docs", headers=AUTH)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/") for source in sources), sources
    for source in sources:
        asset = client.get(source)  # public, like /static
        assert asset.status_code == 200 and asset.content, source
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text
