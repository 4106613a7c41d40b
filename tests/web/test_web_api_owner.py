"""The JSON API's additions for issue 13: search, CSV export, several entries at once, burst
profiles, messages apart from calls, the gateway's heartbeat. Existing fields stay."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from flask import Flask

from gateway.config import Settings
from gateway.store.models import utcnow
from tests.helpers import Services
from tests.web.support import NOW, log_call, save_voicemail
from tests.web.test_web_api import Api
from web.security import new_api_token


@pytest.fixture
def api(app: Flask, service: Services) -> Api:
    return Api(app.test_client(), new_api_token(service.store))


def test_calls_search_partial_numbers_and_names(api: Api, service: Services) -> None:
    log_call(service, "0612345678", name="Jean Dupont")
    log_call(service, "0698765432")
    for query in ("number=0612", "q=06%2012", "q=%2B33612", "q=dupont"):
        data = api("GET", f"/api/calls?{query}").get_json()
        assert data["total"] == 1 and data["calls"][0]["number"] == "+33612345678", query
    assert api("GET", "/api/calls?number=06%2012%2034%2056%2078").get_json()["total"] == 1
    bad = api("GET", "/api/calls?number=hello")
    assert bad.status_code == 400 and bad.get_json()["field"] == "number"


def test_calls_export_as_csv(api: Api, service: Services) -> None:
    log_call(service, "0612345678", name="@SUM(1+1)")
    log_call(service, "0698765432")
    response = api("GET", "/api/calls/export?q=0612")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 2 and rows[1][1] == "'+33612345678" and rows[1][2] == "'@SUM(1+1)"


def test_several_numbers_and_several_entries_at_once(api: Api, service: Services) -> None:
    service.store.entries.add("allow", "0611111111")
    response = api("POST", "/api/lists/block/numbers",
                   json={"numbers": ["06 11 11 11 11", "+33622222222", "nope"], "label": "x"})
    data = response.get_json()
    assert response.status_code == 200
    assert [e["pattern"] for e in data["added"]] == ["+33611111111", "+33622222222"]
    assert data["added"][0]["source"] == "api" and data["refused"][0]["number"] == "nope"
    assert service.store.entries.count("allow") == 0
    assert api("POST", "/api/lists/block/numbers", json={"numbers": "0611"}).status_code == 400
    ids = [e["id"] for e in data["added"]]
    data = api("POST", "/api/entries/delete", json={"ids": [*ids, 999]}).get_json()
    assert data == {"deleted": sorted(ids), "missing": [999]}
    assert api("POST", "/api/entries/delete", json={"ids": [True]}).status_code == 400


@pytest.mark.clock
@time_machine.travel(NOW, tick=False)  # "today" starts at midnight in Paris: not minutes ago
def test_burst_profile_and_stats(api: Api, service: Services, settings: Settings) -> None:
    stats = api("GET", "/api/stats").get_json()
    assert stats["burst"]["profile"] == "spoofed" and stats["messages"] == {"today": 0,
                                                                           "week": 0}
    assert {"today", "week", "hours", "days", "paused_until"} <= set(stats)  # kept
    response = api("POST", "/api/burst/profile", json={"profile": "published"})
    assert response.status_code == 200
    assert response.get_json()["burst"]["action"] == "challenge:published"
    assert api("GET", "/api/stats").get_json()["burst"]["profile"] == "published"
    wrong = api("POST", "/api/burst/profile", json={"profile": "loud"})
    assert wrong.status_code == 400 and wrong.get_json()["field"] == "profile"
    log_call(service, "0612345678", action="voicemail", at=utcnow() - timedelta(minutes=1))
    save_voicemail(service, settings, "+33612345678", at=utcnow())
    stats = api("GET", "/api/stats").get_json()
    assert stats["today"]["voicemail"] == 1 and stats["messages"]["today"] == 1


def test_lines_report_the_gateway_s_heartbeat(api: Api, service: Services) -> None:
    assert api("GET", "/api/lines").get_json() == {"lines": [], "gateways": []}
    service.store.status.started(mode="direct", listening=["127.0.0.1:5060"],
                                 version="0.1.0", at=utcnow())
    [gateway] = api("GET", "/api/lines").get_json()["gateways"]
    assert gateway["mode"] == "direct" and gateway["state"] == "up"
    assert gateway["listening"] == ["127.0.0.1:5060"]
