"""Apply a batch of call-flow events (`gateway.store.events`) in one transaction.

One commit per batch instead of three per call is most of what keeps a flood from wearing
the SD card: rows of a batch share table and index pages, and hit counters are summed per
entry and rule before they are written. Every event may be applied again without effect (a
replay of the journal after a crash): calls and voicemails whose `uid` is already stored are
skipped, and a call's hit is counted only by the insert that created its row.

The common batch of a flood holds only calls and their ends. It takes a shorter way
(`_DriverBatch`): the same SQL as the Core statements below, built once per engine, run with
the driver's `executemany` on one pooled connection, values converted by the columns' own
bind processors. Through a Session a batch of one call cost 0.30 ms, nearly all of it
SQLAlchemy's per-batch machinery; this way 0.07 ms. Every other batch keeps the ORM path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, bindparam, delete, exc, insert, select, update
from sqlalchemy.orm import Session

from gateway.screening.rules import ListName, MatchKind
from gateway.store.db import Database, rowcount
from gateway.store.events import (
    CallerAllowed,
    CallFinished,
    CallLogged,
    Event,
    PermitUsed,
    RestartClosed,
    VoicemailSaved,
)
from gateway.store.models import CallRow, ListEntryRow, RuleRow, UTCDateTime, VoicemailRow, utcnow
from gateway.store.settings import bump_rules_version, entry_caches

OUTCOME_LENGTH = 60

_CALLS: Table = CallRow.__table__  # type: ignore[assignment]
_VOICEMAILS: Table = VoicemailRow.__table__  # type: ignore[assignment]
_ENTRIES: Table = ListEntryRow.__table__  # type: ignore[assignment]
_RULES: Table = RuleRow.__table__  # type: ignore[assignment]

_FINISH = (update(_CALLS).where(_CALLS.c.uid == bindparam("b_uid"))
           .values(duration_s=bindparam("b_duration"), outcome=bindparam("b_outcome")))
_ENTRY_HITS = (update(_ENTRIES).where(_ENTRIES.c.id == bindparam("b_id"))
               .values(hits=_ENTRIES.c.hits + bindparam("b_n"),
                       last_hit_at=bindparam("b_at", type_=UTCDateTime())))
_RULE_HITS = (update(_RULES).where(_RULES.c.id == bindparam("b_id"))
              .values(hits=_RULES.c.hits + bindparam("b_n")))
_CALL_ID_OF_UID = (select(_CALLS.c.id).where(_CALLS.c.uid == bindparam("b_call_uid"))
                   .scalar_subquery())
_INSERT_VOICEMAIL = insert(_VOICEMAILS).values(call_id=_CALL_ID_OF_UID)


def database_unavailable(error: BaseException) -> bool:
    """Whether a failed batch should wait and be tried again (the database is busy, down or
    full) rather than be looked at event by event (the database refused what was in it)."""
    if isinstance(error, exc.IntegrityError | exc.DataError):
        return False
    if isinstance(error, exc.StatementError) and not isinstance(error, exc.DBAPIError):
        return False  # a value the driver could not bind: the event, not the database
    return isinstance(error, exc.SQLAlchemyError | OSError)


@dataclasses.dataclass
class _Batch:
    """A batch sorted by kind, with each call's end folded into its row when both are here."""

    calls: dict[str, CallLogged] = dataclasses.field(default_factory=dict)
    # The end of a call logged earlier in the same batch, folded into its row (the events
    # themselves are never changed: a batch may be applied again).
    ends: dict[str, CallFinished] = dataclasses.field(default_factory=dict)
    finishes: list[CallFinished] = dataclasses.field(default_factory=list)
    voicemails: list[VoicemailSaved] = dataclasses.field(default_factory=list)
    allows: list[CallerAllowed] = dataclasses.field(default_factory=list)
    permits: list[PermitUsed] = dataclasses.field(default_factory=list)
    closes: list[RestartClosed] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, events: Sequence[Event]) -> _Batch:
        batch = cls()
        for event in events:
            if isinstance(event, CallLogged):
                batch.calls.setdefault(event.uid, event)
            elif isinstance(event, CallFinished):
                if event.uid in batch.calls:
                    # Most rejected calls end within the batch that logs them: one INSERT
                    # with the outcome instead of an INSERT and an UPDATE.
                    batch.ends[event.uid] = event
                else:
                    batch.finishes.append(event)
            elif isinstance(event, VoicemailSaved):
                batch.voicemails.append(event)
            elif isinstance(event, CallerAllowed):
                batch.allows.append(event)
            elif isinstance(event, PermitUsed):
                batch.permits.append(event)
            else:
                batch.closes.append(event)
        return batch


