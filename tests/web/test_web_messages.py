"""The Messages page, its API and the dashboard's count: texts beside the calls, inert."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient

from gateway.screening.texts import TextDecision, TextVerdict
from gateway.store.models import utcnow
from tests.helpers import Services, caller
from tests.web.support import post
from web.security import new_api_token

HOSTILE = "<script>alert(1)</script>\x1b[2J\u202etxet"


def store_text(service: Services, number: str, body: str, *, at: datetime | None = None,
               verdict: TextVerdict = TextVerdict.ACCEPTED, name: str = "") -> str:
    status = 603 if verdict is TextVerdict.REFUSED else 202
    decision = TextDecision(verdict, status, reason="set by the test", step="default")
    return service.store.messages.add(caller(number, name), decision, at=at or utcnow(),
                                      body=body)


def bearer(service: Services) -> dict[str, str]:
    return {"Authorization": f"Bearer {new_api_token(service.store)}"}


def page(client: FlaskClient, url: str = "/messages") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_page_lists_texts_and_keeps_strangers_text_inert(client: FlaskClient,
                                                             service: Services) -> None:
    store_text(service, "0612345678", "À ce soir\nBises", name=HOSTILE)
    store_text(service, "0162000001", HOSTILE, verdict=TextVerdict.REFUSED)
    html = page(client)
    assert "06 12 34 56 78" in html and "<bdi>À ce soir</bdi><br><bdi>Bises</bdi>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\x1b" not in html and "\u202e" not in html
    only_refused = page(client, "/messages?verdict=refused")
    assert "01 62 00 00 01" in only_refused and "06 12 34 56 78" not in only_refused


def test_the_page_is_in_the_menu_and_in_french(client: FlaskClient, service: Services) -> None:
    store_text(service, "0612345678", "coucou", verdict=TextVerdict.HELD)
    assert 'href="/messages"' in page(client, "/")
    post(client, "/language", {"lang": "fr", "next": "/"})
    html = page(client)
    assert "Aucun SMS." not in html and "retenu (202)" in html


@pytest.mark.clock
def test_the_dashboard_counts_texts(client: FlaskClient, service: Services) -> None:
    now = utcnow()
    store_text(service, "0612345678", "a", at=now)
    store_text(service, "0612345679", "b", at=now - timedelta(days=3))
    html = page(client, "/")
    assert 'c-texts' in html
    stats = client.get("/api/stats", headers=bearer(service)).get_json()
    assert stats["texts"]["week"] == 2 and stats["texts"]["today"] >= 1


def test_the_api_lists_texts_and_names_a_bad_filter(client: FlaskClient,
                                                    service: Services) -> None:
    store_text(service, "0612345678", HOSTILE)
    data = client.get("/api/messages", headers=bearer(service)).get_json()
    assert data["total"] == 1 and data["messages"][0]["text"] == HOSTILE
    assert data["messages"][0]["number"] == "+33612345678"
    bad = client.get("/api/messages?verdict=nope", headers=bearer(service))
    assert bad.status_code == 400 and bad.get_json()["field"] == "verdict"
