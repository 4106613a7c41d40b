"""First run, login, throttling, sessions, CSRF and security headers of the web UI."""

from __future__ import annotations

import os
import stat

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from tests.helpers import Services
from tests.web.support import PASSWORD, csrf, login, make_app, post
from web.security import (
    LoginThrottle,
    check_password,
    hash_password,
    password_is_set,
    secret_key_path,
    set_password,
    verify_password,
)

PAGES = ["/", "/calls", "/lists/block", "/lists/allow",
         "/lists/confirm?list=block&number=0612345678", "/rules", "/test", "/voicemail",
         "/prompts", "/transfer", "/account", "/permit"]
POSTS = ["/lists/block/add", "/rules/1", "/rules/add", "/settings", "/pause", "/permit",
         "/voicemail/1/heard", "/voicemail/1/delete", "/prompts", "/transfer/import",
         "/transfer/contacts", "/account/password", "/account/token", "/lists/confirm",
         "/lists/entry/1/delete", "/logout"]


def test_password_hash_round_trip_and_salt() -> None:
    first, second = hash_password("a long passphrase"), hash_password("a long passphrase")
    assert first != second  # random salt
    assert first.startswith("scrypt$")
    assert verify_password("a long passphrase", first)
    assert not verify_password("a long passphrasE", first)
    assert not verify_password("anything", "garbage")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_redirects_to_setup_while_no_password_is_set(anonymous: FlaskClient,
                                                                page: str) -> None:
    response = anonymous.get(page)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/setup")


def test_setup_rejects_a_short_password_and_mismatch(anonymous: FlaskClient,
                                                     service: Services) -> None:
    response = post(anonymous, "/setup", {"password": "short", "confirm": "short"})
    assert response.status_code == 400
    assert "at least 10 characters" in response.get_data(as_text=True)
    response = post(anonymous, "/setup", {"password": "long enough one", "confirm": "other one!!"})
    assert "differ" in response.get_data(as_text=True)
    assert not password_is_set(service.store)


def test_setup_sets_the_password_logs_in_and_then_closes(anonymous: FlaskClient,
                                                          service: Services) -> None:
    response = post(anonymous, "/setup", {"password": PASSWORD, "confirm": PASSWORD})
    assert response.status_code == 302
    assert check_password(service.store, PASSWORD)
    assert anonymous.get("/").status_code == 200
    assert anonymous.get("/setup").headers["Location"].endswith("/")


@pytest.mark.parametrize("page", PAGES)
def test_pages_need_a_login_once_a_password_is_set(anonymous: FlaskClient,
                                                   service: Services, page: str) -> None:
    set_password(service.store, PASSWORD)
    response = anonymous.get(page)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("url", POSTS)
def test_posts_without_csrf_token_are_rejected_with_400(anonymous: FlaskClient,
                                                        service: Services,
                                                        url: str) -> None:
    login(anonymous, service)
    response = anonymous.post(url, data={"password": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    response = anonymous.post(url, data={"csrf_token": "forged"})
    assert response.status_code == 400


@pytest.mark.parametrize("url", POSTS)
def test_posts_with_csrf_but_no_session_go_to_login(anonymous: FlaskClient,
                                                    service: Services,
                                                    url: str) -> None:
    set_password(service.store, PASSWORD)
    response = post(anonymous, url, {})
    if url == "/logout":
        assert response.status_code == 302  # logging out needs no session
    else:
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_login_wrong_then_right_follows_a_local_next_only(anonymous: FlaskClient,
                                                          service: Services) -> None:
    set_password(service.store, PASSWORD)
    response = post(anonymous, "/login", {"password": "wrong password"})
    assert response.status_code == 401
    assert "Wrong password" in response.get_data(as_text=True)
    response = post(anonymous, "/login?next=/calls", {"password": PASSWORD})
    assert response.headers["Location"] == "/calls"
    post(anonymous, "/logout")
    response = post(anonymous, "/login?next=https://evil.example/", {"password": PASSWORD})
    assert response.headers["Location"] == "/"
    post(anonymous, "/logout")
    response = post(anonymous, "/login?next=//evil.example/", {"password": PASSWORD})
    assert response.headers["Location"] == "/"


def test_login_is_throttled_after_five_failures_per_address(app: Flask, anonymous: FlaskClient,
                                                            service: Services) -> None:
    set_password(service.store, PASSWORD)
    now = [1000.0]
    app.extensions["ringfence"].throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(5):
        assert post(anonymous, "/login", {"password": "nope nope nope"}).status_code == 401
    response = post(anonymous, "/login", {"password": "nope nope nope"})
    text = response.get_data(as_text=True)
    assert "Try again in 30 seconds" in text
    # Locked: even the right password is refused, with a clear message.
    response = post(anonymous, "/login", {"password": PASSWORD})
    assert response.status_code == 429
    now[0] += 31
    response = post(anonymous, "/login", {"password": "still wrong!"})
    assert response.status_code == 401  # the lockout doubles: 60 s now
    assert "60" in response.get_data(as_text=True)
    now[0] += 61
    assert post(anonymous, "/login", {"password": PASSWORD}).status_code == 302


def test_throttle_locks_only_the_address_that_failed() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], guard_failures=8)
    for _ in range(6):
        throttle.failure("10.0.0.1")
    assert throttle.wait_seconds("10.0.0.1") == 30
    assert throttle.wait_seconds("10.0.0.2") == 0
    for i in range(3):
        throttle.failure(f"10.0.1.{i}")
    # Many failures everywhere: the guard is up, yet a clean address may still try...
    assert throttle.guarded()
    assert throttle.wait_seconds("10.0.0.99") == 0
    # ...while each address that guesses wrong now is locked after its first failure.
    throttle.failure("10.0.2.1")
    assert throttle.wait_seconds("10.0.2.1") == 30
    now[0] += 3600
    assert throttle.wait_seconds("10.0.0.1") == 0 and not throttle.guarded()
    throttle.failure("10.0.2.2")
    assert throttle.wait_seconds("10.0.2.2") == 0  # the guard is down: free failures again


