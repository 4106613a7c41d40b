"""What `decide()` needs for one call, read the cheap way: the screener's only store access.

Per call: the rules version, one indexed IN lookup of the number and its prefixes, and (only
for callers no list or rule settled) the recent history. The policy and the glob/regex index
are cached per `rules_version`, so a rule changed in the UI applies to the next call without a
restart; unknown calls are kept in an in-memory timeline topped up by row id.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from gateway.screening.caller import Caller, CallerKind
from gateway.screening.ratelimit import History, PastCall
from gateway.screening.rules import (
    Action,
    BurstSettings,
    DefaultMode,
    ListEntry,
    MatchKind,
    Policy,
    RepeatLimit,
    Rule,
)
from gateway.store.calls import MAX_HISTORY_ROWS, PAST_CALL_COLUMNS, call_key, past_call
from gateway.store.db import Database
from gateway.store.entries import entry_from_mapping, entry_from_row
from gateway.store.models import CallRow, ListEntryRow, UTCDateTime
from gateway.store.rules import RuleStore
from gateway.store.settings import RuntimeSettings, read_rules_version

# Per-call statements are built once: building a select() costs more than running it here.
_ENTRIES_BY_PREFIX = select(ListEntryRow.__table__).where(
    ListEntryRow.pattern.in_(bindparam("prefixes", expanding=True)),
    ListEntryRow.kind.in_((MatchKind.EXACT.value, MatchKind.PREFIX.value)),
)
_OWN_CALLS = (
    PAST_CALL_COLUMNS
    .where(CallRow.number == bindparam("number"),
           CallRow.at >= bindparam("since", type_=UTCDateTime()),
           CallRow.at <= bindparam("until", type_=UTCDateTime()))
    .order_by(CallRow.at.desc())
    .limit(MAX_HISTORY_ROWS)
)
_UNKNOWN_SINCE = (
    PAST_CALL_COLUMNS
    .where(CallRow.unknown.is_(True), CallRow.at >= bindparam("since", type_=UTCDateTime()))
    .order_by(CallRow.at.desc())
    .limit(MAX_HISTORY_ROWS)
)
_CALLS_AFTER_ID = (
    PAST_CALL_COLUMNS
    .where(CallRow.id > bindparam("last_id"))
    .order_by(CallRow.id)
)
_MAX_CALL_ID = select(func.max(CallRow.id))


def number_prefixes(number: str) -> list[str]:
    """The number and each of its prefixes ("+3", "+33", …): at most 15 index lookups."""
    return [number[:i] for i in range(2, len(number) + 1)]


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


class _PatternCache:
    """Glob and regex entries, indexed by their literal prefix, for one rules_version."""

    def __init__(self, version: int, entries: list[ListEntry]) -> None:
        self.version = version
        self.by_prefix: dict[str, list[ListEntry]] = {}
        self.unanchored: list[ListEntry] = []
        for entry in entries:
            prefix = entry.literal_prefix()
            if entry.kind is MatchKind.GLOB and len(prefix) >= 2:
                self.by_prefix.setdefault(prefix, []).append(entry)
            else:
                self.unanchored.append(entry)

    def candidates(self, number: str | None) -> list[ListEntry]:
        found = list(self.unanchored)
        if number:
            for prefix in number_prefixes(number):
                found.extend(self.by_prefix.get(prefix, ()))
        return found


class _UnknownCallTimeline:
    """Unknown calls since some time, sorted, kept in memory and topped up by row id.

    Burst detection needs every unknown call of the last hour or so; re-reading thousands of
    rows per INVITE made screening cost tens of milliseconds during exactly the floods it is
    for. Only rows added since the last call are read; a window that moves backwards (a
    replay, a test) or a rules change (a restore) reloads from scratch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: datetime | None = None
        self._version = -1
        self._last_id = 0
        # Sorted by (at, id); the key is the row's uid (or id), as `call_key` gives it.
        self._rows: list[tuple[datetime, int, str | int, PastCall]] = []

    def between(self, conn: Connection, since: datetime, until: datetime,
                version: int) -> list[tuple[str | int, PastCall]]:
        """(key, call) for unknown calls with `since` <= at <= `until`."""
        with self._lock:
            if self._since is None or since < self._since or version != self._version:
                # One snapshot: the rows and the highest id come from the same transaction.
                rows = conn.execute(_UNKNOWN_SINCE, {"since": since}).all()
                self._last_id = int(conn.execute(_MAX_CALL_ID).scalar() or 0)
                self._rows = sorted((r.at, r.id, call_key(r), past_call(r)) for r in rows)
                self._since, self._version = since, version
            else:
                for r in conn.execute(_CALLS_AFTER_ID, {"last_id": self._last_id}):
                    self._last_id = max(self._last_id, r.id)
                    if r.unknown and r.at >= self._since:
                        bisect.insort(self._rows, (r.at, r.id, call_key(r), past_call(r)))
                if since > self._since:
                    del self._rows[:bisect.bisect_left(self._rows, (since,))]
                    self._since = since
                if len(self._rows) > MAX_HISTORY_ROWS:  # keep the newest, as the query does
                    del self._rows[:len(self._rows) - MAX_HISTORY_ROWS]
            low = bisect.bisect_left(self._rows, (since,))
            high = bisect.bisect_right(self._rows, (until, float("inf")))
            return [(key, call) for _, _, key, call in self._rows[low:high]]


