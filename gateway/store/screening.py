"""What `decide()` needs for one call, read the cheap way: the screener's only store access.

Per call: the version counters (one indexed read of a few `settings` rows) and one indexed IN
lookup of the number and its prefixes. Everything else is cached, each part under its own
version so that one change does not reload the rest (`gateway.store.settings`):

- the policy (run-time settings and rules), per `policy_version`;
- the glob and regex entries of both lists, per `patterns_version`, read through the index on
  `kind` and matched in chunks of combined expressions (`PatternIndex`);
- the allow entries, topped up by id when `allow_version` moves: only used when the database
  does not answer, so that a caller a cached rule settles is still settled;
- the rate-limit counters (`gateway.screening.counters`): fed by the call writer as each call
  is handed over, topped up by row id with what other processes committed.

`restore_version` (a restore replaced the rows) drops every cache.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, exc, or_, select, text

from gateway.screening.caller import Caller, CallerKind
from gateway.screening.counters import CallCounters, micros, reach
from gateway.screening.ratelimit import PastCall, RateSummary, RateWindows
from gateway.screening.rules import (
    Action,
    BurstSettings,
    DefaultMode,
    ListEntry,
    ListName,
    MatchKind,
    Policy,
    RepeatLimit,
    Rule,
)
from gateway.store.calls import MAX_HISTORY_ROWS, PAST_CALL_COLUMNS, call_key, past_call
from gateway.store.db import Database
from gateway.store.entries import entry_from_mapping, number_prefixes
from gateway.store.models import NOT_REFUSED_BY_LIST_OR_RULE, CallRow, ListEntryRow, UTCDateTime
from gateway.store.rules import RuleStore
from gateway.store.settings import VERSION_FIELDS, VERSION_KEYS, RuntimeSettings, Versions

log = logging.getLogger(__name__)

_ENTRIES: Any = ListEntryRow.__table__
_PATTERN_KINDS = (MatchKind.GLOB.value, MatchKind.REGEX.value)
_INDEXED_KINDS = (MatchKind.EXACT.value, MatchKind.PREFIX.value)

# Per-call statements are built once: building a select() costs more than running it here.
# No condition on `kind` here: given one, SQLite prefers ix_list_entries_kind_list to the
# pattern index and reads every exact entry (36 ms at 1M). Kinds are filtered in Python.
_ENTRIES_BY_PREFIX = select(_ENTRIES).where(
    _ENTRIES.c.pattern.in_(bindparam("prefixes", expanding=True)))
# Both read through ix_list_entries_kind_list (migration 0007), never the whole table.
_PATTERN_ENTRIES = select(_ENTRIES).where(_ENTRIES.c.kind.in_(_PATTERN_KINDS))
_ALLOW_AFTER_ID = (select(_ENTRIES)
                   .where(_ENTRIES.c.kind.in_(_INDEXED_KINDS),
                          _ENTRIES.c.list == ListName.ALLOW.value,
                          _ENTRIES.c.id > bindparam("last_id"))
                   .order_by(_ENTRIES.c.id))
_CALLS_SINCE = (PAST_CALL_COLUMNS
                .where(CallRow.at >= bindparam("since", type_=UTCDateTime()))
                .order_by(CallRow.at.desc())
                .limit(bindparam("limit")))
# Through the partial number index: calls a list or a rule refused are not in it (and do not
# count here, the one approximation of the counters' overflow path).
_OWN_CALL_TIMES = (select(CallRow.at)
                   .where(CallRow.number == bindparam("number"),
                          text(NOT_REFUSED_BY_LIST_OR_RULE),
                          CallRow.at >= bindparam("since", type_=UTCDateTime()),
                          CallRow.at < bindparam("until", type_=UTCDateTime())))
_MAX_CALL_ID = select(CallRow.id).order_by(CallRow.id.desc()).limit(1)
_CALLS_AFTER_ID = PAST_CALL_COLUMNS.where(CallRow.id > bindparam("last_id")).order_by(CallRow.id)

# Database errors that mean "not now" (down, locked, unreachable), not a bug.
UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, OSError)

CHUNK = 64  # patterns per combined expression, on average (see PatternIndex)
MAX_ALLOW_SNAPSHOT = 50_000  # allow entries kept for a database outage; beyond, none are
COUNTER_SLACK = timedelta(minutes=2)  # how far back a question may step without a reload
FORGET_EVERY = timedelta(seconds=10)
GAP_TTL_S = 30.0  # how long an id skipped by a top-up is looked for (PostgreSQL's sequences)
MAX_GAPS = 16


def build_policy(settings: dict[str, Any], rules: list[Rule], *, timezone: str,
                 home_region: str) -> Policy:
    """The screening policy from the run-time settings and the rules."""
    paused = settings["paused_until"]
    repeat, burst, grey = settings["repeat"], settings["burst"], settings["greylist"]
    return Policy(
        timezone=timezone,
        home_region=home_region,
        paused_until=datetime.fromisoformat(paused) if paused else None,
        block_action=Action.parse(settings["block_action"]),
        rules=tuple(rules),
        repeat=RepeatLimit(
            enabled=bool(repeat["enabled"]), max_calls=int(repeat["max_calls"]),
            window_minutes=int(repeat["window_minutes"]),
            action=Action.parse(repeat["action"]),
        ),
        burst=BurstSettings(
            enabled=bool(burst["enabled"]), distinct_callers=int(burst["distinct_callers"]),
            window_minutes=int(burst["window_minutes"]),
            duration_minutes=int(burst["duration_minutes"]),
            action=Action.parse(burst["action"]),
        ),
        default=DefaultMode(settings["default_mode"]),
        greylist_min_minutes=float(grey["min_minutes"]),
        greylist_window_minutes=int(grey["window_minutes"]),
        greylist_action=Action.parse(grey["action"]),
    )


# --------------------------------------------------------------------------- patterns

_SIMPLE_GLOB = re.compile(r"\+?[0-9?*]*")


# What may stand in a combined alternation: no capturing or named groups, no backreferences,
# no inline flags (refused mid-expression). Non-capturing groups and lookarounds are fine.
_UNSAFE_REGEX = re.compile(r"\\[1-9]|\((?!\?(?::|=|!|<=|<!))")


def _filter_text(entry: ListEntry) -> str | None:
    """A regular expression that matches at least what the entry matches, to combine with
    others; None when the entry must be tried on its own (groups, backreferences, flags)."""
    if entry.kind is MatchKind.GLOB:
        if _SIMPLE_GLOB.fullmatch(entry.pattern):
            return re.escape(entry.pattern).replace(r"\?", ".").replace(r"\*", ".*")
        return None  # sets and odd forms: fnmatch's own translation, entry by entry
    # Capturing groups make a combined match hundreds of times slower and shift the numbers
    # that backreferences use; such an entry (rare) is tried on its own. Checked on the text:
    # compiling each of 10,000 regexes only to look cost half a second per reload.
    if _UNSAFE_REGEX.search(entry.pattern):
        return None
    return entry.pattern


@dataclass
class _Chunk:
    entries: list[ListEntry]
    expression: re.Pattern[str] | None  # None: one entry, tried with its own matcher
    national: bool  # regexes also match the national form
    # The entries by the first `start` characters of what they must start with and the last
    # `end` digits of what they must end with; `rest` are those whose text says less. Chunks
    # are cut from sorted texts, so their entries share a start: the end tells them apart.
    # A matching chunk then tries a few entries, not its 64 (3-6 µs each in Python).
    start: int = 0
    end: int = 0
    keyed: dict[tuple[str, str], list[ListEntry]] = field(default_factory=dict)
    rest: list[ListEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.entries) <= 4:
            self.rest = list(self.entries)
            return
        quarter = len(self.entries) // 4
        self.start = min(sorted(len(e.must_start) for e in self.entries)[quarter], 8)
        self.end = min(sorted(len(e.must_end) for e in self.entries)[quarter], 4)
        for entry in self.entries:
            start, end = entry.must_start, entry.must_end
            if len(start) < self.start or len(end) < self.end:
                self.rest.append(entry)
            else:
                key = (start[:self.start], end[len(end) - self.end:])
                self.keyed.setdefault(key, []).append(entry)

    def _key(self, number: str) -> tuple[str, str]:
        return number[:self.start], number[len(number) - self.end:]

    def tried(self, number: str, national: str | None) -> list[ListEntry]:
        """The entries of this chunk that may match (the caller checks each)."""
        if not self.keyed:
            return self.rest
        found = self.rest + self.keyed.get(self._key(number), [])
        if self.national and national is not None:
            # A regex may match the national form: its key is read from that form too.
            seen = {id(e) for e in found}
            found += [e for e in self.keyed.get(self._key(national), ())
                      if e.kind is MatchKind.REGEX and id(e) not in seen]
        return found


class PatternIndex:
    """The glob and regex entries of both lists, for one `patterns_version`.

    Trying 10,000 entries one by one cost 2.8 ms per call. Entries are grouped in chunks, each
    one combined expression (an alternation without groups) that rejects a number in a single
    C-level match; only a chunk that matches has its entries tried. Compiling is what costs
    (tens of µs per pattern), so chunks are cut where the patterns' own text says (a hash),
    not by position or id: after an entry is added or removed, or a subscription re-imported
    with new ids, the chunks that did not change are taken compiled from the previous index.
    """

    def __init__(self, version: int, entries: Iterable[ListEntry],
                 previous: PatternIndex | None = None) -> None:
        self.version = version
        self.size = 0
        self.texts: dict[tuple[MatchKind, str], str | None] = {}
        self.compiled: dict[tuple[str, ...], re.Pattern[str]] = {}
        self.chunks: list[_Chunk] = []
        known_texts = previous.texts if previous is not None else {}
        known_chunks = previous.compiled if previous is not None else {}
        by_text: dict[str, list[ListEntry]] = {}
        for entry in entries:
            self.size += 1
            key = (entry.kind, entry.pattern)
            text = known_texts[key] if key in known_texts else _filter_text(entry)
            self.texts[key] = text
            if text is None:
                self.chunks.append(_Chunk([entry], None, entry.kind is MatchKind.REGEX))
            else:
                by_text.setdefault(text, []).append(entry)
        group: list[str] = []
        for text in sorted(by_text):
            group.append(text)
            if zlib.crc32(text.encode()) % CHUNK == 0:  # a boundary the text itself chooses
                self._close(group, by_text, known_chunks)
                group = []
        self._close(group, by_text, known_chunks)

    def _close(self, group: list[str], by_text: dict[str, list[ListEntry]],
               known: dict[tuple[str, ...], re.Pattern[str]]) -> None:
        if not group:
            return
        key = tuple(group)
        entries = [e for text in group for e in by_text[text]]
        compiled = known.get(key)
        if compiled is None:
            try:
                compiled = re.compile("|".join(f"(?:{t})" for t in group))
            except re.error:  # one text cannot be combined (a construct the check missed)
                self.chunks.extend(_Chunk([e], None, e.kind is MatchKind.REGEX)
                                   for e in entries)
                return
        self.compiled[key] = compiled
        self.chunks.append(_Chunk(entries, compiled,
                                  any(e.kind is MatchKind.REGEX for e in entries)))

    def matching(self, caller: Caller) -> list[ListEntry]:
        """The entries that match `caller` (whatever their list, expiry or once flag)."""
        number = caller.number
        if caller.kind is not CallerKind.NUMBER or number is None:
            return []
        national = caller.national
        found: list[ListEntry] = []
        for chunk in self.chunks:
            expression = chunk.expression
            if expression is not None and expression.fullmatch(number) is None and not (
                    chunk.national and national is not None
                    and expression.fullmatch(national) is not None):
                continue
            found.extend(e for e in chunk.tried(number, national) if e.matches(caller))
        return found

    def candidates(self, number: str) -> list[ListEntry]:
        """The entries that may match `number`, without parsing it: those of each chunk whose
        expression matches it, and of every chunk that may match a national form."""
        found: list[ListEntry] = []
        for chunk in self.chunks:
            expression = chunk.expression
            if (expression is None or chunk.national
                    or expression.fullmatch(number) is not None):
                found.extend(chunk.entries)
        return found


# --------------------------------------------------------------------------- allow snapshot


class _AllowSnapshot:
    """The exact and prefix allow entries, for deciding while the database does not answer.

    Grown by id when `allow_version` moves. An entry deleted since stays here: during an
    outage that caller rings (fail open), which is the safe side of being out of date.
    """

    def __init__(self) -> None:
        self.entries: dict[int, ListEntry] = {}
        self.by_pattern: dict[str, list[ListEntry]] = {}
        self.last_id = 0
        self.version = -1
        self.complete = True

    def top_up(self, conn: Connection, version: int) -> None:
        if version == self.version:
            return
        for row in conn.execute(_ALLOW_AFTER_ID, {"last_id": self.last_id}):
            entry = entry_from_mapping(row._mapping)
            self.last_id = max(self.last_id, entry.id)
            if len(self.entries) >= MAX_ALLOW_SNAPSHOT:
                self.complete = False
                continue
            self.entries[entry.id] = entry
            self.by_pattern.setdefault(entry.pattern, []).append(entry)
        self.version = version

    def matching(self, caller: Caller) -> list[ListEntry]:
        if not caller.number:
            return []
        found: list[ListEntry] = []
        for prefix in number_prefixes(caller.number):
            found.extend(self.by_pattern.get(prefix, ()))
        return found


# --------------------------------------------------------------------------- rate counters


class PendingCalls(Protocol):
    """What the rate counters need of the call writer."""

    def pending_calls(self) -> list[tuple[str, PastCall]]:
        """(uid, call) of calls handed over but not yet committed."""

    def add_call_listener(self, listener: Callable[[str, PastCall], None]) -> None:
        """Call `listener` with each call as it is handed over."""


@dataclass(frozen=True)
class DataVersion:
    """SQLite's `PRAGMA data_version` as one connection saw it: it changes whenever another
    connection commits, and means nothing across connections."""

    connection: object
    version: int

    def same_as(self, other: DataVersion) -> bool:
        """Whether nothing was committed by anybody between this look and `other`."""
        return self.connection is other.connection and self.version == other.version


@dataclass
class _TopUp:
    """Where the counters are in the `calls` table: the highest id read, and ids skipped."""

    last_id: int = 0
    gaps: list[tuple[int, int, float]] = field(default_factory=list)  # (low, high, until)

    def query(self) -> tuple[Any, dict[str, int]]:
        if not self.gaps:
            return _CALLS_AFTER_ID, {"last_id": self.last_id}
        condition = or_(CallRow.id > self.last_id, *(CallRow.id.between(low, high)
                                                     for low, high, _ in self.gaps))
        return PAST_CALL_COLUMNS.where(condition).order_by(CallRow.id), {}

    def saw(self, ids: Sequence[int], clock: float) -> None:
        """Note the ids a top-up returned: a jump means a transaction not committed yet."""
        self.gaps = [g for g in self.gaps if g[2] > clock]
        expected = self.last_id + 1
        for row_id in ids:
            if row_id > self.last_id:
                if row_id > expected and self.last_id:
                    self.gaps.append((expected, row_id - 1, clock + GAP_TTL_S))
                expected = row_id + 1
                self.last_id = row_id
        del self.gaps[:-MAX_GAPS]


class RateCounters:
    """The rate-limit counters of one process, topped up from the database.

    Fed three ways, each call counted once (by uid): by the call writer as the gateway hands
    each decided call over (before it is committed: burst detection sees the last seconds),
    by reading the rows other processes committed (`ringfence replay --record`, a second
    gateway on PostgreSQL), and, on a (re)load, by the rows of the window and the writer's
    queue. A database that does not answer leaves the counters as they are: unknown callers
    are still screened on what this process saw.
    """

    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic, *,
                 data_version: Callable[[], DataVersion | None] | None = None) -> None:
        self.db = db
        self.clock = clock
        # On a SQLite file: whether anybody committed since this thread's last top-up.
        self._data_version = data_version
        self._topped_up_at = threading.local()  # .look: the DataVersion of the last top-up
        self._topping_up = False  # a thread is reading new rows now
        self._lock = threading.Lock()
        self._counters: CallCounters | None = None
        self._floor: datetime | None = None  # questions may look back to here
        self._restore = -1
        self._top = _TopUp()
        self._writers: list[PendingCalls] = []
        self._latest: datetime | None = None
        self._forgot_at: datetime | None = None
        self._retry_at = 0.0
        self.loads = 0  # full loads from the database (tests count them)

    def attach(self, writer: PendingCalls) -> None:
        """Count each call `writer` is handed, as it is handed over."""
        writer.add_call_listener(self.note)
        self._writers.append(writer)

    def note(self, uid: str, call: PastCall) -> None:
        """One call decided here (from the writer's submit): count it now."""
        with self._lock:
            if self._counters is not None:
                self._counters.add(uid, call)

    def _pending(self) -> list[tuple[str, PastCall]]:
        return [item for writer in self._writers for item in writer.pending_calls()]

    def summary(self, caller: Caller, now: datetime, windows: RateWindows,
                restore: int) -> RateSummary:
        """The counts `decide_rate_limits` needs for `caller` at `now`."""
        span = reach(windows)
        with self._lock:
            stale = (self._counters is None or restore != self._restore
                     or self._floor is None or now - span < self._floor)
        if stale and self.clock() >= self._retry_at:
            self._load(now, span, restore)
        else:
            self._top_up()
        with self._lock:
            counters = self._counters
            if counters is None:  # never loaded (the database has not answered yet)
                counters = self._counters = CallCounters()
                self._floor = now - span
            self._forget(counters, now, span)
            result = counters.summary(caller.key, now, windows)
            complete = counters.complete_for(now, windows)
            complete_since = counters.complete_since
        if complete or caller.number is None:
            return result
        return self._with_older_own_calls(caller.number, now, windows, result, complete_since)

    def _forget(self, counters: CallCounters, now: datetime, span: timedelta) -> None:
        if self._latest is None or now > self._latest:
            self._latest = now
        if self._forgot_at is None or self._latest - self._forgot_at >= FORGET_EVERY:
            self._forgot_at = self._latest
            before = self._latest - span - COUNTER_SLACK
            counters.forget(before)
            self._floor = max(self._floor or before, before)

    def _load(self, now: datetime, span: timedelta, restore: int) -> None:
        since = now - span - COUNTER_SLACK
        pending = self._pending()  # before the reads: a call committed meanwhile is in both
        try:
            with self.db.engine.connect() as conn:
                # One snapshot: the rows and the highest id come from the same transaction.
                last_id = int(conn.execute(_MAX_CALL_ID).scalar() or 0)
                rows = conn.execute(_CALLS_SINCE, {"since": since,
                                                   "limit": 2 * MAX_HISTORY_ROWS}).all()
        except UNAVAILABLE as error:
            self._unavailable(error)
            with self._lock:
                if self._counters is None or restore != self._restore:
                    self._counters, self._floor, self._restore = None, None, restore
            return
        counters = CallCounters()
        for row in reversed(rows):  # oldest first: appends, no reordering
            counters.add(call_key(row), past_call(row))
        for uid, call in pending:
            counters.add(uid, call)
        with self._lock:
            self._counters, self._floor, self._restore = counters, since, restore
            self._top = _TopUp(last_id=last_id)
            self._latest = self._forgot_at = None
            self.loads += 1

    def _top_up(self) -> None:
        look = self._data_version() if self._data_version is not None else None
        last: DataVersion | None = getattr(self._topped_up_at, "look", None)
        if look is not None and last is not None and last.same_as(look):
            # Nothing was committed anywhere since this thread's last top-up, which read
            # every row committed before it: no row can be new. In a flood the writer commits
            # a few times a second, and this query per call was a tenth of a call's CPU.
            return
        with self._lock:
            if self._topping_up:
                # Another worker is reading these very rows (after a commit every worker sees
                # a new data_version at once): they count for every thread, and this call is
                # decided as if that commit came a moment later. Up to eight threads read each
                # row otherwise. This thread's look stays old: it reads at its next call.
                return
            self._topping_up = True
            query, params = self._top.query()
        try:
            with self.db.engine.connect() as conn:
                rows = conn.execute(query, params).all()
        except BaseException as error:
            with self._lock:
                self._topping_up = False
            if not isinstance(error, UNAVAILABLE):
                raise
            self._topped_up_at.look = None
            self._unavailable(error)
            return
        self._topped_up_at.look = look  # looked before the read: a commit in between is seen
        with self._lock:
            self._topping_up = False  # with the rows counted: the next top-up reads after them
            counters = self._counters
            if counters is None:
                return
            for row in rows:
                uid = call_key(row)
                # Most rows are this process's own calls, counted when they were handed to
                # the writer: building their PastCall again was half of a top-up's CPU.
                if uid not in counters:
                    counters.add(uid, past_call(row))
            self._top.saw([row.id for row in rows], self.clock())

    def _with_older_own_calls(self, number: str, now: datetime, windows: RateWindows,
                              result: RateSummary, complete_since: int) -> RateSummary:
        """Past the counters' room (a flood): the caller's older calls from the database."""
        starts = [now - w for w in (windows.repeat_window,) if w is not None]
        if windows.greylist is not None:
            starts.append(now - windows.greylist[0])
        try:
            with self.db.engine.connect() as conn:
                older = [micros(at) for at in conn.scalars(_OWN_CALL_TIMES, {
                    "number": number, "since": min(starts), "until": now})]
        except UNAVAILABLE as error:
            self._unavailable(error)
            return result
        # The counters hold every call from complete_since on; the database the ones before.
        older = [t for t in older if t < complete_since]
        repeat, came_back = result.repeat_count, result.came_back
        if windows.repeat_window is not None:
            since = micros(now - windows.repeat_window)
            repeat += sum(1 for t in older if t >= since)
        if windows.greylist is not None:
            window, too_soon = windows.greylist
            low, high = micros(now - window), micros(now - too_soon)
            came_back = came_back or any(low <= t < high for t in older)
        return RateSummary(repeat_count=repeat, came_back=came_back, burst=result.burst)

    def _unavailable(self, error: BaseException) -> None:
        now = self.clock()
        if now >= self._retry_at:
            log.warning("the call log cannot be read (%s); rate limits count the calls this "
                        "process saw", type(error).__name__)
        self._retry_at = now + 5.0


# --------------------------------------------------------------------------- the reads


_ENTRY_COLUMNS = ("id", "list", "kind", "pattern", "label", "action", "source", "once",
                  "expires_at")


def _aware(value: Any) -> datetime | None:
    """A stored time as aware UTC (SQLite hands driver SQL its text, PostgreSQL a datetime)."""
    if value is None:
        return None
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class _DriverReads:
    """The two statements every call runs, as driver SQL on a pooled DBAPI connection.

    Through SQLAlchemy's execution each cost 3-5 times the query itself (73 µs against 18 µs
    for the versions, 109 against 20 µs for the prefix lookup): a fifth of a refused call's
    CPU in a flood. Same SQL as the Core statements above, same indexes.
    """

    def __init__(self, db: Database) -> None:
        self.engine = db.engine
        dialect = self.engine.dialect
        # On a SQLite file each thread keeps one connection of its own for these reads,
        # outside the pool: a checkout and check-in per call was half the cost of the reads
        # themselves (13 % of a refused call's work at 50/s). Only there: a SELECT opens no
        # transaction in SQLite, so nothing pins an old snapshot between calls, and it costs
        # a file handle per worker, not a server connection. In-memory databases (tests)
        # and PostgreSQL go through the pool.
        url = self.engine.url
        on_file = dialect.name == "sqlite" and url.database not in (None, "", ":memory:")
        self._local: threading.local | None = threading.local() if on_file else None
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.dbapi_error: Any = dialect.loaded_dbapi.Error
        keys = ", ".join(f"'{key}'" for key in VERSION_KEYS)
        self.versions_sql = f"SELECT key, value FROM settings WHERE key IN ({keys})"
        self._prefix_sql: dict[int, str] = {}

    def _prefix_statement(self, count: int) -> str:
        sql = self._prefix_sql.get(count)
        if sql is None:
            marks = ", ".join([self.mark] * count)
            sql = self._prefix_sql[count] = (
                f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM list_entries WHERE pattern IN ({marks})")
        return sql

    def read(self, number: str | None) -> tuple[Versions, list[ListEntry]]:
        """The version counters, and the exact/prefix entries of `number` and its prefixes."""
        sql: str = self.versions_sql
        params: tuple[str, ...] = ()
        own = None
        try:
            # Checked out outside SQLAlchemy's execution, a refused connection raises the
            # driver's own error: both are turned into SQLAlchemy's below.
            own = self._own_connection()
            raw = own if own is not None else self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(sql)
                values = {VERSION_FIELDS[k]: int(v or 0) for k, v in cursor.fetchall()}
                entries: list[ListEntry] = []
                if number:
                    params = tuple(number_prefixes(number))
                    sql = self._prefix_statement(len(params))
                    cursor.execute(sql, params)
                    entries = [_entry(row) for row in cursor.fetchall()
                               if row[2] in _INDEXED_KINDS]
                cursor.close()
            finally:
                if own is None:
                    raw.close()  # back to the pool, rolled back there
        except self.dbapi_error as error:  # as SQLAlchemy would raise it (OperationalError…)
            if own is not None:
                self._drop_own_connection()  # a fresh one next time, as the pool would
            raise exc.DBAPIError.instance(sql, params, error, self.dbapi_error) from error
        return Versions(**values), entries

    def data_version(self) -> DataVersion | None:
        """This thread's own connection and its `PRAGMA data_version`; None: not a SQLite file
        (or it failed). Two equal looks on one connection: nobody committed in between."""
        if self._local is None:
            return None
        try:
            conn = self._own_connection()
            row = conn.execute("PRAGMA data_version").fetchone()
        except (self.dbapi_error, *UNAVAILABLE):  # not now: the top-up says so itself
            self._drop_own_connection()
            return None
        return DataVersion(conn, int(row[0]))

    def _own_connection(self) -> Any:
        """This thread's own connection (SQLite file), opened on first use; None: the pool."""
        if self._local is None:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            proxied = self.engine.raw_connection()  # the engine's PRAGMAs, then ours alone
            proxied.detach()
            conn = self._local.conn = proxied.dbapi_connection
        return conn

    def _drop_own_connection(self) -> None:
        assert self._local is not None
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _entry(row: Sequence[Any]) -> ListEntry:
    entry_id, list_name, kind, pattern, label, action, source, once, expires = row
    return ListEntry(id=entry_id, list=ListName(list_name), kind=MatchKind(kind),
                     pattern=pattern, label=label,
                     action=Action.parse(action) if action else None,
                     expires_at=_aware(expires), once=bool(once), source=source)



@dataclass(frozen=True)
class CallRules:
    """What `decide()` needs besides the history, as read for one call."""

    versions: Versions
    policy: Policy
    entries: list[ListEntry]
    cached: bool = False  # read from the caches only: the database did not answer


class ScreeningReads:
    """The screener's reads, with the caches that keep them cheap."""

    def __init__(self, db: Database, runtime: RuntimeSettings, rules: RuleStore, *,
                 home_region: str, timezone: str) -> None:
        self.db = db
        self.runtime = runtime
        self.rules = rules
        self.home_region = home_region
        self.timezone = timezone
        self._lock = threading.Lock()
        self._patterns: PatternIndex | None = None
        self._policy: tuple[int, Policy] | None = None
        self._allow = _AllowSnapshot()
        self._restore = -1
        self._driver = _DriverReads(db)
        self.counters = RateCounters(db, data_version=self._driver.data_version)
        self.pattern_loads = 0  # how often the glob/regex index was read (tests count them)
        self.policy_loads = 0

    def policy(self) -> Policy:
        """The current policy, built from settings and rules."""
        return build_policy(self.runtime.all(), self.rules.all(), timezone=self.timezone,
                            home_region=self.home_region)

    def attach(self, writer: PendingCalls) -> None:
        """Count the calls `writer` is handed in the rate limits as they are handed over."""
        self.counters.attach(writer)

    def _caches(self, versions: Versions) -> tuple[Policy, PatternIndex]:
        with self._lock:
            policy, patterns = self._policy, self._patterns
            if (versions.restore == self._restore and policy is not None
                    and policy[0] == versions.policy and patterns is not None
                    and patterns.version == versions.patterns
                    and self._allow.version == versions.allow):
                return policy[1], patterns  # the usual case: nothing to read
        with self.db.engine.connect() as conn:
            return self._reload(conn, versions)

    def _reload(self, conn: Connection, versions: Versions) -> tuple[Policy, PatternIndex]:
        with self._lock:
            if versions.restore != self._restore:
                self._patterns, self._policy = None, None
                self._allow = _AllowSnapshot()
                self._restore = versions.restore
            policy = self._policy
            if policy is None or policy[0] != versions.policy:
                policy = self._policy = (versions.policy, self.policy())
                self.policy_loads += 1
            patterns = self._patterns
            if patterns is None or patterns.version != versions.patterns:
                rows = conn.execute(_PATTERN_ENTRIES)
                patterns = self._patterns = PatternIndex(
                    versions.patterns, (entry_from_mapping(r._mapping) for r in rows),
                    previous=patterns)
                self.pattern_loads += 1
            self._allow.top_up(conn, versions.allow)
            return policy[1], patterns

    def rules_for(self, caller: Caller) -> CallRules:
        """The versions, the policy and the entries that may match `caller`."""
        number = caller.number if caller.kind is CallerKind.NUMBER else None
        versions, found = self._driver.read(number)
        policy, patterns = self._caches(versions)
        return CallRules(versions, policy, found + patterns.matching(caller))

    def cached_rules_for(self, caller: Caller) -> CallRules | None:
        """The same from what is cached, for a database that does not answer; None if this
        process has nothing cached. Exact and prefix block entries are missing from it."""
        with self._lock:
            policy, patterns = self._policy, self._patterns
            if policy is None or patterns is None or not self._allow.complete:
                return None
            entries = self._allow.matching(caller) + patterns.matching(caller)
            versions = Versions(policy=policy[0], patterns=patterns.version,
                                restore=self._restore)
        return CallRules(versions, policy[1], entries, cached=True)

    def candidate_entries(self, caller: Caller) -> list[ListEntry]:
        """Entries that may match `caller`: exact and prefix by index, matching globs/regexes."""
        return self.rules_for(caller).entries

    def rates(self, caller: Caller, now: datetime, windows: RateWindows,
              versions: Versions) -> RateSummary:
        """The rate limits' counts for `caller` at `now` (O(1) in the number of recent calls)."""
        return self.counters.summary(caller, now, windows, versions.restore)

    def candidates_for_numbers(self, numbers: list[str]) -> dict[str, list[ListEntry]]:
        """Entries that may match each number, with one query (a page of the call log).

        Exact and prefix entries by index; globs and regexes from the cached index, unparsed
        (a superset: the caller checks each entry, parsing the number only for these).
        """
        numbers = list(dict.fromkeys(n for n in numbers if n))
        if not numbers:
            return {}
        prefixes = sorted({p for n in numbers for p in number_prefixes(n)})
        versions, _ = self._driver.read(None)
        with self.db.engine.connect() as conn:
            rows = [entry_from_mapping(r._mapping)
                    for r in conn.execute(_ENTRIES_BY_PREFIX, {"prefixes": prefixes})
                    if r.kind in _INDEXED_KINDS]
        _, patterns = self._caches(versions)
        return {n: [e for e in rows if n.startswith(e.pattern)] + patterns.candidates(n)
                for n in numbers}
