"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

A real uvicorn server runs on a free 127.0.0.1 port with a temporary data folder;
the flows are what a supervisor does: log in, upload a call, read its timeline
and alerts, export it, handle alerts, edit rules, watch a live call from the
microphone (Chromium's fake microphone plays angry RAVDESS speech).
Screenshots go to test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, require
from service_support import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "browser-test-token"
CHROMIUM = os.environ.get("CALLMOOD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DEMO_CALL = REPO_ROOT / "examples" / "demo_call.flac"
# Strong-intensity angry RAVDESS utterances (emotion 05, intensity 02): the fake microphone.
ANGRY_CLIPS = (
    "Actor_01/03-01-05-02-01-01-01.flac",
    "Actor_03/03-01-05-02-02-01-03.flac",
    "Actor_05/03-01-05-02-01-02-05.flac",
    "Actor_07/03-01-05-02-02-02-07.flac",
)
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A real uvicorn server for the dashboard; yields its base URL."""
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))
    with serving(app, ws="auto") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def model_available() -> None:
    from callmood.inference import default_model_dir

    model_dir = Path(os.environ.get("CALLMOOD_MODEL_DIR") or default_model_dir())
    require((model_dir / "model.json").is_file(), f"no emotion model at {model_dir}")


@pytest.fixture(scope="module")
def angry_wav(ravdess_dir: Path, tmp_path_factory) -> Path:
    """~12 s of angry speech as a 16-bit WAV for Chromium's fake microphone (it loops)."""
    import librosa

    pieces = []
    for clip in ANGRY_CLIPS * 2:
        audio, rate = sf.read(ravdess_dir / clip, dtype="float32")
        speech, _ = librosa.effects.trim(audio, top_db=35)
        pieces.append(speech)
    path = tmp_path_factory.mktemp("microphone") / "angry.wav"
    sf.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
    return path


def launch(playwright, *extra_args: str):
    require(Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM}")
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
    )


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    require(Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM}")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright) -> Iterator[object]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page, server: str) -> None:
    page.goto(f"{server}/calls")
    assert "/login" in page.url, "an anonymous visitor must be sent to the login page"
    page.fill("#password", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/calls")


@pytest.fixture(scope="module")
def uploaded_call(browser, server, model_available) -> dict:
    """Upload the demo call through the drop zone's file picker; returns its call id."""
    require(DEMO_CALL.is_file(), f"{DEMO_CALL} is missing (scripts/make_demo_call.py makes it)")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, server)
    page.set_input_files("#file-input", str(DEMO_CALL))
    progress = page.locator("#uploads li progress")
    progress.wait_for(state="attached")
    link = page.locator("#uploads a", has_text="analysed")
    link.wait_for(timeout=TIMEOUT_MS)
    call_id = link.get_attribute("href").rsplit("/", 1)[-1]
    page.wait_for_selector(f"tr[data-call-id='{call_id}']", timeout=TIMEOUT_MS)
    screenshot(page, "calls")
    context.close()
    return {"call_id": call_id}


def test_anonymous_visitor_is_sent_to_login_and_wrong_token_is_refused(browser, server):
    page = browser.new_page()
    page.goto(f"{server}/alerts")
    assert "/login" in page.url
    page.fill("#password", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("#login-error").is_visible()
    screenshot(page, "login")
    page.close()


def test_uploaded_call_shows_timeline_alerts_scores_and_exports(browser, server, uploaded_call):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    log_in(page, server)
    row = page.locator(f"tr[data-call-id='{uploaded_call['call_id']}']")
    assert row.locator(".badge.alerts").count() == 1, "the demo call has an alert badge"
    row.locator("a").first.click()
    page.wait_for_selector("#timeline")
    # The timeline canvas has emotion colour on it, not just the empty lane background.
    coloured = page.evaluate(
        """() => {
            const canvas = document.getElementById('timeline');
            const context = canvas.getContext('2d');
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < pixels.length; i += 4) {
                const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
                if (Math.max(r, g, b) - Math.min(r, g, b) > 60) count++;
            }
            return count;
        }"""
    )
    assert coloured > 1000
    alerts = page.locator("#alerts tbody tr")
    assert alerts.count() >= 1
    # Jumping to an alert moves the player (and the cursor) to when it opened.
    jump = alerts.first.locator("a.jump")
    opened_at = float(jump.get_attribute("data-time"))
    jump.click()
    # Predicates as functions: Playwright would eval() a bare expression, which the CSP refuses.
    page.wait_for_function(
        f"() => Math.abs(document.getElementById('player').currentTime - {opened_at}) < 0.5"
    )
    assert page.locator(".score .value").first.inner_text() != "–"
    screenshot(page, "call-detail")
    with page.expect_download() as download_info:
        page.click("#exports a:has-text('JSON')")
    exported = json.loads(Path(download_info.value.path()).read_text(encoding="utf-8"))
    assert exported["call_id"] == uploaded_call["call_id"]
    assert exported["alerts"]
    with page.expect_download() as download_info:
        page.click("#exports a:has-text('CSV')")
    assert "customer" in Path(download_info.value.path()).read_text(encoding="utf-8")
    context.close()


def test_dropping_a_recording_on_the_drop_zone_uploads_and_analyses_it(
    browser, server, ravdess_dir, model_available
):
    clip = ravdess_dir / "Actor_02" / "03-01-01-01-01-01-02.flac"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server)
    # What the browser hands the page when a file is dropped on it.
    dropped = page.evaluate_handle(
        """([name, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'audio/flac'}));
            return transfer;
        }""",
        ["dropped-neutral.flac", list(clip.read_bytes())],
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": dropped})
    assert "over" in page.get_attribute("#dropzone", "class")
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    item = page.locator("#uploads li", has_text="dropped-neutral.flac")
    item.locator("a", has_text="analysed").wait_for(timeout=TIMEOUT_MS)
    assert item.locator("progress").evaluate("bar => bar.value") == 100
    page.locator("#calls tr", has_text="dropped-neutral.flac").wait_for(timeout=TIMEOUT_MS)
    page.close()


def test_calls_filters_select_calls_with_alerts(browser, server, uploaded_call):
    page = browser.new_page()
    log_in(page, server)
    page.select_option("select[name=has_alerts]", "false")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**has_alerts=false**")
    assert page.locator(f"tr[data-call-id='{uploaded_call['call_id']}']").count() == 0
    page.select_option("select[name=has_alerts]", "true")
    page.fill("input[name=q]", "demo")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**has_alerts=true**")
    assert page.locator(f"tr[data-call-id='{uploaded_call['call_id']}']").count() == 1
    page.close()


def test_alerts_can_be_acknowledged_then_resolved(browser, server, uploaded_call):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, server)
    page.goto(f"{server}/alerts")
    row = page.locator("#alerts tbody tr[data-alert-id]").first
    row.locator("button.ack").click()
    row.locator(".badge.state", has_text="acknowledged").wait_for()
    row.locator("button.resolve").click()
    row.locator(".badge.state", has_text="resolved").wait_for()
    screenshot(page, "alerts")
    page.reload()  # the state was stored, not only drawn
    assert page.locator("#alerts tbody tr[data-alert-id] .badge.state").first.inner_text() == (
        "resolved"
    )
    page.close()


def test_rules_page_shows_validation_errors_and_saves_valid_rules(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server)
    page.goto(f"{server}/rules")
    page.wait_for_function("() => document.getElementById('rules-yaml').value.includes('rules:')")
    original = page.input_value("#rules-yaml")
    page.fill("#rules-yaml", original.replace("threshold: 0.5", "threshold: 7", 1))
    page.click("#save")
    error = page.locator("#message.error")
    error.wait_for()
    assert "angry_customer" in error.inner_text() and "threshold" in error.inner_text()
    screenshot(page, "rules-error")
    page.fill("#rules-yaml", original.replace("threshold: 0.5", "threshold: 0.55", 1))
    page.click("#save")
    page.locator("#message.ok").wait_for()
    assert "0.55" in page.input_value("#rules-yaml")
    page.close()


def test_model_page_shows_labels_and_model_card(browser, server, model_available):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server)
    page.goto(f"{server}/model")
    assert page.locator("#model-name").inner_text()
    assert page.locator("td .badge.emotion").count() >= 2
    assert page.locator("#model-card h1, #model-card h2").count() >= 1
    screenshot(page, "model")
    page.close()


