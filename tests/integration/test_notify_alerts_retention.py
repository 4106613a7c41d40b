"""Burst and line alerts through a json:// endpoint, and the retention purge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.notify.notifier import Notifier
from gateway.ops.retention import run_retention
from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from tests.helpers import Services
from tests.integration.notify_support import http_server, make_settings

pytestmark = pytest.mark.clock

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_burst_start_and_end_are_alerted_once_each(tmp_path: Path) -> None:
    with http_server() as sink:
        settings = make_settings(
            tmp_path, f'[notify]\napprise_urls = ["json://127.0.0.1:{sink.port}/a"]\n')
        service = Services.open(settings)
        for i in range(6):  # 6 distinct unknown callers in 6 minutes: default threshold is 5
            caller = service.screener.caller(f"06123456{i:02d}")
            decision = Decision(Action.parse("pass"), "t", "default", unknown=True)
            service.book.record_call(caller, decision, at=START + timedelta(minutes=i))
        notifier = Notifier(service.db, settings)
        notifier.tick(START + timedelta(minutes=6))
        notifier.tick(START + timedelta(minutes=7))
        assert len(sink.bodies) == 1
        assert "Burst mode on" in json.loads(sink.bodies[0])["title"]
        notifier.tick(START + timedelta(minutes=70))  # 60 min after the last trigger
        notifier.tick(START + timedelta(minutes=71))
    titles = [json.loads(b)["title"] for b in sink.bodies]
    assert len(titles) == 2 and "Burst mode over after" in titles[1]


def test_line_down_then_up(tmp_path: Path) -> None:
    with http_server() as sink:
        settings = make_settings(
            tmp_path, f'[notify]\nalert_line_down_minutes = 5\n'
            f'apprise_urls = ["json://127.0.0.1:{sink.port}/a"]\n')
        service = Services.open(settings)
        service.book.set_line_state("home", "failed", "403 Forbidden\r\nX: injected")
        notifier = Notifier(service.db, settings)
        now = datetime.now(UTC)
        notifier.tick(now)
        assert sink.bodies == []
        notifier.tick(now + timedelta(minutes=6))
        notifier.tick(now + timedelta(minutes=7))
        service.book.set_line_state("home", "registered", None)
        notifier.tick(now + timedelta(minutes=8))
    bodies = [json.loads(b) for b in sink.bodies]
    assert [b["title"] for b in bodies] == ["Line home not registered for 6 min",
                                            "Line home registered again"]
    assert "403 Forbidden X: injected" in bodies[0]["message"]


def test_an_unreachable_registrar_is_alerted_after_the_limit(tmp_path: Path) -> None:
    with http_server() as sink:
        settings = make_settings(
            tmp_path, f'[notify]\nalert_line_down_minutes = 5\n'
            f'apprise_urls = ["json://127.0.0.1:{sink.port}/a"]\n')
        service = Services.open(settings)
        notifier = Notifier(service.db, settings)
        now = datetime.now(UTC)
        service.book.set_line_state("home", "unreachable", "the registrar does not answer OPTIONS")
        notifier.tick(now)
        # The registration retries in between (a REGISTER that times out): still one outage.
        service.book.set_line_state("home", "registering", "the registrar does not answer OPTIONS")
        notifier.tick(now + timedelta(minutes=3))
        service.book.set_line_state("home", "unreachable", "the registrar does not answer OPTIONS")
        notifier.tick(now + timedelta(minutes=5, seconds=30))
    [body] = [json.loads(b) for b in sink.bodies]
    assert body["title"] == "Line home not registered for 5 min"
    assert "the registrar does not answer OPTIONS" in body["message"]


def test_retention_purges_old_rows_files_and_keeps_under_the_cap(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "[voicemail]\nmax_total_mb = 1\n"
                             "[retention]\ncalls_days = 30\nvoicemail_days = 10\n")
    service = Services.open(settings)
    folder = settings.voicemail_dir
    folder.mkdir(parents=True)
    now = START
    decision = Decision(Action.parse("voicemail"), "t", "default", unknown=True)
    old_call = service.book.record_call(service.screener.caller("0612345678"), decision,
                                   at=now - timedelta(days=40))
    service.book.record_call(service.screener.caller("0612345679"), decision,
                             at=now - timedelta(days=1))

    def voicemail(name: str, age: timedelta, size: int, heard: bool) -> int:
        (folder / name).write_bytes(b"x" * size)
        vm_id = service.store.voicemails.save(None, at=now - age, path=name, duration_s=1.0,
                                            size_bytes=size, number=None, display_name="")
        if heard:
            from gateway.store.models import VoicemailRow

            with service.db.session() as s:
                s.get(VoicemailRow, vm_id).heard = True  # type: ignore[union-attr]
        return vm_id

    voicemail("ancient.wav", timedelta(days=20), 10, False)
    voicemail("old-heard.wav", timedelta(days=3), 600_000, True)
    voicemail("older-unheard.wav", timedelta(days=4), 400_000, False)
    voicemail("new-unheard.wav", timedelta(days=1), 500_000, False)
    service.store.entries.add("block", "0162000001", expires_at=now - timedelta(hours=1))
    report = run_retention(service.db, settings, now)
    assert (report.voicemails_old, report.voicemails_for_space, report.calls,
            report.entries_expired) == (1, 1, 1, 1)
    assert sorted(p.name for p in folder.iterdir()) == ["new-unheard.wav", "older-unheard.wav"]
    assert service.store.voicemails.bytes_used() == 900_000
    assert [c.id for c in service.store.calls.recent()] != [old_call]
    assert len(service.store.calls.recent()) == 1


def test_incremental_burst_scan_matches_a_full_scan(tmp_path: Path) -> None:
    import random

    from gateway.notify.collect import load_bursts

    settings = make_settings(tmp_path, '[notify]\napprise_urls = ["json://127.0.0.1:9/x"]\n')
    service = Services.open(settings)
    rng = random.Random(5)
    at = START
    for _ in range(300):  # quiet spells and floods
        at += timedelta(seconds=rng.choice([5, 20, 60, 600, 1800]))
        caller = service.screener.caller(f"0612{rng.randrange(10**6):06d}")
        decision = Decision(Action.parse("pass"), "t", "default", unknown=rng.random() < 0.9)
        service.book.record_call(caller, decision, at=at)
    watcher = Notifier(service.db, settings).alerts
    check = START
    seen: set[datetime] = set()
    while check < at + timedelta(hours=2):
        check += timedelta(minutes=7)
        incremental = [(e.started_at, e.ends_at) for e in watcher.current_bursts(check)]
        # The truth: every call up to `check`, no look-back cut.
        full = [(e.started_at, e.ends_at) for e in
                load_bursts(service.db, START - timedelta(days=1), check + timedelta(seconds=1))]
        assert [p for p in incremental if p[1] > check - timedelta(hours=6)] == [
            p for p in full if p[1] > check - timedelta(hours=6)], check
        seen.update(start for start, _ in incremental)
    assert len(seen) >= 2  # the random log did hold bursts