def test_logout_ends_the_session(anonymous: FlaskClient, service: Services) -> None:
    login(anonymous, service)
    assert anonymous.get("/").status_code == 200
    post(anonymous, "/logout")
    assert anonymous.get("/").status_code == 302


def test_password_change_logs_other_sessions_out(app: Flask, service: Services) -> None:
    first, second = app.test_client(), app.test_client()
    login(first, service)
    login(second, service)
    response = post(first, "/account/password",
                    {"current": PASSWORD, "password": "another long one", "confirm":
                     "another long one"})
    assert response.status_code == 302
    assert first.get("/").status_code == 200
    assert second.get("/").status_code == 302


def test_password_change_needs_the_current_password(anonymous: FlaskClient,
                                                    service: Services) -> None:
    login(anonymous, service)
    response = post(anonymous, "/account/password",
                    {"current": "not it at all", "password": "another long one",
                     "confirm": "another long one"})
    assert response.status_code == 400
    assert check_password(service.store, PASSWORD)


def test_session_cookie_is_httponly_lax_and_secure_over_https(app: Flask,
                                                              service: Services) -> None:
    set_password(service.store, PASSWORD)
    plain = app.test_client()
    plain.get("/login")
    cookie = plain.get_cookie("ringfence_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert not cookie.secure
    secure = app.test_client()
    secure.get("/login", base_url="https://pi.local")
    cookie = secure.get_cookie("ringfence_session", domain="pi.local")
    assert cookie is not None and cookie.secure


def test_security_headers_on_every_page(anonymous: FlaskClient, service: Services) -> None:
    login(anonymous, service)
    for page in ["/", "/login", "/static/style.css"]:
        headers = anonymous.get(page).headers
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script(anonymous: FlaskClient, service: Services) -> None:
    login(anonymous, service)
    for page in PAGES:
        html = anonymous.get(page).get_data(as_text=True)
        assert "<script>" not in html and "onclick=" not in html and " style=" not in html


def test_secret_key_file_is_created_private_and_reused(settings: Settings,
                                                       service: Services) -> None:
    make_app(settings, service)
    path = secret_key_path(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = path.read_text()
    make_app(settings, service)
    assert path.read_text() == first


def test_language_switch_is_per_session(app: Flask, anonymous: FlaskClient,
                                        service: Services) -> None:
    login(anonymous, service)
    assert "Dashboard" in anonymous.get("/").get_data(as_text=True)  # settings.language = "en"
    post(anonymous, "/language", {"lang": "fr", "next": "/"})
    assert "Tableau de bord" in anonymous.get("/").get_data(as_text=True)
    other = app.test_client()
    assert "lang=\"en\"" in other.get("/login").get_data(as_text=True)
    assert post(anonymous, "/language", {"lang": "de"}).status_code == 400
    assert csrf(anonymous)


def test_the_real_health_blueprint_answers_without_login(anonymous: FlaskClient,
                                                         service: Services) -> None:
    set_password(service.store, PASSWORD)
    response = anonymous.get("/healthz")
    assert response.status_code in (200, 503) and "ok" in response.get_json()
    assert anonymous.get("/calls").status_code == 302


def test_the_owners_language_choice_becomes_the_default(app: Flask,
                                                        service: Services) -> None:
    set_password(service.store, PASSWORD)
    anonymous = app.test_client()
    post(anonymous, "/language", {"lang": "fr", "next": "/login"})
    assert "Se connecter" in anonymous.get("/login").get_data(as_text=True)
    assert 'lang="en"' in app.test_client().get("/login").get_data(as_text=True)  # not saved
    login(anonymous, service)
    assert "Tableau de bord" in anonymous.get("/").get_data(as_text=True)  # kept at login
    post(anonymous, "/language", {"lang": "fr", "next": "/"})
    assert 'lang="fr"' in app.test_client().get("/login").get_data(as_text=True)  # saved
