"""Hypothesis properties: the incremental counters agree with the History-based rules.

`summarize` over a `History` (burst_state, repeat_count, calls_from) is the reference: it is
what `decide()` always did. `CallCounters` must give the same summary for any calls, added in
any order, any number of times, asked about at any moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.screening.counters import CallCounters, reach
from gateway.screening.ratelimit import History, PastCall, RateWindows, summarize

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
KEYS = [f"+3361234560{i}" for i in range(6)] + ["withheld", "invalid"]

# Few distinct instants, so that ties and exact window edges come up often.
offsets = st.one_of(
    st.integers(-130 * 60, 5 * 60).map(lambda s: timedelta(seconds=s)),
    st.sampled_from([timedelta(0), timedelta(minutes=-10), timedelta(minutes=-60),
                     timedelta(minutes=-70), timedelta(microseconds=-1),
                     timedelta(minutes=-10, microseconds=1)]),
)


def old_history(calls: Iterable[PastCall], key: str) -> History:
    """What the store used to read for `key`: every unknown call, and the caller's own calls
    (known ones too) when it has a number."""
    return History.of(c for c in calls if c.unknown or (c.key == key and key.startswith("+")))


@st.composite
def calls(draw: st.DrawFn) -> dict[str, PastCall]:
    """uid -> call: each uid is one call, however often it is added."""
    count = draw(st.integers(0, 45))
    return {f"u{i}": PastCall(at=NOW + draw(offsets), key=draw(st.sampled_from(KEYS)),
                              unknown=draw(st.booleans()))
            for i in range(count)}


@st.composite
def windows(draw: st.DrawFn) -> RateWindows:
    minutes = st.integers(1, 40).map(lambda m: timedelta(minutes=m))
    grey = draw(st.none() | st.tuples(minutes, st.sampled_from(
        [timedelta(0), timedelta(seconds=30), timedelta(minutes=2)])))
    return RateWindows(
        repeat_window=draw(st.none() | minutes),
        burst_threshold=draw(st.none() | st.integers(1, 7)),
        burst_window=draw(minutes),
        burst_duration=draw(st.integers(1, 70).map(lambda m: timedelta(minutes=m))),
        greylist=grey,
    )


@settings(max_examples=400, deadline=None)
@given(known=calls(), data=st.data(), shape=windows())
def test_counters_agree_with_the_history_rules(known: dict[str, PastCall], data: st.DataObject,
                                               shape: RateWindows) -> None:
    """Calls added in any order (some twice), questions in between: the same summaries."""
    counters = CallCounters()
    added: dict[str, PastCall] = {}
    uids = list(known)
    order = data.draw(st.lists(st.sampled_from(uids), max_size=60) if uids else st.just([]))
    asks = data.draw(st.lists(st.tuples(st.integers(0, len(order)), offsets,
                                        st.sampled_from(KEYS)), min_size=1, max_size=8))
    for step in range(len(order) + 1):
        for at_step, offset, key in asks:
            if at_step == step:
                now = NOW + offset
                expected = summarize(old_history(added.values(), key), key, now, shape)
                assert counters.summary(key, now, shape) == expected
        if step < len(order):
            uid = order[step]
            assert counters.add(uid, known[uid]) == (uid not in added)
            added[uid] = known[uid]


@settings(max_examples=200, deadline=None)
@given(known=calls(), shape=windows(), later=st.integers(0, 30 * 60), key=st.sampled_from(KEYS))
def test_forgetting_what_no_question_reaches_changes_nothing(
    known: dict[str, PastCall], shape: RateWindows, later: int, key: str
) -> None:
    """Calls older than a question's reach can go without changing its answer."""
    counters = CallCounters()
    for uid, call in known.items():
        counters.add(uid, call)
    now = NOW + timedelta(seconds=later)
    counters.forget(NOW - reach(shape))
    expected = summarize(old_history(known.values(), key), key, now, shape)
    assert counters.complete_for(now, shape)
    assert counters.summary(key, now, shape) == expected
    # ...and calls added after forgetting are counted as before.
    counters.add("late", PastCall(at=now, key=key, unknown=True))
    merged = old_history([*known.values(), PastCall(at=now, key=key, unknown=True)], key)
    assert counters.summary(key, now, shape) == summarize(merged, key, now, shape)


@settings(max_examples=100, deadline=None)
@given(known=calls(), shape=windows(), key=st.sampled_from(KEYS))
def test_a_full_counter_says_it_is_incomplete(known: dict[str, PastCall], shape: RateWindows,
                                              key: str) -> None:
    """Past its room the oldest calls go, and `complete_for` owns up to it."""
    counters = CallCounters(max_calls=5)
    for uid, call in known.items():
        counters.add(uid, call)
    assert len(counters) == min(5, len(known))
    if counters.complete_for(NOW, shape):
        kept = old_history(known.values(), key)
        assert counters.summary(key, NOW, shape).repeat_count == summarize(
            kept, key, NOW, shape).repeat_count
