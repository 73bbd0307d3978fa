"""Scoped integration tokens (docs/access.md): hashed secrets, scopes per route, revocation,
last use, and the `callmood tokens` commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import Depends, WebSocket
from fastapi.testclient import TestClient
from service_support import database_url, expect_error, make_call_result  # noqa: F401
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from callmood import store
from callmood.cli import app as cli_app
from callmood.service import deps
from callmood.service.app import create_app
from callmood.settings import load_settings
from callmood.store.models import ApiTokenRecord
from callmood.store.tokens import (
    TOKEN_PREFIX,
    TokenError,
    create_token,
    get_token,
    hash_secret,
    list_tokens,
    revoke_token,
)

TOKEN = "tokens-test-token-0123456789"
CALLMOOD = Path(sys.executable).with_name("callmood")


@pytest.fixture
def app(database_url, tmp_path):  # noqa: F811
    return create_app(
        load_settings(data_dir=tmp_path / "data", database_url=database_url, auth_token=TOKEN)
    )


@pytest.fixture
def client(app):
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def make_token(app, name: str, *scopes: str) -> str:
    with store.session_scope(app.state.session_factory) as session:
        return create_token(session, name, scopes, "test")[1]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def stored_token(app, name: str) -> ApiTokenRecord:
    with app.state.session_factory() as session:
        return get_token(session, name)


# ---------------------------------------------------------------------------- the store


def test_a_token_is_random_prefixed_and_kept_only_as_its_hash(app):
    secret = make_token(app, "BI-Tool", "calls:read")
    again = make_token(app, "other", "calls:read")
    assert secret.startswith(TOKEN_PREFIX) and len(secret) == len(TOKEN_PREFIX) + 43
    assert secret != again
    token = stored_token(app, "bi-tool")  # names are kept in lower case
    assert token.secret_hash == hash_secret(secret) and secret not in token.secret_hash
    assert token.scopes == ["calls:read"] and token.created_by == "test"
    assert token.last_used_at is None and token.revoked_at is None


@pytest.mark.parametrize(
    ("name", "scopes", "problem"),
    [
        ("dup", ["calls:read"], "token 'dup' exists already"),
        ("new", ["calls:delete"], "scope 'calls:delete': must be one of calls:read,"),
        ("new", [], "a token needs at least one scope"),
        ("has space", ["calls:read"], "token name 'has space': use 1 to 64"),
    ],
    ids=["duplicate", "unknown-scope", "no-scope", "bad-name"],
)
def test_bad_tokens_are_refused_with_a_clear_error(app, name, scopes, problem):
    make_token(app, "dup", "calls:read")
    with (
        pytest.raises(TokenError, match=problem.replace("(", r"\(")),
        store.session_scope(app.state.session_factory) as session,
    ):
        create_token(session, name, scopes, "test")


# ---------------------------------------------------------------------------- requests


def test_a_token_may_do_what_its_scopes_allow_and_nothing_else(app, client):
    reader = make_token(app, "reader", "calls:read")
    phone = make_token(app, "phone", "stream:write")
    assert client.get("/api/calls", headers=bearer(reader)).status_code == 200
    refused = client.delete("/api/calls/x", headers=bearer(reader))
    assert refused.status_code == 403
    assert "needs the calls:write scope" in refused.json()["detail"]
    assert "'reader' has calls:read" in refused.json()["detail"]
    refused = client.get("/api/calls", headers=bearer(phone))
    assert refused.status_code == 403 and "calls:read" in refused.json()["detail"]
    # A phone system streams with its token in the URL (WebSockets cannot set headers).
    with client.websocket_connect(f"/api/stream?token={phone}") as websocket:
        websocket.send_json({"type": "no-such-message"})
        message, _ = expect_error(websocket)
    assert "not authorised" not in message
    with client.websocket_connect(f"/api/stream?token={reader}") as websocket:
        message, code = expect_error(websocket)
    assert code == 1008 and "needs the stream:write scope" in message


def test_the_admin_scope_includes_every_other(app, client):
    admin = make_token(app, "ops", "admin")
    assert client.get("/api/calls", headers=bearer(admin)).status_code == 200
    assert client.put("/api/rules", headers=bearer(admin), json={"rules": []}).status_code == 200
    assert client.get("/admin/tokens", headers=bearer(admin)).status_code == 200


def test_a_revoked_token_is_refused_at_once_and_the_others_keep_working(app, client):
    first = make_token(app, "first", "calls:read")
    second = make_token(app, "second", "calls:read")
    assert client.get("/api/calls", headers=bearer(first)).status_code == 200
    with store.session_scope(app.state.session_factory) as session:
        revoke_token(session, "first")
    assert client.get("/api/calls", headers=bearer(first)).status_code == 401
    assert client.get("/api/calls", headers=bearer(second)).status_code == 200
    assert client.get("/api/calls", headers=AUTH_SHARED).status_code == 200
    with client.websocket_connect(f"/api/stream?token={first}") as websocket:
        message, code = expect_error(websocket)
    assert code == 1008 and "not authorised" in message


AUTH_SHARED = {"Authorization": f"Bearer {TOKEN}"}


def test_wrong_tokens_are_refused_like_any_wrong_credential(app, client):
    secret = make_token(app, "real", "calls:read")
    for wrong in [
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        TOKEN_PREFIX,
        hash_secret(secret),
    ]:
        assert client.get("/api/calls", headers=bearer(wrong)).status_code == 401
    # A scoped token is no dashboard login: people sign in with their account.
    assert client.post("/api/auth/login", json={"token": secret}).status_code == 401


def test_last_use_is_written_at_most_once_a_minute(app, client):
    secret = make_token(app, "busy", "calls:read")
    client.get("/api/calls", headers=bearer(secret))
    first_use = stored_token(app, "busy").last_used_at
    assert first_use is not None
    client.get("/api/calls", headers=bearer(secret))
    assert stored_token(app, "busy").last_used_at == first_use  # no write within the minute
    with store.session_scope(app.state.session_factory) as session:
        get_token(session, "busy").last_used_at = first_use - timedelta(minutes=2)
    client.get("/api/calls", headers=bearer(secret))
    assert stored_token(app, "busy").last_used_at > first_use - timedelta(seconds=1)


def test_tokens_are_created_and_revoked_on_the_admin_page(app, client):
    import re

    assert client.post("/login", data={"token": TOKEN}).status_code == 303
    page = client.get("/admin/tokens")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    refused = client.post("/admin/tokens", data={"name": "x", "scope": "calls:read"})
    assert refused.status_code == 400  # no CSRF token
    made = client.post(
        "/admin/tokens",
        data={"name": "crm", "scope": ["calls:read", "alerts:write"], "csrf": csrf},
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', made.text).group(1)
    integration = TestClient(app)  # without the admin's login cookie
    assert integration.get("/api/alerts", headers=bearer(secret)).status_code == 200
    assert "calls:read, alerts:write" in made.text
    assert secret not in client.get("/admin/tokens").text  # shown once only
    revoked = client.post("/admin/tokens/crm/revoke", data={"csrf": csrf})
    assert revoked.status_code == 303
    assert integration.get("/api/alerts", headers=bearer(secret)).status_code == 401
    bad = client.post("/admin/tokens", data={"name": "y", "csrf": csrf})
    assert bad.status_code == 422 and "at least one scope" in bad.text


# ---------------------------------------------------------------------------- the CLI


def cli(database: str, *args: str):
    return CliRunner().invoke(cli_app, [*args, "--database-url", database])


def test_the_tokens_commands_on_a_real_database(database_url, tmp_path):  # noqa: F811
    made = cli(database_url, "tokens", "create", "twilio", "--scope", "stream:write")
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert secret.startswith(TOKEN_PREFIX)
    assert "created token twilio (stream:write)" in made.output
    cli(database_url, "tokens", "create", "bi", "--scope", "calls:read", "-s", "calls:write")
    listing = cli(database_url, "tokens", "list")
    assert listing.exit_code == 0
    assert "twilio" in listing.output and "stream:write" in listing.output
    assert "calls:write" in listing.output and "never" in listing.output
    assert secret not in listing.output
    revoked = cli(database_url, "tokens", "revoke", "twilio")
    assert revoked.exit_code == 0 and "revoked token twilio" in revoked.output
    engine = store.create_database_engine(database_url)
    with store.make_session_factory(engine)() as session:
        tokens = {token.name: token for token in list_tokens(session)}
        assert tokens["twilio"].revoked_at is not None and tokens["bi"].revoked_at is None
        assert tokens["twilio"].created_by == "cli"
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--scope", "everything"], "error: scope 'everything': must be one of"),
        (["revoke", "ghost"], "error: no token 'ghost'"),
    ],
    ids=["bad-scope", "unknown"],
)
def test_the_tokens_commands_fail_with_one_clear_line(tmp_path, args, message):
    url = f"sqlite:///{tmp_path / 'callmood.db'}"
    done = subprocess.run(
        [str(CALLMOOD), "tokens", *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(message), done.stderr


def test_require_scope_guards_a_websocket_route_too(app):
    # How the phone-system connectors use it: a dependency of their WebSocket route.
    @app.websocket("/test-connector", dependencies=[Depends(deps.require_scope("stream:write"))])
    async def connector(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("welcome")
        await websocket.close()

    phone = make_token(app, "pbx", "stream:write")
    reader = make_token(app, "bi", "calls:read")
    with TestClient(app) as client:
        with client.websocket_connect(f"/test-connector?token={phone}") as websocket:
            assert websocket.receive_text() == "welcome"
        for secret in (reader, "cm_wrong"):
            with (
                pytest.raises(WebSocketDisconnect) as closed,
                client.websocket_connect(f"/test-connector?token={secret}") as websocket,
            ):
                websocket.receive_text()
            assert closed.value.code == 1008
    assert "stream:write" in deps.scope_refusal(
        deps.Actor("token", deps.TOKEN_ROLE, "bi", scopes=frozenset({"calls:read"})),
        "stream:write",
    )
