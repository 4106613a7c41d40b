"""The per-call screening reads on a SQLite file: each thread keeps one connection of its own
(no pool checkout per call), and that connection never pins an old snapshot: what another
process commits between two calls is read by the second."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, exc

from gateway.screening.caller import CallerKind
from gateway.store import Store
from tests.helpers import Services, caller

NUMBER = "+33612345678"


@pytest.fixture
def store(service: Services) -> Store:
    return service.store


def database_file(store: Store) -> Path:
    database = store.db.engine.url.database
    assert database
    return Path(database)


def test_each_thread_reads_on_one_connection_outside_the_pool(store: Store) -> None:
    reads = store.screening
    who = caller(NUMBER)
    assert who.kind is CallerKind.NUMBER
    reads.rules_for(who)  # opens this thread's connection
    checkouts: list[object] = []
    listener = lambda *_args: checkouts.append(1)  # noqa: E731
    event.listen(store.db.engine.pool, "checkout", listener)
    try:
        for _ in range(50):
            reads.rules_for(who)
    finally:
        event.remove(store.db.engine.pool, "checkout", listener)
    assert checkouts == []
    seen: list[object] = []

    def other_thread() -> None:
        reads.rules_for(who)
        seen.append(reads._driver._own_connection())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert seen and seen[0] is not reads._driver._own_connection()


def test_a_block_entry_another_process_commits_is_read_by_the_next_call(store: Store) -> None:
    reads = store.screening
    who = caller(NUMBER)
    assert not reads.rules_for(who).entries
    other = sqlite3.connect(database_file(store))  # another process, as the web UI is
    try:
        other.execute(
            "INSERT INTO list_entries (list, kind, pattern, label, created_at, hits, once, "
            "source) VALUES ('block', 'exact', ?, 'from elsewhere', '2026-01-01 00:00:00', 0, "
            "0, 'manual')", (NUMBER,))
        other.commit()
    finally:
        other.close()
    assert [e.label for e in reads.rules_for(who).entries] == ["from elsewhere"]


def test_a_failed_read_drops_the_connection_and_the_next_one_opens_a_fresh_one(
    store: Store,
) -> None:
    reads = store.screening
    who = caller(NUMBER)
    reads.rules_for(who)
    first = reads._driver._own_connection()
    first.close()  # as a broken handle would behave: the next statement fails
    with pytest.raises(exc.DBAPIError):
        reads.rules_for(who)
    reads.rules_for(who)  # a new connection, the call screened again
    assert reads._driver._own_connection() is not first
