"""The server-rendered dashboard pages: login, calls, call detail, live, alerts, rules, model.

Pages read the store directly and render with Jinja2; their buttons (upload,
acknowledge, save rules) call the REST API under /api with the login cookie and the
session's CSRF token (the `csrf-token` meta tag of every signed-in page).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from sqlalchemy.orm import Session

from callmood import store
from callmood.call_metadata import MAX_AGENT_LENGTH, MAX_QUEUE_LENGTH
from callmood.errors import CallmoodError
from callmood.labels import EMOTIONS
from callmood.results import Alert, CallResult, Severity
from callmood.service import deps
from callmood.service.audit import audit, audit_login
from callmood.service.jobs import describe_model
from callmood.service.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_OFFSET,
    MAX_PAGE_SIZE,
    link_with_offset,
    page_offsets,
)
from callmood.service.routes.stream import PARTIAL_TAG
from callmood.settings import TOKEN_FILE_NAME

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
STATIC_DIR = TEMPLATES_DIR.with_name("static")
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
router = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(deps.require_login)])

#: Export formats offered on the call page: (label, format name in the export API).
EXPORT_FORMATS = (
    ("JSON (full result)", "json"),
    ("CSV (windows)", "windows-csv"),
    ("CSV (segments)", "csv"),
    ("RTTM (speaker segments)", "rttm"),
    ("EmotionML", "emotionml"),
)
#: Alert severities, mildest first (as the rules and the API name them).
SEVERITIES = get_args(Severity)


def _render(
    request: Request, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    actor = getattr(request.state, "actor", None) or deps.current_actor(request)
    context.setdefault("logged_in", actor is not None)
    # The header shows who is logged in; pages offer only what the role may do.
    context.setdefault("actor", actor)
    # Scripts send it with every change they ask the API for (see deps.require_api_token).
    context.setdefault("csrf_token", deps.csrf_token(request))
    context.setdefault("title", "callmood")
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _duration(seconds: float | None) -> str:
    """m:ss (h:mm:ss from an hour), in whole seconds cut down, as the audio player and the
    pages' scripts (Callmood.formatSeconds) show them: one call, one duration."""
    if seconds is None:
        return "–"
    whole = max(0, math.floor(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _safe_next(target: str | None) -> str:
    # Only local paths: a login link must not forward the browser to another site.
    # Browsers read a backslash as a slash, so "/\\evil.example" would leave the site too.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/calls"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# ---------------------------------------------------------------------------- login


def _login_form(
    request: Request,
    next: str | None,
    *,
    status_code: int = 200,
    error: str | None = None,
    username: str = "",
) -> HTMLResponse:
    return _render(
        request,
        "login.html",
        status_code=status_code,
        title="Sign in",
        show_nav=False,
        logged_in=False,
        next=_safe_next(next),
        error=error,
        username=username,
        actor=None,
        token_hint=str(request.app.state.settings.data_dir / TOKEN_FILE_NAME),
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = Query(None)) -> HTMLResponse:
    """The login form: a user name and password, or the API token (no user name)."""
    return _login_form(request, next)


@router.post("/login", response_model=None)
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    token: str = Form(""),
    next: str = Form("/calls"),
) -> HTMLResponse | RedirectResponse:
    """Check the user's password (without a user name: the API token); on success set
    the session cookie and go to `next`.

    Too many wrong passwords or tokens from one address get the form back with 429 and
    `Retry-After`. The `token` field is what the form sent before user accounts.
    """
    retry_after = deps.login_retry_after(request)
    if retry_after is not None:
        page = _login_form(
            request,
            next,
            status_code=429,
            error=deps.too_many_logins_message(retry_after).capitalize() + ".",
        )
        page.headers["Retry-After"] = str(retry_after)
        return page
    if username.strip():
        result = deps.user_login(request, username, password)
        problem = result.problem.capitalize() + "."
    else:
        result = deps.token_login(request, (password or token).strip())
        problem = "That token is not the server's API token."
    deps.record_login_attempt(request, success=result.subject is not None)
    audit_login(request, result, username)
    if result.subject is None:
        return _login_form(request, next, status_code=401, error=problem, username=username)
    response = RedirectResponse(_safe_next(next), status_code=303)
    deps.set_session_cookie(response, request, result.subject)
    return response


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    """Forget the session cookie."""
    actor = deps.current_actor(request)
    if actor is not None:
        audit(request, "logout", actor=actor)
    response = RedirectResponse("/login", status_code=303)
    deps.clear_session_cookie(response)
    return response


def forbidden_page(request: Request, message: str) -> HTMLResponse:
    """The page a signed-in browser gets for a page its role may not see (403)."""
    return _render(request, "error.html", 403, title="Not allowed", message=message)


def not_found_page(request: Request) -> HTMLResponse:
    """The page a browser gets for a path that is no page (the API answers JSON)."""
    return _render(
        request,
        "error.html",
        404,
        title="Page not found",
        message=f"There is no page at {request.url.path}.",
    )


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """The tab icon (browsers ask for /favicon.ico whatever the page says)."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@pages.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    """The calls list is the home page."""
    return RedirectResponse("/calls", status_code=307)


# ---------------------------------------------------------------------------- calls


def _day_start(day: date | None, *, end: bool = False) -> datetime | None:
    if day is None:
        return None
    moment = datetime.combine(day, time.min, tzinfo=UTC)
    # "To" is inclusive: calls stored any time on that day.
    return moment + timedelta(days=1) - timedelta(microseconds=1) if end else moment


def _optional_bool(value: str | None) -> bool | None:
    return {"true": True, "false": False}.get((value or "").lower())


def _optional_float(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return min(1.0, max(0.0, number)) if number is not None else None


def _page_number(value: str | None, default: int, *, low: int, high: int) -> int:
    # Like the filters: a paging value that does not parse falls back to the default.
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return min(high, max(low, number))


def _optional_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _optional_label(value: str | None, max_length: int) -> str | None:
    """An agent or queue filter: trimmed; None when blank or longer than any stored one."""
    text = (value or "").strip()
    return text if text and len(text) <= max_length else None


def _model_emotions(request: Request) -> list[str]:
    """The emotions the server's model tells apart (all known ones if it cannot load)."""
    try:
        return list(request.app.state.model.get().labels)
    except CallmoodError:
        return [emotion for emotion in EMOTIONS if emotion != "unknown"]


def _reversed_range(date_from: date | None, date_to: date | None) -> str | None:
    if date_from is None or date_to is None or date_from <= date_to:
        return None
    return (
        f"The “To” date {date_to.isoformat()} is before the “From” date "
        f"{date_from.isoformat()}: swap them to see the calls in between. "
        "The date range is ignored below."
    )


DEFAULT_CALL_SORT = "-date"


def _sort_links(url: Any, current: str) -> dict[str, dict[str, str | None]]:
    """Per sortable column: the link that sorts by it (descending first, then flipping) and
    the arrow showing the current order. Filters stay, the page starts again."""
    links = {}
    for key in store.CALL_SORT_KEYS:
        if current == f"-{key}":
            target, arrow = key, "▼"
        elif current == key:
            target, arrow = f"-{key}", "▲"
        else:
            target, arrow = f"-{key}", None
        query = url.remove_query_params(["offset", "sort"])
        if target != DEFAULT_CALL_SORT:
            query = query.include_query_params(sort=target)
        links[key] = {
            "url": query.path + (f"?{query.query}" if query.query else ""),
            "arrow": arrow,
            "order": "descending" if current == f"-{key}" else "ascending",
        }
    return links


def _csv_download_url(call_filter: store.CallFilter, order: str) -> str:
    """`/api/calls.csv` with the filters the page applied (in the API's parameter names), so
    that the download holds exactly the listed calls, on all pages."""
    params = {
        "created_from": call_filter.created_from.isoformat() if call_filter.created_from else None,
        "created_to": call_filter.created_to.isoformat() if call_filter.created_to else None,
        "has_alerts": None
        if call_filter.has_alerts is None
        else str(call_filter.has_alerts).lower(),
        "dominant_emotion": call_filter.dominant_emotion,
        "min_negativity": call_filter.min_negativity,
        "q": call_filter.search,
        "agent": call_filter.agent,
        "queue": call_filter.queue,
        "sort": order if order != DEFAULT_CALL_SORT else None,
    }
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return "/api/calls.csv" + (f"?{query}" if query else "")


@pages.get("/calls", response_class=HTMLResponse)
def calls_page(
    request: Request,
    date_from: str | None = None,
    date_to: str | None = None,
    has_alerts: str | None = None,
    emotion: str | None = None,
    min_negativity: str | None = None,
    q: str | None = None,
    agent: str | None = None,
    queue: str | None = None,
    sort: str | None = None,
    offset: str | None = None,
    limit: str | None = None,
    db: Session = Depends(deps.get_db),
) -> HTMLResponse:
    """The calls list with its filters, sortable columns, Older/Newer page links and the
    upload drop zone.

    Filter values that do not parse are ignored (a bad bookmark shows all calls); a
    reversed date range is ignored with a message saying so.
    """
    start = _page_number(offset, 0, low=0, high=MAX_OFFSET)
    per_page = _page_number(limit, DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    emotions = _model_emotions(request)
    first_day, last_day = _optional_date(date_from), _optional_date(date_to)
    filter_error = _reversed_range(first_day, last_day)
    if filter_error:
        first_day = last_day = None
    filters = {
        "date_from": first_day,
        "date_to": last_day,
        "has_alerts": _optional_bool(has_alerts),
        "emotion": emotion if emotion in emotions else None,
        "min_negativity": _optional_float(min_negativity),
        "q": (q or "").strip() or None,
        # Longer than any stored value: it would match nothing, so it is dropped.
        "agent": _optional_label(agent, MAX_AGENT_LENGTH),
        "queue": _optional_label(queue, MAX_QUEUE_LENGTH),
    }
    call_filter = store.CallFilter(
        created_from=_day_start(filters["date_from"]),
        created_to=_day_start(filters["date_to"], end=True),
        has_alerts=filters["has_alerts"],
        dominant_emotion=filters["emotion"],
        min_negativity=filters["min_negativity"],
        search=filters["q"],
        agent=filters["agent"],
        queue=filters["queue"],
    )
    order = sort if sort in store.CALL_SORTS else DEFAULT_CALL_SORT
    records, total = store.list_calls(db, call_filter, offset=start, limit=per_page, sort=order)
    open_alerts = store.open_alert_counts(db, [record.id for record in records])
    neighbours = page_offsets(start, per_page, total)
    calls = [
        {
            "id": record.id,
            "name": record.name,
            "created_at": record.created_at,
            "started_at": record.started_at or record.created_at,
            "agent": record.agent,
            "queue": record.queue,
            "duration": _duration(record.duration_seconds),
            "negativity": record.negativity,
            "dominant_emotion": record.dominant_emotion,
            "alert_count": record.alert_count,
            "open_alerts": open_alerts.get(record.id, 0),
            "tags": record.tag_names,
        }
        for record in records
    ]
    return _render(
        request,
        "calls.html",
        title="Calls",
        active="Calls",
        calls=calls,
        total=total,
        # A page size from the URL survives filtering; the offset does not (page 1 again).
        custom_limit=per_page if per_page != DEFAULT_PAGE_SIZE else None,
        first_number=start + 1,
        last_number=start + len(calls),
        older_url=link_with_offset(request.url, neighbours.next),
        newer_url=link_with_offset(request.url, neighbours.previous),
        filters=filters,
        filter_error=filter_error,
        sort=order if order != DEFAULT_CALL_SORT else None,
        sort_links=_sort_links(request.url, order),
        csv_url=_csv_download_url(call_filter, order),
        # The typed dates stay in the form even when the range is ignored, to be corrected.
        typed_dates={"date_from": date_from or "", "date_to": date_to or ""},
        filtered=any(value is not None for value in filters.values()),
        emotions=emotions,
        max_upload_mb=f"{request.app.state.settings.max_upload_mb:g}",
    )


def _call_data(result: CallResult) -> dict[str, Any]:
    """What the call page's script draws: lanes, windows, alerts, labels."""
    lanes = [speaker for speaker in ("customer", "agent", "mixed") if speaker in result.speakers]
    windows = [
        {
            "speaker": window.speaker,
            "start": window.start,
            "end": window.end,
            "emotion": window.emotion,
            "confidence": window.confidence,
            "probabilities": window.probabilities,
        }
        for window in result.windows()
    ]
    curve_speaker = next(
        (
            speaker
            for speaker in ("customer", "mixed", "agent")
            if speaker in result.analyzed_speakers
        ),
        None,
    )
    return {
        "duration": result.duration_seconds,
        "speakers": lanes,
        "windows": windows,
        "alerts": [alert.model_dump(mode="json") for alert in result.alerts],
        "speech": {
            speaker: [[stretch.start, stretch.end] for stretch in result.speakers[speaker].speech]
            for speaker in lanes
        },
        "labels": list(result.model.labels),
        "curve_speaker": curve_speaker,
    }


def _scores_view(result: CallResult) -> list[dict[str, Any]]:
    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    views = []
    for speaker in result.analyzed_speakers:
        if speaker not in result.speakers:
            continue
        scores = result.speakers[speaker].scores
        shift = scores.negativity_shift
        views.append(
            {
                "speaker": speaker,
                "negativity": number(scores.negativity),
                "dominant_emotion": scores.dominant_emotion,
                "shift": "–" if shift is None else f"{shift:+.2f}",
                "shift_class": "" if not shift else ("shift-up" if shift > 0 else "shift-down"),
                "talk": _duration(scores.talk_seconds),
                "quarters": [
                    number(value) for value in (scores.negativity_by_quarter or [None] * 4)
                ],
                "quarter_emotions": scores.dominant_emotion_by_quarter or [None] * 4,
            }
        )
    return views


def _conversation_view(result: CallResult) -> dict[str, Any]:
    """Who talked how much: every speaker's talk time and silence share (measured for the
    agent too, even when its emotions are not analysed), the talk ratio and the overtalk."""
    speakers = [
        {
            "speaker": speaker,
            "talk": _duration(found.scores.talk_seconds),
            "silence": f"{found.scores.silence_share:.0%}",
        }
        for speaker, found in result.speakers.items()
    ]
    talk = {speaker: found.scores.talk_seconds for speaker, found in result.speakers.items()}
    both = talk.get("customer", 0.0) + talk.get("agent", 0.0)
    overtalk = result.overtalk_seconds()
    return {
        "speakers": speakers,
        # The agent's share of the two parties' talk: 50 % is an even conversation.
        "agent_share": f"{talk['agent'] / both:.0%}" if "agent" in talk and both > 0 else "–",
        "overtalk": "–" if overtalk is None else f"{overtalk:.1f} s",
        "overtalk_share": f"{overtalk / result.duration_seconds:.0%}"
        if overtalk is not None and result.duration_seconds > 0
        else None,
    }


def handled_by(alert: store.AlertRecord | None) -> str:
    """Who acknowledged and resolved an alert, for the pages ("" if nobody yet); the
    pages' scripts say the same after a button (Callmood.handledBy)."""
    if alert is None:
        return ""
    parts = []
    if alert.acknowledged_by:
        parts.append(f"acknowledged by {alert.acknowledged_by}")
    if alert.resolved_by:
        parts.append(f"resolved by {alert.resolved_by}")
    return " · ".join(parts)


def _alert_view(alert: Alert, stored: store.AlertRecord | None) -> dict[str, Any]:
    """An alert of the call page: its span, when it was confirmed, and its stored state."""
    # Results stored before confirmed_at existed: their opened_at is the confirmation.
    confirmed_at = alert.confirmed_at if alert.confirmed_at is not None else alert.opened_at
    return {
        "id": stored.id if stored is not None else None,
        "opened_at": alert.opened_at,
        "opened": _duration(alert.opened_at),
        "confirmed_at": confirmed_at,
        "confirmed": _duration(confirmed_at),
        "closed_at": alert.closed_at,
        "closed": _duration(alert.closed_at),
        "severity": alert.severity,
        "rule": alert.rule,
        "speaker": alert.speaker,
        "message": alert.message,
        "state": stored.state if stored is not None else "open",
        "handled_by": handled_by(stored),
    }


@pages.get("/calls/{call_id}", response_class=HTMLResponse)
def call_page(request: Request, call_id: str, db: Session = Depends(deps.get_db)) -> HTMLResponse:
    """One call: player, timeline, probability curves, alerts, scores, exports."""
    try:
        record = store.get_call(db, call_id)
    except store.NotFoundError as error:
        return _render(request, "error.html", 404, title="Call not found", message=str(error))
    result = store.call_result(record)
    call_data = _call_data(result)
    stored_alerts = {alert.alert_key: alert for alert in record.alerts}
    alerts = [
        _alert_view(alert, stored_alerts.get(alert.id))
        for alert in sorted(result.alerts, key=lambda alert: alert.opened_at)
    ]
    return _render(
        request,
        "call.html",
        title=record.name,
        active="Calls",
        call=record,
        result=result,
        partial=PARTIAL_TAG in record.tag_names,
        duration=_duration(record.duration_seconds),
        audio_url=f"/api/calls/{record.id}/audio" if record.audio_path else None,
        exports=[
            (label, f"/api/calls/{record.id}/export/{name}") for label, name in EXPORT_FORMATS
        ],
        alerts=alerts,
        scored_speakers=_scores_view(result),
        conversation=_conversation_view(result),
        call_data=call_data,
        curve_speaker=call_data["curve_speaker"],
    )


# ---------------------------------------------------------------------------- live, alerts


@pages.get("/live", response_class=HTMLResponse)
def live_page(request: Request) -> HTMLResponse:
    """Stream the browser's microphone to /api/stream and watch the results arrive."""
    return _render(request, "live.html", title="Live", active="Live")


@pages.get("/board", response_class=HTMLResponse)
def board_page(request: Request) -> HTMLResponse:
    """Every call in progress as a tile, kept current by /api/events (static/board.js)."""
    return _render(request, "board.html", title="Live board", active="Live board")


@pages.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    state: str | None = None,
    severity: str | None = None,
    rule: str | None = None,
    call: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    offset: str | None = None,
    limit: str | None = None,
    db: Session = Depends(deps.get_db),
) -> HTMLResponse:
    """All alerts, newest first, filtered and paged, with acknowledge and resolve buttons.

    Like the calls page: filter values that do not parse are ignored.
    """
    start = _page_number(offset, 0, low=0, high=MAX_OFFSET)
    per_page = _page_number(limit, DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    rules = store.alert_rule_names(db)
    first_day, last_day = _optional_date(date_from), _optional_date(date_to)
    filter_error = _reversed_range(first_day, last_day)
    if filter_error:
        first_day = last_day = None
    filters = {
        "state": state if state in store.ALERT_STATES else None,
        "severity": severity if severity in SEVERITIES else None,
        "rule": rule if rule in rules else None,
        "call": (call or "").strip()[:64] or None,
        "date_from": first_day,
        "date_to": last_day,
    }
    records, total = store.list_alerts(
        db,
        state=filters["state"],
        severity=filters["severity"],
        rule=filters["rule"],
        call_id=filters["call"],
        created_from=_day_start(first_day),
        created_to=_day_start(last_day, end=True),
        offset=start,
        limit=per_page,
    )
    neighbours = page_offsets(start, per_page, total)
    alerts = [
        {
            "id": record.id,
            "call_id": record.call_id,
            "call_name": record.call.name,
            "created_at": record.created_at,
            "opened_at": record.opened_at,
            "opened": _duration(record.opened_at),
            # None for alerts stored before the column existed: the page shows opened only.
            "confirmed": None
            if record.confirmed_at is None or record.confirmed_at == record.opened_at
            else _duration(record.confirmed_at),
            "closed": _duration(record.closed_at),
            "severity": record.severity,
            "rule": record.rule,
            "speaker": record.speaker,
            "message": record.message,
            "state": record.state,
            "handled_by": handled_by(record),
        }
        for record in records
    ]
    return _render(
        request,
        "alerts.html",
        title="Alerts",
        active="Alerts",
        alerts=alerts,
        total=total,
        first_number=start + 1,
        last_number=start + len(alerts),
        older_url=link_with_offset(request.url, neighbours.next),
        newer_url=link_with_offset(request.url, neighbours.previous),
        custom_limit=per_page if per_page != DEFAULT_PAGE_SIZE else None,
        filters=filters,
        filter_error=filter_error,
        typed_dates={"date_from": date_from or "", "date_to": date_to or ""},
        filtered=any(value is not None for value in filters.values()),
        states=store.ALERT_STATES,
        severities=SEVERITIES,
        rules=rules,
    )


@pages.get("/trends", response_class=HTMLResponse)
def trends_page(
    request: Request,
    date_from: str | None = None,
    date_to: str | None = None,
    agent: str | None = None,
    queue: str | None = None,
    by: str | None = None,
) -> HTMLResponse:
    """Charts and tables of /api/trends; its script asks for them in the browser's time zone
    (which the server does not know), so the page only fills in the form."""
    filters = {
        "date_from": (_optional_date(date_from) or "") if date_from else "",
        "date_to": (_optional_date(date_to) or "") if date_to else "",
        "agent": _optional_label(agent, MAX_AGENT_LENGTH) or "",
        "queue": _optional_label(queue, MAX_QUEUE_LENGTH) or "",
        "by": by if by in ("day", "week") else "day",
    }
    return _render(request, "trends.html", title="Trends", active="Trends", filters=filters)


# ---------------------------------------------------------------------------- rules, model


@pages.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request) -> HTMLResponse:
    """The alert rules as YAML, editable; the API validates them on save."""
    return _render(request, "rules.html", title="Rules", active="Rules")


def _without_inline_styles(html: str) -> str:
    # Markdown tables align their columns with style attributes, which the CSP refuses.
    return re.sub(r' style="text-align:(left|center|right)"', r' class="align-\1"', html)


@pages.get("/model", response_class=HTMLResponse)
def model_page(request: Request) -> HTMLResponse:
    """The loaded model and its model card (Markdown, rendered without raw HTML)."""
    try:
        description = describe_model(request.app.state.model)
    except CallmoodError as error:
        return _render(request, "model.html", 503, title="Model", active="Model", error=str(error))
    metadata = description.metadata
    facts = [
        (label, metadata[key])
        for key, label in (("created", "Created"), ("format_version", "Package format"))
        if metadata.get(key) is not None
    ]
    # The card is data from the model package: raw HTML in it is escaped, not rendered.
    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    return _render(
        request,
        "model.html",
        title="Model",
        active="Model",
        error=None,
        name=description.name,
        directory=description.directory or "(built in)",
        backend=description.backend,
        window_seconds=f"{description.window_seconds:g}",
        labels=description.labels,
        facts=facts,
        card_html=_without_inline_styles(markdown.render(description.card))
        if description.card
        else None,
    )


router.include_router(pages)


# ---------------------------------------------------------------------------- admin


#: The Users page and its forms: admins only.
ADMIN_ONLY = [Depends(deps.require_role("admin")), Depends(deps.require_scope("admin"))]


def _users_page(
    request: Request, db: Session, status_code: int = 200, error: str | None = None, done: str = ""
) -> HTMLResponse:
    from callmood.store.models import USER_ROLES
    from callmood.store.users import MIN_PASSWORD_LENGTH, list_users

    return _render(
        request,
        "admin_users.html",
        status_code,
        title="Users",
        active="Users",
        users=list_users(db),
        roles=USER_ROLES,
        min_password=MIN_PASSWORD_LENGTH,
        error=error,
        done=done,
    )


@pages.get("/admin/users", response_class=HTMLResponse, dependencies=ADMIN_ONLY)
def users_page(
    request: Request, done: str = Query("", max_length=200), db: Session = Depends(deps.get_db)
) -> HTMLResponse:
    """The user accounts and their roles, with forms to add, disable, enable and reset."""
    return _users_page(request, db, done=done)


def _check_form_csrf(request: Request, sent: str) -> None:
    # The forms post with the login cookie, so like the API they must prove they come
    # from one of our pages: the session's CSRF token (hidden field, or the header).
    expected = deps.csrf_token(request)
    sent = sent or request.headers.get(deps.CSRF_HEADER, "")
    if expected is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            400, detail="the form's CSRF token is missing or wrong: reload the page"
        )


