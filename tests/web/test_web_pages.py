"""The web UI's pages through Flask's test client: content, validation, escaping, actions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.screening.rules import ListName
from gateway.store.models import utcnow
from tests.helpers import Services
from tests.web.support import NOW, log_call, post, save_voicemail

HOSTILE = "<img src=x onerror=alert(1)>"


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


# ---------------------------------------------------------------------------- dashboard


@pytest.mark.clock
def test_dashboard_counts_charts_lines_and_voicemail(client: FlaskClient, settings: Settings,
                                                     service: Services) -> None:
    now = utcnow()
    log_call(service, "0612345678", action="pass", at=now - timedelta(minutes=5))
    log_call(service, "0162000001", action="reject:603", at=now - timedelta(minutes=4))
    log_call(service, "0162000002", action="voicemail", at=now - timedelta(days=3))
    service.book.set_line_state("home", "failed", "401 Unauthorized from 127.0.0.1")
    save_voicemail(service, settings, "+33612345678", name="Alice", at=now)
    html = text(client.get("/"))
    assert html.count("<svg") == 2
    assert "401 Unauthorized from 127.0.0.1" in html and "home" in html
    assert "06 12 34 56 78" in html and "Alice" in html
    assert "Off: no wave" in html
    data = service.store.calls.counts_by_category(now - timedelta(days=7), now)
    assert data == {"pass": 1, "blocked": 1, "voicemail": 1, "challenge": 0}


@pytest.mark.clock
def test_dashboard_shows_burst_mode_and_when_it_started(client: FlaskClient,
                                                        service: Services) -> None:
    start = utcnow() - timedelta(minutes=8)
    for i in range(5):
        log_call(service, f"06123456{i:02d}", at=start + timedelta(minutes=i))
    html = text(client.get("/"))
    assert "ON since" in html and "5 different unknown callers" in html


@pytest.mark.clock
def test_dashboard_shows_the_pause(client: FlaskClient, service: Services) -> None:
    service.store.runtime.set("paused_until", (utcnow() + timedelta(hours=1)).isoformat())
    assert "Screening is paused until" in text(client.get("/"))


# ---------------------------------------------------------------------------- call log


@pytest.mark.clock
def test_call_log_paginates_with_a_count(client: FlaskClient, service: Services) -> None:
    for i in range(120):
        log_call(service, f"0612{i:06d}", at=NOW - timedelta(minutes=i))
    first = text(client.get("/calls"))
    assert "120 calls" in first and "Page 1 of 3" in first
    assert first.count('class="row"') == 50
    last = text(client.get("/calls?page=3"))
    assert last.count('class="row"') == 20
    assert "06 12 00 01 19" in last  # the oldest call
    assert text(client.get("/calls?page=99")).count('class="row"') == 20  # clamped


@pytest.mark.clock
def test_call_log_filters_by_action_number_and_date(client: FlaskClient,
                                                    service: Services) -> None:
    log_call(service, "+33612345678", action="reject:603", at=NOW)
    log_call(service, "+33612345678", action="pass", at=NOW - timedelta(days=1))
    log_call(service, "+33698765432", action="voicemail", at=NOW)
    assert ">1 call</span>" in text(client.get("/calls?action=reject"))  # not "1 calls"
    assert "2 calls" in text(client.get("/calls?number=06 12 34 56 78"))
    assert "2 calls" in text(client.get("/calls?number=0033612345678"))
    assert "2 calls" in text(client.get(f"/calls?date={NOW.date().isoformat()}"))
    html = text(client.get("/calls?number=%2B33612345678&action=pass"))
    assert ">1 call</span>" in html and "rang through" in html


def test_call_log_row_shows_national_e164_name_action_and_reason(
        client: FlaskClient, service: Services) -> None:
    log_call(service, "+33612345678", action="reject:603", name="Bob",
             reason="on the block list: +33612345678")
    html = text(client.get("/calls"))
    assert "06 12 34 56 78" in html and "+33612345678" in html and "Bob" in html
    assert "rejected (603 Decline)" in html and "on the block list: +33612345678" in html


def test_call_log_bad_filters_are_named_and_kept(client: FlaskClient) -> None:
    response = client.get("/calls?date=31/12/2026&number=hello")
    html = text(response)
    assert "31/12/2026 is not a date (YYYY-MM-DD)" in html
    assert "hello is not a phone number" in html
    assert 'value="hello"' in html


def test_hostile_display_name_is_shown_as_text(client: FlaskClient, settings: Settings,
                                               service: Services) -> None:
    log_call(service, "0612345678", name=HOSTILE)
    save_voicemail(service, settings, "+33612345678", name=HOSTILE, at=utcnow())
    for page in ("/calls", "/", "/voicemail"):
        html = text(client.get(page))
        assert HOSTILE not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_hostile_values_in_forms_and_labels_are_escaped(client: FlaskClient,
                                                        service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "0612345678", label='"><script>alert(1)</script>')
    html = text(client.get("/lists/block"))
    assert "<script>alert(1)" not in html
    html = text(client.get('/calls?number="><script>alert(2)</script>'))
    assert "<script>alert(2)" not in html


# ---------------------------------------------------------------------------- allow / block


def test_block_from_the_call_log_with_confirmation(client: FlaskClient,
                                                   service: Services) -> None:
    log_call(service, "+33612345678")
    calls = text(client.get("/calls"))
    link = re.search(r'href="(/lists/confirm\?list=block[^"]+)"', calls)
    assert link is not None
    page = text(client.get(link.group(1).replace("&amp;", "&")))
    assert ("+33612345678 will be added to the block list; calls from it will get reject:603"
            in page)
    assert service.store.entries.count("block") == 0  # nothing changes before the POST
    response = post(client, "/lists/confirm", {"list": "block", "number": "+33612345678",
                                               "back": "/calls"})
    assert response.status_code == 302 and response.headers["Location"] == "/calls"
    decision = service.screener.evaluate(service.screener.caller("0612345678"), utcnow())
    assert str(decision.action) == "reject:603"


def test_blocking_an_allowed_number_says_so_and_moves_it(client: FlaskClient,
                                                         service: Services) -> None:
    service.store.entries.add(ListName.ALLOW, "0612345678", label="friend")
    page = text(client.get("/lists/confirm?list=block&number=0612345678"))
    assert "It will be removed from the allow list." in page
    post(client, "/lists/confirm", {"list": "block", "number": "0612345678"})
    assert service.store.entries.count("allow") == 0
    assert service.store.entries.count("block") == 1


def test_blocking_under_an_allow_prefix_warns_it_will_still_ring(
        client: FlaskClient, service: Services) -> None:
    service.store.entries.add(ListName.ALLOW, "0612*", label="family")
    page = text(client.get("/lists/confirm?list=block&number=0612345678"))
    assert "which is checked first, so its calls will still ring" in page


def test_allow_confirmation_and_bad_number(client: FlaskClient, service: Services) -> None:
    page = text(client.get("/lists/confirm?list=allow&number=%2B33612345678"))
    assert "will be added to the allow list; calls from it will ring through" in page
    assert client.get("/lists/confirm?list=allow&number=abc").status_code == 400
    assert client.get("/lists/confirm?list=grey&number=0612345678").status_code == 404
    response = post(client, "/lists/confirm", {"list": "allow", "number": "0612345678",
                                               "back": "//evil.example/"})
    assert response.headers["Location"] == "/calls"


def test_add_entry_and_errors_next_to_the_field_with_values_kept(
        client: FlaskClient, service: Services) -> None:
    response = post(client, "/lists/block/add", {"pattern": "0162*", "label": "ARCEP range",
                                                 "action": "announce:sit", "expires": "7d"})
    assert response.status_code == 302
    entry = service.store.entries.find("block")[0]
    assert (entry.kind.value, entry.pattern, str(entry.action)) == ("prefix", "+33162",
                                                                    "announce:sit")
    assert entry.expires_at is not None
    response = post(client, "/lists/block/add", {"pattern": "call me maybe", "label": "typed"})
    html = text(response)
    assert response.status_code == 400
    assert "neither a phone number nor a pattern" in html
    assert 'value="call me maybe"' in html and 'value="typed"' in html
    assert re.search(r'has-error">\s*<label for="f-pattern"', html)
    response = post(client, "/lists/block/add", {"pattern": "0612345678", "action": "explode"})
    html = text(response)
    assert re.search(r'id="e-action">unknown action', html)
    assert 'value="explode"' in html and 'value="0612345678"' in html
    response = post(client, "/lists/block/add", {"pattern": "0612345678", "expires": "someday"})
    assert re.search(r'id="e-expires">.*someday', text(response))
    response = post(client, "/lists/block/add", {"pattern": "re:([", "kind": ""})
    assert "not a valid regular expression" in text(response)
    response = post(client, "/lists/allow/add", {"pattern": "0612345678", "label": "x" * 201})
    assert re.search(r'id="e-label">the label is longer', text(response))


def test_edit_search_paginate_and_remove_entries(client: FlaskClient,
                                                 service: Services) -> None:
    for i in range(60):
        service.store.entries.add(ListName.BLOCK, f"06120000{i:02d}", label=f"spam {i}")
    html = text(client.get("/lists/block"))
    assert "60 entries" in html and "Page 1 of 2" in html
    assert "1 entry" in text(client.get("/lists/block?q=spam 42"))  # a real singular
    entry = service.store.entries.find("block", search="spam 42")[0]
    service.store.entries.add(ListName.BLOCK, "0612000042", label="spam 42",
                           expires_at=datetime(2027, 1, 1, 11, 0, tzinfo=UTC))
    form = text(client.get(f"/lists/entry/{entry.id}/edit"))
    assert 'value="+33612000042"' in form
    assert 'value="2027-01-01T12:00"' in form  # local (Paris) time, as the owner types it
    response = post(client, f"/lists/entry/{entry.id}/edit",
                    {"pattern": "0612000099", "label": "renamed", "kind": "exact"})
    assert response.status_code == 302
    assert service.store.entries.get(entry.id) is None
    assert service.store.entries.find("block", search="renamed")[0].pattern == "+33612000099"
    response = post(client, f"/lists/entry/{entry.id + 1}/edit", {"pattern": "nope!"})
    assert response.status_code == 400 and 'value="nope!"' in text(response)
    target = service.store.entries.find("block", search="renamed")[0]
    response = post(client, f"/lists/entry/{target.id}/delete", {"back": "https://evil.example/"})
    assert response.headers["Location"] == "/lists/block"
    assert service.store.entries.count("block") == 59
    assert client.get("/lists/entry/999999/edit").status_code == 404


def test_permit_next_call(client: FlaskClient, service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "0612345678")
    response = post(client, "/permit", {"number": "06 12 34 56 78", "expires": "2h"})
    assert response.status_code == 302
    decision = service.screener.evaluate(service.screener.caller("0612345678"), utcnow())
    assert decision.action.is_pass and decision.consume_entry_id is not None
    assert "06 12 34 56 78" in text(client.get("/permit"))
    for i in range(60):  # many ordinary allow entries must not hide the pending permission
        service.store.entries.add(ListName.ALLOW, f"06990000{i:02d}")
    assert "06 12 34 56 78" in text(client.get("/permit"))
    response = post(client, "/permit", {"number": "not a number", "label": "kept"})
    assert response.status_code == 400 and 'value="kept"' in text(response)


# ---------------------------------------------------------------------------- rules, settings


def _rule_id(service: Services, kind: str) -> int:
    return next(r.id for r in service.store.rules.all() if r.kind.value == kind)


def test_update_a_rule_and_validation_names_the_field(client: FlaskClient,
                                                      service: Services) -> None:
    rid = _rule_id(service, "quiet_hours")
    response = post(client, f"/rules/{rid}", {"enabled": "1", "action": "voicemail",
                                              "priority": "70", "label": "night",
                                              "params.start": "23:00", "params.end": "06:30",
                                              "params.days": "0, 1, 2"})
    assert response.status_code == 302
    rule = next(r for r in service.store.rules.all() if r.id == rid)
    assert rule.enabled and rule.params["start"] == "23:00" and rule.params["days"] == [0, 1, 2]
    response = post(client, f"/rules/{rid}", {"enabled": "1", "action": "voicemail",
                                              "priority": "70", "params.start": "25:99",
                                              "params.end": "06:30", "params.days": "0"})
    html = text(response)
    assert response.status_code == 400
    assert 'id="e-params.start"' in html and "25:99" in html
    response = post(client, f"/rules/{rid}", {"action": "reject:999", "priority": "70",
                                              "params.start": "22:00", "params.end": "07:00",
                                              "params.days": "0"})
    assert 'id="e-action">choose an action from the list' in text(response)
    response = post(client, f"/rules/{rid}", {"action": "voicemail", "priority": "soon"})
    html = text(response)
    # Every wrong field at once, each in words next to it (not "priority = 'soon': …").
    assert 'id="e-priority">expected a whole number, not soon' in html
    assert 'id="e-params.start">expected a time of day such as 22:00' in html
    assert 'id="e-params.days">tick at least one day' in html


def test_add_and_delete_a_rule(client: FlaskClient, service: Services) -> None:
    before = len(service.store.rules.all())
    response = post(client, "/rules/add", {"kind": "country", "action": "reject:603",
                                           "priority": "55", "params.regions": "gb, be",
                                           "params.mode": "block"})
    assert response.status_code == 302
    added = [r for r in service.store.rules.all() if r.params.get("regions") == ["GB", "BE"]]
    assert len(service.store.rules.all()) == before + 1 and len(added) == 1
    response = post(client, "/rules/add", {"kind": "country", "action": "reject:603",
                                           "priority": "55", "params.regions": "ZZ"})
    assert response.status_code == 400
    assert 'id="e-params.regions">ZZ is not a country code (FR, BE, GB…)' in text(response)
    assert 'value="ZZ"' in text(response)
    post(client, f"/rules/{added[0].id}/delete")
    assert len(service.store.rules.all()) == before


def test_save_settings_and_errors(client: FlaskClient, service: Services) -> None:
    form = {"default_mode": "challenge", "block_action": "reject:603", "challenge_digit": "7",
            "repeat.enabled": "1", "repeat.max_calls": "4", "repeat.window_minutes": "15",
            "repeat.action": "voicemail", "burst.enabled": "1", "burst.distinct_callers": "6",
            "burst.window_minutes": "10", "burst.duration_minutes": "30",
            "burst.action": "voicemail:spoof_shield", "greylist.min_minutes": "0.5",
            "greylist.window_minutes": "30", "greylist.action": "reject:486"}
    assert post(client, "/settings", form).status_code == 302
    settings = service.store.runtime.all()
    assert settings["default_mode"] == "challenge" and settings["challenge_digit"] == "7"
    assert settings["repeat"]["max_calls"] == 4 and settings["burst"]["duration_minutes"] == 30
    response = post(client, "/settings", {**form, "burst.distinct_callers": "lots"})
    html = text(response)
    assert response.status_code == 400
    assert 'id="e-burst.distinct_callers"' in html and 'value="lots"' in html
    response = post(client, "/settings", {**form, "challenge_digit": "55"})
    assert 'id="e-challenge_digit">one key: 0 to 9, * or #' in text(response)
    response = post(client, "/settings", {**form, "repeat.action": "dance"})
    assert 'id="e-repeat.action"' in text(response)
    assert service.store.runtime.all()["burst"]["distinct_callers"] == 6  # nothing half-saved


@pytest.mark.clock
def test_pause_and_resume(client: FlaskClient, service: Services) -> None:
    assert post(client, "/pause", {"amount": "2", "unit": "hours"}).status_code == 302
    until = datetime.fromisoformat(service.store.runtime.get("paused_until"))
    assert timedelta(minutes=119) < until - datetime.now(UTC) <= timedelta(hours=2)
    telemarketer = service.screener.caller("0162000001")
    assert service.screener.evaluate(telemarketer, utcnow()).step == "pause"
    assert "Resume screening now" in text(client.get("/rules"))
    post(client, "/pause", {"resume": "1"})
    assert service.store.runtime.get("paused_until") is None
    response = post(client, "/pause", {"amount": "0", "unit": "hours"})
    assert response.status_code == 400 and 'id="e-amount"' in text(response)


# ---------------------------------------------------------------------------- test a number


@pytest.mark.clock
def test_test_a_number_gives_the_screen_answer(client: FlaskClient,
                                               service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "0612345678", action="announce:sit")
    html = text(client.get("/test?number=0033612345678&name=&at=2026-11-24T15:00"))
    decision = service.screener.evaluate(service.screener.caller("0033612345678"),
                                datetime(2026, 11, 24, 14, 0, tzinfo=UTC))
    assert f'data-action="{decision.action}"' in html and decision.reason in html
    html = text(client.get("/test?number=0162000000&at=not-a-time"))
    assert 'id="e-at"' in html and 'value="0162000000"' in html


@pytest.mark.clock
def test_test_a_number_handles_withheld_and_hostile_names(client: FlaskClient) -> None:
    html = text(client.get("/test", query_string={"number": "anonymous", "name": HOSTILE}))
    assert "withheld" in html and HOSTILE not in html


@pytest.mark.clock
def test_dashboard_buckets_follow_local_days_across_a_dst_change(
        service: Services) -> None:
    # Paris left summer time on 25 October 2026 at 03:00: that local day lasts 25 hours.
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    log_call(service, "0612345678", at=datetime(2026, 10, 25, 0, 30, tzinfo=paris))
    log_call(service, "0612345679", at=datetime(2026, 10, 25, 23, 30, tzinfo=paris))
    log_call(service, "0612345670", at=datetime(2026, 10, 26, 0, 10, tzinfo=paris))
    days = service.store.calls.buckets(datetime(2026, 10, 24, tzinfo=paris), timedelta(days=1),
                           3)
    assert [d["pass"] for d in days] == [0, 2, 1]
