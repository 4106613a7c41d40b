"""Sessions end on the server: a cookie captured before logout opens nothing afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from flask import Flask
from flask.testing import FlaskClient

from gateway.store.models import WebSessionRow
from tests.helpers import Services
from tests.web.support import PASSWORD, login, post


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("ringfence_session")
    assert cookie is not None
    return cookie.value


def _replay(app: Flask, value: str, path: str = "/calls") -> int:
    """Open `path` in a fresh browser that only has the captured cookie."""
    thief = app.test_client()
    thief.set_cookie("ringfence_session", value)
    return thief.get(path).status_code


def test_a_cookie_captured_before_logout_is_refused_after_it(app: Flask, anonymous: FlaskClient,
                                                             service: Services) -> None:
    login(anonymous, service)
    captured = _cookie(anonymous)
    assert _replay(app, captured) == 200  # the capture works while the owner is logged in
    assert post(anonymous, "/logout").status_code == 302  # type: ignore[attr-defined]
    assert _replay(app, captured) == 302  # to the login page
    assert _replay(app, captured, "/api/stats") == 401  # and never a way into the API


def test_logout_ends_only_that_session(app: Flask, service: Services) -> None:
    phone, laptop = app.test_client(), app.test_client()
    login(phone, service)
    login(laptop, service)
    post(phone, "/logout")
    assert phone.get("/calls").status_code == 302
    assert laptop.get("/calls").status_code == 200


def test_a_new_password_ends_every_other_session_on_the_server(app: Flask,
                                                               service: Services) -> None:
    first, second = app.test_client(), app.test_client()
    login(first, service)
    login(second, service)
    kept = _cookie(second)
    response = post(first, "/account/password", {
        "current": PASSWORD, "password": "another long one", "confirm": "another long one"})
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert first.get("/calls").status_code == 200
    assert _replay(app, kept) == 302


def test_a_session_unused_for_its_lifetime_is_over(anonymous: FlaskClient,
                                                   service: Services) -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        login(anonymous, service)
        clock.move_to(start + timedelta(days=13))
        assert anonymous.get("/calls").status_code == 200  # used: 14 more days from here
        clock.move_to(start + timedelta(days=26))
        assert anonymous.get("/calls").status_code == 200
        clock.move_to(start + timedelta(days=41))
        assert anonymous.get("/calls").status_code == 302


def test_the_database_holds_no_usable_session_id(anonymous: FlaskClient,
                                                 service: Services) -> None:
    login(anonymous, service)
    with service.db.session() as s:
        rows = list(s.query(WebSessionRow))
    assert len(rows) == 1
    with anonymous.session_transaction() as session:
        session_id = session["sid"]
    assert rows[0].id_hash != session_id and len(rows[0].id_hash) == 64