def _user_change(
    request: Request,
    db: Session,
    change: Callable[[], str],
    action: str,
    username: str,
    detail: dict[str, str] | None = None,
) -> HTMLResponse | RedirectResponse:
    from callmood.store.users import UnknownUserError, UserError

    try:
        done = change()
        db.commit()
    except (UserError, UnknownUserError) as error:
        db.rollback()
        return _users_page(request, db, 422, error=str(error).capitalize() + ".")
    audit(request, action, f"user:{username.strip().lower()}", detail)
    return RedirectResponse(f"/admin/users?{urlencode({'done': done})}", status_code=303)


@pages.post("/admin/users", response_model=None, dependencies=ADMIN_ONLY)
def add_user(
    request: Request,
    username: str = Form(...),
    role: str = Form(...),
    password: str = Form(...),
    display_name: str = Form(""),
    csrf: str = Form(""),
    db: Session = Depends(deps.get_db),
) -> HTMLResponse | RedirectResponse:
    """Add a user from the page's form."""
    from callmood.store.users import create_user

    _check_form_csrf(request, csrf)

    def add() -> str:
        user = create_user(db, username, password, role, display_name)
        return f"Added {user.username} ({user.role})."

    return _user_change(request, db, add, "user.added", username, {"role": role})


@pages.post("/admin/users/{username}/{action}", response_model=None, dependencies=ADMIN_ONLY)
def change_user(
    request: Request,
    username: str,
    action: Literal["disable", "enable", "reset-password"],
    password: str = Form(""),
    csrf: str = Form(""),
    db: Session = Depends(deps.get_db),
) -> HTMLResponse | RedirectResponse:
    """Disable, enable, or set a new password for a user from the page's forms."""
    from callmood.store.users import UserError, set_disabled, set_password

    _check_form_csrf(request, csrf)

    def change() -> str:
        if action == "reset-password":
            return f"New password set for {set_password(db, username, password).username}."
        actor = request.state.actor
        if action == "disable" and actor.user_id is not None and actor.name == username.lower():
            # The last admin locking themselves out would need the shell to undo.
            raise UserError("you cannot disable your own account")
        user = set_disabled(db, username, action == "disable")
        return f"{action.capitalize()}d {user.username}."

    action_done = {"disable": "user.disabled", "enable": "user.enabled"}
    return _user_change(
        request, db, change, action_done.get(action, "user.password_reset"), username
    )


