"""What a new user found on the dashboard (issue 18, 2 December 2026), in Debian's headless
Chromium driven by Playwright against a real server.

One server per module: a seeded call with 239 alerts (more than a page of the alerts
list), a call whose alerts are partly resolved, and the demo call uploaded through the
drop zone. Screenshots of the pages at 1366 and 390 px wide land in docs/img/.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import test_browser
from conftest import REPO_ROOT
from service_support import make_call_result, serving
from test_browser import DEMO_CALL, TIMEOUT_MS, TOKEN, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# test_browser.py's fixtures, one of each per module here too: Playwright, Chromium, the model.
playwright = test_browser.playwright
browser = test_browser.browser
model_available = test_browser.model_available

MANY_ALERTS = 239
DOC_IMAGES = REPO_ROOT / "docs" / "img"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}
SPEECH_CLIP = "Actor_02/03-01-01-01-01-01-02.flac"


@pytest.fixture(scope="module")
def seeded_app(tmp_path_factory):
    """The app with two seeded calls: 239 alerts on one; two alerts, one resolved, on the other."""
    from callmood import store
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("dashboard-defects") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))
    now = datetime.now(UTC)
    with store.session_scope(app.state.session_factory) as session:
        many = make_call_result(
            "many-alerts", alert_rules=tuple(f"rule_{index:03d}" for index in range(MANY_ALERTS))
        )
        store.save_call_result(
            session, many, name="Call with many alerts", created_at=now - timedelta(hours=2)
        )
        handled = make_call_result("half-handled", alert_rules=("angry_customer", "loud_customer"))
        store.save_call_result(
            session, handled, name="Half handled call", created_at=now - timedelta(hours=1)
        )
    with store.session_scope(app.state.session_factory) as session:
        first, *_ = store.list_alerts(session, call_id="half-handled")[0]
        store.set_alert_state(session, first.id, "resolved")
    return app


@pytest.fixture(scope="module")
def server(seeded_app) -> Iterator[str]:
    with serving(seeded_app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def demo_call(browser, server, model_available) -> str:
    """The demo call uploaded through the file picker; its call id."""
    page = browser.new_page(viewport=LAPTOP)
    log_in(page, server)
    page.set_input_files("#file-input", str(DEMO_CALL))
    link = page.locator("#uploads a", has_text="analysed")
    link.wait_for(timeout=TIMEOUT_MS)
    call_id = link.get_attribute("href").rsplit("/", 1)[-1]
    page.close()
    return call_id


def doc_screenshot(page, name: str) -> None:
    """A screenshot for docs/img/: the first screen only, in 256 colours, so the PNGs stay
    small in the repository (Pillow comes with matplotlib)."""
    from PIL import Image

    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    path = DOC_IMAGES / f"{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def signed_in_page(browser, server, viewport=LAPTOP, **context_options):
    context = browser.new_context(viewport=viewport, **context_options)
    page = context.new_page()
    log_in(page, server)
    return context, page


def silent_wav(path: Path, megabytes: float) -> Path:
    # Silence: the server takes it whole and analyses it quickly (no speech to classify).
    samples = int(megabytes * 1_000_000 / 2)
    sf.write(path, np.zeros(samples, dtype=np.int16), 16000, subtype="PCM_16")
    return path


# ------------------------------------------------------------------ 1, 2: uploads


def test_a_large_upload_is_not_aborted_when_a_small_one_finishes_and_leaving_warns(
    browser, server, ravdess_dir, model_available, tmp_path
):
    big = silent_wav(tmp_path / "big-silence.wav", 6)
    context, page = signed_in_page(browser, server)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    # 1 MB/s up: the 6 MB file takes ~6 s, the small one is analysed long before.
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 20,
            "downloadThroughput": -1,
            "uploadThroughput": 1_000_000,
        },
    )
    page.evaluate("() => { window.sameDocument = true; }")
    page.set_input_files("#file-input", [str(big), str(ravdess_dir / SPEECH_CLIP)])
    small = page.locator("#uploads li", has_text="03-01-01-01-01-01-02.flac")
    small.locator("a", has_text="analysed").wait_for(timeout=TIMEOUT_MS)
    big_row = page.locator("#uploads li", has_text="big-silence.wav")
    assert big_row.locator(".upload-state").inner_text() == "uploading…"
    leaving = "() => { const e = new Event('beforeunload', {cancelable: true}); " + (
        "window.dispatchEvent(e); return e.defaultPrevented; }"
    )
    assert page.evaluate(leaving), "leaving mid-upload must ask first"
    # The list shows the analysed call without reloading the page.
    page.locator("#calls tr", has_text="03-01-01-01-01-01-02.flac").wait_for(timeout=TIMEOUT_MS)
    big_row.locator(".upload-state", has_text=re.compile("queued|analysing|analysed")).wait_for(
        timeout=TIMEOUT_MS
    )
    assert page.evaluate("() => window.sameDocument === true"), "the page was reloaded"
    assert not page.evaluate(leaving), "nothing left to lose: leaving must not ask"
    big_row.locator("a", has_text="analysed").wait_for(timeout=TIMEOUT_MS)
    context.close()


def test_a_rejected_file_stays_rejected_after_a_good_one_is_analysed(
    browser, server, ravdess_dir, model_available, tmp_path
):
    notes = tmp_path / "notes.wav"
    notes.write_text("meeting notes, not audio\n" * 20, encoding="utf-8")
    context, page = signed_in_page(browser, server)
    page.set_input_files("#file-input", [str(ravdess_dir / SPEECH_CLIP), str(notes)])
    good = page.locator("#uploads li", has_text="03-01-01-01-01-01-02.flac")
    good.locator("a", has_text="analysed").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_timeout(2000)
    rejected = page.locator("#uploads li", has_text="notes.wav")
    assert "rejected" in rejected.inner_text() and "audio" in rejected.inner_text()
    context.close()


# ------------------------------------------------------------------ 3: probability chart

CURVE_COLUMNS_DRAWN = """() => {
    const data = JSON.parse(document.getElementById('call-data').textContent);
    const canvas = document.getElementById('curves');
    const context = canvas.getContext('2d');
    const ratio = canvas.width / canvas.clientWidth;
    const plotWidth = canvas.clientWidth - 78 - 8;
    const windows = data.windows.filter((w) => w.speaker === data.curve_speaker);
    const empty = [];
    for (const w of windows) {
        const x = Math.round((78 + ((w.start + w.end) / 2 / data.duration) * plotWidth) * ratio);
        const column = context.getImageData(x - 1, 0, 3, canvas.height).data;
        let coloured = false;
        for (let i = 0; i < column.length; i += 4) {
            const [r, g, b] = [column[i], column[i + 1], column[i + 2]];
            if (Math.max(r, g, b) - Math.min(r, g, b) > 60) { coloured = true; break; }
        }
        if (!coloured) empty.push(w.start);
    }
    return {count: windows.length, empty: empty};
}"""


def test_probability_chart_draws_every_window_of_the_speaker(browser, server, demo_call):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/calls/{demo_call}")
    page.wait_for_selector("#curves")
    drawn = page.evaluate(CURVE_COLUMNS_DRAWN)
    assert drawn["count"] > 5
    assert drawn["empty"] == [], f"windows with nothing drawn, starting at {drawn['empty']} s"
    context.close()


# ------------------------------------------------------------------ 4, 6: alerts page


def test_alerts_page_pages_through_every_alert(browser, server):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/alerts")
    total = int(re.match(r"(\d+) alert", page.locator("#alert-count").inner_text()).group(1))
    assert total >= MANY_ALERTS + 2
    seen = page.locator("#alerts tbody tr[data-alert-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.alertId)"
    )
    while page.locator("#older").count():
        page.click("#older")
        page.wait_for_load_state()
        assert "offset=" in page.url
        seen += page.locator("#alerts tbody tr[data-alert-id]").evaluate_all(
            "rows => rows.map(row => row.dataset.alertId)"
        )
    assert len(seen) == total and len(set(seen)) == total
    page.goto(f"{server}/alerts?offset=200")
    assert page.locator("#alerts tbody tr[data-alert-id]").count() == min(total - 200, 200)
    context.close()


def test_alerts_table_fits_its_card_at_laptop_width(browser, server):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/alerts")
    table = page.locator("#alerts").bounding_box()
    card = page.locator("#alerts-card").bounding_box()
    assert table["x"] + table["width"] <= card["x"] + card["width"] + 1
    what = page.locator("#alerts tbody tr[data-alert-id] td.what").first.bounding_box()
    assert what["width"] >= 250, f"the message column is {what['width']} px wide"
    doc_screenshot(page, "alerts-1366")
    context.close()


# ------------------------------------------------------------------ 5: phone width


def test_no_page_is_wider_than_a_phone_and_the_menu_fits(browser, server, demo_call):
    context, page = signed_in_page(browser, server, viewport=PHONE)
    pages = [
        "/calls",
        f"/calls/{demo_call}",
        "/calls/many-alerts",
        "/live",
        "/alerts",
        "/rules",
        "/model",
        "/nope",
    ]
    too_wide = {}
    for path in pages:
        page.goto(f"{server}{path}")
        page.wait_for_load_state("load")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[path] = width
        bar = page.locator("header.topbar").bounding_box()
        for item in page.locator("header.topbar a, header.topbar button").all():
            box = item.bounding_box()
            assert box["x"] + box["width"] <= PHONE["width"], f"{path}: menu item cut off"
            assert bar["y"] <= box["y"] and box["y"] + box["height"] <= bar["y"] + bar["height"]
        screenshot(page, "phone-" + (path.strip("/").replace("/", "-") or "home"))
        if path in ("/calls", "/alerts", f"/calls/{demo_call}"):
            name = "call" if path.startswith("/calls/") else path.strip("/")
            doc_screenshot(page, f"{name}-390")
    assert too_wide == {}, f"pages wider than the phone: {too_wide}"
    page.context.clear_cookies()
    page.goto(f"{server}/login")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    context.close()


# ------------------------------------------------------------------ 7: alert times


def test_alert_opens_where_the_condition_began_and_shows_when_it_was_confirmed(
    browser, server, demo_call
):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/calls/{demo_call}")
    row = page.locator("#alerts tbody tr", has_text="angry_customer").first
    jump = row.locator("a.jump")
    table = page.locator("#alerts").bounding_box()
    card = page.locator("#alerts-card").bounding_box()
    assert table["x"] + table["width"] <= card["x"] + card["width"] + 1, "alerts stick out"
    opened = float(jump.get_attribute("data-time"))
    confirmed = float(row.get_attribute("data-confirmed"))
    closed = float(row.get_attribute("data-closed"))
    # The rule needs 6 s of angry speech: the alert spans them, it does not start after them.
    assert confirmed - opened >= 5.9
    assert closed >= confirmed
    assert "confirmed" in row.inner_text()
    doc_screenshot(page, "call-1366")
    jump.click()
    page.wait_for_function(
        f"() => Math.abs(document.getElementById('player').currentTime - {opened}) < 0.5"
    )
    screenshot(page, "call-detail-alert-times")
    context.close()


# ------------------------------------------------------------------ 8: exports


def test_windows_csv_has_one_row_per_window_and_exports_are_named_after_the_call(
    browser, server, demo_call
):
    context, page = signed_in_page(browser, server, accept_downloads=True)
    page.goto(f"{server}/calls/{demo_call}")
    windows = page.evaluate(
        "() => JSON.parse(document.getElementById('call-data').textContent).windows.length"
    )
    with page.expect_download() as download_info:
        page.click("#exports a:has-text('CSV (windows)')")
    download = download_info.value
    assert download.suggested_filename == "demo_call.windows.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert len(rows) == windows
    assert {"start", "end", "emotion", "confidence"} <= set(rows[0])
    with page.expect_download() as download_info:
        page.click("#exports a:has-text('JSON')")
    assert download_info.value.suggested_filename == "demo_call.json"
    context.close()


# ------------------------------------------------------------------ 9: errors, docs, favicon


def test_unknown_paths_get_a_page_docs_need_a_login_and_there_is_a_favicon(browser, server):
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{server}/docs")
    assert "/login" in page.url and "next=%2Fdocs" in page.url
    log_in(page, server)
    response = page.goto(f"{server}/nope")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Page not found"
    assert page.locator("a[href='/calls']").count() >= 1
    api = page.request.get(f"{server}/api/nope")
    assert api.status == 404 and api.json() == {"detail": "Not Found"}
    favicon = page.request.get(f"{server}/favicon.ico")
    assert favicon.status == 200 and favicon.headers["content-type"].startswith("image/")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(icon if icon.startswith("http") else f"{server}{icon}").status == 200
    context.close()


# ------------------------------------------------------------------ 10: upload options


def test_upload_form_sets_name_tags_and_agent_analysis(browser, server, model_available):
    context, page = signed_in_page(browser, server)
    page.fill("#upload-name", "Billing complaint")
    page.fill("#upload-tags", "vip, billing")
    page.check("#upload-analyze-agent")
    page.set_input_files("#file-input", str(DEMO_CALL))
    link = page.locator("#uploads a", has_text="analysed")
    link.wait_for(timeout=TIMEOUT_MS)
    link.click()
    page.wait_for_selector("#timeline")
    assert page.locator("h1").inner_text().startswith("Billing complaint")
    assert {"vip", "billing"} <= set(page.locator("#call-tags .badge").all_inner_texts())
    assert page.locator("h2", has_text="Scores: agent").count() == 1
    context.close()


def test_upload_form_sends_swapped_channels_and_mono(browser, server, seeded_app, model_available):
    from callmood import store

    context, page = signed_in_page(browser, server)
    page.select_option("#upload-channels", "swapped")
    page.set_input_files("#file-input", str(DEMO_CALL))
    swapped = page.locator("#uploads a", has_text="analysed")
    swapped.wait_for(timeout=TIMEOUT_MS)
    page.check("#upload-mono")
    assert page.locator("#upload-channels").is_disabled(), "mono has no channel order"
    assert page.locator("#upload-analyze-agent").is_disabled(), "mono has no separate agent"
    page.set_input_files("#file-input", str(DEMO_CALL))
    page.locator("#uploads a", has_text="analysed").nth(1).wait_for(timeout=TIMEOUT_MS)
    ids = [
        link.get_attribute("href").rsplit("/", 1)[-1]
        for link in page.locator("#uploads a", has_text="analysed").all()
    ]
    with store.session_scope(seeded_app.state.session_factory) as session:
        results = [store.call_result(store.get_call(session, call_id)) for call_id in ids]
    assert results[0].channels == {"customer": 1, "agent": 0}
    assert list(results[1].speakers) == ["mixed"]
    context.close()


# ------------------------------------------------------------------ 11: durations


def test_durations_agree_between_list_header_and_player(browser, server, demo_call):
    context, page = signed_in_page(browser, server)
    listed = page.locator(f"tr[data-call-id='{demo_call}'] td.duration").inner_text()
    page.goto(f"{server}/calls/{demo_call}")
    header = page.locator("#call-duration").inner_text()
    page.wait_for_function("() => document.getElementById('player').duration > 0")
    player = page.evaluate(
        "() => Callmood.formatSeconds(document.getElementById('player').duration)"
    )
    assert listed == header == player
    context.close()


# ------------------------------------------------------------------ 12: filters and badges


def test_emotion_filter_offers_the_models_emotions_only(
    browser, server, seeded_app, model_available
):
    labels = seeded_app.state.model.get().labels
    context, page = signed_in_page(browser, server)
    offered = page.locator("select[name=emotion] option").evaluate_all(
        "options => options.map(option => option.value).filter(Boolean)"
    )
    assert offered == list(labels)
    context.close()


def test_alert_badge_counts_open_alerts_only(browser, server):
    context, page = signed_in_page(browser, server)
    badge = page.locator("tr[data-call-id='half-handled'] .badge.alerts")
    assert badge.inner_text() == "1"
    context.close()


def test_reversed_date_range_says_so(browser, server):
    context, page = signed_in_page(browser, server)
    page.fill("input[name=date_from]", "2026-12-02")
    page.fill("input[name=date_to]", "2026-11-01")
    page.click("#filters button[type=submit]")
    page.wait_for_load_state()
    error = page.locator("#filter-error")
    assert "before" in error.inner_text() and "2026-11-01" in error.inner_text()
    context.close()


def test_filter_urls_leave_out_empty_fields(browser, server):
    context, page = signed_in_page(browser, server)
    page.select_option("select[name=has_alerts]", "true")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/calls?has_alerts=true")
    assert page.url.endswith("/calls?has_alerts=true")
    context.close()


# ------------------------------------------------------------------ the call page


def test_call_page_shows_talk_times_talk_ratio_and_overtalk(browser, server, demo_call):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/calls/{demo_call}")
    card = page.locator("#conversation")
    text = card.inner_text().lower()  # the labels are upper case by CSS
    assert "customer talk time" in text and "agent talk time" in text
    assert re.fullmatch(r"\d+%", page.locator("#talk-ratio").inner_text())
    assert re.fullmatch(r"\d+\.\d s", page.locator("#overtalk").inner_text())
    context.close()


def test_timeline_zooms_pans_and_names_the_values_under_the_mouse(browser, server, demo_call):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/calls/{demo_call}")
    box = page.locator("#timeline").bounding_box()
    # Wheel over the middle of the customer lane: zoomed in around that moment.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 15)
    page.mouse.wheel(0, -300)
    page.locator("#zoom-range", has_text="showing").wait_for()
    zoomed = page.locator("#zoom-range").inner_text()
    tip = page.locator("#timeline-tip")
    page.mouse.move(box["x"] + box["width"] / 2 + 5, box["y"] + 15)
    tip.wait_for(state="visible")
    assert "customer" in tip.inner_text() and re.match(r"\d+:\d\d", tip.inner_text())
    # Drag to the left: later parts of the call come into view, in both drawings.
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 4, box["y"] + 15, steps=5)
    page.mouse.up()
    panned = page.locator("#zoom-range").inner_text()
    assert panned != zoomed
    views = page.evaluate(
        "() => [document.getElementById('zoom-range').textContent, "
        "document.getElementById('curves').width > 0]"
    )
    assert views[1]
    curves = page.locator("#curves").bounding_box()
    page.mouse.move(curves["x"] + curves["width"] / 2, curves["y"] + 40)
    page.locator("#curves-tip").wait_for(state="visible")
    page.click("#zoom-reset")
    assert page.locator("#zoom-range").inner_text() == ""
    context.close()


def test_alerts_are_acknowledged_and_resolved_on_the_call_page(browser, server):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/calls/many-alerts")
    row = page.locator("#alerts tbody tr", has_text="rule_007")
    row.locator("button.ack").click()
    row.locator(".badge.state", has_text="acknowledged").wait_for()
    # Who did it is shown at once (the script) and after a reload (the page).
    assert row.locator(".handled-by").inner_text() == "acknowledged by shared token"
    row.locator("button.resolve").click()
    row.locator(".badge.state", has_text="resolved").wait_for()
    both = "acknowledged by shared token · resolved by shared token"
    assert row.locator(".handled-by").inner_text() == both
    page.reload()
    assert row.locator(".badge.state").inner_text() == "resolved"
    assert row.locator(".handled-by").inner_text() == both
    context.close()


def test_a_call_is_renamed_retagged_and_deleted_from_its_page(browser, server, seeded_app):
    from callmood import store

    with store.session_scope(seeded_app.state.session_factory) as session:
        store.save_call_result(session, make_call_result("to-edit"), name="Typo nmae")
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/calls/to-edit")
    page.click("#call-edit summary")
    page.fill("#edit-name", "Typo name")
    page.fill("#edit-tags", "Escalated, billing")
    page.click("#edit-form button[type=submit]")
    page.locator("#message.ok").wait_for()
    assert page.locator("#call-name").inner_text() == "Typo name"
    assert page.locator("#call-tags .badge").all_inner_texts() == ["billing", "escalated"]
    page.reload()
    assert page.locator("#call-name").inner_text() == "Typo name"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#call-edit summary")
    page.click("#delete-call")
    page.wait_for_url(f"{server}/calls")
    assert page.locator("tr[data-call-id='to-edit']").count() == 0
    assert page.goto(f"{server}/calls/to-edit").status == 404
    context.close()


# ------------------------------------------------------------------ the alerts page


def test_alerts_page_filters_by_severity_rule_call_and_date(browser, server):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/alerts")
    page.select_option("select[name=rule]", "rule_042")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/alerts?rule=rule_042")
    assert page.locator("#alerts tbody tr[data-alert-id]").count() == 1
    page.goto(f"{server}/alerts?call=half-handled&severity=critical")
    assert page.locator("#alerts tbody tr[data-alert-id]").count() == 2
    page.goto(f"{server}/alerts?severity=warning&call=many-alerts")
    assert page.locator("#alerts tbody tr[data-alert-id]").count() == 0
    assert "No alerts match" in page.locator("#alerts tbody").inner_text()
    page.goto(f"{server}/alerts?severity=critical")
    severities = page.locator("#alerts tbody tr[data-alert-id] td .badge.critical").count()
    assert severities == page.locator("#alerts tbody tr[data-alert-id]").count() > 0
    page.goto(f"{server}/alerts?date_from=2026-12-02&date_to=2026-11-01")
    assert "before" in page.locator("#filter-error").inner_text()
    context.close()


def test_many_alerts_are_acknowledged_at_once_on_the_alerts_page(browser, server):
    context, page = signed_in_page(browser, server)
    page.goto(f"{server}/alerts?call=many-alerts&state=open")
    rows = page.locator("#alerts tbody tr[data-alert-id]")
    first_three = [rows.nth(index).get_attribute("data-alert-id") for index in range(3)]
    for index in range(3):
        rows.nth(index).locator("input.pick").check()
    assert page.locator("#acknowledge-selected").inner_text() == "Acknowledge selected (3)"
    page.click("#acknowledge-selected")
    page.locator("#message.ok", has_text="3 alert(s) acknowledged").wait_for()
    for alert_id in first_three:
        state = page.locator(f"tr[data-alert-id='{alert_id}'] .badge.state")
        assert state.inner_text() == "acknowledged"
    page.reload()
    shown = rows.evaluate_all("rows => rows.map(row => row.dataset.alertId)")
    assert not set(first_three) & set(shown), "acknowledged alerts left the open list"
    context.close()


# ------------------------------------------------------------------ sorting


def test_calls_sort_by_clicking_the_column_headers(browser, server, demo_call):
    context, page = signed_in_page(browser, server)

    def durations() -> list[str]:
        return page.locator("#calls tbody td.duration").all_inner_texts()

    def seconds(text: str) -> int:
        minutes, secs = text.split(":")[-2:]
        return int(minutes) * 60 + int(secs)

    page.click("th a[data-sort=duration]")
    page.wait_for_url("**/calls?sort=-duration")
    assert [seconds(text) for text in durations()] == sorted(
        (seconds(text) for text in durations()), reverse=True
    )
    assert "▼" in page.locator("th a[data-sort=duration]").inner_text()
    page.click("th a[data-sort=duration]")
    page.wait_for_url("**/calls?sort=duration")
    assert [seconds(text) for text in durations()] == sorted(seconds(text) for text in durations())
    # The filters keep the order.
    page.select_option("select[name=has_alerts]", "true")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**has_alerts=true**")
    assert "sort=duration" in page.url
    doc_screenshot(page, "calls-1366")
    context.close()