_CALL_COLUMNS = ("uid", "at", "line", "sip_call_id", "number", "caller_kind", "display_name",
                 "raw_from", "verstat", "action", "reason", "reason_code", "reason_params",
                 "step", "rule", "unknown", "burst", "duration_s", "outcome", "screen_ms")


def _call_row(event: CallLogged, end: CallFinished | None) -> list[Any]:
    """A call's row, in the order of `_CALL_COLUMNS`, with its end if the batch has it."""
    duration, outcome = (event.duration_s, event.outcome) if end is None else (
        end.duration_s, end.outcome)
    return [event.uid, event.at, event.line, event.sip_call_id, event.number, event.caller_kind,
            event.display_name, event.raw_from, event.verstat, event.action, event.reason,
            event.reason_code, event.reason_params, event.step, event.rule, event.unknown,
            event.burst, duration, outcome[:OUTCOME_LENGTH] if outcome is not None else None,
            event.screen_ms]


def _call_values(event: CallLogged, end: CallFinished | None) -> dict[str, Any]:
    return dict(zip(_CALL_COLUMNS, _call_row(event, end), strict=True))


def _split_calls(batch: _Batch, stored: set[str]) -> list[CallLogged]:
    """The calls of `batch` not stored yet; the ends of those stored go to its finishes."""
    new = [c for c in batch.calls.values() if c.uid not in stored]
    for call in batch.calls.values():
        if call.uid not in stored:
            continue
        end = batch.ends.get(call.uid)
        if end is not None:
            # Logged by an earlier batch, ended in this one (a journal replay): the end only.
            batch.finishes.append(end)
        elif call.outcome is not None:
            batch.finishes.append(CallFinished(call.uid, call.duration_s or 0.0, call.outcome))
    return new


@dataclasses.dataclass
class _Hits:
    """Hit counters of newly created rows, summed per entry and per rule."""

    entries: list[tuple[int, int, datetime]]  # (id, hits, last hit), by id
    rules: list[tuple[int, int]]  # (id, hits), by id

    @classmethod
    def of(cls, new: Sequence[CallLogged]) -> _Hits:
        entry_hits: Counter[int] = Counter()
        entry_last: dict[int, datetime] = {}
        rule_hits: Counter[int] = Counter()
        for call in new:  # only rows created now count: a replayed batch counts nothing twice
            if call.entry_id is not None:
                entry_hits[call.entry_id] += 1
                entry_last[call.entry_id] = max(call.at, entry_last.get(call.entry_id, call.at))
            if call.rule_id is not None:
                rule_hits[call.rule_id] += 1
        return cls([(i, n, entry_last[i]) for i, n in sorted(entry_hits.items())],
                   sorted(rule_hits.items()))


def _write_calls(s: Session, batch: _Batch) -> None:
    if not batch.calls:
        return
    query = select(CallRow.uid).where(CallRow.uid.in_(list(batch.calls)))
    stored = {str(u) for u in s.scalars(query)}
    new = _split_calls(batch, stored)
    if not new:
        return
    s.execute(insert(_CALLS), [_call_values(c, batch.ends.get(c.uid)) for c in new])
    hits = _Hits.of(new)
    if hits.entries:
        s.execute(_ENTRY_HITS, [{"b_id": i, "b_n": n, "b_at": at} for i, n, at in hits.entries])
    if hits.rules:
        s.execute(_RULE_HITS, [{"b_id": i, "b_n": n} for i, n in hits.rules])


def _write_finishes(s: Session, finishes: list[CallFinished]) -> None:
    if finishes:
        s.execute(_FINISH, [{"b_uid": f.uid, "b_duration": f.duration_s,
                             "b_outcome": f.outcome[:OUTCOME_LENGTH]} for f in finishes])


