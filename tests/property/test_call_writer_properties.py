"""Properties of the call writer on a real SQLite database, under any sequence of failures
and crashes: what was handed over is written exactly once unless a crash took it while it was
only in memory; hit counters count each call once, however often a batch is replayed."""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import exc, text

from gateway.config import load_settings_from_text
from gateway.store.batch import write_batch
from gateway.store.db import Database
from gateway.store.events import CallFinished, CallLogged, Event
from gateway.store.journal import Journal
from gateway.store.writer import CallWriter
from tests.helpers import Services

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
DOWN = exc.OperationalError("COMMIT", {}, Exception("database is locked"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A migrated database and the id of a rule the calls count hits on."""
    folder = tmp_path_factory.mktemp("template")
    service = Services.open(load_settings_from_text("", folder))
    with service.db.engine.connect() as conn:
        rule_id = int(conn.execute(text("SELECT min(id) FROM rules")).scalar() or 0)
    service.store.close()
    yield folder / "data" / "ringfence.db", rule_id


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyDatabase:
    """The real batch writer, which may fail before committing or after (a lost answer)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.mode = "ok"  # ok | down | lost-answer
        self.committed: set[str] = set()  # uids of calls and ends the database has

    def __call__(self, events: Sequence[Event]) -> None:
        if self.mode == "down":
            raise DOWN
        write_batch(self.db, events)
        self.committed |= {key(e) for e in events}
        if self.mode == "lost-answer":  # committed, but the writer is told it failed
            raise DOWN


class FlakyJournal(Journal):
    """The real journal, on a disk that may be full."""

    full = False

    def append(self, events: list[Event]) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().append(events)


def key(event: Event) -> str:
    return f"{type(event).__name__}:{getattr(event, 'uid', '')}"


operations = st.lists(st.one_of(
    st.tuples(st.just("call")),
    st.tuples(st.just("finish"), st.integers(0, 40)),
    st.tuples(st.just("step")),
    st.tuples(st.just("mode"), st.sampled_from(["ok", "down", "lost-answer"])),
    st.tuples(st.just("disk"), st.booleans()),
    st.tuples(st.just("wait"), st.floats(0.1, 20.0)),
    st.tuples(st.just("crash")),
), max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=operations)
# The cases that matter most, always tried: a commit whose answer is lost, then a replay; a
# crash with rows in the journal; a full disk, so that newer events wait in memory behind it.
@example(ops=[("call",), ("mode", "lost-answer"), ("step",), ("mode", "ok"), ("wait", 20.0),
              ("step",)])
@example(ops=[("mode", "down"), ("call",), ("call",), ("step",), ("finish", 0), ("crash",),
              ("mode", "ok"), ("step",)])
@example(ops=[("mode", "down"), ("call",), ("step",), ("disk", True), ("finish", 0),
              ("step",), ("mode", "ok"), ("wait", 20.0), ("step",)])
def test_every_surviving_event_is_written_once(template: tuple[Path, int],
                                               ops: list[tuple[object, ...]]) -> None:
    template_file, rule_id = template
    folder = Path(tempfile.mkdtemp(prefix="writer-prop-"))
    try:
        shutil.copy(template_file, folder / "ringfence.db")
        db = Database(f"sqlite:///{folder / 'ringfence.db'}")
        database = FlakyDatabase(db)
        clock = Clock()

        def open_writer() -> CallWriter:
            return CallWriter(database, FlakyJournal(folder / "journal"), clock=clock,
                              batch_size=3)

        writer = open_writer()
        calls: list[str] = []
        handed: set[str] = set()
        lost: set[str] = set()
        for op in ops:
            if op[0] == "call":
                uid = f"u{len(calls):03d}"
                calls.append(uid)
                event: Event = CallLogged(uid=uid, at=NOW + timedelta(seconds=len(calls)),
                                          caller_kind="number", action="reject:603",
                                          number="+33162000001", rule_id=rule_id)
                writer.submit(event)
                handed.add(key(event))
            elif op[0] == "finish" and calls:
                uid = calls[int(op[1]) % len(calls)]  # type: ignore[call-overload]
                finish = CallFinished(uid, 1.0, "done")
                if key(finish) not in handed:
                    writer.submit(finish)
                    handed.add(key(finish))
            elif op[0] == "step":
                writer.step()
            elif op[0] == "mode":
                database.mode = str(op[1])
            elif op[0] == "disk":
                FlakyJournal.full = bool(op[1])
            elif op[0] == "wait":
                clock.now += float(op[1])  # type: ignore[arg-type]
            elif op[0] == "crash":
                # What only memory held is gone, unless the database already had it.
                volatile = {key(e) for e in [*writer._inbox, *writer._memory]}
                lost |= volatile - database.committed
                assert writer.journal is not None
                writer.journal.close()
                writer = open_writer()
                writer.recover(budget_s=1.0)  # the clock stands still: until done or refused
        database.mode = "ok"
        FlakyJournal.full = False
        for _ in range(200):
            clock.now += 60
            writer.step()
            if not writer._memory and not writer._journal_active and not writer._inbox:
                break
        writer.stop(timeout=0)

        expected_calls = {u for u in calls if f"CallLogged:{u}" not in lost}
        with db.engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT uid, outcome FROM calls")).all())
            hits = conn.execute(text("SELECT hits FROM rules WHERE id = :id"),
                                {"id": rule_id}).scalar()
        assert set(stored) == expected_calls
        assert hits == len(expected_calls)  # each call counted once, replays included
        for uid, outcome in stored.items():
            finished = f"CallFinished:{uid}" in handed and f"CallFinished:{uid}" not in lost
            assert outcome == ("done" if finished else None), uid
        db.dispose()
    finally:
        FlakyJournal.full = False
        shutil.rmtree(folder, ignore_errors=True)
