"""Strangers' text made inert: controls and bidi overrides gone, right-to-left text isolated."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway import untrusted
from gateway.config import load_settings_from_text
from gateway.notify.alerts import AlertWatcher
from gateway.notify.digest import (
    DigestData,
    VoicemailItem,
    gsm7,
    inert,
    render_html,
    render_sms,
    render_text,
)
from gateway.store.models import VoicemailRow

HOSTILE = "\u202eelbuod\x1b[2J\x00 Bob\r\nBcc: x@evil\u2066 \u05e9\u05dc\u05d5\u05dd"
CONTROLS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} | set(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def test_strip_removes_controls_and_overrides_and_keeps_the_words() -> None:
    assert untrusted.strip_controls(HOSTILE) == "elbuod[2J Bob Bcc: x@evil \u05e9\u05dc\u05d5\u05dd"
    assert untrusted.strip_controls("Élodie 😀 O'Neil") == "Élodie 😀 O'Neil"
    assert untrusted.strip_controls("a\tb") == "a b"


@given(st.text())
def test_nothing_that_strip_returns_is_a_control(text: str) -> None:
    assert not set(untrusted.strip_controls(text)) & CONTROLS


def test_isolate_wraps_only_right_to_left_text() -> None:
    assert untrusted.isolate("Bob") == "Bob"
    assert untrusted.isolate("שלום") == "\u2068שלום\u2069"
    assert untrusted.isolate("مرحبا 12") == "\u2068مرحبا 12\u2069"
    assert untrusted.plain(HOSTILE).startswith("\u2068elbuod")


def test_the_digest_isolates_names_and_the_sms_stays_gsm7() -> None:
    day = datetime(2026, 11, 24, tzinfo=UTC)
    data = DigestData(period="2026-11-24", start=day, end=day, total_calls=1, voicemails=(
        VoicemailItem(at=day, caller="06 12 34 56 78", name=HOSTILE, duration_s=12),))
    text, html = render_text(data, "en"), render_html(data, "en")
    for part in (text, html):
        assert "\u202e" not in part and "\x1b" not in part and "\x00" not in part
        assert "Bcc: x@evil" in part and "\r\nBcc" not in part
    shown = inert(HOSTILE)
    assert shown.startswith("\u2068") and shown.endswith("\u2069")
    assert shown in text
    for sms in render_sms(data, "en"):
        assert sms == gsm7(sms) and "?" * 2 not in sms.split("Bob")[0]


def test_a_voicemail_alert_carries_no_header_breaking_name(tmp_path: Path) -> None:
    settings = load_settings_from_text('language = "en"\n', tmp_path)
    watcher = AlertWatcher(None, settings, None)  # type: ignore[arg-type]
    row = VoicemailRow(id=1, at=datetime(2026, 11, 24, 9, tzinfo=UTC), number="+33612345678",
                       display_name=HOSTILE, path="x.wav", duration_s=5, size_bytes=1,
                       heard=False)
    message = watcher.voicemail_message(row)
    for part in (message.subject, message.text, *message.sms):
        assert not set(part) & (CONTROLS - {"\n", "\u2068", "\u2069"})
    assert "\n" not in message.subject
