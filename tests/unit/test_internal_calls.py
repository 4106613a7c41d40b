"""Internal calls (issue 14 item 5): the router's own numbers pass first and are no strangers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.call.handle import from_home_network
from gateway.config import load_settings_from_text
from gateway.notify.collect import collect_digest
from gateway.numbers import parse_caller
from gateway.screening import Action, CallerKind, Policy, Rules, decide
from gateway.screening.caller import NO_INTERNAL_NUMBERS, InternalNumbers
from gateway.screening.decide import Step
from gateway.screening.ratelimit import History
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, entry, rule

FRITZ = InternalNumbers()


@pytest.mark.parametrize(("identity", "internal"), [
    ("sip:**610@192.168.178.1", True), ("<sip:**9@fritz.box>", True),
    ("sip:620@192.168.178.1", True), ("sip:1@fritz.box", True), ("sip:%2A%2A611@fritz.box", True),
    ("sip:0612345678@provider", False), ("sip:+33612345678@provider", False),
    ("sip:1234@pbx", False), ("sip:anonymous@anonymous.invalid", False),
    ("sip:*31#@x", False), ("sip:@x", False), ("sip:\u0661\u0662@x", False),
])
def test_which_callers_are_internal(identity: str, internal: bool) -> None:
    who = parse_caller(identity, "FR", internal=FRITZ)
    assert (who.kind is CallerKind.INTERNAL) is internal
    assert parse_caller(identity, "FR").kind is not CallerKind.INTERNAL  # only when asked


def test_no_internal_numbers_leaves_every_caller_as_it_was() -> None:
    assert parse_caller("sip:**610@fritz.box", "FR", internal=NO_INTERNAL_NUMBERS).kind \
        is CallerKind.INVALID


def test_an_internal_call_passes_before_pause_lists_and_rules() -> None:
    who = parse_caller("sip:**610@fritz.box", "FR", internal=FRITZ)
    rules = Rules(Policy(rules=(rule("invalid", "voicemail"), rule("quiet_hours", "reject:603",
                                                                    start="00:00",
                                                                    end="23:59"))),
                  (entry("block", "glob", "*"),))
    decision = decide(who, rules, History(), NOW)
    assert decision.action == Action.parse("pass")
    assert decision.step is Step.INTERNAL
    assert not decision.unknown and not decision.counts_towards_burst
    assert decision.reason == ("internal call from sip:**610@fritz.box, the router's own "
                               "number: never screened")
    assert decision.rule_id == "internal"


def test_the_digest_leaves_internal_calls_out(tmp_path: Path) -> None:
    """The family's intercom is no call to report: only the stranger's call is counted."""
    settings = load_settings_from_text('timezone = "Europe/Paris"\ndata_dir = "data"\n', tmp_path)
    service = Services.open(settings)
    try:
        at = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
        for i, number in enumerate(["**610", "620", "0698765432"]):
            who = service.screener.caller(number)
            service.book.record_call(who, service.screener.evaluate(who, at),
                                     at=at + timedelta(minutes=i))
        kinds = sorted(r.caller_kind for r in service.store.calls.recent())
        assert kinds == ["internal", "internal", "number"]
        digest = collect_digest(service.db, settings, date(2026, 11, 23))
        assert digest.total_calls == 1
    finally:
        service.db.dispose()


@pytest.mark.parametrize(("host", "home"), [
    ("192.168.178.1", True), ("10.0.0.138", True), ("127.0.0.1", True), ("[::1]", True),
    ("fd00::1", True), ("fe80::1", True), ("212.27.40.1", False), ("2a01:e00::1", False),
    ("fritz.box", False), ("", False),
])
def test_internal_numbers_count_only_from_the_home_network(host: str, home: bool) -> None:
    """A `**610` from a provider's public address is a stranger's caller ID, not the intercom."""
    assert from_home_network(host) is home
