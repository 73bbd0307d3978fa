"""The API behind the dashboard's call and alerts pages (issue 18, 2 December 2026): rename
and retag a call, filter alerts by rule and date, acknowledge many at once, export files
named after the call, and HTML error pages for browsers only. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from service_support import database_url, make_call_result  # noqa: F401 (fixture)
from test_api import AUTH, client, make_client, store_result  # noqa: F401 (fixtures)

from callmood import exports
from callmood.service.routes.calls import export_file_stem


def test_a_call_can_be_renamed_and_retagged_and_the_list_finds_it_so(client):  # noqa: F811
    store_result(client, make_call_result("c1"), name="Old name", tags=["Billing"])
    changed = client.patch(
        "/api/calls/c1", headers=AUTH, json={"name": " Complaint ", "tags": ["VIP", "refund"]}
    )
    assert changed.status_code == 200
    assert changed.json()["name"] == "Complaint" and changed.json()["tags"] == ["refund", "vip"]
    found = client.get("/api/calls", headers=AUTH, params={"q": "vip"}).json()["items"]
    assert [call["id"] for call in found] == ["c1"]
    assert client.get("/api/calls", headers=AUTH, params={"q": "billing"}).json()["total"] == 0
    # Leaving a field out keeps it.
    renamed = client.patch("/api/calls/c1", headers=AUTH, json={"name": "Again"}).json()
    assert renamed["tags"] == ["refund", "vip"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "blank"),
        ({"tags": "vip"}, "tags"),
        ({"tags": ["x" * 101]}, "tags"),
        ({"colour": "red"}, "colour"),
        ({"name": "a\x00b"}, "NUL"),
    ],
)
def test_a_bad_change_to_a_call_is_refused_naming_the_field(client, body, named):  # noqa: F811
    store_result(client, make_call_result("c1"), name="Kept")
    response = client.patch("/api/calls/c1", headers=AUTH, json=body)
    assert response.status_code == 422 and named in response.json()["detail"]
    assert client.get("/api/calls/c1/summary", headers=AUTH).json()["name"] == "Kept"


def test_renaming_an_unknown_call_is_a_404(client):  # noqa: F811
    response = client.patch("/api/calls/nope", headers=AUTH, json={"name": "x"})
    assert response.status_code == 404


def test_many_alerts_are_acknowledged_at_once_or_none_are(client):  # noqa: F811
    store_result(client, make_call_result("c1", alert_rules=("a", "b", "c")), name="Call")
    ids = [alert["id"] for alert in client.get("/api/alerts", headers=AUTH).json()["items"]]
    refused = client.post("/api/alerts/acknowledge", headers=AUTH, json={"ids": [ids[0], 10**9]})
    assert refused.status_code == 404
    states = {alert["state"] for alert in client.get("/api/alerts", headers=AUTH).json()["items"]}
    assert states == {"open"}, "an unknown id must leave every alert as it was"
    done = client.post("/api/alerts/acknowledge", headers=AUTH, json={"ids": ids[:2]})
    assert done.status_code == 200
    assert sorted(alert["id"] for alert in done.json()) == sorted(ids[:2])
    still_open = client.get("/api/alerts", headers=AUTH, params={"state": "open"}).json()
    assert [alert["id"] for alert in still_open["items"]] == [ids[2]]


@pytest.mark.parametrize(
    "body", [{}, {"ids": []}, {"ids": ["one"]}, {"ids": [-1]}, {"ids": list(range(501))}]
)
def test_acknowledging_a_bad_selection_is_a_422(client, body):  # noqa: F811
    response = client.post("/api/alerts/acknowledge", headers=AUTH, json=body)
    assert response.status_code == 422 and "ids" in response.json()["detail"]


def test_alerts_filter_by_rule_and_date(client):  # noqa: F811
    now = datetime.now(UTC)
    store_result(
        client,
        make_call_result("old", alert_rules=("angry_customer",)),
        name="Old",
        created_at=now - timedelta(days=10),
    )
    store_result(client, make_call_result("new", alert_rules=("angry_customer", "loud")), name="N")
    by_rule = client.get("/api/alerts", headers=AUTH, params={"rule": "loud"}).json()
    assert [alert["call_id"] for alert in by_rule["items"]] == ["new"]
    recent = client.get(
        "/api/alerts",
        headers=AUTH,
        params={"created_from": (now - timedelta(days=1)).isoformat(), "rule": "angry_customer"},
    ).json()
    assert [alert["call_id"] for alert in recent["items"]] == ["new"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"created_from": "yesterday"}, "created_from"),
        ({"created_from": "2026-12-02", "created_to": "2026-11-01"}, "created_to"),
        ({"rule": "r" * 101}, "rule"),
        ({"severity": "loud"}, "severity"),
    ],
)
def test_bad_alert_filters_are_a_422_naming_the_parameter(client, params, named):  # noqa: F811
    response = client.get("/api/alerts", headers=AUTH, params=params)
    assert response.status_code == 422 and named in response.json()["detail"]


def test_windows_csv_has_a_row_per_window_with_every_probability():
    result = make_call_result(customer_emotions=("neutral", "angry", "sad", "angry"))
    rows = list(csv.DictReader(io.StringIO(exports.to_windows_csv(result))))
    assert len(rows) == len(result.windows()) == 4
    assert [row["emotion"] for row in rows] == ["neutral", "angry", "sad", "angry"]
    assert {f"p_{label}" for label in result.model.labels} <= set(rows[0])
    assert float(rows[1]["p_angry"]) == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("demo_call.flac", "demo_call"),
        ("Billing complaint 3.WAV", "Billing_complaint_3"),
        ("../../etc/passwd", "etc_passwd"),
        ('quote" and ; semicolon', "quote_and_semicolon"),
        ("Ärger am Telefon", "Arger_am_Telefon"),
        ("???", "c0ffee"),
    ],
)
def test_export_file_names_come_from_the_call_name_and_are_safe(name, stem):
    assert export_file_stem(name, "c0ffee") == stem


def test_browsers_get_an_html_404_page_and_scripts_json(client):  # noqa: F811
    page = client.get("/nope", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "<html" in page.text and "Page not found" in page.text
    api = client.get("/api/nope", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    script = client.get("/nope")
    assert script.status_code == 404 and script.json() == {"detail": "Not Found"}


def test_docs_send_a_signed_out_browser_to_login_and_keep_401_for_scripts(client):  # noqa: F811
    browser = client.get("/docs", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303 and browser.headers["location"] == "/login?next=%2Fdocs"
    assert client.get("/docs").status_code == 401
    assert client.get("/docs", headers=AUTH).status_code == 200


def _seed_for_sorting(client) -> None:  # noqa: F811
    now = datetime.now(UTC)
    for index, (emotions, rules) in enumerate(
        [
            (("neutral",), ()),
            (("angry", "angry", "angry", "angry"), ("a", "b")),
            (("sad", "neutral"), ("a",)),
        ]
    ):
        store_result(
            client,
            make_call_result(f"c{index}", customer_emotions=emotions, alert_rules=rules),
            name=f"Call {index}",
            created_at=now - timedelta(minutes=index),
        )


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        (None, ["c0", "c1", "c2"]),
        ("date", ["c2", "c1", "c0"]),
        ("-duration", ["c1", "c2", "c0"]),
        ("duration", ["c0", "c2", "c1"]),
        ("-negativity", ["c1", "c2", "c0"]),
        ("-alerts", ["c1", "c2", "c0"]),
    ],
)
def test_calls_sort_by_date_duration_negativity_and_open_alerts(client, sort, expected):  # noqa: F811
    _seed_for_sorting(client)
    params = {"sort": sort} if sort else {}
    items = client.get("/api/calls", headers=AUTH, params=params).json()["items"]
    assert [call["id"] for call in items] == expected


def test_sorting_by_alerts_counts_open_ones_only(client):  # noqa: F811
    _seed_for_sorting(client)
    for alert in client.get("/api/alerts", headers=AUTH, params={"call_id": "c1"}).json()["items"]:
        client.post(f"/api/alerts/{alert['id']}/resolve", headers=AUTH)
    items = client.get("/api/calls", headers=AUTH, params={"sort": "-alerts"}).json()["items"]
    assert items[0]["id"] == "c2"


@pytest.mark.parametrize("sort", ["name", "--date", "DATE", ""])
def test_an_unknown_sort_is_a_422_naming_the_choices(client, sort):  # noqa: F811
    response = client.get("/api/calls", headers=AUTH, params={"sort": sort})
    assert response.status_code == 422
    assert "'sort'" in response.json()["detail"] and "-negativity" in response.json()["detail"]


def test_overtalk_is_the_time_both_parties_speak_at_once():
    from callmood.results import SpeechStretch

    result = make_call_result()  # customer speaks 0-9 s, the agent 0.5-2 s
    assert result.overtalk_seconds() == pytest.approx(1.5)
    result.speakers["agent"].speech = [
        SpeechStretch(start=1.0, end=2.0),
        SpeechStretch(start=8.0, end=12.0),  # runs past the customer's last word at 9 s
    ]
    result.speakers["customer"].speech = [
        SpeechStretch(start=0.0, end=3.0),
        SpeechStretch(start=5.0, end=9.0),
    ]
    assert result.overtalk_seconds() == pytest.approx(1.0 + 1.0)
    del result.speakers["agent"]
    assert result.overtalk_seconds() is None, "a mono or one-sided call has no overtalk"
