"""Hostile input to the UI gets a clean answer, never a 500 or a header it did not mean."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.screening.rules import ListName
from tests.helpers import Services
from tests.web.support import PASSWORD, log_call, post, save_voicemail
from web.helpers import local_url
from web.security import set_password


@pytest.mark.parametrize("target", [
    "/%0D%0A//evil", "/%0D%0ASet-Cookie:%20x=1", "/%09/evil.example", "/%00", "/%5C%5Cevil",
    "/calls%0A",
])
def test_a_next_with_control_characters_is_ignored_not_a_500(
        app: Flask, service: Services, target: str) -> None:
    set_password(service.store, PASSWORD)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a bug must show as the 500 a browser gets
    with app.test_client() as browser:
        assert browser.get(f"/login?next={target}").status_code == 200
        response = post(browser, f"/login?next={target}", {"password": PASSWORD})
        assert response.status_code == 302  # type: ignore[attr-defined]
        assert response.headers["Location"] == "/"  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", ["/\r\n//evil", "/\t/evil", "/a\\b", "//evil", "/\x7f",
                                    "/\x85", "https://evil"])
def test_local_url_refuses_what_a_browser_would_read_otherwise(target: str) -> None:
    assert local_url(target, "/") == "/"


@pytest.mark.parametrize("target", ["/calls?page=2", "/lists/block", "/voicemail/é"])
def test_local_url_keeps_ordinary_paths(target: str) -> None:
    assert local_url(target, "/") == target


def test_the_language_switch_ignores_a_hostile_next(client: FlaskClient) -> None:
    response = post(client, "/language", {"lang": "fr", "next": "/\r\n//evil"})
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert response.headers["Location"] == "/"  # type: ignore[attr-defined]


def test_labels_and_names_reach_no_page_with_controls(client: FlaskClient, service: Services,
                                                      settings: Settings) -> None:
    hostile = "\u202eevil\x1b[31m\x00 label"
    service.store.entries.add(ListName.BLOCK, "0612345678", label=hostile)
    log_call(service, "+33698765432", name=hostile, reason=f"blocked: {hostile}")
    save_voicemail(service, settings, "+33698765432", name=hostile)
    for page in ("/lists/block", "/calls", "/voicemail", "/"):
        html = client.get(page).get_data(as_text=True)
        assert "\u202e" not in html and "\x1b" not in html and "\x00" not in html, page
        assert "evil[31m" in html and "label" in html, page  # the call log stores NUL as U+FFFD
    assert "<bdi>evil[31m label</bdi>" in client.get("/lists/block").get_data(as_text=True)