def test_live_page_streams_the_microphone_and_shows_emotion_and_alert(
    playwright, server, angry_wav, model_available
):
    chromium = launch(
        playwright,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={angry_wav}",
        "--autoplay-policy=no-user-gesture-required",
    )
    try:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["microphone"], origin=server)
        page = context.new_page()
        log_in(page, server)
        page.goto(f"{server}/live")
        page.fill("#call-name", "browser live call")
        page.click("#start")
        page.wait_for_function(
            "() => document.getElementById('current-emotion').textContent !== '–'",
            timeout=TIMEOUT_MS,
        )
        # The loudness alert may open seconds before the anger alert: wait for the anger one.
        page.locator(".alert-banner.open", has_text="angry").first.wait_for(timeout=TIMEOUT_MS)
        banners = page.locator(".alert-banner").all_inner_texts()
        assert any("angry" in text for text in banners), banners
        assert page.locator("#legend .badge").count() >= 2
        screenshot(page, "live")
        page.click("#stop")
        page.locator("#summary a").wait_for(timeout=TIMEOUT_MS)
        page.click("#summary a")
        page.wait_for_selector("#timeline")
        assert "browser live call" in page.locator("h1").inner_text()
        assert page.locator("#alerts tbody tr").count() >= 1
        screenshot(page, "live-stored")
    finally:
        chromium.close()
