"""The complaint report page and its CSV download: dates read, errors named, text inert."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient

from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from gateway.screening.texts import TextDecision, TextVerdict
from tests.helpers import Services
from web.security import new_api_token

pytestmark = pytest.mark.clock

SUNDAY = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # 11:00 in Paris


def seed(service: Services) -> None:
    decision = Decision(Action.parse("reject:603"), "t", "rule")
    service.book.record_call(service.screener.caller("0162000001"), decision, at=SUNDAY)
    refused = TextDecision(TextVerdict.REFUSED, 603, reason="t", step="rule")
    service.store.messages.add(service.screener.caller("0162000001"), refused, at=SUNDAY,
                               body="=cmd|' /C calc'!A0 <b>Gagnez</b>\u202e\x1b[2J")


def test_the_page_shows_facts_and_the_text_to_paste(client: FlaskClient,
                                                    service: Services) -> None:
    seed(service)
    html = client.get("/report?since=2026-11-01&until=2026-11-30").get_data(as_text=True)
    assert "01 62 00 00 01" in html and "décision n° 2022-1583" in html
    assert "dimanche 22/11/2026 11:00" in html
    assert "<b>Gagnez" not in html and "&lt;b&gt;Gagnez" in html
    assert "\u202e" not in html and "\x1b" not in html
    assert 'href="/report"' in html
    assert "Signalement de démarchage" in html  # the textarea
    english = client.get("/report?since=2026-11-01&until=2026-11-30&language=en")
    assert "Sunday 2026-11-22 11:00" in english.get_data(as_text=True)


def test_a_bad_date_is_named_and_the_default_period_shown(client: FlaskClient) -> None:
    html = client.get("/report?since=yesterday").get_data(as_text=True)
    assert 'id="since-error"' in html and "Expected a date (YYYY-MM-DD)." in html


def test_the_csv_download_is_neutralised(client: FlaskClient, service: Services) -> None:
    seed(service)
    response = client.get("/report/telemarketing.csv?since=2026-11-01&until=2026-11-30")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "ringfence-report-2026-11-01-2026-11-30.csv" in response.headers[
        "Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    [sms] = [r for r in rows if r[2] == "text"]
    assert sms[9].startswith("'=cmd")  # text to a spreadsheet, never a formula
    assert "\u202e" not in sms[9] and "\x1b" not in sms[9]


def test_the_api_gives_json_or_csv_and_names_a_bad_field(client: FlaskClient,
                                                         service: Services) -> None:
    seed(service)
    auth = {"Authorization": f"Bearer {new_api_token(service.store)}"}
    data = client.get("/api/report/telemarketing?since=2026-11-01&until=2026-11-30"
                      "&language=en", headers=auth).get_json()
    assert data["totals"]["numbers"] == 1 and data["since"] == "2026-11-01"
    [number] = data["numbers"]
    assert [f["basis"] for f in number["calls"][0]["facts"]] == ["law", "law"]
    csv_answer = client.get(  # both ends given: the default end is today, any day
        "/api/report/telemarketing?since=2026-11-01&until=2026-11-30&format=csv", headers=auth)
    assert csv_answer.mimetype == "text/csv"
    for query, field in (("since=01/11/2026", "since"), ("format=pdf", "format"),
                         ("since=2026-11-30&until=2026-11-01", "since")):
        bad = client.get(f"/api/report/telemarketing?{query}", headers=auth)
        assert bad.status_code == 400 and bad.get_json()["field"] == field, query
