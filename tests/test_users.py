"""User accounts (docs/access.md): argon2 hashes, the `callmood users` commands on SQLite
and PostgreSQL, login by user name, disabled users, throttling and role refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import argon2
import pytest
from fastapi.testclient import TestClient
from service_support import database_url  # noqa: F401 (fixture)
from typer.testing import CliRunner

from callmood import store
from callmood.cli import app as cli_app
from callmood.service.app import create_app
from callmood.settings import load_settings
from callmood.store.users import (
    UnknownUserError,
    UserError,
    authenticate,
    create_user,
    get_user,
    hash_password,
    list_users,
    set_disabled,
    set_password,
)

TOKEN = "users-test-token-0123456789"
PASSWORD = "a-long-enough-password"
CALLMOOD = Path(sys.executable).with_name("callmood")


@pytest.fixture
def sessions(database_url):  # noqa: F811
    engine = store.create_database_engine(database_url)
    store.upgrade_database(engine)
    yield store.make_session_factory(engine)
    engine.dispose()


# ---------------------------------------------------------------------------- hashing


def test_passwords_are_hashed_with_argon2id_at_the_librarys_current_parameters():
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    used = argon2.extract_parameters(stored)
    defaults = argon2.PasswordHasher()
    assert (used.time_cost, used.memory_cost, used.parallelism) == (
        defaults.time_cost,
        defaults.memory_cost,
        defaults.parallelism,
    )
    assert hash_password(PASSWORD) != stored  # a new salt every time


def test_a_hash_with_old_parameters_is_remade_at_the_next_login(sessions):
    with store.session_scope(sessions) as session:
        user = create_user(session, "old-hash", PASSWORD, "viewer")
        weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        user.password_hash = weak.hash(PASSWORD)
    with store.session_scope(sessions) as session:
        assert authenticate(session, "old-hash", PASSWORD).user is not None
    with sessions() as session:
        upgraded = get_user(session, "old-hash")
        assert argon2.extract_parameters(upgraded.password_hash).memory_cost > 8192
        assert not argon2.PasswordHasher().check_needs_rehash(upgraded.password_hash)
        assert upgraded.last_login_at is not None
        assert authenticate(session, "old-hash", PASSWORD).user is not None


@pytest.mark.parametrize(
    ("name", "password", "role", "problem"),
    [
        ("bob", "short-pw", "viewer", "password too short: at least 10 characters (got 8)"),
        ("bob", PASSWORD, "boss", "role 'boss': must be one of viewer, supervisor, admin"),
        ("bob smith", PASSWORD, "viewer", "user name 'bob smith': use 1 to 64"),
        ("", PASSWORD, "viewer", "user name '': use 1 to 64"),
        ("x" * 65, PASSWORD, "viewer", "user name"),
    ],
    ids=["short-password", "bad-role", "space-in-name", "empty-name", "long-name"],
)
def test_bad_users_are_refused_with_a_clear_error(sessions, name, password, role, problem):
    with sessions() as session, pytest.raises(UserError) as refused:
        create_user(session, name, password, role)
    assert str(refused.value).startswith(problem)


def test_user_names_are_unique_whatever_the_case(sessions):
    with store.session_scope(sessions) as session:
        create_user(session, "Ana.Silva@example.com", PASSWORD, "admin", "Ana Silva")
    with sessions() as session, pytest.raises(UserError, match="exists already"):
        create_user(session, "ana.silva@EXAMPLE.com", PASSWORD, "viewer")
    with sessions() as session:
        assert get_user(session, "ANA.SILVA@example.com").display_name == "Ana Silva"
        with pytest.raises(UnknownUserError, match="no user 'nobody'"):
            get_user(session, "nobody")


def test_wrong_names_and_passwords_get_one_answer_and_disabled_users_none(sessions):
    with store.session_scope(sessions) as session:
        create_user(session, "carol", PASSWORD, "supervisor")
    with store.session_scope(sessions) as session:
        assert authenticate(session, "carol", "wrong-password").problem == (
            "wrong user name or password"
        )
        assert authenticate(session, "nobody", PASSWORD).problem == "wrong user name or password"
        assert authenticate(session, "CAROL", PASSWORD).user is not None
        set_disabled(session, "carol", True)
    with sessions() as session:
        refused = authenticate(session, "carol", PASSWORD)
        assert refused.user is None and "disabled" in (refused.problem or "")


# ---------------------------------------------------------------------------- the CLI


def cli(database: str, *args: str, stdin: str | None = None):
    return CliRunner().invoke(cli_app, [*args, "--database-url", database], input=stdin)


def test_the_users_commands_on_a_real_database(sessions, database_url, tmp_path):  # noqa: F811
    added = cli(
        database_url,
        "users",
        "add",
        "Dora",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    assert "added user dora (supervisor)" in added.output
    # Asked twice at the prompt, the two must be the same.
    prompted = cli(
        database_url, "users", "add", "eve", "--role", "viewer", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0, prompted.output

    listing = cli(database_url, "users", "list")
    assert listing.exit_code == 0
    assert "dora" in listing.output and "supervisor" in listing.output
    assert "never" in listing.output

    assert cli(database_url, "users", "disable", "DORA").exit_code == 0
    with sessions() as session:
        assert get_user(session, "dora").disabled
    assert "enabled user dora" in cli(database_url, "users", "enable", "dora").output

    reset = cli(
        database_url,
        "users",
        "reset-password",
        "dora",
        "--password-stdin",
        stdin="another-password-2\n",
    )
    assert reset.exit_code == 0, reset.output
    with store.session_scope(sessions) as session:
        assert authenticate(session, "dora", "another-password-2").user is not None
        assert authenticate(session, "dora", PASSWORD).user is None
        assert [user.username for user in list_users(session)] == ["dora", "eve"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "dup", "--role", "viewer"], PASSWORD, "error: user 'dup' exists already"),
        (["add", "new", "--role", "boss"], PASSWORD, "error: role 'boss': must be one of"),
        (["add", "new", "--role", "viewer"], "too-short", "error: password too short"),
        (["disable", "ghost"], None, "error: no user 'ghost'"),
        (["reset-password", "ghost"], PASSWORD, "error: no user 'ghost'"),
    ],
    ids=["duplicate", "bad-role", "weak-password", "unknown-disable", "unknown-reset"],
)
def test_the_users_commands_fail_with_one_clear_line(tmp_path, args, stdin, message):
    url = f"sqlite:///{tmp_path / 'callmood.db'}"
    engine = store.create_database_engine(url)
    store.upgrade_database(engine)
    with store.session_scope(store.make_session_factory(engine)) as session:
        create_user(session, "dup", PASSWORD, "viewer")
    engine.dispose()
    extra = ["--password-stdin"] if stdin is not None else []
    done = subprocess.run(
        [str(CALLMOOD), "users", *args, *extra, "--database-url", url],
        input=(stdin or "") + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(message), done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- the service


@pytest.fixture
def app(tmp_path):
    app = create_app(load_settings(data_dir=tmp_path / "data", auth_token=TOKEN))
    with store.session_scope(app.state.session_factory) as session:
        for role in ("viewer", "supervisor", "admin"):
            create_user(session, f"{role}-1", PASSWORD, role, display_name=f"The {role}")
    return app


@pytest.fixture
def client(app):
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def form_login(client: TestClient, username: str, password: str):
    return client.post("/login", data={"username": username, "password": password, "next": "/"})


def test_a_user_logs_in_on_the_page_and_the_header_says_who(client):
    refused = form_login(client, "viewer-1", "not-the-password")
    assert refused.status_code == 401
    assert "Wrong user name or password." in refused.text
    assert form_login(client, "Viewer-1", PASSWORD).status_code == 303
    page = client.get("/calls")
    assert "The viewer · viewer" in page.text
    assert "/admin/users" not in page.text  # no link to what the role may not see
    status = client.get("/api/auth/status").json()
    assert status == {
        "authenticated": True,
        "auth_disabled": False,
        "user": "viewer-1",
        "role": "viewer",
    }


def test_the_api_login_takes_a_user_name_and_password(client):
    wrong = client.post("/api/auth/login", json={"username": "admin-1", "password": "nope-nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong user name or password"
    right = client.post("/api/auth/login", json={"username": "admin-1", "password": PASSWORD})
    assert right.status_code == 200 and right.json()["role"] == "admin"
    users = client.get("/admin/users")
    assert users.status_code == 200 and "supervisor-1" in users.text


def test_a_disabled_users_session_ends_at_the_next_request(app, client):
    assert form_login(client, "supervisor-1", PASSWORD).status_code == 303
    assert client.get("/api/calls").status_code == 200
    with store.session_scope(app.state.session_factory) as session:
        set_disabled(session, "supervisor-1", True)
    assert client.get("/api/calls").status_code == 401
    assert client.get("/calls").headers["location"].startswith("/login?next=")
    again = form_login(client, "supervisor-1", PASSWORD)
    assert again.status_code == 401 and "is disabled" in again.text


def test_a_new_password_ends_the_users_other_sessions(app, client):
    assert form_login(client, "viewer-1", PASSWORD).status_code == 303
    with store.session_scope(app.state.session_factory) as session:
        user = set_password(session, "viewer-1", "a-brand-new-password")
        # The session names the password's time in whole seconds: make it differ.
        user.password_changed_at = user.password_changed_at.replace(year=2099)
    assert client.get("/api/calls").status_code == 401


def test_wrong_passwords_are_throttled_like_wrong_tokens(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", auth_token=TOKEN, login_max_failures=3)
    app = create_app(settings)
    with store.session_scope(app.state.session_factory) as session:
        create_user(session, "frank", PASSWORD, "viewer")
    with TestClient(app, follow_redirects=False) as client:
        # Wrong passwords, unknown names and wrong tokens all count in the one limiter.
        assert form_login(client, "frank", "wrong-password").status_code == 401
        assert (
            client.post("/api/auth/login", json={"username": "nobody", "password": "x"}).status_code
            == 401
        )
        assert client.post("/api/auth/login", json={"token": "wrong"}).status_code == 401
        throttled = form_login(client, "frank", PASSWORD)  # the right one, too late
        assert throttled.status_code == 429 and "Retry-After" in throttled.headers
        api = client.post("/api/auth/login", json={"username": "frank", "password": PASSWORD})
        assert api.status_code == 429


def test_roles_are_refused_what_they_may_not_do(client):
    assert form_login(client, "viewer-1", PASSWORD).status_code == 303
    csrf = {
        "X-CSRF-Token": client.get("/calls")
        .text.split('name="csrf-token" content="')[1]
        .split('"')[0]
    }
    refused = client.delete("/api/calls/any", headers=csrf)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "not allowed: this needs the supervisor role; 'viewer-1' has the viewer role "
        "(see docs/access.md)"
    )
    page = client.get("/admin/users", headers={"Accept": "text/html"})
    assert page.status_code == 403 and "needs the admin role" in page.text
    assert client.get("/api/alerts").status_code == 200  # reading is allowed


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"username": "ana"}, "body field 'password': Field required"),
        ({"username": 5, "password": PASSWORD}, "body field 'username': Input should be a valid"),
        ({"username": "", "password": PASSWORD}, "body field 'username': String should have"),
    ],
    ids=["no-password", "number-name", "empty-name"],
)
def test_a_malformed_user_login_is_a_clear_422(client, body, detail):
    response = client.post("/api/auth/login", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(detail)


def test_the_users_page_forms_need_the_csrf_token_and_refuse_self_disable(client):
    assert form_login(client, "admin-1", PASSWORD).status_code == 303
    page = client.get("/admin/users").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    forged = client.post("/admin/users/viewer-1/disable", data={"csrf": "0" * 64})
    assert forged.status_code == 400 and "CSRF" in forged.json()["detail"]
    own = client.post("/admin/users/admin-1/disable", data={"csrf": csrf})
    assert own.status_code == 422 and "You cannot disable your own account." in own.text
    done = client.post("/admin/users/viewer-1/disable", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"].startswith("/admin/users?done=")
    added = client.post(
        "/admin/users",
        data={"csrf": csrf, "username": "viewer-1", "role": "viewer", "password": PASSWORD},
    )
    assert added.status_code == 422 and "User &#39;viewer-1&#39; exists already." in added.text