class ScreeningReads:
    """The screener's reads, with the caches that keep them cheap."""

    def __init__(self, db: Database, runtime: RuntimeSettings, rules: RuleStore, *,
                 home_region: str, timezone: str) -> None:
        self.db = db
        self.runtime = runtime
        self.rules = rules
        self.home_region = home_region
        self.timezone = timezone
        self._cache: _PatternCache | None = None
        self._cache_lock = threading.Lock()
        self._policy_cache: tuple[int, Policy] | None = None
        self._unknown_calls = _UnknownCallTimeline()

    def policy(self) -> Policy:
        """The current policy, built from settings and rules."""
        return build_policy(self.runtime.all(), self.rules.all(), timezone=self.timezone,
                            home_region=self.home_region)

    def _pattern_cache(self, version: int) -> _PatternCache:
        with self._cache_lock:
            if self._cache is None or self._cache.version != version:
                with self.db.session() as s:
                    rows = s.scalars(select(ListEntryRow).where(
                        ListEntryRow.kind.in_((MatchKind.GLOB.value, MatchKind.REGEX.value))))
                    self._cache = _PatternCache(version, [entry_from_row(r) for r in rows])
            return self._cache

    def _cached_policy(self, version: int) -> Policy:
        cached = self._policy_cache
        if cached is None or cached[0] != version:
            cached = (version, self.policy())
            self._policy_cache = cached
        return cached[1]

    def rules_for(self, caller: Caller) -> tuple[int, Policy, list[ListEntry]]:
        """The rules version, the policy and the entries that may match `caller`."""
        with self.db.engine.connect() as conn:
            version = read_rules_version(conn)
            policy = self._cached_policy(version)
            found: list[ListEntry] = []
            if caller.kind is CallerKind.NUMBER and caller.number:
                rows = conn.execute(_ENTRIES_BY_PREFIX,
                                    {"prefixes": number_prefixes(caller.number)})
                found = [entry_from_mapping(r._mapping) for r in rows]
        return version, policy, found + self._pattern_cache(version).candidates(caller.number)

    def candidate_entries(self, caller: Caller) -> list[ListEntry]:
        """Entries that may match `caller`: exact and prefix by index, cached globs/regexes."""
        return self.rules_for(caller)[2]

    def candidates_for_numbers(self, numbers: list[str]) -> dict[str, list[ListEntry]]:
        """`candidate_entries` for several numbers with one query (a page of the call log)."""
        numbers = list(dict.fromkeys(n for n in numbers if n))
        if not numbers:
            return {}
        prefixes = sorted({p for n in numbers for p in number_prefixes(n)})
        with self.db.engine.connect() as conn:
            version = read_rules_version(conn)
            rows = [entry_from_mapping(r._mapping)
                    for r in conn.execute(_ENTRIES_BY_PREFIX, {"prefixes": prefixes})]
        cache = self._pattern_cache(version)
        return {n: [e for e in rows if n.startswith(e.pattern)] + cache.candidates(n)
                for n in numbers}

    def recent_history(self, caller: Caller, now: datetime, window: timedelta,
                       version: int = 0,
                       pending: Sequence[tuple[str, PastCall]] = ()) -> History:
        """What the rate limits need: this caller's own calls, and every unknown caller's.

        The unknown calls come from the in-memory timeline, so a flood of thousands of
        strangers is read from the database once, not once per call. `pending` are the calls
        the call writer holds but has not committed (uid, call): taken before these reads, so
        a call committed in between is found in both and counted once, by its uid, and none
        falls between the two.
        """
        since = now - window
        calls: dict[str | int, PastCall] = {
            uid: call for uid, call in pending
            if since <= call.at <= now and (call.unknown or (
                caller.number is not None and call.key == caller.number))
        }
        with self.db.engine.connect() as conn:
            calls.update(self._unknown_calls.between(conn, since, now, version))
            if caller.number:
                rows = conn.execute(_OWN_CALLS, {"number": caller.number, "since": since,
                                                 "until": now})
                calls.update((call_key(r), past_call(r)) for r in rows)
        return History.of(calls.values())
