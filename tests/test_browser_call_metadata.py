"""Agents, queues and real start times on the dashboard (issue 18), in Debian's headless
Chromium against a real server: the upload form sends agent and queue, the calls table shows
them with the start time in the browser's time zone, and the list filters by agent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import test_browser
from service_support import make_call_result, serving
from test_browser import DEMO_CALL, TIMEOUT_MS, TOKEN, log_in

from callmood.call_metadata import CallMetadata

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# test_browser.py's fixtures, one of each per module here too: Playwright, Chromium, the model.
playwright = test_browser.playwright
browser = test_browser.browser
model_available = test_browser.model_available

#: A seeded call that started at 08:00 UTC on 3 November 2026: 03:00 in New York (EST).
SEEDED_START = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded_app(tmp_path_factory):
    """The app with one call of agent Bo in queue sales."""
    from callmood import store
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("call-metadata") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))
    with store.session_scope(app.state.session_factory) as session:
        store.save_call_result(
            session,
            make_call_result("bo-call"),
            name="Bo's call",
            metadata=CallMetadata(agent="Bo", queue="sales", started_at=SEEDED_START),
        )
    return app


@pytest.fixture(scope="module")
def server(seeded_app) -> Iterator[str]:
    with serving(seeded_app) as port:
        yield f"http://127.0.0.1:{port}"


def test_upload_with_agent_and_queue_then_filter_by_agent(
    browser,  # noqa: F811
    server,
    seeded_app,
    model_available,  # noqa: F811
):
    from callmood import store

    # A New York viewer: start times show in their zone, not the server's UTC.
    context = browser.new_context(
        viewport={"width": 1366, "height": 900}, timezone_id="America/New_York", locale="en-US"
    )
    page = context.new_page()
    log_in(page, server)
    seeded_row = page.locator("tr[data-call-id='bo-call']")
    assert seeded_row.locator("td.started time").inner_text() == "Nov 3, 2026, 3:00 AM"
    assert seeded_row.locator("td.agent").inner_text() == "Bo"
    assert seeded_row.locator("td.queue").inner_text() == "sales"

    page.fill("#upload-agent", "  Ana Ruiz ")
    page.fill("#upload-queue", "billing")
    page.set_input_files("#file-input", str(DEMO_CALL))
    link = page.locator("#uploads a", has_text="analysed")
    link.wait_for(timeout=TIMEOUT_MS)
    call_id = link.get_attribute("href").rsplit("/", 1)[-1]
    # The list refreshes in place, its new row with the agent, queue and a local start time.
    row = page.locator(f"tr[data-call-id='{call_id}']")
    row.wait_for(timeout=TIMEOUT_MS)
    assert row.locator("td.agent").inner_text() == "Ana Ruiz"
    assert row.locator("td.queue").inner_text() == "billing"
    with store.session_scope(seeded_app.state.session_factory) as session:
        stored = store.get_call(session, call_id)
        assert (stored.agent, stored.queue) == ("Ana Ruiz", "billing")
        started = stored.started_at
    local = started.astimezone(ZoneInfo("America/New_York"))
    shown = row.locator("td.started time").inner_text()
    assert shown.startswith(local.strftime("%b %-d, %Y")), shown
    assert "UTC" not in shown

    page.fill("#filters input[name=agent]", "Ana Ruiz")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**agent=Ana**")
    assert parse_qs(urlsplit(page.url).query) == {"agent": ["Ana Ruiz"]}  # empty fields left out
    assert page.locator("#calls tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.callId)"
    ) == [call_id]
    assert page.locator("#filters input[name=agent]").input_value() == "Ana Ruiz"
    csv_url = page.locator("#csv-download").get_attribute("href")
    assert parse_qs(urlsplit(csv_url).query) == {"agent": ["Ana Ruiz"]}

    # Queue filter, and sorting by the real start time (the seeded call started long ago).
    page.goto(f"{server}/calls?queue=sales")
    assert page.locator("#calls tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.callId)"
    ) == ["bo-call"]
    page.goto(f"{server}/calls")
    page.click("th a[data-sort=started_at]")
    page.wait_for_url("**sort=-started_at")
    order = page.locator("#calls tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.callId)"
    )
    assert order == [call_id, "bo-call"]
    context.close()
