"""Internal calls (issue 14 item 5): the router's own numbers pass first and are no strangers."""

from __future__ import annotations

import pytest

from gateway.numbers import parse_caller
from gateway.screening import Action, CallerKind, Policy, Rules, decide
from gateway.screening.caller import NO_INTERNAL_NUMBERS, InternalNumbers
from gateway.screening.decide import Step
from gateway.screening.ratelimit import History
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import entry, rule

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
