"""Repeat refusals (gateway/call/repeats.py): which screened refusals are repeated for a caller
that floods, for how long, and what a repeat leaves in the call log. The clock is by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.call.ports import CallEnvironment
from gateway.call.repeats import CONFIRMATIONS, FRESH_S, MAX_CALLERS, RepeatRefusals
from gateway.numbers import parse_caller
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import PASS, Action, ActionKind
from tests.peers.fakes import CALLER_SOURCE, FakeService, parsed_invite

BLOCKED = Decision(Action(ActionKind.REJECT, code=603), reason="on the block list",
                   step=Step.BLOCK, ref=7, elapsed_ms=3.2)
SPAMMER = "+33612345678"
AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class Clock:
    """time.monotonic by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def repeats(service: FakeService, clock: Clock, *, kind: Any = "sip") -> RepeatRefusals:
    env = CallEnvironment(settings=None, screener=service, book=service,  # type: ignore[arg-type]
                          media_factory=None, prompt=None, capacity=None,  # type: ignore[arg-type]
                          line="home", kind=kind, clock=lambda: AT)
    return RepeatRefusals(env, log_call=lambda call_id, caller, decision: False, clock=clock)


def screened(lane: RepeatRefusals, decision: Decision = BLOCKED, *, headers: str = "",
             internal: bool = False) -> None:
    """A call screened by the full flow and refused (what handle_call tells the lane)."""
    invite = parsed_invite(user=SPAMMER, headers=headers)
    lane.learn(lane.key(invite, internal), parse_caller(SPAMMER, "FR"), decision, 603,
               "Decline")


def test_a_refusal_is_repeated_only_after_two_screened_ones_in_a_row() -> None:
    service, clock = FakeService(), Clock()
    lane = repeats(service, clock)
    invite = parsed_invite(user=SPAMMER, call_id="c-3")
    assert lane.answer(invite, CALLER_SOURCE, False) is None  # nothing learnt yet
    screened(lane)
    assert lane.answer(invite, CALLER_SOURCE, False) is None  # one refusal could be a person
    clock.now += 0.5
    screened(lane)
    refusal = lane.answer(invite, CALLER_SOURCE, False)
    assert CONFIRMATIONS == 2 and refusal is not None
    assert (refusal.status, refusal.reason) == (603, "Decline")
    assert service.calls == []  # nothing logged before the answer is out
    refusal.sent()
    [row] = service.calls
    assert row.sip_call_id == "c-3" and row.line == "home" and row.outcome == "rejected 603"
    assert row.decision.step is Step.BLOCK and row.decision.ref == 7  # the entry's hit
    assert row.decision.elapsed_ms == 0.0  # a repeat reads nothing
    assert row.caller.number == SPAMMER and lane.repeated == 1


def test_repeats_stop_after_fresh_s_so_an_unblock_reaches_a_flooding_caller() -> None:
    service, clock = FakeService(), Clock()
    lane = repeats(service, clock)
    invite = parsed_invite(user=SPAMMER)
    screened(lane)
    screened(lane)
    clock.now += FRESH_S - 0.01
    assert lane.answer(invite, CALLER_SOURCE, False) is not None
    clock.now += 0.02
    assert lane.answer(invite, CALLER_SOURCE, False) is None  # screened again: maybe unblocked
    screened(lane)  # still blocked: one screened refusal after a stale one is not enough
    assert lane.answer(invite, CALLER_SOURCE, False) is None
    screened(lane)
    assert lane.answer(invite, CALLER_SOURCE, False) is not None


def test_two_refusals_far_apart_are_not_a_flood() -> None:
    lane = repeats(FakeService(), clock := Clock())
    screened(lane)
    clock.now += FRESH_S + 1
    screened(lane)
    assert lane.answer(parsed_invite(user=SPAMMER), CALLER_SOURCE, False) is None


def test_only_block_list_refusals_on_a_sip_line_are_repeated() -> None:
    rule = Decision(Action(ActionKind.REJECT, code=603), reason="0162", step=Step.RULE, ref=3)
    burst = Decision(Action(ActionKind.VOICEMAIL), reason="burst", step=Step.BURST)
    for decision in (rule, burst, Decision(PASS, reason="default", step=Step.DEFAULT)):
        lane = repeats(FakeService(), Clock())
        screened(lane, decision)
        screened(lane, decision)
        assert lane.answer(parsed_invite(user=SPAMMER), CALLER_SOURCE, False) is None, decision
    analogue = repeats(FakeService(), Clock(), kind="analogue")  # a refusal is answered there
    screened(analogue)
    screened(analogue)
    assert analogue.answer(parsed_invite(user=SPAMMER), CALLER_SOURCE, False) is None


def test_a_call_with_a_passport_or_another_identity_is_screened() -> None:
    lane = repeats(FakeService(), Clock())
    screened(lane)
    screened(lane)
    signed = parsed_invite(user=SPAMMER, headers="Identity: eyJ.e30.sig;info=<https://x>\r\n")
    assert lane.answer(signed, CALLER_SOURCE, False) is None
    other_name = parsed_invite(user=SPAMMER).to_bytes().replace(b'"Test Caller"', b'"Mum"')
    from gateway.sip.message import SipRequest, parse_message

    renamed = parse_message(other_name)
    assert isinstance(renamed, SipRequest)
    assert lane.answer(renamed, CALLER_SOURCE, False) is None  # the row would show its name
    asserted = parsed_invite(user=SPAMMER,
                             headers="P-Asserted-Identity: <sip:+33699999999@192.0.2.9>\r\n")
    assert lane.answer(asserted, CALLER_SOURCE, False) is None
    assert lane.answer(parsed_invite(user=SPAMMER), CALLER_SOURCE, True) is None  # from home
    assert lane.answer(parsed_invite(user=SPAMMER), CALLER_SOURCE, False) is not None


def test_another_entry_deciding_starts_the_count_again() -> None:
    lane = repeats(FakeService(), Clock())
    screened(lane)
    other_entry = Decision(BLOCKED.action, reason="on the block list", step=Step.BLOCK, ref=8)
    screened(lane, other_entry)
    assert lane.answer(parsed_invite(user=SPAMMER), CALLER_SOURCE, False) is None


def test_callers_remembered_are_bounded() -> None:
    lane = repeats(FakeService(), Clock())
    caller, decision = parse_caller(SPAMMER, "FR"), BLOCKED
    for n in range(MAX_CALLERS + 50):
        lane.learn(("sip:x", f"name {n}", "", "sip:x", False), caller, decision, 603, "Decline")
    assert len(lane._settled) == MAX_CALLERS