def _write_voicemails(s: Session, voicemails: list[VoicemailSaved]) -> None:
    if not voicemails:
        return
    uids = [v.uid for v in voicemails]
    stored = set(s.scalars(select(VoicemailRow.uid).where(VoicemailRow.uid.in_(uids))))
    new = {v.uid: v for v in voicemails if v.uid not in stored}
    if new:
        s.execute(_INSERT_VOICEMAIL, [
            {"uid": v.uid, "b_call_uid": v.call_uid, "at": v.at, "path": v.path,
             "duration_s": v.duration_s, "size_bytes": v.size_bytes, "number": v.number,
             "display_name": v.display_name[:256], "heard": False,
             "interrupted": v.interrupted}
            for v in new.values()])


def _write_allows(s: Session, allows: list[CallerAllowed]) -> set[str]:
    """Add or update the allow entries; the caches (settings versions) this touched."""
    caches: set[str] = set()
    now = utcnow()
    for allow in allows:
        row = s.scalar(select(ListEntryRow).where(ListEntryRow.list == ListName.ALLOW.value,
                                                  ListEntryRow.pattern == allow.number))
        in_force = row is not None and (row.expires_at is None or row.expires_at > now)
        if in_force and allow.only_if_absent:
            continue  # the owner's own entry for this number wins
        if row is None:
            row = ListEntryRow(list=ListName.ALLOW.value, pattern=allow.number,
                               created_at=utcnow(), label="", kind=MatchKind.EXACT.value)
            s.add(row)
        caches.update(entry_caches(ListName.ALLOW.value, {row.kind}))
        # As `Entries.add` does for the same pattern: the entry becomes a permanent allow.
        row.kind, row.label, row.action = MatchKind.EXACT.value, allow.label or row.label, None
        row.expires_at, row.once, row.source = None, False, allow.source
    if caches:
        s.flush()
    return caches


def _write_permits(s: Session, permits: list[PermitUsed]) -> set[str]:
    caches: set[str] = set()
    for permit in permits:
        where = (ListEntryRow.id == permit.entry_id) & ListEntryRow.once.is_(True)
        kinds = {str(k) for k in s.scalars(select(ListEntryRow.kind).where(where))}
        if rowcount(s.execute(delete(ListEntryRow).where(where))):
            caches.update(entry_caches(ListName.ALLOW.value, kinds))
    return caches


def _write_closes(s: Session, closes: list[RestartClosed]) -> None:
    for close in closes:
        s.execute(update(_CALLS)
                  .where(_CALLS.c.outcome.is_(None), _CALLS.c.at < close.before)
                  .values(outcome=close.outcome[:OUTCOME_LENGTH]))


Processor = Callable[[Any], Any] | None


