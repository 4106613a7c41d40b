"""`CallBook`, the call flow's writing side, on the real store: the row, the hit counters, the
permit used up, the saved voicemail and its alert, callers allowed or remembered. The book
here writes through a `DirectWriter` (at once); the gateway's batched writer is tested in
test_call_writer.py."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.call.record import AUTO_ALLOW_LABEL, KNOWN_CALLER_LABEL, CallBook
from gateway.config import Settings
from gateway.screening.decide import Step
from gateway.store.batch import write_batch
from gateway.store.models import ListEntryRow, RuleRow
from gateway.store.writer import CallWriter
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, caller

NUMBER = "+33612345678"


def entry_hits(service: Services, entry_id: int) -> int:
    with service.db.session() as s:
        return int(s.scalar(select(ListEntryRow.hits).where(ListEntryRow.id == entry_id)) or 0)


def test_record_call_logs_the_row_and_counts_the_deciding_entry(service: Services) -> None:
    entry = service.store.entries.add("block", NUMBER)
    who = caller(NUMBER)
    decision = service.screener.screen(who, NOW)
    assert decision.step is Step.BLOCK
    ref = service.book.record_call(who, decision, at=NOW, sip_call_id="c1", line="home")
    row = service.store.calls.by_uid(ref)
    assert row is not None and (row.action, row.rule, row.line) == (
        "reject:603", f"block:{entry.id}", "home")
    assert entry_hits(service, entry.id) == 1


def test_record_call_counts_the_deciding_rule(service: Services) -> None:
    withheld = caller("anonymous", privacy="id")
    decision = service.screener.screen(withheld, NOW)
    assert decision.step is Step.RULE and decision.ref is not None
    service.book.record_call(withheld, decision, at=NOW)
    with service.db.session() as s:
        assert s.scalar(select(RuleRow.hits).where(RuleRow.id == decision.ref)) == 1


def test_the_screened_call_uses_the_permit_and_a_dry_run_does_not(service: Services) -> None:
    service.store.entries.add("block", NUMBER)
    permit = service.store.entries.add("allow", NUMBER, once=True)
    who = caller(NUMBER)
    assert service.screener.evaluate(who, NOW).consume_entry_id == permit.id
    assert service.store.entries.get(permit.id) is not None  # evaluate() writes nothing
    first = service.screener.screen(who, NOW)  # a real call: used up when it is decided
    assert first.action.is_pass and first.consume_entry_id == permit.id
    assert service.store.entries.get(permit.id) is None
    service.book.record_call(who, first, at=NOW)  # logging it changes nothing more
    assert service.screener.screen(who, NOW).step is Step.BLOCK


def test_record_call_returns_at_once_and_the_writer_writes_the_row_and_hit_together(
    service: Services, settings: Settings,
) -> None:
    entry = service.store.entries.add("block", NUMBER)
    writer = CallWriter(functools.partial(write_batch, service.db), None)  # stepped by hand
    book = CallBook(service.store, settings, writer)
    who = caller(NUMBER)
    ref = book.record_call(who, service.screener.screen(who, NOW), at=NOW)
    assert service.store.calls.by_uid(ref) is None and entry_hits(service, entry.id) == 0
    writer.step()  # one transaction: the row and the entry's hit
    assert service.store.calls.by_uid(ref) is not None and entry_hits(service, entry.id) == 1


def test_finish_call_stores_the_outcome(service: Services) -> None:
    who = caller(NUMBER)
    ref = service.book.record_call(who, service.screener.screen(who, NOW), at=NOW)
    service.book.finish_call(ref, duration_s=3.25, outcome="rejected 603")
    row = service.store.calls.by_uid(ref)
    assert row is not None and (row.duration_s, row.outcome) == (3.25, "rejected 603")


def test_save_voicemail_stores_the_relative_path_and_wakes_the_alerts(
    service: Services, settings: Settings,
) -> None:
    woken: list[str] = []
    service.book.on_voicemail = lambda: woken.append("now")
    who = caller(NUMBER, name="Jean")
    ref = service.book.record_call(who, service.screener.screen(who, NOW), at=NOW)
    path = settings.voicemail_dir / "20261124-150000-+33612345678.wav"
    vm_ref = service.book.save_voicemail(ref, path, 4.0, 32_000, caller=who)
    [vm] = service.store.voicemails.recent()
    row = service.store.calls.by_uid(ref)
    assert row is not None and vm.uid == vm_ref
    assert (vm.call_id, vm.path, vm.number, vm.display_name, vm.size_bytes) == (
        row.id, path.name, NUMBER, "Jean", 32_000)
    assert woken == ["now"]


def test_a_failing_alert_does_not_lose_the_voicemail(service: Services,
                                                      settings: Settings) -> None:
    def broken() -> None:
        raise RuntimeError("scheduler gone (test)")

    service.book.on_voicemail = broken
    service.book.save_voicemail(None, settings.voicemail_dir / "a.wav", 1.0, 10)
    [vm] = service.store.voicemails.recent()
    assert vm.call_id is None and vm.number is None


def test_voicemail_space_left_is_the_cap_minus_what_is_stored(
    make_settings: Callable[[str], Settings],
) -> None:
    services = Services.open(make_settings("[voicemail]\nmax_total_mb = 1"))
    try:
        book = services.book
        assert book.voicemail_space_left() == 1024 * 1024
        book.save_voicemail(None, services.settings.voicemail_dir / "a.wav", 1.0, 1024 * 1024)
        assert book.voicemail_space_left() == 0
        book.save_voicemail(None, services.settings.voicemail_dir / "b.wav", 1.0, 10)
        assert book.voicemail_space_left() == -10
    finally:
        services.store.close()


def test_auto_allow_lets_the_next_call_ring(service: Services) -> None:
    service.store.runtime.set("default_mode", "challenge")
    who = caller(NUMBER)
    assert service.screener.screen(who, NOW).action.kind.value == "challenge"
    service.book.auto_allow(NUMBER)
    [entry] = service.store.entries.find("allow")
    assert (entry.pattern, entry.source, entry.label) == (NUMBER, "auto", AUTO_ALLOW_LABEL)
    assert service.screener.screen(who, NOW).step is Step.ALLOW


def test_mark_known_adds_a_known_caller_once(service: Services) -> None:
    service.book.mark_known(NUMBER)
    service.book.mark_known(NUMBER)
    [entry] = service.store.entries.find("allow")
    assert (entry.pattern, entry.source, entry.label) == (NUMBER, "known", KNOWN_CALLER_LABEL)


@pytest.mark.parametrize("allowed", [NUMBER, "+3361*", "06 ?? ?? ?? 78"])
def test_mark_known_leaves_an_already_allowed_caller_alone(service: Services,
                                                           allowed: str) -> None:
    service.store.entries.add("allow", allowed, label="mine", confirm=True)
    service.book.mark_known(NUMBER)
    assert [e.label for e in service.store.entries.find("allow")] == ["mine"]


@pytest.mark.parametrize("unrelated", [r"re:^\+44.*", "06 ?? ?? ?? 00", "expired"])
def test_mark_known_is_not_fooled_by_allow_entries_that_do_not_match(
    service: Services, unrelated: str,
) -> None:
    if unrelated == "expired":
        service.store.entries.add("allow", NUMBER, expires_at=NOW - timedelta(days=1))
    else:
        service.store.entries.add("allow", unrelated)
    service.book.mark_known(NUMBER)
    known = service.store.entries.find("allow", source="known")
    assert [e.pattern for e in known] == [NUMBER]


def test_challenge_digit_follows_the_setting(service: Services) -> None:
    assert service.book.challenge_digit() == "5"
    service.store.runtime.set("challenge_digit", "#")
    assert service.book.challenge_digit() == "#"


def test_set_line_state_writes_and_never_raises(service: Services,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    service.book.set_line_state("home", "registered", None)
    assert [(s.name, s.state) for s in service.store.lines.all()] == [("home", "registered")]

    def broken(*args: object) -> None:
        raise RuntimeError("locked (test)")

    monkeypatch.setattr(service.store.lines, "set", broken)
    service.book.set_line_state("home", "failed", "timeout")  # logged, not raised



def test_the_challenge_key_is_the_last_one_read_when_the_database_is_down(
        service: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    service.store.runtime.set("challenge_digit", "7")
    assert service.book.challenge_digit() == "7"

    def down(key: str) -> object:
        raise ConnectionError("the database is gone (test)")

    monkeypatch.setattr(service.store.runtime, "get", down)
    assert service.book.challenge_digit() == "7"  # answered callers are not hung up on
    fresh = CallBook(service.store, service.settings)
    assert fresh.challenge_digit() == "5"  # never read: the default key
