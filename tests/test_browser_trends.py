"""The Trends page (issue 18) in Debian's headless Chromium against a real server, with the
hand-counted calls of test_api_trends.py viewed from Berlin: the tables show those numbers,
group-by switches day/week, an agent's row leads to /calls filtered by that agent, the CSV
download is the table, the page fits a phone, and no script fails."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import test_browser
from service_support import serving
from test_api_trends import store_fixture
from test_browser import TIMEOUT_MS, TOKEN, log_in
from test_browser_dashboard import LAPTOP, PHONE, doc_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright = test_browser.playwright
browser = test_browser.browser

RANGE = "date_from=2026-10-19&date_to=2026-11-01"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("trends") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))
    store_fixture(app.state.session_factory)
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def open_trends(browser, server, query: str, viewport=LAPTOP):  # noqa: F811
    """A Berlin viewer's signed-in page on /trends?query, loaded; and its script errors."""
    context = browser.new_context(viewport=viewport, timezone_id="Europe/Berlin", locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"script error: {error}"))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, server)
    page.goto(f"{server}/trends?{query}")
    page.wait_for_selector("body[data-trends-loaded=true]", timeout=TIMEOUT_MS)
    return context, page, errors


def table(page, name: str) -> list[list[str]]:
    """The rows (body, then the total) of a section's table, cell texts."""
    return page.locator(f"#table-{name} tbody tr, #table-{name} tfoot tr").evaluate_all(
        "rows => rows.map(row => Array.from(row.cells, cell => cell.innerText.trim()))"
    )


def test_trends_show_the_hand_counted_numbers_switch_to_weeks_and_lead_to_the_calls(
    browser,  # noqa: F811
    server,
):
    context, page, errors = open_trends(browser, server, RANGE)
    assert page.locator("header.topbar nav a.active").inner_text() == "Trends"
    days = table(page, "time")
    assert len(days) == 14 + 1, "every day of the range, then the total"
    by_day = {row[0]: row[1:] for row in days}
    # Day, calls, duration, mean negativity, calls with alerts, alerts, open alerts.
    assert by_day["Mon 19 Oct"] == ["1", "0:04", "0.20", "0", "0", "0"]
    assert by_day["Wed 21 Oct"] == ["2", "0:11", "0.80", "1", "1 (1 critical)", "1"]
    assert by_day["Sun 25 Oct"][:2] == ["4", "0:28"]
    assert by_day["Sun 25 Oct"][3:] == ["3", "4 (1 critical, 2 warning, 1 info)", "3"]
    assert by_day["Tue 20 Oct"] == ["0", "0:00", "–", "0", "0", "0"]
    assert days[-1] == [
        "Total",
        "11",
        "1:11",
        "0.52",
        "7",
        "9 (4 critical, 3 warning, 2 info)",
        "7",
    ]
    assert "11 call(s)" in page.locator("#trend-summary").inner_text()
    assert "Europe/Berlin" in page.locator("#trend-summary").inner_text()
    doc_screenshot(page, "trends")

    page.select_option("#trend-by", "week")
    page.locator("#trend-time[data-by=week]").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("document.querySelectorAll('#table-time tbody tr').length === 2")
    weeks = table(page, "time")
    assert [row[1] for row in weeks] == ["7", "4", "11"]
    assert (weeks[0][0], weeks[1][0]) == ("Mon 19 Oct", "Mon 26 Oct")
    assert parse_qs(urlsplit(page.url).query)["by"] == ["week"]
    csv_url = page.locator("#csv-time").get_attribute("href")
    assert parse_qs(urlsplit(csv_url).query)["tz"] == ["Europe/Berlin"]

    agents = table(page, "agent")
    assert [row[:2] for row in agents] == [
        ["Ana", "5"],
        ["Bo", "5"],
        ["(none)", "1"],
        ["Total", "11"],
    ]
    assert table(page, "queue")[0][:2] == ["sales", "5"]
    download = page.request.get(f"{server}{page.locator('#csv-agent').get_attribute('href')}")
    rows = list(csv.DictReader(io.StringIO(download.text())))
    assert [(row["group"], row["calls"]) for row in rows] == [
        ("Ana", "5"),
        ("Bo", "5"),
        ("", "1"),
        ("total", "11"),
    ]

    page.click("#table-agent a.calls-link:text-is('Bo')")
    page.wait_for_url("**/calls?agent=Bo")
    shown = page.locator("#calls tbody tr").evaluate_all("rows => rows.map(r => r.dataset.callId)")
    assert sorted(shown) == ["c03", "c04", "c08", "c09", "c13"]
    assert errors == []
    context.close()


def test_trends_fit_a_phone_without_sideways_scrolling(browser, server):  # noqa: F811
    context, page, errors = open_trends(browser, server, RANGE + "&by=day", viewport=PHONE)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide"
    for chart in page.locator("canvas.trend-chart").all():
        box = chart.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    doc_screenshot(page, "trends-390")
    assert errors == []
    context.close()


def test_a_bad_range_says_so_on_the_page(browser, server):  # noqa: F811
    context = browser.new_context(viewport=LAPTOP, timezone_id="Europe/Berlin")
    page = context.new_page()
    log_in(page, server)
    page.goto(f"{server}/trends?date_from=2026-11-02&date_to=2026-11-01")
    page.wait_for_selector("body[data-trends-loaded=error]", timeout=TIMEOUT_MS)
    assert "is before date_from" in page.locator("#trend-error").inner_text()
    context.close()
