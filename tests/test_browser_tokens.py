"""Integration tokens and the audit trail in a real browser (Chromium): an admin creates a
token on /admin/tokens, copies its secret (shown once), the token works, is revoked on
the page and stops working; the Audit page lists both changes."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from service_support import serving
from test_browser import screenshot
from test_browser_users import browser, sign_in  # noqa: F401 (browser: a fixture)

from callmood import store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "browser-token-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    from callmood.service.app import create_app
    from callmood.settings import load_settings
    from callmood.store.users import create_user

    data_dir = tmp_path_factory.mktemp("tokens") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token="browser-tokens-token"))
    with store.session_scope(app.state.session_factory) as session:
        create_user(session, "ada", PASSWORD, "admin", display_name="Ada Admin")
    with serving(app, ws="auto") as port:
        yield f"http://127.0.0.1:{port}"


def api_status(server: str, secret: str) -> int:
    request = urllib.request.Request(
        f"{server}/api/calls", headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_admin_creates_and_revokes_a_token_on_the_page(browser, server):  # noqa: F811
    page = sign_in(browser, server, "ada", PASSWORD)
    page.wait_for_url(f"{server}/calls")
    page.click("nav a:has-text('Tokens')")
    page.wait_for_url(f"{server}/admin/tokens")
    page.fill("#new-token-name", "powerbi")
    page.click("#create-token button[type=submit]")  # no scope ticked
    assert "at least one scope" in page.locator("#tokens-error").inner_text()
    page.fill("#new-token-name", "powerbi")
    page.check("#create-token input[value='calls:read']")
    page.click("#create-token button[type=submit]")
    assert page.locator("#tokens-done").inner_text() == "Created powerbi (calls:read)."
    secret = page.locator("#new-secret").inner_text()
    assert secret.startswith("cm_")
    row = page.locator("tr[data-token=powerbi]")
    assert "calls:read" in row.inner_text() and "never" in row.inner_text()
    screenshot(page, "admin-tokens-created")
    assert api_status(server, secret) == 200

    page.goto(f"{server}/admin/tokens")
    assert page.locator("#new-secret").count() == 0  # shown once only
    assert page.locator("tr[data-token=powerbi] .last-used").inner_text() != "never"
    page.locator("tr[data-token=powerbi] button", has_text="Revoke").click()
    assert page.locator("#tokens-done").inner_text() == "Revoked powerbi."
    assert page.locator("tr[data-token=powerbi] .revoked").inner_text() != "no"
    assert page.locator("tr[data-token=powerbi] button", has_text="Revoke").count() == 0
    assert api_status(server, secret) == 401

    page.click("nav a:has-text('Audit')")
    page.wait_for_url(f"{server}/admin/audit")
    assert page.locator("tr[data-action='token.created']").count() == 1
    assert "ada" in page.locator("tr[data-action='token.revoked']").inner_text()
    page.select_option("#action-filter", "login.ok")
    page.click("#filters button[type=submit]")
    assert (
        page.locator("#events tbody tr").count()
        == page.locator("tr[data-action='login.ok']").count()
    )
    screenshot(page, "admin-audit")
    page.close()
