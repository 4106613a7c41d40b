"""The call writer (gateway/store/writer.py) driven step by step, with a fake clock and a
database that fails when the test says so, and its journal (gateway/store/journal.py)."""

from __future__ import annotations

import errno
import functools
import itertools
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, exc, func, select, text

import gateway.store.writer as writer_module
from gateway.call.record import CallBook
from gateway.call.screen import Screener
from gateway.config import Settings
from gateway.store.batch import write_batch
from gateway.store.events import (
    CallFinished,
    CallLogged,
    Event,
    EventError,
    PermitUsed,
    RestartClosed,
    call_logged,
    from_line,
    new_uid,
    to_line,
)
from gateway.store.journal import (
    JOURNAL_FILE,
    REJECTED_FILE,
    Journal,
    JournalBusy,
    journal_backlog,
    read_status,
)
from gateway.store.models import CallRow
from gateway.store.writer import CallWriter
from tests.helpers import Services

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
LOCKED = exc.OperationalError("INSERT INTO calls", {}, Exception("database is locked"))
REFUSED = exc.IntegrityError("INSERT INTO calls", {}, Exception("CHECK constraint failed"))


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeDatabase:
    """Commits batches into a list, or raises `error` while it is set."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.error: BaseException | None = None
        self.attempts = 0
        self.refuse_uid: str | None = None  # a call this database always refuses

    def __call__(self, events: Sequence[Event]) -> None:
        self.attempts += 1
        if self.error is not None:
            raise self.error
        if self.refuse_uid and any(getattr(e, "uid", None) == self.refuse_uid for e in events):
            raise REFUSED
        self.batches.append(list(events))

    @property
    def committed(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


def call(n: int, **kwargs: object) -> CallLogged:
    return CallLogged(uid=f"uid{n:04d}", at=NOW + timedelta(seconds=n), caller_kind="number",
                      action="reject:603", number=f"+3316200{n:04d}", **kwargs)  # type: ignore[arg-type]


def uids(events: Sequence[Event]) -> list[str]:
    return [getattr(e, "uid", type(e).__name__) for e in events]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


def make_writer(tmp_path: Path, database: FakeDatabase, clock: Clock,
                **options: object) -> CallWriter:
    folder = tmp_path / "journal"
    return CallWriter(database, Journal(folder), status_dir=folder, clock=clock,
                      **options)  # type: ignore[arg-type]


def test_a_batch_is_one_commit_and_large_ones_are_cut(tmp_path: Path, database: FakeDatabase,
                                                      clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock, batch_size=4)
    for n in range(10):
        writer.submit(call(n))
    assert database.attempts == 0  # submitting writes nothing
    writer.step()
    assert [len(b) for b in database.batches] == [4, 4, 2]
    assert uids(database.committed) == [f"uid{n:04d}" for n in range(10)]
    assert journal_backlog(tmp_path / "journal") == 0


def rejected(n: int) -> list[Event]:
    """The two events of a rejected call: its row, then its end at once."""
    return [call(n), CallFinished(f"uid{n:04d}", 0.01, "rejected 603")]


def submit_all(writer: CallWriter, events: list[Event]) -> None:
    for each in events:
        writer.submit(each)


def flood(writer: CallWriter, clock: Clock, rate: float, calls: int) -> list[float]:
    """Submit `calls` rejected calls at a steady `rate`, stepping the writer whenever its
    batch is due, as its thread would; how long each batch was open."""
    open_for: list[float] = []
    opened: float | None = None
    for n in range(calls):
        arrival = clock.now + 1 / rate
        due = writer.batch_due()
        if due is not None and due <= arrival:  # the batch is written before the next call
            clock.now = due
            writer.step()
            assert opened is not None
            open_for.append(clock.now - opened)
        clock.now = arrival
        if writer.batch_due() is None:
            opened = clock.now
        submit_all(writer, rejected(n))
    return open_for


def test_a_call_in_quiet_times_is_written_within_the_short_linger(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock)
    submit_all(writer, rejected(1))
    assert writer.batch_due() == pytest.approx(clock.now + 0.05)
    clock.advance(0.05)
    writer.step()
    assert [len(b) for b in database.batches] == [2] and writer.batch_due() is None


def test_a_steady_flood_is_written_in_batches_of_tens_of_events(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    """Issue 10: at 50-100 calls/s a 50 ms linger made batches of 2-3 calls, each commit
    dirtying the same pages; the batch now stays open 250 ms once calls keep coming."""
    for rate, least in ((50.0, 20), (100.0, 40)):
        database.batches.clear()
        writer = make_writer(tmp_path / str(rate), database, clock)
        open_for = flood(writer, clock, rate, calls=int(rate * 3))
        sizes = [len(b) for b in database.batches]
        assert max(open_for) <= 0.25 + 1e-9  # never longer than the flood linger
        assert min(sizes[2:]) >= least, sizes  # after the first batch or two
        clock.advance(10.0)


def test_after_a_flood_the_next_call_gets_the_short_linger_again(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock)
    flood(writer, clock, 100.0, calls=100)
    clock.advance(writer.flood_linger_s)
    writer.step()  # the flood's last batch
    clock.advance(1.0)  # a quiet second
    submit_all(writer, rejected(1000))
    assert writer.batch_due() == pytest.approx(clock.now + 0.05)


def test_the_status_timer_does_not_cut_every_batch_short(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    """Issue 10: 5 s after the last status rewrite, the open batch counted as "rows waiting",
    woke the thread at each submit, and nothing reset the timer: a commit per call."""
    writer = make_writer(tmp_path, database, clock)
    writer.step()  # the status file is written once at start
    clock.advance(writer.status_every_s + 1.0)
    for n in range(3):
        submit_all(writer, rejected(n))
        assert writer.next_step_in() == pytest.approx(0.05 if n == 0 else 0.05 - 0.01 * n)
        clock.advance(0.01)
    clock.advance(0.02)
    assert writer.next_step_in() == pytest.approx(0.0)
    writer.step()
    assert [len(b) for b in database.batches] == [6]
    assert writer.next_step_in() is None  # nothing waits: no timer at all


def test_two_calls_apart_keep_the_short_linger(tmp_path: Path, database: FakeDatabase,
                                               clock: Clock) -> None:
    """A home line: calls minutes apart, each its own batch, each within 50 ms."""
    writer = make_writer(tmp_path, database, clock)
    for n in range(3):
        submit_all(writer, rejected(n))
        assert writer.batch_due() == pytest.approx(clock.now + 0.05)
        clock.advance(0.05)
        writer.step()
        clock.advance(120.0)
    assert [len(b) for b in database.batches] == [2, 2, 2]


def test_a_failed_batch_waits_in_the_journal_and_is_written_in_order(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock, retry_min_s=0.5)
    writer.submit(call(1))
    database.error = LOCKED
    writer.step()
    assert database.batches == []
    assert journal_backlog(tmp_path / "journal") == 1  # on disk, fsynced
    status = writer.status()
    assert (status.state, status.pending, status.in_journal) == ("waiting", 1, 1)
    assert "database is locked" in (status.last_error or "")
    written = read_status(tmp_path / "journal")
    assert written is not None and written.state == "waiting" and written.pending == 1

    # Events that arrive meanwhile go behind it, to the journal too, without a new attempt.
    writer.submit(call(2))
    writer.submit(CallFinished("uid0001", 0.1, "rejected 603"))
    attempts = database.attempts
    writer.step()
    assert database.attempts == attempts  # the retry delay is running
    assert journal_backlog(tmp_path / "journal") == 3

    database.error = None
    clock.advance(0.6)
    writer.step()
    assert uids(database.committed) == ["uid0001", "uid0002", "uid0001"]
    assert isinstance(database.committed[2], CallFinished)
    assert journal_backlog(tmp_path / "journal") == 0
    assert writer.status().state == "ok" and writer.status().pending == 0
    assert read_status(tmp_path / "journal").state == "ok"  # type: ignore[union-attr]


def test_retries_back_off_up_to_the_maximum(tmp_path: Path, database: FakeDatabase,
                                            clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock, retry_min_s=0.5, retry_max_s=2.0)
    database.error = LOCKED
    writer.submit(call(1))
    writer.step()
    tried_at = []
    for _ in range(60):
        clock.advance(0.25)
        before = database.attempts
        writer.step()
        if database.attempts > before:
            tried_at.append(clock.now)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(tried_at)]
    assert gaps[:3] == [1.0, 2.0, 2.0]  # 0.5 after the first failure, then doubling, capped


def test_when_the_journal_cannot_be_written_events_wait_in_memory_then_the_oldest_are_dropped(
        tmp_path: Path, database: FakeDatabase, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    writer = make_writer(tmp_path, database, clock, memory_limit=3)
    assert writer.journal is not None

    def disk_full(events: list[Event]) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.journal, "append", disk_full)
    database.error = exc.OperationalError("INSERT", {}, Exception("database or disk is full"))
    for n in range(5):
        writer.submit(call(n))
    writer.step()
    status = writer.status()
    assert status.dropped_total == 2 and status.dropped_since_start == 2
    assert "No space left" in (status.journal_error or "")
    assert status.pending == 3

    database.error = None
    clock.advance(1.0)
    writer.step()
    assert uids(database.committed) == ["uid0002", "uid0003", "uid0004"]  # the newest kept
    # The count survives a restart: the next writer reads it from the status file.
    monkeypatch.undo()
    writer.stop()
    again = CallWriter(database, Journal(tmp_path / "journal"), status_dir=tmp_path / "journal",
                       clock=clock)
    assert again.status().dropped_total == 2 and again.status().dropped_since_start == 0
    again.stop()


def test_a_crash_leaves_the_journal_and_the_next_start_writes_it_once(
        tmp_path: Path, service: Services) -> None:
    """A kill while rows wait: the journal is replayed on start; a batch that was committed
    but not yet removed from the journal is not written twice (uid), nor counted twice."""
    folder = tmp_path / "journal"
    who = service.screener.caller("0162000001")
    decision = service.screener.screen(who, NOW)
    assert decision.step == "rule"

    def sink(events: Sequence[Event]) -> None:
        write_batch(service.db, events)

    first = call_logged(who, decision, uid=new_uid(), at=NOW, sip_call_id="a", line=None)
    second = call_logged(who, decision, uid=new_uid(), at=NOW, sip_call_id="b", line=None)
    journal = Journal(folder)
    journal.append([first, CallFinished(first.uid, 0.1, "rejected 603"), second])
    sink([first, CallFinished(first.uid, 0.1, "rejected 603")])  # committed, still journaled
    journal.close()  # the process dies here

    writer = CallWriter(sink, Journal(folder), status_dir=folder)
    assert writer.status().pending == 3
    assert [uid for uid, _ in writer.pending_calls()] == [first.uid, second.uid]
    writer.start(close_before=NOW + timedelta(minutes=1))
    assert writer.flush(timeout=30)
    writer.stop()
    rows = {r.uid: r for r in service.store.calls.recent(limit=10)}
    assert set(rows) == {first.uid, second.uid}
    assert rows[first.uid].outcome == "rejected 603"
    assert rows[second.uid].outcome == "interrupted: gateway restarted"  # its end was lost
    with service.db.engine.connect() as conn:
        hits = conn.execute(text("SELECT hits FROM rules WHERE id = :id"),
                            {"id": decision.ref}).scalar()
    assert hits == 2
    assert journal_backlog(folder) == 0


def test_an_event_the_database_refuses_is_set_aside_and_the_rest_written(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock)
    database.refuse_uid = "uid0002"
    for n in range(4):
        writer.submit(call(n))
    writer.step()
    assert uids(database.committed) == ["uid0000", "uid0001", "uid0003"]
    assert writer.status().rejected_total == 1
    [line] = (tmp_path / "journal" / REJECTED_FILE).read_bytes().splitlines()
    assert json.loads(line)["uid"] == "uid0002"


def test_pending_calls_are_visible_until_committed(tmp_path: Path, database: FakeDatabase,
                                                   clock: Clock) -> None:
    writer = make_writer(tmp_path, database, clock)
    writer.submit(call(1, unknown=True))
    writer.submit(PermitUsed(3))
    [(uid, past)] = writer.pending_calls()
    assert uid == "uid0001" and past.key == "+33162000001" and past.unknown
    database.error = LOCKED
    writer.step()
    assert [u for u, _ in writer.pending_calls()] == ["uid0001"]  # journaled, still pending
    database.error = None
    clock.advance(1)
    writer.step()
    assert writer.pending_calls() == []


def test_flush_waits_for_the_thread_and_reports_an_unavailable_database(
        tmp_path: Path, database: FakeDatabase) -> None:
    writer = CallWriter(database, Journal(tmp_path / "journal"), status_dir=tmp_path / "journal",
                        linger_s=60.0)  # a long linger: only flush() makes it write now
    writer.start()
    try:
        writer.submit(call(1))
        assert writer.flush(timeout=30)
        assert uids(database.committed) == ["uid0001"]
        database.error = LOCKED
        writer.submit(call(2))
        assert not writer.flush(timeout=0.5)  # the database says no: the event is journaled
        database.error = None
        assert writer.flush(timeout=30)
        assert uids(database.committed) == ["uid0001", "uid0002"]
    finally:
        writer.stop()
    assert read_status(tmp_path / "journal").state == "stopped"  # type: ignore[union-attr]


def test_stop_journals_what_the_database_did_not_take(tmp_path: Path,
                                                      database: FakeDatabase) -> None:
    writer = CallWriter(database, Journal(tmp_path / "journal"), status_dir=tmp_path / "journal")
    writer.start()
    database.error = LOCKED
    writer.submit(call(1))
    writer.stop(timeout=1)
    assert journal_backlog(tmp_path / "journal") == 1
    database.error = None
    again = CallWriter(database, Journal(tmp_path / "journal"))
    again.recover()
    assert uids(database.committed) == ["uid0001"]
    again.stop()


def test_the_status_file_is_not_rewritten_per_batch_when_all_is_well(
        tmp_path: Path, database: FakeDatabase, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    monkeypatch.setattr(writer_module, "write_status",
                        lambda folder, status: writes.append(status.state))
    writer = make_writer(tmp_path, database, clock)
    for n in range(20):
        writer.submit(call(n))
        writer.step()
        clock.advance(10)
    assert writes == ["ok"]  # once, at the first step


def test_the_status_file_does_not_keep_pending_events_that_are_in(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    """The status rewritten as the database came back counted a call that arrived during that
    commit; once it was in, nothing rewrote the file, and `ringfence status` showed it pending
    (not ok) until the next failure."""
    writer = make_writer(tmp_path, database, clock)
    database.error = LOCKED
    writer.submit(call(1))
    writer.step()  # journaled, waiting
    database.error = None
    clock.advance(writer.retry_min_s)

    def arriving_meanwhile(events: Sequence[Event]) -> None:
        database(events)
        if len(database.batches) == 1:
            writer.submit(call(2))

    writer.sink = arriving_meanwhile
    writer.step()  # the journal written; the status (ok again) counts call 2, just arrived
    status = read_status(tmp_path / "journal")
    assert status is not None and status.state == "ok" and status.pending == 1
    writer.sink = database
    clock.advance(0.05)
    writer.step()
    status = read_status(tmp_path / "journal")
    assert status is not None and status.pending == 0
    assert uids(database.committed) == ["uid0001", "uid0002"]


def test_a_status_file_that_cannot_be_written_does_not_make_the_thread_spin(
        tmp_path: Path, database: FakeDatabase, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk with the database down: the status rewrite failed, its timer stayed due,
    and the thread woke without waiting, again and again, while the rows waited."""
    writer = make_writer(tmp_path, database, clock)
    writer.step()  # the status written once
    database.error = LOCKED

    def full(folder: Path, status: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module, "write_status", full)
    writer.submit(call(1))
    clock.advance(writer.status_every_s)
    writer.step()  # refused: the call waits; the status cannot be written
    wait = writer.next_step_in()
    assert wait is not None and wait > 0  # the retry delay, not at once


