"""The Content-Security-Policy and the cross-site defences in Debian's headless Chromium.

The browser enforces the policy for real: every dashboard page (and Swagger UI) must
load and run with no violation, the Live page included (worklet, microphone,
WebSocket). A page of another origin on the same machine (same site, so the browser
sends the login cookie with its form) must not change anything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service_support import make_call_result, serving
from test_browser import TOKEN, launch, log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DASHBOARD_PAGES = ["/calls", "/calls/csp-call", "/alerts", "/board", "/trends", "/rules", "/model"]
# Collects what the browser blocked; the page's own CSP does not apply to init scripts.
WATCH_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " blocked " + (event.blockedURI || "inline"));
});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A real uvicorn server holding one stored call with an open alert."""
    from callmood import store
    from callmood.service.app import create_app
    from callmood.settings import load_settings

    data_dir = tmp_path_factory.mktemp("csp") / "data"
    app = create_app(load_settings(data_dir=data_dir, auth_token=TOKEN, workers=1))
    with store.session_scope(app.state.session_factory) as session:
        store.save_call_result(session, make_call_result("csp-call"), name="CSP call")
    with serving(app, ws="auto") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright) -> Iterator[object]:
    # A fake microphone, so the Live page runs its worklet and opens its WebSocket.
    chromium = launch(
        playwright, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"
    )
    yield chromium
    chromium.close()


def watched_page(browser, server: str):
    """A new page that records CSP violations and the console's CSP complaints."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["microphone"], origin=server)
    context.add_init_script(WATCH_VIOLATIONS)
    page = context.new_page()
    complaints: list[str] = []
    page.on(
        "console",
        lambda message: (
            complaints.append(message.text)
            if "Content Security Policy" in message.text or "Permissions policy" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: complaints.append(f"script error: {error}"))
    return page, complaints


def test_dashboard_and_api_docs_run_with_no_csp_violation(browser, server):
    page, complaints = watched_page(browser, server)
    page.goto(f"{server}/login")
    problems = {"/login": page.evaluate("window.cspViolations")}
    log_in(page, server)
    for path in DASHBOARD_PAGES:
        page.goto(f"{server}{path}")
        page.wait_for_load_state("networkidle")
        problems[path] = page.evaluate("window.cspViolations")
    # The call page's scripts drew the timeline from the page's JSON (no inline script).
    page.goto(f"{server}/calls/csp-call")
    assert page.locator("#legend .badge").count() >= 2

    page.goto(f"{server}/live")
    page.click("#start")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Streaming')",
        timeout=60_000,
    )
    page.click("#stop")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Stopped')",
        timeout=60_000,
    )
    problems["/live"] = page.evaluate("window.cspViolations")

    page.goto(f"{server}/docs")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    problems["/docs"] = page.evaluate("window.cspViolations")
    assert {path: found for path, found in problems.items() if found} == {}
    assert complaints == []
    page.context.close()


def test_a_form_on_another_origin_cannot_act_for_a_signed_in_user(browser, server):
    page, _ = watched_page(browser, server)
    log_in(page, server)
    alert_id = page.evaluate(
        "fetch('/api/alerts').then((response) => response.json()).then((page) => page.items[0].id)"
    )
    # Another port of the same host: another origin but the same site, so the browser
    # sends the SameSite=Lax login cookie with this form; only our checks stop it.
    port = int(server.rsplit(":", 1)[1])
    evil = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/evil.html"
    target = f"{server}/api/alerts/{alert_id}/acknowledge"
    attack = f"""<form id="attack" method="post" action="{target}"></form>
      <script>document.getElementById("attack").submit();</script>"""
    page.route(evil, lambda route: route.fulfill(content_type="text/html", body=attack))
    with page.expect_response(target) as answer:
        page.goto(evil)
    assert answer.value.status == 403
    page.goto(f"{server}/alerts")
    state = page.locator(f"tr[data-alert-id='{alert_id}'] .badge.state").inner_text()
    assert state == "open"
    # The dashboard's own button still works, with the page's CSRF token.
    page.locator(f"tr[data-alert-id='{alert_id}'] button.ack").click()
    page.wait_for_function(
        f"() => document.querySelector(\"tr[data-alert-id='{alert_id}'] .badge.state\")"
        ".textContent === 'acknowledged'"
    )
    page.context.close()
