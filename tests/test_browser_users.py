"""User accounts in a real browser (Chromium): a supervisor signs in by name and
password and sees who is logged in; an admin sees the Users page, others a refusal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service_support import serving
from test_browser import launch, screenshot

from callmood import store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "browser-user-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    from callmood.service.app import create_app
    from callmood.settings import load_settings
    from callmood.store.users import create_user

    data_dir = tmp_path_factory.mktemp("users") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token="browser-users-token"))
    with store.session_scope(app.state.session_factory) as session:
        create_user(session, "sam", PASSWORD, "supervisor", display_name="Sam Supervisor")
        create_user(session, "ada", PASSWORD, "admin", display_name="Ada Admin")
    with serving(app, ws="auto") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = launch(driver)
        yield chromium
        chromium.close()


def sign_in(browser, server: str, username: str, password: str):
    page = browser.new_page()
    page.goto(f"{server}/calls")
    assert "/login" in page.url
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    return page


def test_a_supervisor_signs_in_by_name_and_may_not_see_the_users_page(browser, server):
    page = sign_in(browser, server, "sam", "not-the-password")
    assert page.locator("#login-error").inner_text() == "Wrong user name or password."
    page.close()
    page = sign_in(browser, server, "Sam", PASSWORD)
    page.wait_for_url(f"{server}/calls")
    assert page.locator("#who").inner_text() == "Sam Supervisor · supervisor"
    assert page.locator("nav a", has_text="Users").count() == 0
    page.goto(f"{server}/admin/users")
    assert "needs the admin role" in page.locator(".message.error").inner_text()
    page.close()


def test_an_admin_sees_the_users_and_their_last_login(browser, server):
    page = sign_in(browser, server, "ada", PASSWORD)
    page.wait_for_url(f"{server}/calls")
    page.click("nav a:has-text('Users')")
    page.wait_for_url(f"{server}/admin/users")
    ada = page.locator("tr[data-user=ada]")
    assert "admin" in ada.inner_text() and "never" not in ada.inner_text()
    assert "supervisor" in page.locator("tr[data-user=sam]").inner_text()
    screenshot(page, "admin-users")
    page.close()


def test_an_admin_adds_disables_and_resets_a_user_on_the_page(browser, server):
    page = sign_in(browser, server, "ada", PASSWORD)
    page.wait_for_url(f"{server}/calls")
    page.goto(f"{server}/admin/users")
    page.fill("#new-username", "Vic")
    page.select_option("#new-role", "viewer")
    page.fill("#new-password", "short")
    page.click("#add-user button[type=submit]")
    assert "Password too short" in page.locator("#users-error").inner_text()
    page.fill("#new-username", "Vic")
    page.fill("#new-password", "vic-first-password")
    page.click("#add-user button[type=submit]")
    assert page.locator("#users-done").inner_text() == "Added vic (viewer)."
    row = page.locator("tr[data-user=vic]")
    row.locator("button", has_text="Disable").click()
    assert page.locator("#users-done").inner_text() == "Disabled vic."
    assert "yes" in page.locator("tr[data-user=vic]").inner_text()
    page.locator("tr[data-user=vic] button", has_text="Enable").click()
    page.locator("tr[data-user=vic] input[name=password]").fill("vic-second-password")
    page.locator("tr[data-user=vic] button", has_text="Reset password").click()
    assert page.locator("#users-done").inner_text() == "New password set for vic."
    screenshot(page, "admin-users-changed")
    page.close()
    viewer = sign_in(browser, server, "vic", "vic-second-password")
    viewer.wait_for_url(f"{server}/calls")
    assert viewer.locator("#who").inner_text() == "vic · viewer"
    viewer.close()
