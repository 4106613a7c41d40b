"""The call writer's linger (gateway/store/writer.py) under any pattern of arrivals, driven
step by step on its injectable clock as its thread would drive it: no event waits in memory
longer than the flood linger, a call after a quiet spell is written within the short linger,
and every event is committed once, in order."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.events import CallLogged, Event
from gateway.store.journal import Journal
from gateway.store.writer import CallWriter

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
EPSILON = 1e-9


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sink:
    """Commits into a list, noting when each event was committed."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.committed: list[tuple[str, float]] = []

    def __call__(self, events: Sequence[Event]) -> None:
        self.committed += [(getattr(e, "uid", ""), self.clock.now) for e in events]


# Gaps between calls: a flood (ms), a home line (minutes), and everything between.
GAPS = st.one_of(st.floats(0.0, 0.02), st.floats(0.02, 0.4), st.floats(0.4, 300.0))


@settings(max_examples=200, deadline=None)
@given(arrivals=st.lists(st.tuples(GAPS, st.integers(1, 3)), min_size=1, max_size=120))
def test_no_event_waits_longer_than_the_flood_linger(arrivals: list[tuple[float, int]]) -> None:
    clock = Clock()
    sink = Sink(clock)
    with tempfile.TemporaryDirectory() as folder:
        writer = CallWriter(sink, Journal(Path(folder)), clock=clock)
        submitted: list[tuple[str, float, bool]] = []  # uid, when, after a quiet spell
        last_step = -1e9

        def run_until(moment: float) -> None:
            nonlocal last_step
            while (due := writer.batch_due()) is not None and due <= moment:
                clock.now = max(clock.now, due)
                writer.step()
                last_step = clock.now

        for n, (gap, count) in enumerate(arrivals):
            run_until(clock.now + gap)
            clock.now += gap
            quiet = writer.batch_due() is None and clock.now - last_step > writer.flood_linger_s
            for k in range(count):  # a call's row, its end, a learnt caller: same instant
                uid = f"{n:04d}-{k}"
                writer.submit(CallLogged(uid=uid, at=NOW, caller_kind="number",
                                         action="reject:603"))
                submitted.append((uid, clock.now, quiet))
        run_until(clock.now + 10.0)
        writer.stop(timeout=0)

    assert [uid for uid, _at in sink.committed] == [uid for uid, _at, _q in submitted]
    for (uid, at, quiet), (_uid, committed) in zip(submitted, sink.committed, strict=True):
        assert committed - at <= writer.flood_linger_s + EPSILON, uid
        if quiet:
            assert committed - at <= writer.linger_s + EPSILON, uid
