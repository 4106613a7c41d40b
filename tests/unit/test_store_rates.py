"""The rate-limit counters on a real SQLite store: fed by the writer, topped up by row id.

The counts themselves are checked against the History-based rules by Hypothesis
(tests/property/test_counter_properties.py); these tests are about where the calls come from:
the writer's queue, this process's committed rows, other processes' rows, and what happens
when the database does not answer.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, exc, insert

from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Step
from gateway.screening.ratelimit import PastCall, RateWindows
from gateway.screening.rules import Action
from gateway.store import Store
from gateway.store import screening as screening_module
from gateway.store.batch import write_batch
from gateway.store.events import call_logged, new_uid
from gateway.store.models import CallRow
from gateway.store.screening import _TopUp
from gateway.store.settings import Versions
from gateway.store.writer import CallWriter
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, caller

WITHHELD = caller("anonymous", privacy="id")
WINDOW = timedelta(minutes=10)


@pytest.fixture
def store(service: Services) -> Store:
    return service.store


def decision(action: str = "pass", step: Step = Step.DEFAULT) -> Decision:
    return Decision(Action.parse(action), f"test: {action}", step,
                    unknown=step not in (Step.ALLOW, Step.PAUSE))


def logged(store: Store, at: datetime, number: str, step: Step = Step.DEFAULT) -> None:
    """A committed row, as another process (or this one's writer) leaves it."""
    store.calls.record(caller(number), decision(step=step), at=at)


def strangers(store: Store, now: datetime, window: timedelta = WINDOW,
              restore: int = 0) -> int:
    """Distinct unknown callers in (now - window, now], as the burst counts them."""
    shape = RateWindows(repeat_window=None, burst_threshold=1, burst_window=window,
                        burst_duration=timedelta(microseconds=1))
    summary = store.screening.rates(WITHHELD, now, shape, Versions(restore=restore))
    return summary.burst.distinct_callers - 1  # the withheld caller asking counts itself


def repeats(store: Store, who: Caller, now: datetime) -> int:
    shape = RateWindows(repeat_window=WINDOW, burst_threshold=None)
    return store.screening.rates(who, now, shape, Versions()).repeat_count


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL run on the store's engine inside the block."""
    seen: list[str] = []

    def note(conn: object, cursor: object, sql: str, *args: object) -> None:
        seen.append(sql)

    event.listen(store.db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(store.db.engine, "before_cursor_execute", note)


def test_the_counters_are_topped_up_with_new_rows_only(store: Store) -> None:
    logged(store, NOW - timedelta(minutes=5), "0611111111")
    assert strangers(store, NOW) == 1
    logged(store, NOW - timedelta(minutes=1), "0622222222")
    with statements(store) as sql:
        assert strangers(store, NOW + timedelta(seconds=1)) == 2
    assert len(sql) == 1 and "calls.id >" in sql[0]  # only rows after the last one seen
    assert store.screening.counters.loads == 1


def test_known_callers_count_for_their_own_repeats_not_for_bursts(store: Store) -> None:
    logged(store, NOW - timedelta(minutes=2), "0611111111", Step.ALLOW)
    logged(store, NOW - timedelta(minutes=1), "0633333333", Step.BLOCK)
    logged(store, NOW - timedelta(minutes=1), "0622222222")
    assert strangers(store, NOW) == 1  # blocked callers are handled, allowed ones known
    assert repeats(store, caller("0611111111"), NOW) == 1


def test_calls_that_leave_the_window_stop_counting(store: Store) -> None:
    logged(store, NOW - timedelta(minutes=5), "0611111111")
    logged(store, NOW, "0622222222")
    assert strangers(store, NOW) == 2
    assert strangers(store, NOW + timedelta(minutes=6)) == 1


def test_a_question_further_back_reloads(store: Store) -> None:
    logged(store, NOW - timedelta(minutes=25), "0611111111")  # before the first reach
    logged(store, NOW - timedelta(minutes=1), "0622222222")
    assert strangers(store, NOW) == 1
    earlier = NOW - timedelta(minutes=20)  # a replay: the window starts 30 minutes back
    assert strangers(store, earlier) == 1
    assert store.screening.counters.loads == 2


def test_a_restore_reloads_and_an_allow_entry_does_not(store: Store) -> None:
    logged(store, NOW - timedelta(minutes=1), "0611111111")
    assert strangers(store, NOW) == 1
    store.entries.add("allow", "0699999999")
    assert strangers(store, NOW, restore=0) == 1
    assert store.screening.counters.loads == 1
    with statements(store) as sql:
        assert strangers(store, NOW, restore=1) == 1
    assert store.screening.counters.loads == 2
    assert any("calls.at >=" in s for s in sql)  # the full read, not the top-up


def test_a_queued_call_counts_at_once_and_once_only(store: Store, service: Services) -> None:
    """The writer hands each call to the counters as it is submitted; committed, the same
    row read back from the database is not counted again."""
    writer = CallWriter(functools.partial(write_batch, store.db), None, linger_s=60.0)
    store.screening.attach(writer)
    assert strangers(store, NOW) == 0
    event_ = call_logged(caller("0611111111"), decision(), uid=new_uid(),
                         at=NOW - timedelta(seconds=1), sip_call_id="a", line=None)
    writer.submit(event_)
    assert strangers(store, NOW) == 1  # not in the database yet
    writer.step()  # committed now
    assert store.calls.by_uid(event_.uid) is not None
    assert strangers(store, NOW + timedelta(seconds=1)) == 1


def test_a_reload_counts_what_the_writer_still_holds(store: Store) -> None:
    writer = CallWriter(functools.partial(write_batch, store.db), None, linger_s=60.0)
    writer.submit(call_logged(caller("0611111111"), decision(), uid=new_uid(),
                              at=NOW - timedelta(seconds=1), sip_call_id="a", line=None))
    store.screening.attach(writer)  # attached late: only the load can see that call
    logged(store, NOW - timedelta(seconds=2), "0622222222")
    assert strangers(store, NOW) == 2


def test_another_processs_rows_are_counted(store: Store) -> None:
    assert strangers(store, NOW) == 0
    with store.db.engine.begin() as conn:  # a second gateway on the same database
        conn.execute(insert(CallRow), [
            {"uid": new_uid(), "at": NOW - timedelta(seconds=i), "number": f"+3361111111{i}",
             "caller_kind": "number", "action": "pass", "unknown": True} for i in range(3)])
    assert strangers(store, NOW) == 3


def test_without_the_database_the_counters_go_on(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    writer = CallWriter(functools.partial(write_batch, store.db), None, linger_s=60.0)
    store.screening.attach(writer)
    logged(store, NOW - timedelta(minutes=1), "0611111111")
    assert strangers(store, NOW) == 1

    def down(*args: object, **kwargs: object) -> None:
        raise exc.OperationalError("SELECT", {}, OSError("server closed the connection"))

    monkeypatch.setattr(store.db.engine, "connect", down)
    writer.submit(call_logged(caller("0622222222"), decision(), uid=new_uid(), at=NOW,
                              sip_call_id="b", line=None))
    assert strangers(store, NOW + timedelta(seconds=1)) == 2
    assert "rate limits count the calls this process saw" in caplog.text


def test_a_flood_past_the_counters_room_asks_the_database(store: Store) -> None:
    """With more calls than the counters hold, a caller's older calls come from the log."""
    who = caller("0611111111")
    for minutes in (8, 7, 6):
        logged(store, NOW - timedelta(minutes=minutes), "0611111111")
    store.screening.counters._load(NOW, timedelta(minutes=80), 0)  # as the first call does
    counters = store.screening.counters._counters
    assert counters is not None
    counters.max_calls = 2
    counters.add("x", PastCall(at=NOW - timedelta(seconds=1), key="+33622222222",
                               unknown=True))
    assert not counters.complete_for(NOW, RateWindows(repeat_window=WINDOW,
                                                      burst_threshold=None))
    assert repeats(store, who, NOW) == 3


def test_ids_skipped_by_a_top_up_are_looked_for_again() -> None:
    """PostgreSQL hands out ids before commit: 12 may be seen before 11 is committed."""
    top = _TopUp(last_id=10)
    top.saw([12, 13], clock=0.0)
    assert top.last_id == 13 and [(lo, hi) for lo, hi, _ in top.gaps] == [(11, 11)]
    query, params = top.query()
    assert params == {} and "BETWEEN" in str(query)
    top.saw([], clock=100.0)  # given up after a while: a rolled-back id never comes
    assert top.gaps == [] and top.query()[1] == {"last_id": 13}


def test_no_top_up_query_while_nobody_commits(store: Store) -> None:
    """On a SQLite file, a call asks the database for new rows only after somebody committed
    (PRAGMA data_version on the thread's own connection): in a flood the writer commits a few
    times a second, and a query per call was a tenth of a call's CPU."""
    logged(store, NOW - timedelta(minutes=1), "0611111111")
    assert strangers(store, NOW) == 1
    assert strangers(store, NOW) == 1  # the first top-up of this thread
    with statements(store) as sql:
        for second in range(5):
            assert strangers(store, NOW + timedelta(seconds=second)) == 1
    assert sql == []
    with store.db.engine.begin() as conn:  # another process commits a row
        conn.execute(insert(CallRow), [{"uid": new_uid(), "at": NOW, "number": "+33622222222",
                                        "caller_kind": "number", "action": "pass",
                                        "unknown": True}])
    with statements(store) as sql:
        assert strangers(store, NOW + timedelta(seconds=6)) == 2
    assert len(sql) == 1 and "calls.id >" in sql[0]


def test_a_failed_top_up_is_tried_again_at_the_next_call(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A top-up the database refused leaves no mark: the next call reads the new rows."""
    assert strangers(store, NOW) == 0
    logged(store, NOW - timedelta(seconds=1), "0611111111")
    connect = store.db.engine.connect

    def down(*args: object, **kwargs: object) -> None:
        raise exc.OperationalError("SELECT", {}, OSError("database is locked"))

    monkeypatch.setattr(store.db.engine, "connect", down)
    assert strangers(store, NOW) == 0
    monkeypatch.setattr(store.db.engine, "connect", connect)
    assert strangers(store, NOW) == 1


def test_a_top_up_in_flight_serves_the_other_workers(store: Store) -> None:
    """After a commit every worker sees a new data_version at once; one reads the new rows and
    the others decide on what is counted, instead of each reading the same rows again."""
    assert strangers(store, NOW) == 0
    logged(store, NOW - timedelta(seconds=2), "0611111111")
    reading, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def hold_the_top_up(conn: object, cursor: object, sql: str, *args: object) -> None:
        seen.append(f"{threading.current_thread().name}: {sql}")
        if "calls.id >" in sql and threading.current_thread().name == "first":
            reading.set()
            assert release.wait(30), "the test never released the first top-up"

    results: dict[str, int] = {}
    first = threading.Thread(target=lambda: results.update(first=strangers(store, NOW)),
                             name="first")
    event.listen(store.db.engine, "before_cursor_execute", hold_the_top_up)
    try:
        first.start()
        assert reading.wait(30), "the first thread never started its top-up"
        second = threading.Thread(target=lambda: results.update(second=strangers(store, NOW)),
                                  name="second")
        second.start()
        second.join(30)
        assert not second.is_alive(), "the second worker waited for the first one's read"
        assert not [s for s in seen if s.startswith("second") and "FROM calls" in s]
    finally:
        release.set()
        first.join(30)
        event.remove(store.db.engine, "before_cursor_execute", hold_the_top_up)
    assert results == {"first": 1, "second": 0}  # as if the commit had come a moment later
    assert strangers(store, NOW + timedelta(seconds=1)) == 1  # counted for every thread


def test_a_top_up_builds_nothing_for_the_calls_already_counted(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's own calls are counted when handed to the writer; read back after the
    commit, they cost a uid lookup, not a PastCall each."""
    writer = CallWriter(functools.partial(write_batch, store.db), None, linger_s=60.0)
    store.screening.attach(writer)
    assert strangers(store, NOW) == 0
    for i in range(20):
        writer.submit(call_logged(caller(f"+3361111{i:04d}"), decision(), uid=new_uid(),
                                  at=NOW - timedelta(seconds=1), sip_call_id=f"c{i}", line=None))
    writer.step()  # committed: the next call's top-up reads the 20 rows back
    built: list[object] = []
    real = screening_module.past_call
    monkeypatch.setattr(screening_module, "past_call",
                        lambda row: built.append(row) or real(row))
    logged(store, NOW - timedelta(seconds=1), "0622222222")  # and one call of another process
    assert strangers(store, NOW + timedelta(seconds=1)) == 21
    assert len(built) == 1
