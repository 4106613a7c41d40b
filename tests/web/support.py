"""Helpers for the web UI tests: an app on a temp database, CSRF tokens, login, seeding."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from tests.helpers import Services
from web import create_app
from web.security import set_password

PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def make_app(settings: Settings, service: Services) -> Flask:
    """The UI on the test's database."""
    return create_app(settings, service.store, test_config={"TESTING": True})


def csrf(client: FlaskClient) -> str:
    """The CSRF token of the client's session (created if needed)."""
    with client.session_transaction() as session:
        token = session.get("csrf") or "test-csrf-token-0123456789"
        session["csrf"] = token
    return str(token)


def post(client: FlaskClient, url: str, data: dict[str, object] | None = None,
         **kwargs: object) -> object:
    """POST a form with the session's CSRF token."""
    form = {"csrf_token": csrf(client), **(data or {})}
    return client.post(url, data=form, **kwargs)  # type: ignore[arg-type]


def login(client: FlaskClient, service: Services, password: str = PASSWORD) -> None:
    """Set the owner's password (if unset) and log the client in through the form."""
    from web.security import password_is_set

    if not password_is_set(service.store):
        set_password(service.store, password)
    response = post(client, "/login", {"password": password})
    assert response.status_code == 302, response.get_data(as_text=True)  # type: ignore[attr-defined]


def log_call(service: Services, number: str, *, action: str = "pass",
             reason: str = "test call", name: str = "", at: datetime = NOW,
             unknown: bool = True) -> int:
    """Record a call in the log as the gateway would."""
    decision = Decision(Action.parse(action), reason, "default", unknown=unknown)
    who = service.screener.caller(number, name)
    return service.book.record_call(who, decision, at=at, line="home")


def wav_bytes(seconds: float = 0.5, rate: int = 8000, fmt: int = 1) -> bytes:
    """A small mono 16-bit WAV of a quiet tone's worth of samples."""
    frames = int(seconds * rate)
    samples = b"".join(struct.pack("<h", (i % 40 - 20) * 500) for i in range(frames))
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(samples), b"WAVE", b"fmt ", 16,
                         fmt, 1, rate, rate * 2, 2, 16, b"data", len(samples))
    return header + samples


def save_voicemail(service: Services, settings: Settings, number: str | None,
                   *, name: str = "", seconds: float = 1.0, at: datetime = NOW,
                   interrupted: bool = False) -> int:
    """Write a WAV under the voicemail folder and log it."""
    folder = settings.voicemail_dir
    folder.mkdir(parents=True, exist_ok=True)
    data = wav_bytes(seconds)
    path = folder / f"vm-{at:%Y%m%d%H%M%S}-{(number or 'anon').lstrip('+')}.wav"
    path.write_bytes(data)
    return service.store.voicemails.save(None, at=at, path=path.name, duration_s=seconds,
                                       size_bytes=len(data), number=number, display_name=name,
                                       interrupted=interrupted)


def relative_to(folder: Path, path: Path) -> str:
    """A path relative to a folder, as stored in the database."""
    return str(path.relative_to(folder))
