"""The call log: one row per call, written by the gateway, read by the UI, CLI and digests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select, update

from gateway.numbers import number_query
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision
from gateway.screening.ratelimit import History, PastCall
from gateway.store.db import Database
from gateway.store.events import call_logged, new_uid
from gateway.store.models import CallRow

MAX_HISTORY_ROWS = 20_000  # bounds a history load even during a flood

# Actions grouped the way the owner thinks of them (and the chart colours).
CATEGORIES = ("pass", "blocked", "voicemail", "challenge")


def category(action: str) -> str:
    """The chart category of a stored action such as ``reject:603``."""
    kind = action.partition(":")[0]
    if kind == "pass":
        return "pass"
    if kind in ("reject", "announce"):
        return "blocked"
    if kind == "voicemail":
        return "voicemail"
    return "challenge" if kind == "challenge" else "blocked"


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The instants a local calendar day starts and ends."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


@dataclass(frozen=True)
class CallFilter:
    """Filters of the call log; each is optional."""

    action: str | None = None  # an action kind ("reject") or a full action ("reject:603")
    number: str | None = None  # E.164
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    # A search: numbers starting `number_start` or holding `number_digits`, or callers whose
    # display name holds `name` (any case). Set by `search`.
    number_start: str | None = None
    number_digits: str | None = None
    name: str | None = None
    after_id: int | None = None  # only calls logged after this row (the live view)

    @classmethod
    def for_day(cls, day: date, timezone: str, *, action: str | None = None,
                number: str | None = None) -> CallFilter:
        """Calls of one local calendar day."""
        since, until = day_bounds(day, timezone)
        return cls(action=action, number=number, since=since, until=until)

    def search(self, text: str, home_region: str) -> CallFilter:
        """This filter, also looking for `text`: a number in any form, even partial, or a name.

        ``0612``, ``06 12`` and ``+33612`` find the numbers starting +33612; ``3456`` finds
        numbers holding those digits; anything else is looked for in the callers' names.
        """
        text = text.strip()
        if not text:
            return self
        query = number_query(text, home_region)
        if query is None:
            return replace(self, name=text[:100])
        if query.complete and not query.digits and query.start == query.complete:
            return replace(self, number=query.complete)  # the indexed exact lookup
        return replace(self, number_start=query.start, number_digits=query.digits)

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add the WHERE clauses to a query over CallRow."""
        if self.action:
            query = query.where((CallRow.action == self.action)
                                | CallRow.action.startswith(self.action + ":"))
        if self.number:
            query = query.where(CallRow.number == self.number)
        if self.number_start:
            # A range rather than LIKE, so the (number, at) index serves it on both databases.
            query = query.where(CallRow.number >= self.number_start)
            end = digits_after(self.number_start)
            if end is not None:
                query = query.where(CallRow.number < end)
        if self.number_digits:
            query = query.where(CallRow.number.contains(self.number_digits, autoescape=True))
        if self.name:
            query = query.where(CallRow.display_name.icontains(self.name, autoescape=True))
        if self.since:
            query = query.where(CallRow.at >= self.since)
        if self.until:
            query = query.where(CallRow.at < self.until)
        if self.after_id is not None:
            query = query.where(CallRow.id > self.after_id)
        return query


def digits_after(start: str) -> str | None:
    """The first digit string of the same length after every number starting with `start`.

    "+33612" gives "+33613", "+33619" gives "+3362"; None when nothing comes after ("+99").
    Digits compare the same in every collation (a ':' bound would not, in PostgreSQL's
    en_US), so the range is right on both databases.
    """
    body = start.rstrip("9")
    if not body or not body[-1].isdigit():
        return None
    return body[:-1] + str(int(body[-1]) + 1)


EVERY_CALL = CallFilter()

# What the rate limits read of a logged call.
PAST_CALL_COLUMNS = select(CallRow.id, CallRow.uid, CallRow.at, CallRow.number,
                           CallRow.caller_kind, CallRow.unknown, CallRow.action)