def _tokens_page(
    request: Request,
    db: Session,
    status_code: int = 200,
    error: str | None = None,
    done: str = "",
    secret: str | None = None,
) -> HTMLResponse:
    from callmood.store.models import TOKEN_SCOPES
    from callmood.store.tokens import list_tokens

    return _render(
        request,
        "admin_tokens.html",
        status_code,
        title="Tokens",
        active="Tokens",
        tokens=list_tokens(db),
        scopes=TOKEN_SCOPES,
        error=error,
        done=done,
        secret=secret,
    )


@pages.get("/admin/tokens", response_class=HTMLResponse, dependencies=ADMIN_ONLY)
def tokens_page(
    request: Request, done: str = Query("", max_length=200), db: Session = Depends(deps.get_db)
) -> HTMLResponse:
    """The integration tokens with their scopes and last use; forms to create and revoke."""
    return _tokens_page(request, db, done=done)


@pages.post("/admin/tokens", response_model=None, dependencies=ADMIN_ONLY)
def create_token_form(
    request: Request,
    name: str = Form(...),
    scope: list[str] = Form([]),
    csrf: str = Form(""),
    db: Session = Depends(deps.get_db),
) -> HTMLResponse:
    """Make a token from the page's form; the answer is the only time its secret is shown
    (a page, not a redirect, so that it is in no URL or history)."""
    from callmood.store.tokens import TokenError, create_token

    _check_form_csrf(request, csrf)
    try:
        token, secret = create_token(db, name, scope, request.state.actor.name)
        db.commit()
    except TokenError as error:
        db.rollback()
        return _tokens_page(request, db, 422, error=str(error).capitalize() + ".")
    audit(request, "token.created", f"token:{token.name}", {"scopes": token.scopes})
    page = _tokens_page(
        request, db, done=f"Created {token.name} ({', '.join(token.scopes)}).", secret=secret
    )
    page.headers["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    return page


@pages.post("/admin/tokens/{name}/revoke", response_model=None, dependencies=ADMIN_ONLY)
def revoke_token_form(
    request: Request, name: str, csrf: str = Form(""), db: Session = Depends(deps.get_db)
) -> HTMLResponse | RedirectResponse:
    """Revoke a token from the page: refused from its next request on."""
    from callmood.store.tokens import UnknownTokenError, revoke_token

    _check_form_csrf(request, csrf)
    try:
        token = revoke_token(db, name)
        db.commit()
    except UnknownTokenError as error:
        return _tokens_page(request, db, 404, error=str(error).capitalize() + ".")
    audit(request, "token.revoked", f"token:{token.name}")
    done = f"Revoked {token.name}."
    return RedirectResponse(f"/admin/tokens?{urlencode({'done': done})}", status_code=303)


@pages.get("/admin/audit", response_class=HTMLResponse, dependencies=ADMIN_ONLY)
def audit_page(
    request: Request,
    action: str | None = None,
    actor: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    offset: str | None = None,
    limit: str | None = None,
    db: Session = Depends(deps.get_db),
) -> HTMLResponse:
    """The audit trail, newest first, filtered by action, actor and day, and paged (as the
    alerts page: filter values that do not parse are ignored)."""
    from callmood.store.audit import AUDIT_ACTIONS, AuditFilter, list_events

    start = _page_number(offset, 0, low=0, high=MAX_OFFSET)
    per_page = _page_number(limit, DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    first_day, last_day = _optional_date(date_from), _optional_date(date_to)
    filter_error = _reversed_range(first_day, last_day)
    if filter_error:
        first_day = last_day = None
    filters = {
        "action": action if action in AUDIT_ACTIONS else None,
        "actor": (actor or "").strip()[:200] or None,
        "date_from": first_day,
        "date_to": last_day,
    }
    selection = AuditFilter(
        action=filters["action"],
        actor=filters["actor"],
        at_from=_day_start(first_day),
        at_to=_day_start(last_day, end=True),
    )
    events, total = list_events(db, selection, offset=start, limit=per_page)
    neighbours = page_offsets(start, per_page, total)
    csv_query = {
        "action": selection.action or "",
        "actor": selection.actor or "",
        "at_from": selection.at_from.isoformat() if selection.at_from else "",
        "at_to": selection.at_to.isoformat() if selection.at_to else "",
    }
    return _render(
        request,
        "admin_audit.html",
        title="Audit",
        active="Audit",
        events=events,
        total=total,
        first_number=start + 1,
        last_number=start + len(events),
        older_url=link_with_offset(request.url, neighbours.next),
        newer_url=link_with_offset(request.url, neighbours.previous),
        custom_limit=per_page if per_page != DEFAULT_PAGE_SIZE else None,
        filters=filters,
        filter_error=filter_error,
        typed_dates={"date_from": date_from or "", "date_to": date_to or ""},
        actions=AUDIT_ACTIONS,
        csv_url="/api/audit.csv?" + urlencode({k: v for k, v in csv_query.items() if v}),
    )
