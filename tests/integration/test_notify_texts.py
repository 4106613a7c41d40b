"""Texts in the notifications: accepted ones forwarded once (json:// endpoint) when
`[messages] forward` is on, held and refused ones never; every verdict counted in the digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.notify.collect import collect_digest
from gateway.notify.digest import build_digest
from gateway.notify.notifier import Notifier
from gateway.screening.texts import TextDecision, TextVerdict
from tests.helpers import Services
from tests.integration.notify_support import http_server, make_settings

pytestmark = pytest.mark.clock

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def store_text(service: Services, number: str, body: str, verdict: TextVerdict,
               at: datetime, name: str = "") -> str:
    decision = TextDecision(verdict, 603 if verdict is TextVerdict.REFUSED else 202,
                            reason="t", step="default")
    return service.store.messages.add(service.screener.caller(number, name), decision,
                                      at=at, body=body)


def test_accepted_texts_are_forwarded_once_and_inert(tmp_path: Path) -> None:
    with http_server() as sink:
        settings = make_settings(
            tmp_path, f'[notify]\nalert_burst = false\n'
            f'apprise_urls = ["json://127.0.0.1:{sink.port}/a"]\n[messages]\nforward = true\n')
        service = Services.open(settings)
        store_text(service, "0612345678", "Bonjour\x1b[2J\r\nX-Injected: 1", TextVerdict.ACCEPTED,
                   START, name="Eve\u202eevil")
        store_text(service, "0699000001", "held one", TextVerdict.HELD, START)
        store_text(service, "0162000001", "refused one", TextVerdict.REFUSED, START)
        notifier = Notifier(service.db, settings)
        notifier.tick(START + timedelta(minutes=1))
        notifier.tick(START + timedelta(minutes=2))
    bodies = [json.loads(b) for b in sink.bodies]
    assert len(bodies) == 1
    assert bodies[0]["title"] == "Text from 06 12 34 56 78 (Eveevil)"
    assert "Bonjour[2J X-Injected: 1" in bodies[0]["message"]
    assert "\x1b" not in bodies[0]["message"] and "\u202e" not in bodies[0]["title"]


def test_texts_are_not_forwarded_by_default(tmp_path: Path) -> None:
    with http_server() as sink:
        settings = make_settings(
            tmp_path, f'[notify]\nalert_burst = false\n'
            f'apprise_urls = ["json://127.0.0.1:{sink.port}/a"]\n')
        service = Services.open(settings)
        store_text(service, "0612345678", "hello", TextVerdict.ACCEPTED, START)
        Notifier(service.db, settings).tick(START + timedelta(minutes=1))
    assert sink.bodies == []


def test_the_digest_counts_texts_by_verdict(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    for i in range(3):
        store_text(service, f"06990000{i:02d}", "x", TextVerdict.HELD, START)
    store_text(service, "0612345678", "y", TextVerdict.ACCEPTED, START)
    data = collect_digest(service.db, settings, START.date() + timedelta(days=1))
    assert dict(data.texts) == {"accepted": 1, "held": 3}
    digest = build_digest(data, "en")
    assert "Text messages" in digest.text and "3 held: kept on the Messages page" in digest.text
    assert "4 texts" in digest.sms[0]
    french = build_digest(data, "fr")
    assert "3 retenus" in french.text
