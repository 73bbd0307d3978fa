"""Dashboard pages over plain HTTP (no browser): login, redirects, bad input, escaping.

The flows in a real browser are in test_browser.py; these check what a page must
do whatever the browser: never redirect off-site, answer garbage with a page
rather than a traceback, and never render HTML from a model card.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import require

TOKEN = "pages-test-token"


def make_client(data_dir: Path, **settings):
    from fastapi.testclient import TestClient

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, **settings))
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path / "data") as test_client:
        yield test_client


@pytest.fixture
def logged_in(client):
    response = client.post("/login", data={"token": TOKEN, "next": "/calls"})
    assert response.status_code == 303
    return client


def test_anonymous_visitor_is_redirected_to_login_and_back(client):
    response = client.get("/alerts?state=open")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Falerts%3Fstate%3Dopen"
    form = client.get(response.headers["location"])
    assert 'value="/alerts?state=open"' in form.text
    signed_in = client.post("/login", data={"token": TOKEN, "next": "/alerts?state=open"})
    assert signed_in.headers["location"] == "/alerts?state=open"
    assert client.get("/alerts?state=open").status_code == 200


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example", "/\\evil.example", "calls"]
)
def test_login_never_redirects_off_site(client, target):
    response = client.post("/login", data={"token": TOKEN, "next": target})
    assert response.headers["location"] == "/calls"


def test_wrong_token_shows_the_form_again_with_an_error(client):
    response = client.post("/login", data={"token": "guess", "next": "/calls"})
    assert response.status_code == 401
    assert "not the server&#39;s API token" in response.text
    assert "callmood_session" not in response.headers.get("set-cookie", "")


def test_logout_ends_the_session(logged_in):
    assert logged_in.get("/calls").status_code == 200
    logged_in.post("/logout")
    assert logged_in.get("/calls").status_code == 303


def test_unknown_call_gets_a_not_found_page(logged_in):
    response = logged_in.get("/calls/no-such-call")
    assert response.status_code == 404
    assert "no-such-call" in response.text and "<html" in response.text


def test_calls_page_ignores_filters_it_cannot_read(logged_in):
    response = logged_in.get(
        "/calls?date_from=yesterday&min_negativity=lots&has_alerts=maybe&emotion=<b>"
    )
    assert response.status_code == 200
    assert "<b>" not in response.text


def test_every_page_renders_for_a_signed_in_user(logged_in):
    for path in ("/calls", "/live", "/alerts", "/rules"):
        response = logged_in.get(path)
        assert response.status_code == 200, path
        assert "/static/callmood.css" in response.text


def test_model_card_is_rendered_as_markdown_without_raw_html(tmp_path):
    from callmood.inference import default_model_dir

    require((default_model_dir() / "model.json").is_file(), "no bundled model")
    model_dir = tmp_path / "model"
    shutil.copytree(default_model_dir(), model_dir)
    (model_dir / "MODEL_CARD.md").write_text(
        "# Card\n\n| metric | value |\n|---|---|\n| UA | 0.61 |\n\n<script>alert(1)</script>\n",
        encoding="utf-8",
    )
    with make_client(tmp_path / "data", model_dir=model_dir) as client:
        client.post("/login", data={"token": TOKEN, "next": "/model"})
        page = client.get("/model").text
    assert "<h1>Card</h1>" in page
    assert "<td>0.61</td>" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_too_many_wrong_tokens_show_a_wait_message(client):
    # The defaults: 5 failures within 5 minutes.
    for _ in range(5):
        assert client.post("/login", data={"token": "guess", "next": "/calls"}).status_code == 401
    response = client.post("/login", data={"token": TOKEN, "next": "/calls"})
    assert response.status_code == 429
    assert 0 < int(response.headers["retry-after"]) <= 300
    assert "Too many failed logins from this address: try again in 5 min." in response.text
    assert "callmood_session" not in response.headers.get("set-cookie", "")


def test_calls_page_ignores_paging_values_it_cannot_read(logged_in):
    response = logged_in.get("/calls?offset=-4&limit=many")
    assert response.status_code == 200
    assert 'id="older"' not in response.text and 'id="newer"' not in response.text
