"""The driver's way of writing a batch of calls and ends (`gateway.store.batch._DriverBatch`)
leaves the same rows as the ORM path it replaced for those batches, on SQLite and PostgreSQL:
any sequence of batches, calls logged twice, ends in the same batch or a later one, replays of
a whole batch, hits on entries and rules, outcomes longer than the column."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gateway.config import Settings, load_settings_from_text
from gateway.store.batch import write_batch, write_batch_orm
from gateway.store.db import Database
from gateway.store.events import CallFinished, CallLogged, Event, PermitUsed
from tests.helpers import Services

START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
UIDS = [f"{n:012x}{'ab' * 6}" for n in range(6)]
# PostgreSQL refuses NUL in text on either path; nothing else is left out.
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
COLUMNS = ("uid, at, line, sip_call_id, number, caller_kind, display_name, raw_from, verstat, "
           "action, reason, reason_code, reason_params, step, rule, unknown, burst, duration_s, "
           "outcome, screen_ms")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, list[int],
                                                                          list[int]]]:
    """A migrated database, two block entries and the rules, whose hits the calls count."""
    folder = tmp_path_factory.mktemp(request.param)
    toml = ""
    if request.param == "postgresql":
        toml = f'database = "{request.getfixturevalue("postgres_url")}"'
    config: Settings = load_settings_from_text(toml, folder)
    service = Services.open(config)
    entries = [service.store.entries.add("block", number).id
               for number in ("+33162000001", "+33162000002")]
    with service.db.engine.connect() as conn:
        rules = [int(r) for r in conn.scalars(text("SELECT id FROM rules ORDER BY id LIMIT 2"))]
    yield service.db, entries, rules
    service.store.close()


def calls_for(entries: list[int], rules: list[int]) -> st.SearchStrategy[dict[str, CallLogged]]:
    """One logged call per uid (a uid is one call: its events are the same when replayed)."""
    zones = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5))])
    call = st.builds(
        lambda uid, seconds, zone, **kw: CallLogged(
            uid=uid, at=(START + timedelta(seconds=seconds)).astimezone(zone), **kw),
        st.just(""), st.integers(0, 10**6), zones,
        caller_kind=st.sampled_from(["number", "withheld"]),
        action=st.sampled_from(["reject:603", "pass"]),
        number=st.one_of(st.none(), st.just("+33162000001")),
        display_name=st.text(TEXT, max_size=20), reason=st.text(TEXT, max_size=20),
        reason_code=st.one_of(st.none(), st.just("rule_telemarketing")),
        reason_params=st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["number", "n", "é"]),
            st.one_of(st.integers(-5, 5), st.text(TEXT, max_size=5), st.none()), max_size=2)),
        step=st.sampled_from(["", "block", "rule"]),
        unknown=st.booleans(), burst=st.booleans(),
        screen_ms=st.one_of(st.none(), st.floats(0, 100)),
        entry_id=st.one_of(st.none(), st.sampled_from(entries)),
        rule_id=st.one_of(st.none(), st.sampled_from(rules)),
        duration_s=st.one_of(st.none(), st.floats(0, 60)),
        outcome=st.one_of(st.none(), st.text(TEXT, max_size=80)),
    )
    return st.lists(call, min_size=len(UIDS), max_size=len(UIDS)).map(
        lambda found: {uid: _with_uid(c, uid) for uid, c in zip(UIDS, found, strict=True)})


def _with_uid(call: CallLogged, uid: str) -> CallLogged:
    call.uid = uid
    return call


def batches_of(calls: dict[str, CallLogged]) -> st.SearchStrategy[list[list[Event]]]:
    """Batches of those calls and ends, with whole batches replayed now and then."""
    end = st.builds(CallFinished, st.sampled_from(UIDS), st.floats(0, 600),
                    st.text(TEXT, max_size=80))
    event: st.SearchStrategy[Event] = st.one_of(st.sampled_from(UIDS).map(calls.__getitem__),
                                                end)
    # A batch with another kind of event (here a permit already used up: a no-op) goes the
    # ORM way whole, so a sequence may switch between the two ways from batch to batch.
    other = st.lists(st.just(PermitUsed(entry_id=10**9)), max_size=1)
    batch = st.tuples(st.lists(event, min_size=1, max_size=8), other).map(lambda b: b[0] + b[1])
    return st.lists(st.one_of(batch, st.just([])), min_size=1, max_size=6).map(_replays)


def _replays(drawn: list[list[Event]]) -> list[list[Event]]:
    # An empty draw stands for "the previous batch again" (a journal replay after a crash).
    out: list[list[Event]] = []
    for events in drawn:
        if events:
            out.append(events)
        elif out:
            out.append(out[-1])
    return out


def state(db: Database) -> tuple[list[Any], list[Any], list[Any]]:
    """Every call row (without its id), and the hits of entries and rules."""
    with db.engine.connect() as conn:
        calls = [tuple(r) for r in conn.execute(text(f"SELECT {COLUMNS} FROM calls ORDER BY uid"))]
        entries = [tuple(r) for r in conn.execute(
            text("SELECT id, hits, last_hit_at FROM list_entries ORDER BY id"))]
        rules = [tuple(r) for r in conn.execute(text("SELECT id, hits FROM rules ORDER BY id"))]
    return calls, entries, rules


def reset(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM calls"))
        conn.execute(text("UPDATE list_entries SET hits = 0, last_hit_at = NULL"))
        conn.execute(text("UPDATE rules SET hits = 0"))


def run(db: Database, write: Callable[[Database, Sequence[Event]], None],
        batches: list[list[Event]]) -> tuple[list[Any], list[Any], list[Any]]:
    reset(db)
    for events in batches:
        write(db, events)
    return state(db)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_the_driver_path_leaves_the_rows_the_orm_path_leaves(
        database: tuple[Database, list[int], list[int]], data: st.DataObject) -> None:
    db, entries, rules = database
    calls = data.draw(calls_for(entries, rules))
    batches = data.draw(batches_of(calls))
    expected = run(db, write_batch_orm, batches)
    assert run(db, write_batch, batches) == expected
    # And each call is counted once however often its batch came: the hits add up.
    logged = {e.uid for b in batches for e in b if isinstance(e, CallLogged)}
    counted = sum(hits for _id, hits, _at in expected[1])
    assert counted == sum(calls[u].entry_id is not None for u in logged)
