"""The audit trail (docs/access.md): each action recorded with the right actor, on SQLite
and PostgreSQL; append-only; the admin page, the CSV export, and call retention."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from service_support import database_url, make_call_result  # noqa: F401
from test_api_uploads import BOUNDARY, multipart_body
from test_security import every_route, wav_bytes
from typer.testing import CliRunner

from callmood import store
from callmood.cli import app as cli_app
from callmood.service.app import create_app
from callmood.service.retention import purge_expired_calls
from callmood.settings import load_settings
from callmood.store.audit import AuditFilter, list_events, record_event
from callmood.store.models import AuditEventRecord, utc_now
from callmood.store.tokens import create_token
from callmood.store.users import create_user

TOKEN = "audit-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "audit-password-123"


@pytest.fixture
def app(database_url, tmp_path):  # noqa: F811
    return create_app(
        load_settings(data_dir=tmp_path / "data", database_url=database_url, auth_token=TOKEN)
    )


@pytest.fixture
def client(app):
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def events(app, action: str | None = None) -> list[AuditEventRecord]:
    with app.state.session_factory() as session:
        found, _ = list_events(session, AuditFilter(action=action), limit=1000)
        return found


def only_event(app, action: str) -> AuditEventRecord:
    found = events(app, action)
    assert len(found) == 1, [(event.action, event.actor_name) for event in found]
    return found[0]


def add_user(app, name: str, role: str) -> None:
    with store.session_scope(app.state.session_factory) as session:
        create_user(session, name, PASSWORD, role)


def user_client(app, name: str) -> tuple[TestClient, dict[str, str]]:
    """A client logged in as `name`, and the CSRF header its changes send."""
    browser = TestClient(app, follow_redirects=False)
    assert (
        browser.post("/api/auth/login", json={"username": name, "password": PASSWORD}).status_code
        == 200
    )
    page = browser.get("/calls").text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
    return browser, {"X-CSRF-Token": csrf}


def save_call(app, call_id: str = "call-1", audio: bool = False) -> None:
    with store.session_scope(app.state.session_factory) as session:
        path = None
        if audio:
            folder = app.state.settings.resolved_audio_dir / "calls"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{call_id}.wav").write_bytes(b"RIFF....WAVE" + b"\0" * 100)
            path = f"calls/{call_id}.wav"
        store.save_call_result(session, make_call_result(call_id), name="Audited", audio_path=path)


# ---------------------------------------------------------------------------- logins


def test_logins_and_logouts_are_recorded_without_the_password(app, client):
    add_user(app, "ana", "viewer")
    ok = client.post("/api/auth/login", json={"username": "Ana", "password": PASSWORD})
    assert ok.status_code == 200
    event = only_event(app, "login.ok")
    assert (event.actor_kind, event.actor_name, event.client) == ("user", "ana", "testclient")
    assert event.actor_id is not None
    client.post("/api/auth/logout")
    assert only_event(app, "logout").actor_name == "ana"

    wrong = client.post("/login", data={"username": "ana", "password": "not-her-password"})
    assert wrong.status_code == 401
    client.post("/api/auth/login", json={"username": "mallory", "password": "guessing-1234"})
    client.post("/api/auth/login", json={"token": "not-the-token"})
    failed = events(app, "login.failed")
    assert [(event.actor_kind, event.actor_name) for event in failed] == [
        ("token", "(wrong token)"),
        ("user", "mallory"),
        ("user", "ana"),
    ]
    assert failed[1].detail["username"] == "mallory" and failed[1].actor_id is None
    assert "wrong user name or password" in failed[1].detail["reason"]
    with app.state.session_factory() as session:
        everything = str([(e.detail, e.target) for e in session.query(AuditEventRecord)])
    assert "guessing-1234" not in everything and "not-the-token" not in everything
    assert "not-her-password" not in everything

    assert client.post("/login", data={"password": TOKEN}).status_code == 303
    shared = events(app, "login.ok")[0]
    assert (shared.actor_kind, shared.actor_name) == ("token", "shared token")


# ---------------------------------------------------------------------------- alerts


def test_who_acknowledged_and_resolved_an_alert_is_kept_and_shown(app, client):
    save_call(app)
    save_call(app, "call-2")
    add_user(app, "sam", "supervisor")
    browser, csrf = user_client(app, "sam")
    alerts = client.get("/api/alerts", headers=AUTH).json()["items"]
    first, second = alerts[0]["id"], alerts[1]["id"]
    acknowledged = browser.post(f"/api/alerts/{first}/acknowledge", headers=csrf).json()
    assert acknowledged["acknowledged_by"] == "sam" and acknowledged["resolved_by"] is None
    with store.session_scope(app.state.session_factory) as session:
        secret = create_token(session, "noc", ["alerts:write", "calls:read"], "test")[1]
    resolved = client.post(
        f"/api/alerts/{first}/resolve", headers={"Authorization": f"Bearer {secret}"}
    ).json()
    assert resolved["acknowledged_by"] == "sam" and resolved["resolved_by"] == "noc"
    bulk = browser.post("/api/alerts/acknowledge", json={"ids": [second]}, headers=csrf)
    assert bulk.status_code == 200

    acks = events(app, "alert.acknowledged")
    assert [(e.actor_name, e.target, e.detail.get("bulk", False)) for e in acks] == [
        ("sam", f"alert:{second}", True),
        ("sam", f"alert:{first}", False),
    ]
    resolve = only_event(app, "alert.resolved")
    assert (resolve.actor_kind, resolve.actor_name, resolve.target) == (
        "token",
        "noc",
        f"alert:{first}",
    )
    listed = {item["id"]: item for item in client.get("/api/alerts", headers=AUTH).json()["items"]}
    assert listed[first]["resolved_by"] == "noc"
    # The pages say it too.
    page = browser.get("/alerts").text
    assert "acknowledged by sam · resolved by noc" in page
    assert "acknowledged by sam" in browser.get("/calls/call-2").text


# ---------------------------------------------------------------------------- calls, rules


def test_call_uploads_exports_listens_deletes_and_rule_changes_are_recorded(app, client):
    save_call(app, audio=True)
    add_user(app, "sue", "supervisor")
    browser, csrf = user_client(app, "sue")
    assert browser.get("/api/calls/call-1/export/json").status_code == 200
    assert browser.get("/api/calls.csv").status_code == 200
    assert browser.get("/api/calls/call-1/audio").status_code == 200
    # The player's later ranges are the same listen.
    ranged = browser.get("/api/calls/call-1/audio", headers={"Range": "bytes=50-"})
    assert ranged.status_code == 206
    upload = client.post(
        "/api/calls",
        content=multipart_body(wav_bytes(), filename="meeting.wav"),
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    rules = client.get("/api/rules", headers=AUTH).json()
    assert client.put("/api/rules", headers=AUTH, json=rules).status_code == 200
    assert browser.delete("/api/calls/call-1", headers=csrf).status_code == 204

    exported = only_event(app, "call.exported")
    assert (exported.actor_name, exported.target, exported.detail) == (
        "sue",
        "call:call-1",
        {"format": "json"},
    )
    assert only_event(app, "calls.exported").actor_name == "sue"
    assert only_event(app, "call.listened").target == "call:call-1"
    assert only_event(app, "call.deleted").actor_name == "sue"
    changed = only_event(app, "rules.changed")
    assert changed.actor_name == "shared token" and changed.detail["rules"]
    assert upload.status_code == 202, upload.text
    uploaded = only_event(app, "call.uploaded")
    assert (uploaded.actor_name, uploaded.target) == (
        "shared token",
        f"job:{upload.json()['job_id']}",
    )
    assert uploaded.detail == {"file_name": "meeting.wav"}


# ---------------------------------------------------------------------------- admin


def test_user_and_token_changes_on_the_pages_and_the_shell_are_recorded(app, client, database_url):  # noqa: F811
    add_user(app, "root", "admin")
    browser, csrf = user_client(app, "root")
    form = {"csrf": csrf["X-CSRF-Token"]}
    browser.post(
        "/admin/users", data={**form, "username": "vic", "role": "viewer", "password": PASSWORD}
    )
    browser.post("/admin/users/vic/disable", data=form)
    browser.post("/admin/users/vic/enable", data=form)
    browser.post("/admin/users/vic/reset-password", data={**form, "password": PASSWORD + "x"})
    browser.post("/admin/tokens", data={**form, "name": "bi", "scope": "calls:read"})
    browser.post("/admin/tokens/bi/revoke", data=form)
    for action in ("user.added", "user.disabled", "user.enabled", "user.password_reset"):
        event = only_event(app, action)
        assert (event.actor_name, event.target) == ("root", "user:vic"), action
    assert only_event(app, "token.created").detail == {"scopes": ["calls:read"]}
    assert only_event(app, "token.revoked").actor_name == "root"

    def cli(*args: str, stdin: str | None = None):
        done = CliRunner().invoke(cli_app, [*args, "--database-url", database_url], input=stdin)
        assert done.exit_code == 0, done.output

    cli("users", "add", "wes", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
    cli("users", "disable", "wes")
    cli("users", "enable", "wes")
    cli("users", "reset-password", "wes", "--password-stdin", stdin=PASSWORD + "y\n")
    cli("tokens", "create", "pbx", "--scope", "stream:write")
    cli("tokens", "revoke", "pbx")
    shell = [e for e in events(app) if e.actor_kind == "cli"]
    assert sorted((e.action, e.target) for e in shell) == sorted(
        [
            ("user.added", "user:wes"),
            ("user.disabled", "user:wes"),
            ("user.enabled", "user:wes"),
            ("user.password_reset", "user:wes"),
            ("token.created", "token:pbx"),
            ("token.revoked", "token:pbx"),
        ]
    )
    assert {e.actor_name for e in shell} == {"cli"}


def test_the_trail_cannot_be_changed_through_the_api(app, client):
    client.post("/api/auth/login", json={"token": "wrong"})
    before = len(events(app))
    audit_routes = [(m, p) for m, p in every_route(app) if "audit" in p]
    assert sorted(audit_routes) == [("GET", "/admin/audit"), ("GET", "/api/audit.csv")]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/api/audit.csv", "/admin/audit", "/api/audit", "/api/audit/1"):
            answer = client.request(method, path, headers=AUTH)
            assert answer.status_code in (404, 405), f"{method} {path}: {answer.status_code}"
    assert len(events(app)) == before


def test_the_admin_page_filters_and_pages_and_the_csv_is_spreadsheet_safe(app, client):
    for attempt in range(3):
        client.post("/api/auth/login", json={"username": f"=cmd|{attempt}", "password": "x" * 10})
    client.post("/api/auth/login", json={"token": TOKEN})
    page = client.get("/admin/audit?action=login.failed&limit=2")
    assert page.status_code == 200
    assert page.text.count('data-action="login.failed"') == 2 and 'id="older"' in page.text
    assert "3 event(s)" in page.text
    only_token = client.get("/admin/audit?actor=shared+token&action=login.ok").text
    assert only_token.count('data-action="login.ok"') == 1
    tomorrow = (utc_now() + timedelta(days=1)).date().isoformat()
    assert "0 event(s)" in client.get(f"/admin/audit?date_from={tomorrow}").text

    download = client.get("/api/audit.csv?action=login.failed", headers=AUTH)
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 3
    assert {row["actor_name"] for row in rows} == {"'=cmd|0", "'=cmd|1", "'=cmd|2"}
    assert all(row["action"] == "login.failed" for row in rows)
    assert only_event(app, "audit.exported").actor_name == "shared token"
    refused = TestClient(app).get("/api/audit.csv")
    assert refused.status_code == 401


def test_call_retention_leaves_the_audit_trail(app, client):
    save_call(app)
    client.get("/api/calls/call-1/export/json", headers=AUTH)
    deleted = purge_expired_calls(
        app.state.session_factory,
        app.state.settings.resolved_audio_dir,
        retention_days=1,
        now=utc_now() + timedelta(days=30),
    )
    assert deleted == 1
    assert only_event(app, "call.exported").target == "call:call-1"


def test_the_audit_retention_is_its_own_longer_period(app, client):
    import asyncio

    from callmood.service.retention import RetentionTask

    client.get("/api/calls", headers=AUTH)
    for action, age_days in [("call.exported", 400), ("call.deleted", 100)]:
        with store.session_scope(app.state.session_factory) as session:
            record_event(
                session, action=action, actor_kind="user", actor_name="old", target="call:x"
            )
            session.flush()
            latest = session.query(AuditEventRecord).order_by(AuditEventRecord.id.desc()).first()
            latest.at = utc_now() - timedelta(days=age_days)
    task = RetentionTask(
        app.state.session_factory,
        app.state.settings.resolved_audio_dir,
        retention_days=30,
        interval_seconds=3600,
        audit_retention_days=365,
    )
    asyncio.run(task.run_once())
    assert events(app, "call.exported") == []  # older than a year
    assert only_event(app, "call.deleted").actor_name == "old"  # older than the calls' 30 days
