"""Hardening loose ends (issue 19): the security headers on unhandled 500s, the size limit
of `PUT /api/rules`, and the login route's malformed bodies answered with a clear 422.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_security import make_app

from callmood.service.routes.rules import MAX_RULES_BYTES
from callmood.service.security import SECURITY_HEADERS


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path / "data", auth_token="hardening-test-token-0123456789")


@pytest.fixture
def client(app):
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


AUTH = {"Authorization": "Bearer hardening-test-token-0123456789"}


def test_an_unhandled_exception_is_a_plain_500_with_the_security_headers(app):
    def explode() -> None:
        raise RuntimeError("secret internal detail")

    # Only in this test's app: no real route is meant to fail like this.
    app.add_api_route("/test-only/explode", explode)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/test-only/explode")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert "Traceback" not in response.text and "secret internal detail" not in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


def padded_rules(size: int) -> bytes:
    """A YAML rules document of exactly `size` bytes, invalid only by its rule's kind."""
    rule = b"\nrules:\n  - {name: x, kind: telepathy}\n"
    return b"#" + b"x" * (size - 1 - len(rule)) + rule


YAML = {**AUTH, "Content-Type": "application/yaml"}


def test_a_rules_document_just_under_the_limit_is_parsed(client):
    response = client.put("/api/rules", headers=YAML, content=padded_rules(MAX_RULES_BYTES))
    # Parsed and validated: refused for its content, not its size.
    assert response.status_code == 422, response.text
    assert "telepathy" in response.json()["detail"]


def test_a_rules_document_over_the_limit_is_413_before_parsing(client):
    # Not valid YAML either: a 413 (not a 422) shows it never reached the parser.
    body = b"[" * (MAX_RULES_BYTES + 1)
    response = client.put("/api/rules", headers=YAML, content=body)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"rules document of {MAX_RULES_BYTES + 1} bytes: "
        f"larger than the limit of {MAX_RULES_BYTES} bytes"
    )


def test_a_streamed_rules_document_over_the_limit_is_413(client):
    def chunks():  # no Content-Length: sent chunked, so the limit is checked while reading
        for _ in range(MAX_RULES_BYTES // 1024 + 1):
            yield b"#" * 1024

    response = client.put("/api/rules", headers=YAML, content=chunks())
    assert response.status_code == 413
    assert "larger than the limit of 262144 bytes" in response.json()["detail"]
    # The rules in force are unchanged.
    assert client.get("/api/rules", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(
            b"token=abc",
            "body: not valid JSON (Expecting value: line 1 column 1 (char 0))",
            id="not_json",
        ),
        pytest.param(b"", "body: not valid JSON (Expecting value", id="empty"),
        pytest.param(b"\xff\xfe", "body: not valid JSON (", id="not_utf8"),
        pytest.param(b'["token"]', 'body: must be a JSON object like {"token": "..."}', id="array"),
        pytest.param(b'"token"', 'body: must be a JSON object like {"token": "..."}', id="string"),
        pytest.param(
            b"[" * 5000 + b"]" * 5000, "body: not valid JSON (nested too deeply)", id="deep_array"
        ),
        pytest.param(
            b'{"token": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
            "body: not valid JSON (nested too deeply)",
            id="deep_object",
        ),
        pytest.param(b"{}", "body field 'token': Field required", id="missing_token"),
        pytest.param(
            b'{"token": 5}', "body field 'token': Input should be a valid string", id="number"
        ),
        pytest.param(
            b'{"token": null}', "body field 'token': Input should be a valid string", id="null"
        ),
        pytest.param(
            b'{"token": ""}',
            "body field 'token': String should have at least 1 character",
            id="empty_token",
        ),
    ],
)
def test_a_malformed_login_body_is_a_clear_422(client, body, detail):
    response = client.post(
        "/api/auth/login", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(detail)
    assert "set-cookie" not in response.headers


def test_a_well_formed_login_still_works(client):
    wrong = client.post("/api/auth/login", json={"token": "wrong"})
    assert wrong.status_code == 401
    right = client.post("/api/auth/login", json={"token": "hardening-test-token-0123456789"})
    assert right.status_code == 200 and right.json()["authenticated"] is True
    assert "set-cookie" in right.headers