def past_call(row: Any) -> PastCall:
    """The rate limits' view of a call row read with PAST_CALL_COLUMNS."""
    return PastCall(at=row.at, key=row.number or row.caller_kind, unknown=row.unknown,
                    action=row.action)


def call_key(row: Any) -> str | int:
    """What identifies a call read with PAST_CALL_COLUMNS across the database and the call
    writer's queue: its uid (rows older than migration 0003 have none: their id)."""
    return str(row.uid) if row.uid is not None else int(row.id)


def call_row(caller: Caller, decision: Decision, *, at: datetime, sip_call_id: str | None,
             line: str | None) -> CallRow:
    """The log row of a screened call (not yet added to a session), with a fresh uid."""
    event = call_logged(caller, decision, uid=new_uid(), at=at, sip_call_id=sip_call_id,
                        line=line)
    return CallRow(
        uid=event.uid, at=event.at, line=event.line, sip_call_id=event.sip_call_id,
        number=event.number, caller_kind=event.caller_kind, display_name=event.display_name,
        raw_from=event.raw_from, verstat=event.verstat, action=event.action,
        reason=event.reason, reason_code=event.reason_code, reason_params=event.reason_params,
        step=event.step, rule=event.rule, unknown=event.unknown, burst=event.burst,
        screen_ms=event.screen_ms,
    )