class _DriverBatch:
    """Calls and ends as driver SQL on one pooled DBAPI connection (one per engine).

    The same statements as `insert(_CALLS)`, `_FINISH`, `_ENTRY_HITS` and `_RULE_HITS`, with
    values converted by the columns' own bind processors (UTC datetimes, JSON, booleans as
    SQLAlchemy would send them), and driver errors raised as SQLAlchemy raises them
    (`DBAPIError.instance`), so that `database_unavailable` tells them apart as before.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self.dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        mark = self.mark = "?" if dialect.paramstyle == "qmark" else "%s"

        def processor(table: Table, column: str) -> Processor:
            kind = table.c[column].type
            return kind.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[no-any-return]

        # Only the columns whose type converts anything (times, JSON, booleans on SQLite).
        self.call_processors = [(i, p) for i, p in enumerate(
            processor(_CALLS, c) for c in _CALL_COLUMNS) if p is not None]
        self.insert_sql = (f"INSERT INTO calls ({', '.join(_CALL_COLUMNS)}) "
                           f"VALUES ({', '.join([mark] * len(_CALL_COLUMNS))})")
        self.finish_processors = [processor(_CALLS, "duration_s"), processor(_CALLS, "outcome"),
                                  processor(_CALLS, "uid")]
        self.finish_sql = f"UPDATE calls SET duration_s={mark}, outcome={mark} WHERE uid = {mark}"
        self.last_hit = processor(_ENTRIES, "last_hit_at")
        self.entry_hits_sql = (f"UPDATE list_entries SET hits=(list_entries.hits + {mark}), "
                               f"last_hit_at={mark} WHERE list_entries.id = {mark}")
        self.rule_hits_sql = f"UPDATE rules SET hits=(rules.hits + {mark}) WHERE rules.id = {mark}"
        self._stored_sql: dict[int, str] = {}

    def _stored_statement(self, count: int) -> str:
        sql = self._stored_sql.get(count)
        if sql is None:
            sql = self._stored_sql[count] = (
                f"SELECT uid FROM calls WHERE uid IN ({', '.join([self.mark] * count)})")
        return sql

    def _call_params(self, call: CallLogged, end: CallFinished | None) -> list[Any]:
        row = _call_row(call, end)
        for i, process in self.call_processors:  # None too: JSON keeps it as 'null', as Core
            row[i] = process(row[i])
        return row

    @staticmethod
    def _bind(processors: Sequence[Processor], values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(v if p is None else p(v) for p, v in zip(processors, values, strict=True))

    def write(self, batch: _Batch) -> None:
        """Apply a batch of calls and ends in one transaction (all or nothing)."""
        sql: str = ""
        params: Any = ()
        try:
            # Checked out outside SQLAlchemy's execution, a refused connection raises the
            # driver's own error: turned into SQLAlchemy's below, as screening's reads do.
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    finishes = batch.finishes
                    if batch.calls:
                        sql, params = self._stored_statement(len(batch.calls)), tuple(batch.calls)
                        cursor.execute(sql, params)
                        new = _split_calls(batch, {str(row[0]) for row in cursor.fetchall()})
                        if new:
                            sql = self.insert_sql
                            params = [self._call_params(c, batch.ends.get(c.uid)) for c in new]
                            cursor.executemany(sql, params)
                            hits = _Hits.of(new)
                            if hits.entries:
                                sql = self.entry_hits_sql
                                params = [(n, self._bind((self.last_hit,), (at,))[0], i)
                                          for i, n, at in hits.entries]
                                cursor.executemany(sql, params)
                            if hits.rules:
                                sql, params = self.rule_hits_sql, [(n, i) for i, n in hits.rules]
                                cursor.executemany(sql, params)
                    if finishes:
                        sql = self.finish_sql
                        params = [self._bind(self.finish_processors, (
                            f.duration_s, f.outcome[:OUTCOME_LENGTH], f.uid)) for f in finishes]
                        cursor.executemany(sql, params)
                finally:
                    cursor.close()
                raw.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # a dead connection: the pool drops it
                    raw.rollback()
                raise
            finally:
                raw.close()  # back to the pool
        except self.dbapi_error as error:  # as SQLAlchemy would raise it (OperationalError…)
            raise exc.DBAPIError.instance(sql, params, error, self.dbapi_error) from error
        except (ValueError, TypeError) as error:  # a value a bind processor refused
            raise exc.StatementError(str(error), sql, params, error) from error


_DRIVER_BATCHES: weakref.WeakKeyDictionary[Engine, _DriverBatch] = weakref.WeakKeyDictionary()


def _driver_batch(engine: Engine) -> _DriverBatch:
    found = _DRIVER_BATCHES.get(engine)
    if found is None:
        found = _DRIVER_BATCHES[engine] = _DriverBatch(engine)
    return found


def write_batch(db: Database, events: Sequence[Event]) -> None:
    """Apply `events` in one transaction (all or nothing); raise what the database raised."""
    batch = _Batch.of(events)
    if not (batch.voicemails or batch.allows or batch.permits or batch.closes):
        # Only calls and ends: the driver's way (the flood's batches).
        if batch.calls or batch.finishes:
            _driver_batch(db.engine).write(batch)
        return
    write_batch_orm(db, batch)


def write_batch_orm(db: Database, batch: _Batch | Sequence[Event]) -> None:
    """Apply a batch through the ORM (any kind of event): the path of every batch that is
    not only calls and ends, and the reference the driver's way is tested against."""
    if not isinstance(batch, _Batch):
        batch = _Batch.of(batch)
    with db.session() as s:
        _write_calls(s, batch)
        _write_finishes(s, batch.finishes)
        _write_voicemails(s, batch.voicemails)
        # A learnt caller bumps the allow version only: the screener's policy and its
        # glob/regex index stay cached through a storm of auto-allows.
        caches = _write_allows(s, batch.allows) | _write_permits(s, batch.permits)
        if caches:
            bump_rules_version(s, sorted(caches))
        _write_closes(s, batch.closes)
