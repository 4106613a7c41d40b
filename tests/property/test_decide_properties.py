"""Hypothesis properties of decide() and the history counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.numbers import parse_caller
from gateway.screening import (
    Action,
    BurstSettings,
    DefaultMode,
    History,
    ListEntry,
    ListName,
    MatchKind,
    PastCall,
    Policy,
    RepeatLimit,
    Rules,
    burst_state,
    decide,
)
from gateway.screening.caller import InternalNumbers
from gateway.screening.ratelimit import repeat_count
from tests.helpers import caller, rule

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)

# A small pool of numbers so that entries, callers and history collide often.
numbers = st.sampled_from([f"+3361234560{i}" for i in range(8)] + ["+33162123456",
                                                                   "+442079460958"])
caller_texts = st.one_of(numbers, st.sampled_from(["anonymous", "sip:bob@example.net",
                                                   "+33012345678"]))
actions = st.sampled_from(["reject:603", "reject:404", "voicemail", "announce:sit", "challenge",
                           "voicemail:spoof_shield"]).map(Action.parse)


@st.composite
def entries(draw: st.DrawFn, list_name: ListName | None = None) -> ListEntry:
    number = draw(numbers)
    kind = draw(st.sampled_from(list(MatchKind)))
    pattern = {
        MatchKind.EXACT: number,
        MatchKind.PREFIX: number[: draw(st.integers(2, len(number)))],
        MatchKind.GLOB: number[: draw(st.integers(2, len(number)))] + "*",
        MatchKind.REGEX: r"\+336.*" if draw(st.booleans()) else r"0162\d+",
    }[kind]
    chosen = list_name or draw(st.sampled_from(list(ListName)))
    return ListEntry(
        id=draw(st.integers(1, 10**6)), list=chosen, kind=kind, pattern=pattern,
        action=draw(st.none() | actions) if chosen is ListName.BLOCK else None,
        once=draw(st.booleans()) if chosen is ListName.ALLOW else False,
        expires_at=draw(st.none() | st.just(NOW - timedelta(minutes=1))
                        | st.just(NOW + timedelta(minutes=1))),
    )


entry_lists = st.lists(entries(), max_size=6, unique_by=lambda e: e.id)  # ids are unique


@st.composite
def histories(draw: st.DrawFn) -> History:
    calls = draw(st.lists(
        st.builds(PastCall,
                  at=st.integers(1, 180).map(lambda m: NOW - timedelta(minutes=m)),
                  key=st.one_of(numbers, st.just("withheld")),
                  unknown=st.booleans()),
        max_size=40))
    return History.of(calls)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = draw(st.lists(st.sampled_from([
        rule("withheld", "voicemail"), rule("invalid", "reject:404"),
        rule("telemarketing", country="FR"), rule("number_type", types=["MOBILE"]),
        rule("country", regions=["GB"]), rule("verstat_failed"),
        rule("quiet_hours", "voicemail", start="14:00", end="16:00"),
    ]), max_size=4, unique=True))
    return Policy(
        rules=tuple(rules),
        repeat=RepeatLimit(enabled=draw(st.booleans()), max_calls=draw(st.integers(1, 5))),
        burst=BurstSettings(enabled=draw(st.booleans()), distinct_callers=draw(st.integers(2, 6))),
        default=draw(st.sampled_from(list(DefaultMode))),
        paused_until=draw(st.none() | st.just(NOW + timedelta(minutes=5))),
    )


@settings(max_examples=300, deadline=None)
@given(text=caller_texts, policy=policies(), listed=entry_lists,
       history=histories())
def test_allow_beats_block(text: str, policy: Policy, listed: list[ListEntry],
                           history: History) -> None:
    """A caller that an active allow entry matches always passes, whatever else matches."""
    who = caller(text)
    allows = [e for e in listed if e.list is ListName.ALLOW and e.active(NOW) and e.matches(who)]
    decision = decide(who, Rules(policy, listed), history, NOW)
    if allows:
        assert decision.action.is_pass
        assert decision.step in ("allow", "pause")


@settings(max_examples=300, deadline=None)
@given(text=caller_texts, policy=policies(), listed=entry_lists,
       extra=entries(ListName.BLOCK), history=histories())
def test_adding_a_block_entry_never_turns_a_non_pass_into_pass(
    text: str, policy: Policy, listed: list[ListEntry], extra: ListEntry, history: History
) -> None:
    """Blocking more can only make the answer stricter."""
    who = caller(text)
    before = decide(who, Rules(policy, listed), history, NOW)
    after = decide(who, Rules(policy, [*listed, extra]), history, NOW)
    if not before.action.is_pass:
        assert not after.action.is_pass


@settings(max_examples=200, deadline=None)
@given(text=caller_texts, policy=policies(), listed=entry_lists,
       history=histories())
def test_decide_is_deterministic(text: str, policy: Policy, listed: list[ListEntry],
                                 history: History) -> None:
    """Same inputs, same decision — including the order entries arrive in."""
    who = caller(text)
    first = decide(who, Rules(policy, listed), history, NOW)
    again = decide(who, Rules(policy, list(reversed(listed))), history, NOW)
    assert first == again
    assert first == decide(who, Rules(policy, listed), history, NOW)


@settings(max_examples=300, deadline=None)
@given(history=histories(), more=histories(), key=numbers,
       window=st.integers(1, 120), threshold=st.integers(1, 8))
def test_more_history_never_lowers_a_count(history: History, more: History, key: str,
                                           window: int, threshold: int) -> None:
    """Adding calls never lowers a repeat count, and never ends a burst."""
    merged = History.of([*history.calls, *more.calls])
    span = timedelta(minutes=window)
    assert repeat_count(merged, key, NOW, span) >= repeat_count(history, key, NOW, span)
    kwargs = {"threshold": threshold, "window": span, "duration": timedelta(minutes=60)}
    small = burst_state(history, NOW, **kwargs)
    large = burst_state(merged, NOW, **kwargs)
    if small.active:
        assert large.active
        assert large.distinct_callers >= small.distinct_callers


@settings(max_examples=200, deadline=None)
@given(text=caller_texts, policy=policies(), history=histories())
def test_every_decision_explains_itself(text: str, policy: Policy, history: History) -> None:
    """There is always a reason in words and a step."""
    decision = decide(caller(text), Rules(replace(policy), ()), history, NOW)
    assert decision.reason and decision.step


@given(policy=policies(), listed=entry_lists, history=histories(),
       user=st.sampled_from(["**610", "**9", "**1", "620", "11"]))
@settings(max_examples=200)
def test_an_internal_call_always_passes_and_counts_as_no_stranger(
    policy: Policy, listed: list[ListEntry], history: History, user: str,
) -> None:
    """Issue 14 item 5: whatever the lists, rules, pause or history, the intercom rings."""
    who = parse_caller(f"sip:{user}@192.168.178.1", "FR", internal=InternalNumbers())
    decision = decide(who, Rules(policy, tuple(listed)), history, NOW)
    assert decision.action.is_pass
    assert not decision.counts_towards_burst