def test_a_second_process_cannot_open_the_same_journal(tmp_path: Path) -> None:
    first = Journal(tmp_path / "journal")
    try:
        with pytest.raises(JournalBusy):
            Journal(tmp_path / "journal")
    finally:
        first.close()
    Journal(tmp_path / "journal").close()  # free again once closed


def test_a_line_cut_short_by_a_crash_is_discarded(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    whole = to_line(call(1))
    (folder / JOURNAL_FILE).write_bytes(whole + to_line(call(2))[:50])
    journal = Journal(folder)
    try:
        assert (folder / JOURNAL_FILE).read_bytes() == whole
        journal.append([call(3)])
        events, bad, _ = journal.read(0, 10)
        assert uids(events) == ["uid0001", "uid0003"] and bad == []
    finally:
        journal.close()


def test_an_unreadable_line_is_set_aside_and_the_others_written(
        tmp_path: Path, database: FakeDatabase, clock: Clock) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    future = json.dumps({"v": 99, "t": "call"}).encode() + b"\n"
    (folder / JOURNAL_FILE).write_bytes(to_line(call(1)) + future + to_line(call(2)))
    writer = CallWriter(database, Journal(folder), status_dir=folder, clock=clock)
    writer.recover()
    assert uids(database.committed) == ["uid0001", "uid0002"]
    assert (folder / REJECTED_FILE).read_bytes() == future
    assert writer.status().rejected_total == 1
    writer.stop()


def test_journal_lines_keep_strangers_text_on_one_line() -> None:
    hostile = 'Eve"\n{"v":1,"t":"permit","entry_id":1}\r\u2028\x00'
    event = call(1, display_name=hostile, reason="é" * 300, reason_code="telemarketing",
                 reason_params={"prefix": "0162", "decision": hostile})
    line = to_line(event)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert from_line(line.rstrip(b"\n")) == event
    with pytest.raises(EventError):
        from_line(b'{"v": 1, "t": "finish", "uid": "x", "duration_s": "1", "outcome": "o"}')
    assert isinstance(from_line(to_line(RestartClosed(before=NOW))), RestartClosed)


def test_uids_are_time_ordered_and_unique() -> None:
    made = [new_uid() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(len(u) == 24 for u in made)
    assert made[0][:12] <= made[-1][:12]


def test_submitting_never_waits_for_a_slow_database(tmp_path: Path) -> None:
    """A commit that hangs holds the writer thread only: call threads keep submitting."""
    release = threading.Event()
    entered = threading.Event()

    def slow(events: Sequence[Event]) -> None:
        entered.set()
        release.wait(30)

    writer = CallWriter(slow, Journal(tmp_path / "journal"), linger_s=0.0)
    writer.start()
    try:
        writer.submit(call(0))
        assert entered.wait(30)
        for n in range(1, 1001):  # the writer is stuck in a commit the whole time
            writer.submit(call(n))
        assert writer.status().pending >= 1000
    finally:
        release.set()
        writer.stop()


def test_hits_are_summed_per_batch_on_a_real_database(service: Services) -> None:
    who = service.screener.caller("0162000001")
    decision = service.screener.screen(who, NOW)
    events: list[Event] = [call_logged(who, decision, uid=new_uid(), at=NOW, sip_call_id=None,
                                       line=None) for _ in range(50)]
    write_batch(service.db, events)
    write_batch(service.db, events)  # a replay: nothing changes
    with service.db.session() as s:
        assert s.scalar(select(func.count(CallRow.id))) == 50
    with service.db.engine.connect() as conn:
        assert conn.execute(text("SELECT hits FROM rules WHERE id = :id"),
                            {"id": decision.ref}).scalar() == 50


def test_screening_counts_calls_still_in_the_writers_queue(service: Services,
                                                           settings: Settings) -> None:
    """Burst detection and the repeat limit must see the calls of the last seconds, which
    may not be in the database yet: the screener adds the writer's pending calls."""
    writer = CallWriter(functools.partial(write_batch, service.db), None)  # never started
    screener = Screener(service.store, settings, writer)
    book = CallBook(service.store, settings, writer)
    for i in range(4):
        who = screener.caller(f"061100000{i}")
        at = NOW + timedelta(seconds=i)
        book.record_call(who, screener.screen(who, at), at=at, sip_call_id=f"c{i}")
    assert service.store.calls.count() == 0  # all four still queued
    late = screener.caller("0622000000")
    assert screener.screen(late, NOW + timedelta(seconds=10)).step == "burst"
    assert Screener(service.store, settings).screen(late, NOW).step != "burst"  # the queue
    # Committed meanwhile: counted once (by uid), not twice, and not lost in between.
    writer.step()
    assert service.store.calls.count() == 4 and writer.pending_calls() == []
    decision = screener.screen(late, NOW + timedelta(seconds=10))
    assert decision.step == "burst" and decision.burst.distinct_callers == 5


def test_a_rejected_call_is_one_insert_in_one_transaction(service: Services,
                                                          settings: Settings) -> None:
    """Before: three commits per rejected call (the row, the hit counter, the end)."""
    writer = CallWriter(functools.partial(write_batch, service.db), None)
    book = CallBook(service.store, settings, writer)
    who = service.screener.caller("0162000001")
    decision = service.screener.screen(who, NOW)
    statements: list[str] = []
    # What SQLite itself runs (the batch goes to the driver, not through SQLAlchemy's events).
    event.listen(service.db.engine, "checkout",
                 lambda dbapi, record, proxy: dbapi.set_trace_callback(
                     lambda sql: statements.append(sql.split()[0].upper())))
    ref = book.record_call(who, decision, at=NOW, sip_call_id="c1")
    book.finish_call(ref, duration_s=0.01, outcome="rejected 603")
    writer.step()
    assert statements.count("BEGIN") == 1 and statements.count("COMMIT") == 1, statements
    assert statements.count("INSERT") == 1 and statements.count("UPDATE") == 1  # + the hit
    row = service.store.calls.by_uid(ref)
    assert row is not None and row.outcome == "rejected 603"
