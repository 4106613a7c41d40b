"""The driver's way of writing a batch of calls and ends (gateway/store/batch.py,
`_DriverBatch`) on a real SQLite database: all or nothing, replay-safe, and its errors
classified as SQLAlchemy's were, which the writer's retry and isolate logic relies on."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from gateway.config import Settings
from gateway.store.batch import OUTCOME_LENGTH, database_unavailable, write_batch
from gateway.store.db import Database
from gateway.store.events import CallFinished, CallLogged, Event
from gateway.store.journal import Journal
from gateway.store.writer import CallWriter
from tests.helpers import Services

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def call(n: int, **kwargs: object) -> CallLogged:
    fields: dict[str, object] = {"caller_kind": "number", "action": "reject:603",
                                 "number": "+33162000001", **kwargs}
    return CallLogged(uid=f"uid{n:04d}", at=NOW + timedelta(seconds=n), **fields)  # type: ignore[arg-type]


def stored(db: Database) -> list[tuple[object, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            text("SELECT uid, outcome, duration_s FROM calls ORDER BY uid"))]


def hits(db: Database, entry_id: int) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(text("SELECT hits FROM list_entries WHERE id = :i"),
                               {"i": entry_id}) or 0)


@pytest.fixture
def entry(service: Services) -> int:
    return service.store.entries.add("block", "+33162000001").id


def test_a_replayed_batch_writes_nothing_twice_and_a_later_end_is_written(
        service: Services, entry: int) -> None:
    db = service.db
    first: list[Event] = [call(1, entry_id=entry), call(2, entry_id=entry),
                          CallFinished("uid0001", 0.5, "rejected 603")]
    write_batch(db, first)
    write_batch(db, first)  # the journal replayed after a crash
    assert hits(db, entry) == 2
    # uid0002's row came with the first batch; its end comes in a batch that logs it again.
    write_batch(db, [call(2, entry_id=entry), CallFinished("uid0002", 1.5, "x" * 100)])
    assert stored(db) == [("uid0001", "rejected 603", 0.5), ("uid0002", "x" * OUTCOME_LENGTH, 1.5)]
    assert hits(db, entry) == 2


def test_a_refused_row_leaves_nothing_of_its_batch(service: Services, entry: int) -> None:
    bad = call(2, caller_kind=None, entry_id=entry)  # NOT NULL
    with pytest.raises(exc.IntegrityError) as raised:
        write_batch(service.db, [call(1, entry_id=entry), bad])
    assert not database_unavailable(raised.value)  # the writer isolates it, never waits
    assert stored(service.db) == [] and hits(service.db, entry) == 0


def test_a_value_that_cannot_be_bound_is_the_events_fault(service: Services) -> None:
    naive = CallLogged(uid="uid0001", at=datetime(2026, 11, 24, 14, 0), caller_kind="number",
                       action="reject:603")
    with pytest.raises(exc.StatementError) as raised:
        write_batch(service.db, [naive])
    assert not isinstance(raised.value, exc.DBAPIError)
    assert not database_unavailable(raised.value)
    assert stored(service.db) == []


@pytest.fixture
def impatient(settings: Settings, service: Services) -> Iterator[Database]:
    """A second engine on the same file that gives up on a lock at once."""
    db = Database(settings.database_url, busy_timeout_s=0.0)
    yield db
    db.dispose()


def test_a_locked_database_is_unavailable_not_refused(service: Services, settings: Settings,
                                                      impatient: Database) -> None:
    path = settings.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(exc.OperationalError) as raised:
            write_batch(impatient, [call(1), CallFinished("uid0001", 0.1, "rejected 603")])
        assert database_unavailable(raised.value)  # the writer journals and retries
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    write_batch(impatient, [call(1), CallFinished("uid0001", 0.1, "rejected 603")])
    assert stored(service.db) == [("uid0001", "rejected 603", 0.1)]


def test_the_writer_sets_aside_only_the_refused_call(tmp_path: Path, service: Services) -> None:
    writer = CallWriter(functools.partial(write_batch, service.db), Journal(tmp_path / "j"))
    for event in (call(1), call(2, caller_kind=None), call(3)):
        writer.submit(event)
    writer.step()
    assert [uid for uid, _o, _d in stored(service.db)] == ["uid0001", "uid0003"]
    assert writer.status().rejected_total == 1
