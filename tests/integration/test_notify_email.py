"""Digest and alerts by email through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.notify.notifier import Notifier
from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from gateway.store.models import NotificationRow
from tests.helpers import Services
from tests.integration.notify_support import make_settings, smtp_server, smtp_toml

pytestmark = pytest.mark.clock

HOSTILE = "<img src=x onerror=alert(1)>"
DAY = date(2026, 11, 23)
AFTER_DIGEST = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)  # 08:05 in Paris


def log_calls(service: Services) -> None:
    at = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    for i, (number, name, action) in enumerate([
        ("0162000001", HOSTILE, "reject:603"),
        ("0162000001", HOSTILE, "reject:603"),
        ("0612345678", "Élodie", "pass"),
        ("0698765432", "", "voicemail"),
    ]):
        caller = service.screener.caller(number, name)
        decision = Decision(Action.parse(action), "test", "rule", unknown=True)
        ref = service.book.record_call(caller, decision, at=at + timedelta(minutes=i))
        if action == "voicemail":
            logged = service.store.calls.by_uid(ref)
            assert logged is not None
            row = logged.id
            vm = service.settings.voicemail_dir / "a.wav"
            vm.parent.mkdir(parents=True, exist_ok=True)
            vm.write_bytes(b"RIFF....WAVE")
            service.store.voicemails.save(row, at=at + timedelta(minutes=i, seconds=50),
                                        path="a.wav", duration_s=42.0, size_bytes=12,
                                        number=caller.number, display_name=HOSTILE)


def rows(service: Services) -> list[NotificationRow]:
    with service.db.session() as s:
        return list(s.scalars(select(NotificationRow).order_by(NotificationRow.id)))


def test_digest_email_has_text_and_escaped_html(tmp_path: Path) -> None:
    secret = tmp_path / "smtp.secret"
    secret.write_text("s3cret\n")
    with smtp_server(user="pi", password="s3cret") as sink:
        settings = make_settings(tmp_path, smtp_toml(sink.port, user="pi", password_file=secret),
                                 language="fr")
        service = Services.open(settings)
        log_calls(service)
        outcomes = Notifier(service.db, settings).send_digest(DAY, AFTER_DIGEST)
        assert [o.status for o in outcomes] == ["sent"]
        assert sink.wait_for(1)
    mail = sink.messages[0]
    assert mail["Subject"] == "Ringfence : 4 appels, 3 filtrés, 1 message (23/11)"
    assert "é" in mail["Subject"]  # UTF-8 header decoded back
    assert mail["To"] == "owner@example.org"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Nouveaux messages" in text and "Élodie" not in text  # passed callers not listed
    assert "06 98 76 54 32" in text and "0:42" in text
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert [(r.kind, r.period, r.channel, r.status, r.attempts) for r in rows(service)] == [
        ("digest", "2026-11-23", "email", "sent", 1)]


def test_second_send_of_the_same_period_is_skipped(tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, smtp_toml(sink.port))
        service = Services.open(settings)
        first = Notifier(service.db, settings).send_digest(DAY, AFTER_DIGEST)
        again = Notifier(service.db, settings).send_digest(DAY, AFTER_DIGEST)
        assert sink.wait_for(1)
    assert [o.status for o in first] == ["sent"] and again == []
    assert len(sink.messages) == 1


def test_bad_login_is_a_permanent_failure(tmp_path: Path) -> None:
    secret = tmp_path / "smtp.secret"
    secret.write_text("wrong")
    with smtp_server(user="pi", password="right") as sink:
        settings = make_settings(tmp_path, smtp_toml(sink.port, user="pi", password_file=secret))
        service = Services.open(settings)
        notifier = Notifier(service.db, settings)
        outcomes = notifier.send_digest(DAY, AFTER_DIGEST)
        assert outcomes[0].status == "failed"
        assert "535" in (outcomes[0].error or "")
        notifier.tick(AFTER_DIGEST + timedelta(hours=5))  # nothing is retried
    [row] = rows(service)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    assert "535" in (row.last_error or "")
    assert sink.messages == []


def test_unreachable_server_is_retried_with_backoff_then_sent(tmp_path: Path) -> None:
    from tests.integration.notify_support import free_port

    port = free_port()  # nothing listens yet
    settings = make_settings(tmp_path, '[notify]\nretry_minutes = [1, 5]\n'
                             + smtp_toml(port))
    service = Services.open(settings)
    notifier = Notifier(service.db, settings)
    outcome = notifier.send_digest(DAY, AFTER_DIGEST)[0]
    assert outcome.status == "retry" and outcome.error
    [row] = rows(service)
    assert row.next_attempt_at == AFTER_DIGEST + timedelta(minutes=1)
    notifier.tick(AFTER_DIGEST + timedelta(seconds=30))  # not due yet
    assert rows(service)[0].attempts == 1
    from aiosmtpd.controller import Controller

    from tests.integration.notify_support import SmtpSink

    sink = SmtpSink(port=port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        notifier.tick(AFTER_DIGEST + timedelta(minutes=2))
        assert sink.wait_for(1)
    finally:
        controller.stop()
    [row] = rows(service)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


def test_retries_give_up_after_the_schedule(tmp_path: Path) -> None:
    from tests.integration.notify_support import free_port

    settings = make_settings(tmp_path, "[notify]\nretry_minutes = [1]\n" + smtp_toml(free_port()))
    service = Services.open(settings)
    notifier = Notifier(service.db, settings)
    notifier.send_digest(DAY, AFTER_DIGEST)
    notifier.tick(AFTER_DIGEST + timedelta(minutes=2))
    notifier.tick(AFTER_DIGEST + timedelta(minutes=30))
    [row] = rows(service)
    assert (row.status, row.attempts) == ("failed", 2)


def test_voicemail_alert_attaches_the_wav(tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(
            tmp_path, "[notify]\nalert_voicemail_attach = true\n" + smtp_toml(sink.port))
        service = Services.open(settings)
        log_calls(service)
        now = datetime(2026, 11, 22, 15, 10, tzinfo=UTC)
        notifier = Notifier(service.db, settings)
        notifier.tick(now)
        notifier.tick(now + timedelta(minutes=1))  # the same voicemail is not alerted twice
        assert sink.wait_for(1)
    assert len(sink.messages) == 1
    mail = sink.messages[0]
    assert "06 98 76 54 32" in mail["Subject"] and "<img" in mail["Subject"]  # plain text
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "a.wav"
    assert attachment.get_content() == b"RIFF....WAVE"
