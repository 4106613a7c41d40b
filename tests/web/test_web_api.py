"""The JSON API: bearer-token auth, JSON errors naming the field, and each endpoint."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.screening.rules import ListName
from gateway.store.models import utcnow
from tests.helpers import Services
from tests.web.support import NOW, log_call, make_app, save_voicemail, wav_bytes
from web.security import new_api_token, revoke_api_token, token_hash


class Api:
    """A test client that sends the bearer token."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.open(url, method=method, headers=self.headers, **kwargs)


@pytest.fixture
def api(app: Flask, service: Services) -> Api:
    return Api(app.test_client(), new_api_token(service.store))


def test_no_token_wrong_token_and_revoked_token_get_401_json(app: Flask,
                                                             service: Services) -> None:
    client = app.test_client()
    response = client.get("/api/stats")
    assert response.status_code == 401 and "error" in response.get_json()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    token = new_api_token(service.store)
    assert client.get("/api/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/stats", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 200
    revoke_api_token(service.store)
    assert client.get("/api/stats", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 401


def test_a_session_cookie_does_not_open_the_api(app: Flask, service: Services) -> None:
    from tests.web.support import login

    client = app.test_client()
    login(client, service)
    assert client.get("/api/stats").status_code == 401


def test_token_from_the_configured_file(make_settings: Callable[[str], Settings],
                                        tmp_path: Path) -> None:
    from tests.helpers import Services

    (tmp_path / "api-token").write_text("file-token-0123456789\n")
    settings = make_settings('language = "en"\n[web]\napi_token_file = "api-token"\n')
    service = Services.open(settings)
    app = make_app(settings, service)
    response = app.test_client().get(
        "/api/stats", headers={"Authorization": "Bearer file-token-0123456789"})
    assert response.status_code == 200
    assert app.extensions["ringfence"].api_file_hash == token_hash("file-token-0123456789")


def test_the_token_is_stored_hashed_and_shown_once_in_the_ui(app: Flask,
                                                             service: Services) -> None:
    from tests.web.support import login, post
    from web.security import API_TOKEN_KEY

    client = app.test_client()
    login(client, service)
    html = post(client, "/account/token").get_data(as_text=True)  # type: ignore[attr-defined]
    import re

    match = re.search(r'id="api-token">([^<]+)<', html)
    assert match is not None
    token = match.group(1)
    assert service.store.runtime.get_private(API_TOKEN_KEY) == token_hash(token)
    assert token not in client.get("/account").get_data(as_text=True)
    assert client.get("/api/lines", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 200


@pytest.mark.clock
@time_machine.travel(NOW, tick=False)  # "today" starts at midnight in Paris: not a minute ago
def test_stats_lines_and_calls(api: Api, service: Services) -> None:
    now = utcnow()
    log_call(service, "0612345678", action="reject:603", at=now - timedelta(minutes=1))
    log_call(service, "0698765432", action="pass", at=now - timedelta(minutes=2))
    service.book.set_line_state("home", "registered", None)
    stats = api("GET", "/api/stats").get_json()
    assert stats["today"]["blocked"] == 1 and stats["today"]["pass"] == 1
    assert len(stats["hours"]["buckets"]) == 24 and len(stats["days"]["buckets"]) == 7
    assert stats["burst"]["active"] is False
    assert api("GET", "/api/lines").get_json()["lines"][0]["state"] == "registered"
    calls = api("GET", "/api/calls?action=reject&limit=10").get_json()
    assert calls["total"] == 1 and calls["calls"][0]["number"] == "+33612345678"
    response = api("GET", "/api/calls?number=xyz")
    assert response.status_code == 400 and response.get_json()["field"] == "number"
    assert api("GET", "/api/calls?limit=x").get_json()["field"] == "limit"


@pytest.mark.clock
def test_screen_matches_the_service(api: Api, service: Services) -> None:
    service.store.entries.add(ListName.BLOCK, "0162*", action="announce:sit")
    result = api("POST", "/api/screen", json={"number": "+33 1 62 00 00 00",
                                              "at": "2026-11-24T15:00"}).get_json()
    assert result["action"] == "announce:sit" and result["step"] == "block"
    assert result["caller"] == "+33162000000"
    bad = api("POST", "/api/screen", json={"number": "0612345678", "at": "tomorrow"})
    assert bad.status_code == 400 and bad.get_json()["field"] == "at"
    assert api("POST", "/api/screen", json={"number": ""}).get_json()["field"] == "number"
    assert api("POST", "/api/screen", data="x").status_code == 400


def test_list_entries_crud(api: Api, service: Services) -> None:
    created = api("POST", "/api/lists/block", json={"pattern": "06 12 34 56 78",
                                                    "label": "spam", "action": "reject:607",
                                                    "expires": "7d"})
    assert created.status_code == 201
    entry = created.get_json()
    assert entry["pattern"] == "+33612345678" and entry["action"] == "reject:607"
    assert entry["source"] == "api" and entry["expires_at"]
    listing = api("GET", "/api/lists/block?q=spam").get_json()
    assert listing["total"] == 1 and listing["entries"][0]["id"] == entry["id"]
    assert api("GET", f"/api/entries/{entry['id']}").get_json()["label"] == "spam"
    for body, field in [({"pattern": "hello"}, "pattern"),
                        ({"pattern": "0612345678", "action": "dance"}, "action"),
                        ({"pattern": "0612345678", "expires": "later"}, "expires"),
                        ({"pattern": "0612345678", "kind": "fuzzy"}, "kind"),
                        ({"pattern": 612345678}, "pattern")]:
        response = api("POST", "/api/lists/block", json=body)
        assert response.status_code == 400, body
        assert response.get_json()["field"] == field, body
    assert api("POST", "/api/lists/allow", json={"pattern": "0612345678",
                                                 "action": "reject"}).get_json()["field"] \
        == "action"
    assert api("DELETE", f"/api/entries/{entry['id']}").status_code == 200
    assert api("DELETE", f"/api/entries/{entry['id']}").status_code == 404
    assert api("GET", "/api/lists/grey").status_code == 404


def test_permit_import_export_and_contacts(api: Api, service: Services) -> None:
    permitted = api("POST", "/api/permit", json={"number": "0612345678"})
    assert permitted.status_code == 201 and permitted.get_json()["once"] is True
    report = api("POST", "/api/lists/block/import?action=reject:603",
                 data=b"0162000000\nbad line\n0612000000,x\n",
                 content_type="text/csv").get_json()
    assert report["added"] == 2 and report["rejected"][0]["line"] == 2
    exported = api("GET", "/api/lists/block/export")
    assert exported.mimetype == "text/csv" and "+33162000000" in exported.get_data(as_text=True)
    vcf = "BEGIN:VCARD\nVERSION:4.0\nFN:Zoé\nTEL:tel:+33698765432\nEND:VCARD\n"
    result = api("POST", "/api/contacts", data=vcf.encode(), content_type="text/vcard")
    assert result.get_json()["added"] == 1
    assert api("POST", "/api/contacts", data=b"nothing").get_json()["field"] == "body"


def test_rules_and_settings(api: Api, service: Services) -> None:
    rules = api("GET", "/api/rules").get_json()["rules"]
    quiet = next(r for r in rules if r["kind"] == "quiet_hours")
    updated = api("PATCH", f"/api/rules/{quiet['id']}",
                  json={"enabled": True, "params": {"start": "21:30"}}).get_json()
    assert updated["enabled"] is True and updated["params"]["start"] == "21:30"
    bad = api("PATCH", f"/api/rules/{quiet['id']}", json={"params": {"start": "9pm"}})
    assert bad.status_code == 400 and bad.get_json()["field"] == "params"
    assert api("PATCH", f"/api/rules/{quiet['id']}", json={"colour": "red"}).get_json()[
        "field"] == "colour"
    assert api("PATCH", "/api/rules/9999", json={"enabled": True}).status_code == 404
    added = api("POST", "/api/rules", json={"kind": "country", "action": "voicemail",
                                            "params": {"regions": ["GB"], "mode": "block"}})
    assert added.status_code == 201
    assert api("POST", "/api/rules", json={"kind": "weather", "action": "pass"}).get_json()[
        "field"] == "kind"
    assert api("DELETE", f"/api/rules/{added.get_json()['id']}").status_code == 200
    settings = api("PATCH", "/api/settings", json={"default_mode": "greylist",
                                                   "repeat": {"max_calls": 5}}).get_json()
    assert settings["default_mode"] == "greylist" and settings["repeat"]["max_calls"] == 5
    bad = api("PATCH", "/api/settings", json={"default_mode": "greylist",
                                              "burst": {"distinct_callers": -1}})
    assert bad.status_code == 400 and bad.get_json()["field"] == "burst.distinct_callers"
    assert api("GET", "/api/settings").get_json()["burst"]["distinct_callers"] == 5


@pytest.mark.clock
def test_pause_and_resume(api: Api, service: Services) -> None:
    paused = api("POST", "/api/pause", json={"minutes": 45}).get_json()
    assert paused["paused_until"] and service.store.runtime.get("paused_until")
    assert api("POST", "/api/pause", json={"hours": "x"}).get_json()["field"] == "hours"
    api("DELETE", "/api/pause")
    assert service.store.runtime.get("paused_until") is None


def test_voicemail_endpoints(api: Api, settings: Settings, service: Services) -> None:
    vm = save_voicemail(service, settings, "+33612345678")
    listing = api("GET", "/api/voicemails").get_json()
    assert listing["total"] == 1 and listing["voicemails"][0]["heard"] is False
    assert listing["voicemails"][0]["interrupted"] is False
    audio = api("GET", f"/api/voicemails/{vm}/audio")
    assert audio.mimetype == "audio/wav" and audio.data[:4] == b"RIFF"
    assert api("POST", f"/api/voicemails/{vm}/heard").get_json()["heard"] is True
    assert service.store.voicemails.count(unheard_only=True) == 0
    assert api("DELETE", f"/api/voicemails/{vm}").status_code == 200
    assert api("DELETE", f"/api/voicemails/{vm}").status_code == 404


def test_prompt_upload(api: Api, settings: Settings) -> None:
    ok = api("PUT", "/api/prompts/en/goodbye", data=wav_bytes(0.2), content_type="audio/wav")
    assert ok.status_code == 200
    assert (settings.data_dir / "prompts" / "en" / "goodbye.wav").exists()
    bad = api("PUT", "/api/prompts/en/goodbye", data=b"not audio")
    assert bad.status_code == 400 and bad.get_json()["field"] == "body"
    assert api("PUT", "/api/prompts/en/secret", data=wav_bytes(0.1)).status_code == 404


def test_api_needs_no_csrf_and_unknown_routes_are_json(api: Api) -> None:
    assert api("POST", "/api/permit", json={"number": "0612345678"}).status_code == 201
    missing = api("GET", "/api/nothing-here")
    assert missing.status_code == 404 and "error" in missing.get_json()
    wrong_method = api("PUT", "/api/stats")
    assert wrong_method.status_code == 405 and "error" in wrong_method.get_json()
