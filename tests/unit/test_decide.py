"""decide(): each step and rule kind, with the reasons the owner reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.screening import (
    Action,
    ActionKind,
    BurstSettings,
    DefaultMode,
    History,
    PastCall,
    Policy,
    RepeatLimit,
    Rules,
    decide,
)
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import caller, entry, rule

pytestmark = pytest.mark.clock

QUIET = Policy(repeat=RepeatLimit(enabled=False), burst=BurstSettings(enabled=False))
EMPTY = History()


def run(text: str, policy: Policy = QUIET, entries: tuple = (), history: History = EMPTY,
        now: datetime = NOW, **kwargs: object):
    return decide(caller(text, **kwargs), Rules(policy, entries), history, now)


def test_no_rule_passes() -> None:
    decision = run("0612345678")
    assert decision.action.is_pass
    assert decision.step == "default"
    assert decision.reason == "no rule matched"


def test_pause_passes_even_blocked_callers() -> None:
    policy = replace(QUIET, paused_until=NOW + timedelta(minutes=30))
    decision = run("0612345678", policy, (entry("block", "exact", "+33612345678"),))
    assert decision.action.is_pass and decision.step == "pause"
    assert "paused until 24/11 15:30" in decision.reason
    expired_pause = replace(QUIET, paused_until=NOW - timedelta(seconds=1))
    assert not run("0612345678", expired_pause,
                   (entry("block", "exact", "+33612345678"),)).action.is_pass


def test_allow_beats_block_and_rules() -> None:
    entries = (entry("block", "prefix", "+33162"), entry("allow", "exact", "+33162123456"))
    policy = replace(QUIET, rules=(rule("telemarketing", country="FR"),))
    decision = run("0162123456", policy, entries)
    assert decision.action.is_pass and decision.step == "allow"
    assert decision.unknown is False


def test_block_kinds_and_their_actions() -> None:
    cases = [
        (entry("block", "exact", "+33612345678"), "reject:603"),
        (entry("block", "prefix", "+3361", action=Action.parse("reject:404")), "reject:404"),
        (entry("block", "glob", "+336????567?", action=Action.parse("announce:sit")),
         "announce:sit"),
        (entry("block", "regex", r"06\d{6}78", action=Action.parse("voicemail")), "voicemail"),
    ]
    for block, expected in cases:
        decision = run("06 12 34 56 78", QUIET, (block,))
        assert str(decision.action) == expected
        assert decision.rule_id == f"block:{block.id}"
        assert decision.reason.startswith("on the block list: ")


def test_most_specific_block_entry_wins() -> None:
    broad = entry("block", "prefix", "+336", action=Action.parse("voicemail"))
    narrow = entry("block", "prefix", "+33612", action=Action.parse("reject:404"))
    exact = entry("block", "exact", "+33612345678", action=Action.parse("reject:410"))
    assert str(run("0612345678", QUIET, (broad, narrow)).action) == "reject:404"
    assert str(run("0612345678", QUIET, (broad, narrow, exact)).action) == "reject:410"


def test_expired_entries_are_ignored() -> None:
    old = entry("block", "exact", "+33612345678", expires_at=NOW - timedelta(minutes=1))
    assert run("0612345678", QUIET, (old,)).action.is_pass
    live = replace(old, expires_at=NOW + timedelta(minutes=1))
    assert not run("0612345678", QUIET, (live,)).action.is_pass


def test_permit_next_call_is_consumed_and_permanent_entries_preferred() -> None:
    once = entry("allow", "exact", "+33612345678", once=True)
    decision = run("0612345678", QUIET, (once,))
    assert decision.action.is_pass and decision.consume_entry_id == once.id
    forever = entry("allow", "prefix", "+33612")
    assert run("0612345678", QUIET, (once, forever)).consume_entry_id is None


def test_withheld_rule() -> None:
    policy = replace(QUIET, rules=(rule("withheld", "voicemail"),))
    decision = run("sip:anonymous@anonymous.invalid", policy)
    assert decision.action.kind is ActionKind.VOICEMAIL
    assert decision.reason == "the caller withheld their number"
    assert run("0612345678", policy).action.is_pass


def test_invalid_rule_catches_garbage_and_out_of_plan_numbers() -> None:
    policy = replace(QUIET, rules=(rule("invalid", "reject:404"),))
    assert str(run("sip:bob@example.net", policy).action) == "reject:404"
    assert "not a phone number" in run("sip:bob@example.net", policy).reason
    out_of_plan = run("+33012345678", policy)
    assert str(out_of_plan.action) == "reject:404"
    assert run("0612345678", policy).action.is_pass


def test_number_type_rule() -> None:
    policy = replace(QUIET, rules=(rule("number_type", types=["PREMIUM_RATE"]),))
    decision = run("0899123456", policy)
    assert not decision.action.is_pass
    assert decision.reason == "+33899123456 is a premium rate number"
    assert run("0612345678", policy).action.is_pass


def test_country_rule_block_and_allow_only() -> None:
    block_gb = replace(QUIET, rules=(rule("country", regions=["GB"], mode="block"),))
    assert not run("+442079460958", block_gb).action.is_pass
    assert run("0612345678", block_gb).action.is_pass
    only_fr = replace(QUIET, rules=(rule("country", regions=["FR"], mode="allow_only"),))
    assert not run("+16502530000", only_fr).action.is_pass
    assert "not in the allowed countries" in run("+16502530000", only_fr).reason
    assert run("0612345678", only_fr).action.is_pass


def test_telemarketing_preset_and_legal_hours() -> None:
    policy = replace(QUIET, rules=(rule("telemarketing", country="FR"),))
    for prefix in ("0162", "0163", "0270", "0271", "0377", "0378", "0424", "0425", "0568",
                   "0569", "0948", "0949", "09475", "09479"):
        number = (prefix + "123456789")[:10]
        decision = run(number, policy)
        assert str(decision.action) == "reject:603", number
        assert f"{prefix[:4]}" in decision.reason and "ARCEP" in decision.reason
    # Inside legal hours the reason says only the range; outside, it says the hours too.
    sunday = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
    assert "outside legal calling hours" in run("0162123456", policy, now=sunday).reason
    assert "outside legal" not in run("0162123456", policy).reason
    # Never 0937-0939 (deliveries, ride-hailing), nor a neighbouring range.
    for number in ("0937123456", "0938123456", "0939123456", "0947412345", "0164123456"):
        assert run(number, policy).action.is_pass, number


def test_telemarketing_outside_hours_only() -> None:
    policy = replace(QUIET, rules=(rule("telemarketing", country="FR", outside_hours_only=True),))
    assert run("0162123456", policy).action.is_pass  # Tuesday 15:00
    late = datetime(2026, 11, 24, 20, 30, tzinfo=UTC)  # 21:30 in Paris
    assert not run("0162123456", policy, now=late).action.is_pass
    holiday = datetime(2026, 11, 11, 10, 0, tzinfo=UTC)  # Armistice day, a Wednesday
    assert not run("0162123456", policy, now=holiday).action.is_pass


def test_verstat_failed_rule() -> None:
    policy = replace(QUIET, rules=(rule("verstat_failed", "voicemail"),))
    failed = run("sip:+33612345678;verstat=TN-Validation-Failed@x", policy)
    assert failed.action.kind is ActionKind.VOICEMAIL and "STIR/SHAKEN" in failed.reason
    assert run("sip:+33612345678;verstat=TN-Validation-Passed@x", policy).action.is_pass
    assert run("sip:+33612345678@x", policy).action.is_pass  # absent is not failed


def test_quiet_hours_over_midnight_belong_to_the_start_day() -> None:
    policy = replace(QUIET, rules=(rule("quiet_hours", "voicemail", start="22:00", end="07:00",
                                        days=[4]),))  # Friday nights only
    friday_late = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)  # 23:30 Friday Paris
    saturday_early = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)  # 06:00 Saturday Paris
    saturday_late = datetime(2026, 11, 28, 22, 30, tzinfo=UTC)
    assert not run("0612345678", policy, now=friday_late).action.is_pass
    assert not run("0612345678", policy, now=saturday_early).action.is_pass
    assert run("0612345678", policy, now=saturday_late).action.is_pass
    assert "quiet hours (22:00-07:00)" in run("0612345678", policy, now=friday_late).reason


def test_disabled_rules_and_priority_order() -> None:
    first = replace(rule("withheld", "reject:433"), priority=1)
    second = replace(rule("withheld", "voicemail"), priority=2)
    policy = replace(QUIET, rules=(second, first))
    assert str(run("anonymous", policy).action) == "reject:433"
    policy = replace(QUIET, rules=(replace(first, enabled=False), second))
    assert str(run("anonymous", policy).action) == "voicemail"


def past(minutes_ago: float, number: str, unknown: bool = True) -> PastCall:
    return PastCall(at=NOW - timedelta(minutes=minutes_ago), key=number, unknown=unknown)


def test_repeat_limit() -> None:
    policy = replace(QUIET, repeat=RepeatLimit(max_calls=3, window_minutes=10,
                                               action=Action.parse("reject:486")))
    three = History.of([past(9, "+33612345678"), past(5, "+33612345678"),
                        past(1, "+33612345678")])
    decision = run("0612345678", policy, history=three)
    assert str(decision.action) == "reject:486"
    assert "already called 3 times in 10 min (limit 3)" in decision.reason
    two = History.of(three.calls[1:])
    assert run("0612345678", policy, history=two).action.is_pass
    stale = History.of([past(11, "+33612345678"), *list(two.calls)])
    assert run("0612345678", policy, history=stale).action.is_pass


def test_burst_turns_on_for_unknown_callers_and_spares_allowed_ones() -> None:
    policy = replace(QUIET, burst=BurstSettings(distinct_callers=5, window_minutes=10,
                                                duration_minutes=60))
    strangers = History.of([past(9 - i, f"+3361234560{i}") for i in range(4)])
    decision = run("0699999999", policy, history=strangers)  # the fifth distinct stranger
    assert decision.step == "burst" and decision.burst.active
    assert str(decision.action) == "voicemail:spoof_shield"
    assert "5 unknown callers within 10 min" in decision.reason
    family = (entry("allow", "exact", "+33611111111"),)
    assert run("0611111111", policy, family, strangers).action.is_pass
    # Known callers in the history do not count towards a burst.
    known = History.of([past(9 - i, f"+3361234560{i}", unknown=False) for i in range(4)])
    assert run("0699999999", policy, history=known).action.is_pass


def test_burst_lasts_its_duration_then_ends() -> None:
    policy = replace(QUIET, burst=BurstSettings(distinct_callers=3, window_minutes=10,
                                                duration_minutes=30))
    storm = History.of([past(40 + i, f"+3361234560{i}") for i in range(3)])
    assert run("0699999999", policy, history=storm).action.is_pass  # ended 10 min ago
    recent = History.of([past(20 + i, f"+3361234560{i}") for i in range(3)])
    assert run("0699999999", policy, history=recent).burst.active


def test_same_number_many_times_is_not_a_burst() -> None:
    policy = replace(QUIET, burst=BurstSettings(distinct_callers=3, window_minutes=10))
    redial = History.of([past(i, "+33612345678") for i in range(1, 9)])
    assert not run("0612345678", policy, history=redial).burst.active


def test_greylist_first_call_busy_then_callback_rings() -> None:
    policy = replace(QUIET, default=DefaultMode.GREYLIST)
    first = run("0612345678", policy)
    assert str(first.action) == "reject:486" and first.step == "greylist"
    callback = History.of([past(3, "+33612345678")])
    assert run("0612345678", policy, history=callback).action.is_pass
    too_soon = History.of([past(0.1, "+33612345678")])  # a dialer's instant redial
    assert not run("0612345678", policy, history=too_soon).action.is_pass


@pytest.mark.parametrize(("mode", "kind"), [(DefaultMode.CHALLENGE, ActionKind.CHALLENGE),
                                            (DefaultMode.VOICEMAIL, ActionKind.VOICEMAIL)])
def test_default_modes(mode: DefaultMode, kind: ActionKind) -> None:
    decision = run("0612345678", replace(QUIET, default=mode))
    assert decision.action.kind is kind and decision.step == "default"


def test_time_is_an_argument_and_naive_free() -> None:
    local = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # DST change day in Paris
    assert run("0612345678", now=local).action.is_pass


def test_action_parse_errors_name_the_allowed_forms() -> None:
    with pytest.raises(ValueError, match="expected pass, reject:CODE"):
        Action.parse("drop")
    with pytest.raises(ValueError, match="not one of 404"):
        Action.parse("reject:200")
    with pytest.raises(ValueError, match="unknown prompt"):
        Action.parse("announce:hello")
    assert str(Action.parse("reject")) == "reject:603"
    assert str(Action.parse("voicemail:greeting")) == "voicemail"
