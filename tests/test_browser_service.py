"""Paging through the calls list and the offline Swagger UI, in Debian's headless Chromium.

Its own server (a separate data folder from test_browser.py's) holds 60 stored calls,
more than one page of the dashboard's 50, so the counts below are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from service_support import make_call_result, serving
from test_browser import TOKEN, launch, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SEEDED_CALLS = 60  # the dashboard shows 50 per page
WITH_ALERTS = SEEDED_CALLS // 2


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A real uvicorn server with 60 stored calls, a minute apart, every other one alerting."""
    from callmood import store
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("paging") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))
    now = datetime.now(UTC)
    with store.session_scope(app.state.session_factory) as session:
        for index in range(SEEDED_CALLS):
            result = make_call_result(
                f"seeded-{index:02d}", alert_rules=("angry_customer",) if index % 2 == 0 else ()
            )
            store.save_call_result(
                session,
                result,
                name=f"Seeded call {index:02d}",
                created_at=now - timedelta(minutes=index + 1),
            )
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(playwright) -> Iterator[object]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


def row_ids(page) -> list[str]:
    return page.locator("#calls tbody tr[data-call-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.callId)"
    )


def test_older_and_newer_links_page_through_the_calls(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server)
    first_page = row_ids(page)
    assert first_page == [f"seeded-{index:02d}" for index in range(50)]
    assert "60 call(s); showing 1–50" in page.locator("#count").inner_text()
    assert page.locator("#newer").count() == 0
    page.click("#older")
    page.wait_for_url("**/calls?offset=50")
    assert row_ids(page) == [f"seeded-{index:02d}" for index in range(50, 60)]
    assert "showing 51–60" in page.locator("#count").inner_text()
    assert page.locator("#older").count() == 0
    screenshot(page, "calls-older")
    page.click("#newer")
    page.wait_for_url(f"{server}/calls")
    assert row_ids(page) == first_page
    page.close()


def test_paging_keeps_the_filters(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server)
    page.goto(f"{server}/calls?limit=20")
    page.select_option("select[name=has_alerts]", "true")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**has_alerts=true**")
    seen = row_ids(page)
    while page.locator("#older").count():
        page.click("#older")
        page.wait_for_load_state()
        assert "has_alerts=true" in page.url and "limit=20" in page.url
        seen += row_ids(page)
    assert seen == [f"seeded-{index:02d}" for index in range(0, SEEDED_CALLS, 2)]
    assert len(seen) == WITH_ALERTS
    page.close()


def test_swagger_ui_renders_with_the_internet_blocked(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    own_host = urlsplit(server).netloc

    def only_the_server(route) -> None:
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    page = context.new_page()
    log_in(page, server)
    page.goto(f"{server}/docs")
    operations = page.locator(".opblock .opblock-summary-path")
    operations.first.wait_for(timeout=30_000)
    paths = operations.all_inner_texts()
    assert any(path.replace("\u200b", "") == "/api/calls" for path in paths), paths
    assert len(paths) >= 10
    screenshot(page, "api-docs")
    assert blocked == [], f"/docs asked the internet for {blocked}"
    context.close()