class CallLog:
    """Reads and writes of the `calls` table.

    The gateway writes through its call writer (`gateway.store.writer`); `record` and `finish`
    write one row at once, for the CLI and tests.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, caller: Caller, decision: Decision, *, at: datetime,
               sip_call_id: str | None = None, line: str | None = None) -> int:
        """Log a call and its decision now (no hit counted); return the row id."""
        with self.db.session() as s:
            row = call_row(caller, decision, at=at, sip_call_id=sip_call_id, line=line)
            s.add(row)
            s.flush()
            return row.id

    def finish(self, call_row_id: int, *, duration_s: float, outcome: str) -> None:
        """Store how a logged call ended."""
        with self.db.session() as s:
            s.execute(update(CallRow).where(CallRow.id == call_row_id)
                      .values(duration_s=duration_s, outcome=outcome[:60]))

    def recent(self, flt: CallFilter = EVERY_CALL, *, limit: int = 50,
               offset: int = 0) -> list[CallRow]:
        """A page of calls matching `flt`, newest first."""
        query = flt.apply(select(CallRow)).order_by(CallRow.at.desc(), CallRow.id.desc())
        with self.db.session() as s:
            return list(s.scalars(query.limit(limit).offset(offset)))

    def count(self, flt: CallFilter = EVERY_CALL) -> int:
        """How many calls match `flt`."""
        with self.db.session() as s:
            return int(s.scalar(flt.apply(select(func.count(CallRow.id)))) or 0)

    def get(self, call_id: int) -> CallRow | None:
        """One call by id."""
        with self.db.session() as s:
            return s.get(CallRow, call_id)

    def by_uid(self, uid: str) -> CallRow | None:
        """One call by the uid the gateway gave it (what `CallBook.record_call` returns)."""
        with self.db.session() as s:
            return s.scalar(select(CallRow).where(CallRow.uid == uid))

    def history(self, now: datetime, window: timedelta) -> History:
        """Calls in the `window` before `now`, as the rate limits see them."""
        query = (PAST_CALL_COLUMNS.where(CallRow.at >= now - window, CallRow.at <= now)
                 .order_by(CallRow.at.desc()).limit(MAX_HISTORY_ROWS))
        with self.db.engine.connect() as conn:
            return History.of(past_call(r) for r in conn.execute(query))

    def counts_by_category(self, since: datetime, until: datetime) -> dict[str, int]:
        """Calls in [since, until) per category."""
        query = (select(CallRow.action, func.count(CallRow.id))
                 .where(CallRow.at >= since, CallRow.at < until).group_by(CallRow.action))
        totals: Counter[str] = Counter({c: 0 for c in CATEGORIES})
        with self.db.session() as s:
            for action, n in s.execute(query):
                totals[category(str(action))] += int(n)
        return dict(totals)

    def buckets(self, since: datetime, step: timedelta, count: int) -> list[dict[str, int]]:
        """Calls per category in `count` consecutive buckets of `step` starting at `since`.

        One grouped COUNT per bucket, each an index range scan on `at`: the database counts,
        and no call row is loaded into Python. Hour/day functions differ between SQLite and
        PostgreSQL, so the buckets are ranges computed here rather than GROUP BY an expression.
        """
        result: list[dict[str, int]] = []
        with self.db.session() as s:
            for index in range(count):
                start = since + step * index
                query = (select(CallRow.action, func.count(CallRow.id))
                         .where(CallRow.at >= start, CallRow.at < start + step)
                         .group_by(CallRow.action))
                totals = {c: 0 for c in CATEGORIES}
                for action, n in s.execute(query):
                    totals[category(str(action))] += int(n)
                result.append(totals)
        return result

    def live_token(self, since: datetime) -> str:
        """Changes whenever a call is logged or one of the calls since `since` ends.

        The live view polls with it (as an ETag): one indexed MAX and one COUNT over the
        recent rows, so an idle page costs the database almost nothing.
        """
        ongoing_query = select(func.count(CallRow.id)).where(CallRow.at >= since,
                                                              CallRow.outcome.is_(None))
        with self.db.engine.connect() as conn:
            last_id = conn.execute(select(func.max(CallRow.id))).scalar()
            ongoing = conn.execute(ongoing_query).scalar()
        return f"{int(last_id or 0)}.{int(ongoing or 0)}"

    def last_id(self) -> int:
        """The newest call's row id (0 for an empty log)."""
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.max(CallRow.id))).scalar() or 0)

    def by_ids(self, ids: list[int]) -> list[CallRow]:
        """The calls with these row ids, newest first."""
        if not ids:
            return []
        query = (select(CallRow).where(CallRow.id.in_(ids))
                 .order_by(CallRow.at.desc(), CallRow.id.desc()))
        with self.db.session() as s:
            return list(s.scalars(query))

    def top_numbers(self, since: datetime, until: datetime, *, blocked: bool = False,
                    limit: int = 5) -> list[tuple[str, int, str]]:
        """The numbers that called most in [since, until): (number, calls, a display name).

        `blocked` counts only the calls that were blocked (rejected or answered with a
        message), for "most-blocked numbers". The names are read for the winners only: taking
        them in the grouped scan doubled its cost.
        """
        query = (select(CallRow.number, func.count(CallRow.id))
                 .where(CallRow.at >= since, CallRow.at < until, CallRow.number.is_not(None))
                 .group_by(CallRow.number).order_by(func.count(CallRow.id).desc(),
                                                    CallRow.number).limit(limit))
        if blocked:
            query = query.where(CallRow.action.startswith("reject")
                                | CallRow.action.startswith("announce"))
        with self.db.session() as s:
            top = [(str(number), int(n)) for number, n in s.execute(query)]
            names = {str(number): name for number, name in s.execute(
                select(CallRow.number, func.max(CallRow.display_name))
                .where(CallRow.number.in_([n for n, _count in top]), CallRow.at >= since,
                       CallRow.at < until)
                .group_by(CallRow.number))} if top else {}
        return [(number, n, str(names.get(number) or "")) for number, n in top]

    def iter_matching(self, flt: CallFilter = EVERY_CALL) -> Iterator[CallRow]:
        """Every call matching `flt`, newest first, read in batches (an export of the log)."""
        query = (flt.apply(select(CallRow)).order_by(CallRow.at.desc(), CallRow.id.desc())
                 .execution_options(yield_per=2000))
        with self.db.session() as s:
            yield from s.scalars(query)
