"""The call writer: every write of the call flow, batched on one thread, spooled when it must.

Call threads `submit` events (`gateway.store.events`) and go on: a submit never waits on the
database or the disk. The `call-writer` thread takes what arrived, at most every `linger_s`
(a few tens of ms) or as soon as `batch_size` events wait, and applies it in one transaction
(`gateway.store.batch`). While calls keep coming (the previous batch held `flood_events` or
more and was taken less than `flood_linger_s` before the next event came), a batch stays open
`flood_linger_s` instead, so that a steady flood of tens of calls a second is written in
batches of tens of calls, not of two or three. When the database does not take a batch
(locked past the busy timeout, disk full, server down), the events are appended to the journal
beside the database (`gateway.store.journal`, fsynced per batch) and the writer tries again
with a growing delay; once the database answers, the journal is written in order and emptied.
If the journal cannot be written either (the same full disk), events wait in memory up to
`memory_limit`; only beyond that are the oldest dropped, which is logged, counted and shown in
the status file.

Events still queued are visible to screening through `pending_calls()`, so burst detection and
the repeat limit count the calls of the last seconds before they reach the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gateway.screening.ratelimit import PastCall
from gateway.store.batch import database_unavailable, write_batch
from gateway.store.db import Database
from gateway.store.events import CallLogged, Event, RestartClosed, new_uid, to_line
from gateway.store.journal import (
    Journal,
    JournalBusy,
    WriterStatus,
    journal_dir,
    read_status,
    write_status,
)
from gateway.store.models import utcnow

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[Event]], None]
Listener = Callable[[Sequence[Event]], None]
CallListener = Callable[[str, PastCall], None]

# A busy database must not hold the writer for long: what arrives meanwhile waits in memory,
# not yet in the journal. Readers and other writers keep SQLite's 5 s (gateway/store/db.py).
WRITER_BUSY_TIMEOUT_S = 2.0
PENDING_VIEW_LIMIT = 20_000  # as many recent calls as a history load reads (store/calls.py)
JOURNAL_CHUNKS_PER_STEP = 20  # then look at new events again before the next chunk
STOP_JOIN_MARGIN = 5.0  # stop() waits this much past its timeout for the last step to return


class CallWrites(Protocol):
    """What the call flow's writing side (`gateway.call.record.CallBook`) needs of a writer."""

    queues: bool
    """True: `submit` only queues (no database work in the caller's thread)."""

    def new_uid(self) -> str:
        """A fresh identifier for a call or voicemail row."""

    def submit(self, event: Event) -> None:
        """Hand over an event; never blocks on the database."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is in the database; False on timeout."""

    def pending_calls(self) -> list[tuple[str, PastCall]]:
        """(uid, call) of calls submitted but not yet in the database."""

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with each batch of events once it is committed."""

    def add_call_listener(self, listener: CallListener) -> None:
        """Call `listener` with (uid, call) of each call as it is submitted."""


class _Listeners:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._call_listeners: list[CallListener] = []

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with each batch of events once it is committed."""
        self._listeners.append(listener)

    def add_call_listener(self, listener: CallListener) -> None:
        """Call `listener` with (uid, call) of each call as it is submitted.

        The screener's rate counters listen: a call counts for the next caller's burst and
        repeat limit from the moment it is decided, not once it is committed. Called in the
        submitting thread, outside the writer's lock.
        """
        self._call_listeners.append(listener)

    def _note_call(self, event: Event) -> None:
        if not isinstance(event, CallLogged):
            return
        call = event.past_call()
        for listener in self._call_listeners:
            try:
                listener(event.uid, call)
            except Exception:  # counting must never lose the call's row
                log.exception("a call listener failed")

    def _notify(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:  # a listener (an alert poke) must never stop the writer
                log.exception("a call writer listener failed")


class DirectWriter(_Listeners):
    """Applies each event at once in the caller's thread, raising on failure.

    For the CLI and tests, which want a row in the database when the call returns: no queue,
    no journal, nothing pending.
    """

    queues = False

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.sink: Sink = functools.partial(write_batch, db)

    def new_uid(self) -> str:
        """A fresh identifier for a call or voicemail row."""
        return new_uid()

    def submit(self, event: Event) -> None:
        """Apply the event now."""
        self.sink([event])
        self._note_call(event)
        self._notify([event])

    def flush(self, timeout: float | None = None) -> bool:
        """Nothing ever waits here."""
        return True

    def pending_calls(self) -> list[tuple[str, PastCall]]:
        """Nothing is ever pending."""
        return []


def _describe(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


class CallWriter(_Listeners):
    """The gateway's writer thread (see the module docstring)."""

    queues = True

    def __init__(
        self,
        sink: Sink,
        journal: Journal | None,
        *,
        status_dir: Path | None = None,
        previous: WriterStatus | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        is_transient: Callable[[BaseException], bool] = database_unavailable,
        batch_size: int = 500,
        linger_s: float = 0.05,
        flood_linger_s: float = 0.25,
        flood_events: int = 4,
        memory_limit: int = 10_000,
        inbox_limit: int = 50_000,
        retry_min_s: float = 0.5,
        retry_max_s: float = 10.0,
        status_every_s: float = 5.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        if previous is None and status_dir is not None:
            previous = read_status(status_dir)  # counts of lost events survive a restart
        self.sink = sink
        self.journal = journal
        self.status_dir = status_dir
        self.clock = clock
        self.wall = wall
        self.is_transient = is_transient
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.flood_linger_s = flood_linger_s
        self.flood_events = flood_events
        self._last_batch = 0  # events the previous step took
        self._last_step_at = -1e9  # when it took them (the writer's clock)
        self.memory_limit = memory_limit
        self.inbox_limit = inbox_limit
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.status_every_s = status_every_s
        self._on_close = on_close
        # Shared with submitting threads, under the condition's lock.
        self._cond = threading.Condition()
        self._inbox: deque[Event] = deque()
        self._first_arrival: float | None = None
        self._seq = 0
        self._done_seq = 0
        self._pending: dict[str, PastCall] = {}
        self._flush_requests = 0
        self._stopping = False
        self._stop_timeout = 10.0
        self._status = WriterStatus(
            pid=0, started_at=wall().isoformat(),
            dropped_total=previous.dropped_total if previous else 0,
            rejected_total=previous.rejected_total if previous else 0,
        )
        self._last_drop_log = -1e9
        # The writer thread's own state (or the test's, which calls step() itself).
        self._memory: list[Event] = []
        self._journal_active = False
        self._journal_read = 0
        self._journal_events = 0
        self._markers: deque[tuple[int, int]] = deque()  # (journal end offset, last seq)
        self._flush_seen = 0
        self._retry_at: float | None = None
        self._delay = 0.0
        self._status_dirty = True
        self._status_written_at: float | None = None
        self._written_pending = 0  # what the status file last said was pending
        self._thread: threading.Thread | None = None
        if journal is not None and journal.size:
            # An earlier run left events: screening must count its calls until they are in.
            self._journal_active = True
            self._journal_events = journal.count_lines()
            self._load_pending_view()
        if journal is None and status_dir is not None:
            self._status.journal_error = "no journal: rows wait in memory only"

    # ----------------------------------------------------------------------- construction

    @classmethod
    def open(cls, db: Database, data_dir: Path, **options: object) -> CallWriter:
        """A writer for the gateway: its own connection pool, the journal in `data_dir`."""
        folder = journal_dir(data_dir)
        journal: Journal | None
        try:
            journal = Journal(folder)
        except JournalBusy:
            log.error("%s is in use by another Ringfence process: this one keeps call log "
                      "rows in memory only while the database is unavailable", folder)
            journal = None
        except OSError as exc:
            log.error("cannot open the call log journal in %s (%s): rows wait in memory only "
                      "while the database is unavailable", folder, exc)
            journal = None
        own = db
        if ":memory:" not in db.url:
            own = Database(db.url, busy_timeout_s=WRITER_BUSY_TIMEOUT_S)
        return cls(functools.partial(write_batch, own), journal, status_dir=folder,
                   on_close=own.dispose if own is not db else None,
                   **options)  # type: ignore[arg-type]

    # ----------------------------------------------------------------------- call threads

    def new_uid(self) -> str:
        """A fresh identifier for a call or voicemail row."""
        return new_uid()

    def submit(self, event: Event) -> None:
        """Queue an event for the next batch; never waits on the database or the disk."""
        with self._cond:
            if len(self._inbox) >= self.inbox_limit:
                self._count_dropped(1, "the writer's queue is full")
                return
            self._seq += 1
            event.seq = self._seq
            self._inbox.append(event)
            if isinstance(event, CallLogged):
                self._remember(event)
            if self._first_arrival is None:
                self._first_arrival = self.clock()
                self._cond.notify_all()
            elif len(self._inbox) >= self.batch_size:
                self._cond.notify_all()
        self._note_call(event)

    def _remember(self, event: CallLogged) -> None:
        self._pending[event.uid] = event.past_call()
        if len(self._pending) > PENDING_VIEW_LIMIT:  # keep the newest, as a history load does
            del self._pending[next(iter(self._pending))]

    def pending_calls(self) -> list[tuple[str, PastCall]]:
        """(uid, call) of calls submitted but not yet committed, for the screener's history."""
        with self._cond:
            return list(self._pending.items())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event submitted before this call is committed (or dropped).

        Asks the thread to write now (no linger, no waiting out a retry delay). Returns False
        if that did not happen within `timeout` seconds (the database is still unavailable).
        """
        with self._cond:
            target = self._seq
            if self._done_seq >= target:
                return True
            self._flush_requests += 1
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done_seq >= target, timeout)

    def status(self) -> WriterStatus:
        """The current state (a copy)."""
        with self._cond:
            return self._snapshot()

    # ----------------------------------------------------------------------- the thread

    def start(self, *, recover_s: float = 10.0, close_before: datetime | None = None) -> None:
        """Write what the journal holds (for up to `recover_s`), then start the thread.

        `close_before`: mark calls logged before then and never completed as interrupted by a
        restart; queued after the journal, so calls the journal completes keep their outcome.
        """
        self.recover(recover_s)
        if close_before is not None:
            self.submit(RestartClosed(before=close_before))
        self._thread = threading.Thread(target=self._run, name="call-writer", daemon=True)
        self._thread.start()

    def recover(self, budget_s: float = 10.0) -> None:
        """Replay the journal into the database before the first call, if it answers."""
        if not self._journal_active or self.journal is None:
            return
        log.info("the call log journal holds %d event(s) from an earlier run; writing them",
                 self._journal_events)
        deadline = self.clock() + budget_s
        while self._journal_active and self._retry_at is None and self.clock() < deadline:
            self.step()
        if self._journal_active:
            log.warning("%d call log event(s) still wait in the journal: the database is not "
                        "taking them yet; calls are taken meanwhile", self._journal_events)

    def _load_pending_view(self) -> None:
        assert self.journal is not None
        offset = 0
        while True:
            events, _bad, next_offset = self.journal.read(offset, self.batch_size)
            if next_offset == offset:
                break
            offset = next_offset
            with self._cond:
                for event in events:
                    if isinstance(event, CallLogged):
                        self._remember(event)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (or journal it), write the status and close the journal."""
        with self._cond:
            self._stop_timeout = timeout
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + STOP_JOIN_MARGIN)
            if self._thread.is_alive():
                log.error("the call writer did not stop in time")
                return
        else:
            self._finish(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    break
            try:
                self._wait_for_work()
                self.step()
            except Exception:  # the writer must outlive any bug: try again after a pause
                log.exception("the call writer failed; trying again")
                self._retry_at = self.clock() + self.retry_max_s
        self._finish(self._stop_timeout)

    def _finish(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        self._retry_at = None  # one last try, whatever the delay said
        while self.clock() < deadline:
            self.step()
            with self._cond:
                empty = not self._inbox
            if empty and not self._memory and not self._journal_active:
                break
            if self._retry_at is not None:  # the database said no: the rest is journaled
                break
        if self._memory and not self._spill():
            self._drop_memory(len(self._memory), "the gateway stopped while neither the "
                              "database nor the journal could take them")
        with self._cond:
            self._status.state = "stopped"
        self._status_dirty = True
        self._write_status(force=True)
        if self.journal is not None:
            self.journal.close()
        if self._on_close is not None:
            with contextlib.suppress(Exception):
                self._on_close()

    def _has_backlog(self) -> bool:
        return bool(self._memory) or self._journal_active

    def _wait_for_work(self) -> None:
        with self._cond:
            while not self._stopping:
                timeout = self._step_in_locked()
                if timeout is not None and timeout <= 0:
                    return
                self._cond.wait(timeout)

    def next_step_in(self) -> float | None:
        """Seconds until the writer thread takes its next step (0 or less: now), or None if
        it waits for the next event; on the writer's clock (tests drive it with step())."""
        with self._cond:
            return self._step_in_locked()

    def _step_in_locked(self) -> float | None:
        now = self.clock()
        flush_now = self._flush_requests > self._flush_seen
        timeout: float | None
        if self._inbox:
            if flush_now or len(self._inbox) >= self.batch_size:
                return 0.0
            timeout = self._due_locked() - now
        elif self._has_backlog():
            if flush_now or self._retry_at is None:
                return 0.0
            timeout = self._retry_at - now
        else:
            timeout = None
        if timeout is not None and timeout <= 0:
            return timeout
        if self._status_written_at is not None and self._has_backlog():
            # Only rows that wait for the database make the status worth rewriting: counting
            # the open batch here woke the thread at each submit once 5 s had passed since the
            # last rewrite, and `_write_status`, finding nothing pending after the commit,
            # never reset the timer (issue 10: a commit per call at 50-100 calls/s).
            due = self._status_written_at + self.status_every_s - now
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def batch_due(self) -> float | None:
        """When the open batch is written (on the writer's clock) unless a flush or a full
        batch comes first; None if no event waits."""
        with self._cond:
            return self._due_locked() if self._inbox else None

    def _due_locked(self) -> float:
        assert self._first_arrival is not None
        return self._first_arrival + self._linger(self._first_arrival)

    def _linger(self, first_arrival: float) -> float:
        """How long a batch stays open: `flood_linger_s` while calls keep coming, else
        `linger_s`.

        A home line never has two calls in 50 ms, so a previous batch of `flood_events` (two
        calls' worth) means a flood: each commit costs a WAL frame per page it dirties and
        ~0.1 ms of CPU however few rows it holds, so its rows should share it. The previous
        batch must also be recent: the first call after a quiet spell is written in
        `linger_s`, whatever the last flood left.
        """
        flooding = (self._last_batch >= self.flood_events
                    and first_arrival - self._last_step_at <= self.flood_linger_s)
        return self.flood_linger_s if flooding else self.linger_s

    def step(self) -> None:
        """One round: take new events, journal them if the database is failing, and try to
        write the backlog unless a retry delay is running (tests call this directly)."""
        with self._cond:
            new = list(self._inbox)
            self._inbox.clear()
            self._first_arrival = None
            self._last_batch = len(new)
            self._last_step_at = self.clock()
            flush_now = self._flush_requests > self._flush_seen
            self._flush_seen = self._flush_requests
            stopping = self._stopping
        if new:
            self._memory.extend(new)
            if self._journal_active or self._retry_at is not None:
                self._spill()  # older events are on disk, or the database is failing
            self._limit_memory()
        waiting = self._retry_at is not None and self.clock() < self._retry_at
        if (not waiting or flush_now or stopping) and self._drain_journal():
            self._commit_memory()
        self._write_status()

    # ----------------------------------------------------------------------- writing

    def _apply(self, events: list[Event]) -> bool:
        """Commit `events`; False if the database is unavailable (they stay where they are)."""
        try:
            self.sink(events)
        except Exception as exc:
            if self.is_transient(exc):
                self._failed(exc)
                return False
            return self._isolate(events, exc)
        self._recovered()
        return True

    def _isolate(self, events: list[Event], error: BaseException) -> bool:
        """The database refused a batch: write its events one by one, set aside the bad ones."""
        log.error("the database refused a batch of %d call log event(s) (%s); writing them "
                  "one by one", len(events), _describe(error))
        for event in events:
            try:
                self.sink([event])
            except Exception as exc:
                if self.is_transient(exc):
                    self._failed(exc)
                    return False  # those written already are skipped when it is retried
                log.error("call log event refused and set aside: %s (%s)", event, _describe(exc))
                self._set_aside(event)
        self._recovered()
        return True

    def _set_aside(self, event: Event) -> None:
        if self.journal is not None:
            try:
                self.journal.set_aside([to_line(event)])
            except OSError:
                log.exception("could not keep a refused call log event in the journal folder")
        with self._cond:
            self._status.rejected_total += 1
        self._status_dirty = True

    def _commit_memory(self) -> None:
        while self._memory:
            chunk = self._memory[:self.batch_size]
            if not self._apply(chunk):
                self._spill()
                return
            del self._memory[:len(chunk)]
            self._committed(chunk, max(e.seq for e in chunk))

    def _drain_journal(self) -> bool:
        """Write the journal's events in order; True once it is empty."""
        if not self._journal_active or self.journal is None:
            return True
        for _ in range(JOURNAL_CHUNKS_PER_STEP):
            events, bad, next_offset = self.journal.read(self._journal_read, self.batch_size)
            if next_offset == self._journal_read:  # the end of the file
                self._journal_emptied()
                return True
            if bad:
                try:
                    self.journal.set_aside(bad)
                except OSError:
                    log.exception("could not keep unreadable journal lines aside")
                with self._cond:
                    self._status.rejected_total += len(bad)
            if events and not self._apply(events):
                return False
            self._journal_read = next_offset
            self._journal_events = max(0, self._journal_events - len(events) - len(bad))
            done = 0
            while self._markers and self._markers[0][0] <= self._journal_read:
                done = self._markers.popleft()[1]
            self._committed(events, done)
            if self._journal_read >= self.journal.size:
                self._journal_emptied()
                return True
        return False

    def _journal_emptied(self) -> None:
        assert self.journal is not None
        try:
            self.journal.reset()
        except OSError:
            log.exception("could not empty the call log journal; it is replayed (harmlessly) "
                          "at the next start")
        done = self._markers[-1][1] if self._markers else 0
        self._markers.clear()
        self._journal_active = False
        self._journal_read = 0
        self._journal_events = 0
        self._status_dirty = True
        self._committed([], done)
        log.info("the call log journal is written and emptied")

    def _committed(self, events: Sequence[Event], done_seq: int) -> None:
        with self._cond:
            for event in events:
                if isinstance(event, CallLogged):
                    self._pending.pop(event.uid, None)
            self._done_seq = max(self._done_seq, done_seq)
            self._cond.notify_all()
        if events:
            self._notify(events)

    def _spill(self) -> bool:
        """Move the events in memory to the end of the journal (they are newer than it)."""
        if not self._memory or self.journal is None:
            return False
        try:
            end = self.journal.append(self._memory)
        except OSError as exc:
            if self._status.journal_error is None:
                log.error("cannot write the call log journal (%s): %d event(s) wait in memory "
                          "(at most %d)", exc, len(self._memory), self.memory_limit)
            with self._cond:
                self._status.journal_error = _describe(exc)
            self._status_dirty = True
            return False
        if self._status.journal_error is not None:
            log.info("the call log journal can be written again")
            with self._cond:
                self._status.journal_error = None
            self._status_dirty = True
        self._markers.append((end, self._memory[-1].seq))
        self._journal_events += len(self._memory)
        self._memory.clear()
        # Not a change of state: the counts reach the status file within `status_every_s`.
        self._journal_active = True
        return True

    def _limit_memory(self) -> None:
        excess = len(self._memory) - self.memory_limit
        if excess > 0:
            self._drop_memory(excess, "neither the database nor the journal takes them")

    def _drop_memory(self, count: int, why: str) -> None:
        dropped = self._memory[:count]
        del self._memory[:count]
        with self._cond:
            for event in dropped:
                if isinstance(event, CallLogged):
                    self._pending.pop(event.uid, None)
            self._count_dropped(count, why)
            self._done_seq = max(self._done_seq, max(e.seq for e in dropped))
            self._cond.notify_all()

    def _count_dropped(self, count: int, why: str) -> None:
        """Count lost events (call with the condition's lock held)."""
        status = self._status
        status.dropped_total += count
        status.dropped_since_start += count
        status.last_dropped_at = self.wall().isoformat()
        self._status_dirty = True
        now = self.clock()
        if now - self._last_drop_log >= 1.0:  # a flood of drops must not flood the log too
            self._last_drop_log = now
            log.error("%d call log event(s) lost: %s (%d lost since start)", count, why,
                      status.dropped_since_start)

    def _failed(self, error: BaseException) -> None:
        now = self.clock()
        self._delay = (self.retry_min_s if self._retry_at is None
                       else min(self.retry_max_s, self._delay * 2))
        self._retry_at = now + self._delay
        text = _describe(error)
        with self._cond:
            first = self._status.waiting_since is None
            if first:
                self._status.waiting_since = self.wall().isoformat()
            self._status.last_error = text
        if first:
            log.warning("the database does not take call log rows (%s): they wait%s and are "
                        "written when it does", text,
                        " in the journal" if self.journal is not None else " in memory")
            self._status_dirty = True
        else:
            log.debug("call log rows still wait: %s", text)

    def _recovered(self) -> None:
        if self._retry_at is None:
            return
        self._retry_at = None
        self._delay = 0.0
        with self._cond:
            since = self._status.waiting_since
            self._status.waiting_since = None
        log.info("the database takes call log rows again (waiting since %s); %d event(s) "
                 "being written", since, self._pending_count())
        self._status_dirty = True

    # ----------------------------------------------------------------------- status

    def _pending_count(self) -> int:
        return len(self._inbox) + len(self._memory) + self._journal_events

    def _snapshot(self) -> WriterStatus:
        status = dataclasses.replace(self._status)
        if status.state != "stopped":
            status.state = "waiting" if self._retry_at is not None or self._journal_active else "ok"
        status.pending = self._pending_count()
        status.in_journal = self._journal_events
        status.updated_at = self.wall().isoformat()
        return status

    def _write_status(self, *, force: bool = False) -> None:
        """Rewrite the status file when the state changed, or every few seconds while events
        wait; never per batch when all is well (no SD card writes for nothing)."""
        if self.status_dir is None:
            return
        now = self.clock()
        due = (self._status_written_at is None or self._status_dirty
               or (self._has_backlog()
                   and now - self._status_written_at >= self.status_every_s)
               # The file said events were pending (a batch arrived while it was written):
               # say once that they are in, or `ringfence status` reports them forever.
               or (self._written_pending > 0 and self._pending_count() == 0))
        if not (due or force):
            return
        with self._cond:
            snapshot = self._snapshot()
        snapshot.pid = os.getpid()
        try:
            write_status(self.status_dir, snapshot)
        except OSError as exc:  # a full disk: the status is stale, the log says why
            log.debug("could not write the call writer's status: %s", exc)
            # Tried again in `status_every_s` (or at the next step if it changed): left
            # unset, the timer stayed due and the thread spun while rows waited.
            self._status_written_at = now
            return
        self._status_written_at = now
        self._status_dirty = False
        self._written_pending = snapshot.pending
