"""The repository: every database read and write the gateway, CLI and web UI make.

It speaks in the screening core's values (`ListEntry`, `Rule`, `Policy`, `History`) so that the
core never sees SQLAlchemy. Per call it makes indexed queries only: one for the exact number and
its prefixes, one for recent history. Globs and regexes (few, and not indexable) are cached in
memory and reloaded when `rules_version` changes, so a rule changed in the UI applies to the
next call without a restart.
"""

from __future__ import annotations

import bisect
import csv
import io
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.numbers import list_number, normalize_glob, normalize_prefix
from gateway.screening.caller import Caller, CallerKind
from gateway.screening.decide import Decision
from gateway.screening.ratelimit import History, PastCall
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
    RuleKind,
    validate_rule_params,
)
from gateway.store.db import Database
from gateway.store.models import (
    CallRow,
    LineStateRow,
    ListEntryRow,
    RuleRow,
    SettingRow,
    UTCDateTime,
    VoicemailRow,
    utcnow,
)

MAX_HISTORY_ROWS = 20_000  # bounds the per-call history load even during a flood
IMPORT_BATCH = 5_000
MAX_REPORTED_REJECTS = 1_000

# Run-time settings (owner-editable in CLI/UI) and their defaults.
DEFAULT_SETTINGS: dict[str, Any] = {
    "paused_until": None,
    "block_action": "reject:603",
    "default_mode": "pass",
    "repeat": {"enabled": True, "max_calls": 3, "window_minutes": 10, "action": "voicemail"},
    "burst": {
        "enabled": True, "distinct_callers": 5, "window_minutes": 10, "duration_minutes": 60,
        "action": "voicemail:spoof_shield",
    },
    "greylist": {"min_minutes": 0.5, "window_minutes": 30, "action": "reject:486"},
    "challenge_digit": "5",
    "digest_time": None,  # HH:MM set in the UI; None means notify.digest_time from the config
}


class EntryError(ValueError):
    """A list entry the owner typed is not usable; the message says why."""


@dataclass
class ImportReport:
    """What an import did: counts, and each rejected line with its number and reason."""

    added: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)
    rejected_count: int = 0  # all rejected lines; `rejected` keeps only the first ones

    def reject(self, line_no: int, text: str, why: str) -> None:
        """Note a bad line (keeping the first MAX_REPORTED_REJECTS in detail)."""
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED_REJECTS:
            self.rejected.append((line_no, text[:80], why))

    def summary(self) -> str:
        """One line for the owner."""
        return (f"{self.added} added, {self.duplicates} already present, "
                f"{self.rejected_count} rejected")


def _rowcount(result: Any) -> int:
    """Rows a DELETE/UPDATE touched (typed loosely by SQLAlchemy's generic Result)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _entry_from_row(row: ListEntryRow) -> ListEntry:
    return ListEntry(
        id=row.id,
        list=ListName(row.list),
        kind=MatchKind(row.kind),
        pattern=row.pattern,
        label=row.label,
        action=Action.parse(row.action) if row.action else None,
        expires_at=row.expires_at,
        once=row.once,
        source=row.source,
    )


def _entry_from_mapping(row: Any) -> ListEntry:
    expires = row["expires_at"]
    return ListEntry(
        id=row["id"],
        list=ListName(row["list"]),
        kind=MatchKind(row["kind"]),
        pattern=row["pattern"],
        label=row["label"],
        action=Action.parse(row["action"]) if row["action"] else None,
        # Core queries bypass the ORM's type decorator result processing on some drivers:
        # make sure the time is aware UTC either way.
        expires_at=None if expires is None else (
            expires if expires.tzinfo else expires.replace(tzinfo=UTC)),
        once=bool(row["once"]),
        source=row["source"],
    )


# Per-call statements are built once: building a select() costs more than running it here.
_VERSION_QUERY = select(SettingRow.value).where(SettingRow.key == "rules_version")
_ENTRIES_BY_PREFIX = select(ListEntryRow.__table__).where(
    ListEntryRow.pattern.in_(bindparam("prefixes", expanding=True)),
    ListEntryRow.kind.in_(("exact", "prefix")),
)
# What the rate limits read of a logged call.
_PAST_CALL_COLUMNS = select(CallRow.id, CallRow.at, CallRow.number, CallRow.caller_kind,
                            CallRow.unknown, CallRow.action)
_HISTORY_QUERY = (
    _PAST_CALL_COLUMNS
    .where(CallRow.at >= bindparam("since", type_=UTCDateTime()),
           CallRow.at <= bindparam("until", type_=UTCDateTime()))
    .order_by(CallRow.at.desc())
    .limit(MAX_HISTORY_ROWS)
)


# An expanding parameter keeps one cached statement for every batch size (a literal IN list
# would cache a new 5,000-parameter statement per batch).
_COUNT_EXISTING = select(func.count(ListEntryRow.id)).where(
    ListEntryRow.list == bindparam("list_name"),
    ListEntryRow.pattern.in_(bindparam("patterns", expanding=True)),
)


_OWN_CALLS = (
    _PAST_CALL_COLUMNS
    .where(CallRow.number == bindparam("number"),
           CallRow.at >= bindparam("since", type_=UTCDateTime()),
           CallRow.at <= bindparam("until", type_=UTCDateTime()))
    .order_by(CallRow.at.desc())
    .limit(MAX_HISTORY_ROWS)
)
_UNKNOWN_SINCE = (
    _PAST_CALL_COLUMNS
    .where(CallRow.unknown.is_(True), CallRow.at >= bindparam("since", type_=UTCDateTime()))
    .order_by(CallRow.at.desc())
    .limit(MAX_HISTORY_ROWS)
)
_CALLS_AFTER_ID = (
    _PAST_CALL_COLUMNS
    .where(CallRow.id > bindparam("last_id"))
    .order_by(CallRow.id)
)
_MAX_CALL_ID = select(func.max(CallRow.id))


def _past_call(row: Any) -> PastCall:
    return PastCall(at=row.at, key=row.number or row.caller_kind, unknown=row.unknown,
                    action=row.action)


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
        self._rows: list[tuple[datetime, int, PastCall]] = []  # sorted by (at, id)

    def between(self, conn: Connection, since: datetime, until: datetime,
                version: int) -> list[tuple[int, PastCall]]:
        """(row id, call) for unknown calls with `since` <= at <= `until`."""
        with self._lock:
            if self._since is None or since < self._since or version != self._version:
                # One snapshot: the rows and the highest id come from the same transaction.
                rows = conn.execute(_UNKNOWN_SINCE, {"since": since}).all()
                self._last_id = int(conn.execute(_MAX_CALL_ID).scalar() or 0)
                self._rows = sorted((r.at, r.id, _past_call(r)) for r in rows)
                self._since, self._version = since, version
            else:
                for r in conn.execute(_CALLS_AFTER_ID, {"last_id": self._last_id}):
                    self._last_id = max(self._last_id, r.id)
                    if r.unknown and r.at >= self._since:
                        bisect.insort(self._rows, (r.at, r.id, _past_call(r)))
                if since > self._since:
                    del self._rows[:bisect.bisect_left(self._rows, (since,))]
                    self._since = since
                if len(self._rows) > MAX_HISTORY_ROWS:  # keep the newest, as the query does
                    del self._rows[:len(self._rows) - MAX_HISTORY_ROWS]
            low = bisect.bisect_left(self._rows, (since,))
            high = bisect.bisect_right(self._rows, (until, float("inf")))
            return [(row_id, call) for _, row_id, call in self._rows[low:high]]


def _history_rows(conn: Connection, now: datetime, window: timedelta) -> Any:
    return conn.execute(_HISTORY_QUERY, {"since": now - window, "until": now}).all()


def _history_from_rows(rows: Iterable[Any]) -> History:
    return History.of(_past_call(r) for r in rows)


def _rule_from_row(row: RuleRow) -> Rule:
    return Rule(
        id=row.id, kind=RuleKind(row.kind), action=Action.parse(row.action),
        params=dict(row.params or {}), enabled=row.enabled, priority=row.priority,
        label=row.label,
    )


def number_prefixes(number: str) -> list[str]:
    """The number and each of its prefixes ("+3", "+33", …): at most 15 index lookups."""
    return [number[:i] for i in range(2, len(number) + 1)]


def default_rules(home_region: str) -> list[dict[str, Any]]:
    """The rules a new installation starts with; the telemarketing preset is on in France."""
    from gateway.screening.telemarketing import RANGES

    rules: list[dict[str, Any]] = [
        {"kind": "withheld", "action": "voicemail", "enabled": True, "priority": 10,
         "label": "withheld numbers leave a message"},
        {"kind": "invalid", "action": "voicemail", "enabled": True, "priority": 20,
         "label": "invalid numbers leave a message"},
        {"kind": "verstat_failed", "action": "voicemail", "enabled": True, "priority": 30,
         "label": "failed STIR/SHAKEN"},
        {"kind": "number_type", "action": "reject:603", "enabled": False, "priority": 40,
         "params": {"types": ["PREMIUM_RATE", "SHARED_COST"]}, "label": "premium rate"},
        {"kind": "country", "action": "voicemail", "enabled": False, "priority": 50,
         "params": {"regions": [home_region], "mode": "allow_only"},
         "label": "foreign numbers"},
        {"kind": "quiet_hours", "action": "voicemail", "enabled": False, "priority": 70,
         "params": {"start": "22:00", "end": "07:00", "days": [0, 1, 2, 3, 4, 5, 6]},
         "label": "night"},
    ]
    if home_region in RANGES:
        rules.append(
            {"kind": "telemarketing", "action": "reject:603", "enabled": True, "priority": 60,
             "params": {"country": home_region, "outside_hours_only": False},
             "label": "telemarketing ranges"}
        )
    return rules


def classify_pattern(text: str, home_region: str, kind: str | None = None) -> tuple[MatchKind, str]:
    """Work out an entry's kind and normalised pattern from what the owner typed.

    ``re:…`` is a regex; ``*``/``?``/``[`` make a glob, except a lone trailing ``*``, which is a
    prefix (indexed, so faster); a possible number is exact; other digits are a prefix.
    """
    text = text.strip()
    if not text:
        raise EntryError("the number or pattern is empty")
    if len(text) > 200:
        raise EntryError("the number or pattern is longer than 200 characters")
    wanted = MatchKind(kind) if kind else None
    if wanted is MatchKind.REGEX or (wanted is None and text.startswith("re:")):
        import re

        pattern = text[3:] if text.startswith("re:") else text
        try:
            re.compile(pattern)
        except re.error as exc:
            raise EntryError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return MatchKind.REGEX, pattern
    try:
        if wanted is MatchKind.PREFIX or (
            wanted is None and text.endswith("*") and not any(c in text[:-1] for c in "*?[")
        ):
            return MatchKind.PREFIX, normalize_prefix(text.rstrip("*"), home_region)
        if wanted is MatchKind.GLOB or (wanted is None and any(c in text for c in "*?[")):
            return MatchKind.GLOB, normalize_glob(text, home_region)
    except ValueError as exc:
        raise EntryError(str(exc)) from None
    number = list_number(text, home_region)
    if number is not None:
        return MatchKind.EXACT, number
    if wanted is MatchKind.EXACT:
        raise EntryError(f"{text!r} is not a possible phone number")
    try:
        return MatchKind.PREFIX, normalize_prefix(text, home_region)
    except ValueError:
        raise EntryError(
            f"{text!r} is neither a phone number nor a prefix; patterns use * and ?, "
            "regular expressions start with re:"
        ) from None


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


class _ImportSink:
    """Where imported rows go, batch by batch, inside the import's transaction.

    On SQLite, rows are staged in an unindexed temporary table and moved over with one
    ``INSERT OR IGNORE … SELECT … ORDER BY pattern``: the unique index then grows in key order
    instead of at random, which is what makes a million-line import fast, and SQLite sorts on
    disk with bounded memory. Other databases take batched inserts that skip duplicates.
    """

    def __init__(self, session: Session, repo: Repository, *, action: str | None, source: str,
                 list_name: ListName) -> None:
        self.session = session
        self.repo = repo
        self.conn = session.connection()
        self.staged = self.conn.dialect.name == "sqlite"
        self.common = {"list": list_name.value, "action": action, "source": source}
        self.batch: list[tuple[str, str, str]] = []
        self.added = 0
        if self.staged:
            self.conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS rf_import (kind TEXT, pattern TEXT, label TEXT)"
            )
            self.conn.exec_driver_sql("DELETE FROM temp.rf_import")

    def add(self, kind: str, pattern: str, label: str) -> None:
        self.batch.append((kind, pattern, label))
        if len(self.batch) >= IMPORT_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        if self.staged:
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            raw.cursor().executemany("INSERT INTO temp.rf_import VALUES (?, ?, ?)", self.batch)
        else:
            now = utcnow()
            rows = [{**self.common, "kind": k, "pattern": p, "label": lb, "once": False,
                     "created_at": now, "hits": 0} for k, p, lb in self.batch]
            self.added += self.repo._insert_ignoring_duplicates(self.session, rows)
        self.batch.clear()

    def finish(self) -> int:
        """Move staged rows into the list; return how many were new."""
        self._flush()
        if not self.staged:
            return self.added
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        before = int(raw.total_changes)
        self.conn.execute(_MOVE_STAGED, {**self.common, "created_at": utcnow()})
        added = int(raw.total_changes) - before
        self.conn.exec_driver_sql("DROP TABLE temp.rf_import")
        return added


_MOVE_STAGED = text(
    "INSERT OR IGNORE INTO list_entries "
    "(list, kind, pattern, label, action, source, once, created_at, hits) "
    "SELECT :list, kind, pattern, label, :action, :source, 0, :created_at, 0 "
    "FROM temp.rf_import ORDER BY pattern, rowid"
).bindparams(bindparam("created_at", type_=UTCDateTime()))


class Repository:
    """Reads and writes for one database."""

    def __init__(self, db: Database, home_region: str = "FR", timezone: str = "Europe/Paris"):
        self.db = db
        self.home_region = home_region
        self.timezone = timezone
        self._cache: _PatternCache | None = None
        self._cache_lock = threading.Lock()
        self._policy_cache: tuple[int, Policy] | None = None
        self._unknown_calls = _UnknownCallTimeline()

    # ------------------------------------------------------------------ settings

    def _bump_version(self, session: Session) -> None:
        row = session.get(SettingRow, "rules_version")
        if row is None:
            session.add(SettingRow(key="rules_version", value=1))
        else:
            row.value = int(row.value) + 1

    def rules_version(self) -> int:
        """A counter bumped by every change to lists, rules or settings."""
        with self.db.session() as s:
            value = s.scalar(select(SettingRow.value).where(SettingRow.key == "rules_version"))
        return int(value or 0)

    def get_setting(self, key: str) -> Any:
        """A run-time setting, or its default."""
        with self.db.session() as s:
            row = s.get(SettingRow, key)
            return DEFAULT_SETTINGS.get(key) if row is None else row.value

    def all_settings(self) -> dict[str, Any]:
        """Every run-time setting with defaults filled in."""
        with self.db.session() as s:
            stored = {r.key: r.value for r in s.scalars(select(SettingRow))}
        merged = dict(DEFAULT_SETTINGS)
        merged.update({k: v for k, v in stored.items() if k in DEFAULT_SETTINGS})
        return merged

    def set_setting(self, key: str, value: Any) -> None:
        """Store a validated run-time setting; raise EntryError naming the field otherwise."""
        value = validate_setting(key, value)
        with self.db.session() as s:
            row = s.get(SettingRow, key)
            if row is None:
                s.add(SettingRow(key=key, value=value))
            else:
                row.value = value
            self._bump_version(s)

    def ensure_defaults(self) -> None:
        """Seed the default rules once, on a new database."""
        with self.db.session() as s:
            if s.get(SettingRow, "seeded") is not None:
                return
            for rule in default_rules(self.home_region):
                s.add(RuleRow(**{"params": {}, **rule}))
            s.add(SettingRow(key="seeded", value=True))
            self._bump_version(s)

    def policy(self) -> Policy:
        """The current policy, built from settings and rules."""
        settings = self.all_settings()
        paused = settings["paused_until"]
        repeat, burst, grey = settings["repeat"], settings["burst"], settings["greylist"]
        return Policy(
            timezone=self.timezone,
            home_region=self.home_region,
            paused_until=datetime.fromisoformat(paused) if paused else None,
            block_action=Action.parse(settings["block_action"]),
            rules=tuple(self.rules()),
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

    # ------------------------------------------------------------------ list entries

    def add_entry(
        self,
        list_name: ListName | str,
        text: str,
        *,
        kind: str | None = None,
        label: str = "",
        action: str | None = None,
        expires_at: datetime | None = None,
        once: bool = False,
        source: str = "manual",
    ) -> ListEntry:
        """Add an entry (or update the one with the same pattern); raise EntryError if bad."""
        list_name = ListName(list_name)
        match_kind, pattern = classify_pattern(text, self.home_region, kind)
        if action is not None:
            if list_name is ListName.ALLOW:
                raise EntryError("allow entries take no action: an allowed call always rings")
            try:
                action = str(Action.parse(action))
            except ValueError as exc:
                raise EntryError(str(exc)) from None
        if len(label) > 200:
            raise EntryError("the label is longer than 200 characters")
        with self.db.session() as s:
            row = s.scalar(
                select(ListEntryRow).where(
                    ListEntryRow.list == list_name.value, ListEntryRow.pattern == pattern
                )
            )
            if row is None:
                row = ListEntryRow(list=list_name.value, pattern=pattern, created_at=utcnow())
                s.add(row)
            row.kind, row.label, row.action = match_kind.value, label or row.label or "", action
            row.expires_at, row.once, row.source = expires_at, once, source
            s.flush()
            self._bump_version(s)
            return _entry_from_row(row)

    def remove_entry(self, entry_id: int) -> bool:
        """Delete an entry by id; False if there was none."""
        with self.db.session() as s:
            deleted = _rowcount(s.execute(delete(ListEntryRow).where(ListEntryRow.id == entry_id)))
            self._bump_version(s)
        return bool(deleted)

    def remove_pattern(self, list_name: ListName | str, text: str) -> bool:
        """Delete the entry matching what the owner typed; False if there was none."""
        _, pattern = classify_pattern(text, self.home_region)
        with self.db.session() as s:
            deleted = _rowcount(s.execute(
                delete(ListEntryRow).where(
                    ListEntryRow.list == ListName(list_name).value, ListEntryRow.pattern == pattern
                )
            ))
            self._bump_version(s)
        return bool(deleted)

    def get_entry(self, entry_id: int) -> ListEntry | None:
        """One entry by id."""
        with self.db.session() as s:
            row = s.get(ListEntryRow, entry_id)
            return None if row is None else _entry_from_row(row)

    def entries(
        self, list_name: ListName | str | None = None, *, source: str | None = None,
        search: str = "", limit: int = 1000, offset: int = 0,
    ) -> list[ListEntry]:
        """Entries, newest first."""
        query = select(ListEntryRow).order_by(ListEntryRow.id.desc()).limit(limit).offset(offset)
        if list_name is not None:
            query = query.where(ListEntryRow.list == ListName(list_name).value)
        if source is not None:
            query = query.where(ListEntryRow.source == source)
        if search:
            query = query.where(ListEntryRow.pattern.contains(search) |
                                ListEntryRow.label.contains(search))
        with self.db.session() as s:
            return [_entry_from_row(r) for r in s.scalars(query)]

    def count_entries(self, list_name: ListName | str | None = None) -> int:
        """How many entries a list has."""
        query = select(func.count(ListEntryRow.id))
        if list_name is not None:
            query = query.where(ListEntryRow.list == ListName(list_name).value)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def _pattern_cache(self, version: int) -> _PatternCache:
        with self._cache_lock:
            if self._cache is None or self._cache.version != version:
                with self.db.session() as s:
                    rows = s.scalars(
                        select(ListEntryRow).where(ListEntryRow.kind.in_(("glob", "regex")))
                    )
                    self._cache = _PatternCache(version, [_entry_from_row(r) for r in rows])
            return self._cache

    def _cached_policy(self, version: int) -> Policy:
        cached = self._policy_cache
        if cached is None or cached[0] != version:
            cached = (version, self.policy())
            self._policy_cache = cached
        return cached[1]

    def screening_rules(self, caller: Caller) -> tuple[int, Policy, list[ListEntry]]:
        """The rules version, the policy and the entries that may match `caller`.

        The policy and the glob/regex index are cached per `rules_version`, so the per-call
        cost is the version and one indexed IN lookup of the number's prefixes.
        """
        with self.db.engine.connect() as conn:
            version = int(conn.execute(_VERSION_QUERY).scalar() or 0)
            policy = self._cached_policy(version)
            found: list[ListEntry] = []
            if caller.kind is CallerKind.NUMBER and caller.number:
                rows = conn.execute(_ENTRIES_BY_PREFIX,
                                    {"prefixes": number_prefixes(caller.number)})
                found = [_entry_from_mapping(r._mapping) for r in rows]
        return version, policy, found + self._pattern_cache(version).candidates(caller.number)

    def recent_history(self, caller: Caller, now: datetime, window: timedelta,
                       version: int = 0) -> History:
        """What the rate limits need: this caller's own calls, and every unknown caller's.

        The unknown calls come from an in-memory timeline topped up by row id, so a flood of
        thousands of strangers is read from the database once, not once per call.
        """
        since = now - window
        with self.db.engine.connect() as conn:
            calls = dict(self._unknown_calls.between(conn, since, now, version))
            if caller.number:
                rows = conn.execute(_OWN_CALLS, {"number": caller.number, "since": since,
                                                 "until": now})
                calls.update((r.id, _past_call(r)) for r in rows)
        return History.of(calls.values())

    def screening_inputs(
        self, caller: Caller, now: datetime, history_window: timedelta | None = None
    ) -> tuple[Policy, list[ListEntry], History]:
        """Everything `decide()` needs for one call."""
        version, policy, entries = self.screening_rules(caller)
        window = history_window or timedelta(minutes=policy.history_window_minutes())
        return policy, entries, self.recent_history(caller, now, window, version)

    def candidate_entries(self, caller: Caller) -> list[ListEntry]:
        """Entries that may match `caller`: exact and prefix by index, cached globs/regexes."""
        return self.screening_rules(caller)[2]

    def note_entry_used(self, entry_id: int, *, consume: bool, at: datetime) -> None:
        """Count a hit on an entry, deleting it if it was a one-off permission."""
        with self.db.session() as s:
            if consume:
                s.execute(delete(ListEntryRow).where(ListEntryRow.id == entry_id))
                self._bump_version(s)
            else:
                s.execute(
                    update(ListEntryRow).where(ListEntryRow.id == entry_id)
                    .values(hits=ListEntryRow.hits + 1, last_hit_at=at)
                )

    def note_rule_used(self, rule_id: int) -> None:
        """Count a hit on a rule."""
        with self.db.session() as s:
            s.execute(update(RuleRow).where(RuleRow.id == rule_id).values(hits=RuleRow.hits + 1))

    def purge_expired_entries(self, now: datetime) -> int:
        """Delete entries whose expiry has passed; return how many."""
        with self.db.session() as s:
            count = _rowcount(s.execute(
                delete(ListEntryRow).where(ListEntryRow.expires_at.is_not(None),
                                           ListEntryRow.expires_at <= now)
            ))
            if count:
                self._bump_version(s)
        return int(count or 0)

    # ------------------------------------------------------------------ import / export

    def _insert_ignoring_duplicates(self, s: Session, rows: list[dict[str, Any]]) -> int:
        """Insert rows, skipping patterns already on their list; return how many were new."""
        if not rows:
            return 0
        unique = list({(r["list"], r["pattern"]): r for r in reversed(rows)}.values())
        # Core inserts on the table, not the ORM class: the ORM's bulk path costs more per
        # row than SQLite does, and imports run to a million lines.
        table = cast(Table, ListEntryRow.__table__)
        conn = s.connection()
        dialect = conn.dialect.name
        if dialect == "sqlite":
            # SQLite's change counter is exact for INSERT OR IGNORE; executemany's rowcount
            # is not reliable across drivers.
            raw = conn.connection.dbapi_connection
            assert raw is not None
            before = int(raw.total_changes)
            conn.execute(sqlite.insert(table).on_conflict_do_nothing(), unique)
            return int(raw.total_changes) - before
        if dialect == "postgresql":
            result = conn.execute(postgresql.insert(table).on_conflict_do_nothing(), unique)
            rowcount = int(getattr(result, "rowcount", -1))
            if rowcount >= 0:
                return rowcount
        else:  # pragma: no cover - other backends: count what is new, then plain insert
            existing = s.scalar(_COUNT_EXISTING, {
                "list_name": unique[0]["list"], "patterns": [r["pattern"] for r in unique],
            }) or 0
            conn.execute(insert(table), unique)
            return len(unique) - int(existing)
        return len(unique)  # pragma: no cover - a driver without rowcount

    def import_csv(
        self, stream: TextIO, list_name: ListName | str, *, source: str = "manual",
        action: str | None = None,
    ) -> ImportReport:
        """Import "number_or_pattern[,label]" lines; bad lines are reported, good ones kept.

        Streams, so a million-line file needs little memory, and runs in one transaction, so
        an interrupted import leaves the list as it was.
        """
        list_name = ListName(list_name)
        if action is not None:
            action = str(Action.parse(action))
        report = ImportReport()
        parsed = 0
        with self.db.session() as s:
            sink = _ImportSink(s, self, action=action, source=source, list_name=list_name)
            for line_no, fields in enumerate(csv.reader(stream), start=1):
                if not fields or not fields[0].strip() or fields[0].lstrip().startswith("#"):
                    continue
                typed = fields[0].strip()
                if line_no == 1 and typed.lower() in ("number", "pattern", "numero", "numéro"):
                    continue  # a header row
                number = list_number(typed, self.home_region)
                if number is not None:
                    kind, pattern = MatchKind.EXACT, number
                else:
                    try:
                        kind, pattern = classify_pattern(typed, self.home_region)
                    except EntryError as exc:
                        report.reject(line_no, typed, str(exc))
                        continue
                sink.add(kind.value, pattern, ",".join(fields[1:]).strip()[:200])
                parsed += 1
            report.added = sink.finish()
            report.duplicates = parsed - report.added
            self._bump_version(s)
        return report

    def export_csv(self, list_name: ListName | str, out: TextIO) -> int:
        """Write a list as CSV (pattern,label,kind,action,expires_at); return the row count."""
        writer = csv.writer(out)
        writer.writerow(["pattern", "label", "kind", "action", "expires_at"])
        count = 0
        query = (select(ListEntryRow).where(ListEntryRow.list == ListName(list_name).value)
                 .order_by(ListEntryRow.id).execution_options(yield_per=5000))
        with self.db.session() as s:
            for row in s.scalars(query):
                pattern = f"re:{row.pattern}" if row.kind == "regex" else (
                    f"{row.pattern}*" if row.kind == "prefix" else row.pattern)
                writer.writerow([pattern, row.label, row.kind, row.action or "",
                                 row.expires_at.isoformat() if row.expires_at else ""])
                count += 1
        return count

    def replace_source(self, list_name: ListName | str, source: str,
                       entries: Iterable[tuple[str, str]]) -> ImportReport:
        """Atomically replace every entry from `source` (a subscription) with `entries`."""
        list_name = ListName(list_name)
        report = ImportReport()
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        now = utcnow()
        for line_no, (typed, label) in enumerate(entries, start=1):
            try:
                kind, pattern = classify_pattern(typed, self.home_region)
            except EntryError as exc:
                report.reject(line_no, typed, str(exc))
                continue
            if pattern in seen:
                report.duplicates += 1
                continue
            seen.add(pattern)
            rows.append({"list": list_name.value, "kind": kind.value, "pattern": pattern,
                         "label": label[:200], "action": None, "source": source, "once": False,
                         "created_at": now, "hits": 0})
        with self.db.session() as s:
            s.execute(delete(ListEntryRow).where(ListEntryRow.source == source))
            for start in range(0, len(rows), IMPORT_BATCH):
                chunk = rows[start:start + IMPORT_BATCH]
                report.added += self._insert_ignoring_duplicates(s, chunk)
            self._bump_version(s)
        return report

    # ------------------------------------------------------------------ rules

    def rules(self) -> list[Rule]:
        """Every step-4 rule, by priority."""
        with self.db.session() as s:
            rows = s.scalars(select(RuleRow).order_by(RuleRow.priority, RuleRow.id))
            return [_rule_from_row(r) for r in rows]

    def add_rule(self, kind: str, action: str, params: dict[str, Any] | None = None, *,
                 enabled: bool = True, priority: int = 100, label: str = "") -> Rule:
        """Add a rule; raise EntryError naming the bad field."""
        try:
            rule_kind = RuleKind(kind)
        except ValueError:
            raise EntryError(
                f"kind {kind!r}: expected one of {', '.join(k.value for k in RuleKind)}"
            ) from None
        try:
            action = str(Action.parse(action))
            params = validate_rule_params(rule_kind, params or {})
        except ValueError as exc:
            raise EntryError(str(exc)) from None
        with self.db.session() as s:
            row = RuleRow(kind=rule_kind.value, action=action, params=params, enabled=enabled,
                          priority=priority, label=label)
            s.add(row)
            s.flush()
            self._bump_version(s)
            return _rule_from_row(row)

    def update_rule(self, rule_id: int, **changes: Any) -> Rule:
        """Change a rule's action, params, enabled, priority or label."""
        with self.db.session() as s:
            row = s.get(RuleRow, rule_id)
            if row is None:
                raise EntryError(f"there is no rule {rule_id}")
            try:
                if "action" in changes:
                    row.action = str(Action.parse(changes.pop("action")))
                if "params" in changes:
                    merged = {**(row.params or {}), **changes.pop("params")}
                    row.params = validate_rule_params(RuleKind(row.kind), merged)
            except ValueError as exc:
                raise EntryError(str(exc)) from None
            for key in ("enabled", "priority", "label"):
                if key in changes:
                    setattr(row, key, changes.pop(key))
            if changes:
                raise EntryError(f"unknown rule field {next(iter(changes))!r}")
            self._bump_version(s)
            return _rule_from_row(row)

    def delete_rule(self, rule_id: int) -> bool:
        """Delete a rule; False if there was none."""
        with self.db.session() as s:
            deleted = _rowcount(s.execute(delete(RuleRow).where(RuleRow.id == rule_id)))
            self._bump_version(s)
        return bool(deleted)

    # ------------------------------------------------------------------ calls

    def history(self, now: datetime, window: timedelta) -> History:
        """Calls in the `window` before `now`, as the rate limits see them."""
        with self.db.engine.connect() as conn:
            return _history_from_rows(_history_rows(conn, now, window))

    def record_call(
        self, caller: Caller, decision: Decision, *, at: datetime,
        sip_call_id: str | None = None, line: str | None = None,
    ) -> int:
        """Log a call and its decision; return the row id."""
        with self.db.session() as s:
            row = CallRow(
                at=at, line=line or caller.line, sip_call_id=(sip_call_id or "")[:200] or None,
                number=caller.number, caller_kind=caller.kind.value,
                display_name=caller.display_name[:256], raw_from=caller.raw[:256],
                verstat=caller.verstat.value if caller.verstat else None,
                action=str(decision.action), reason=decision.reason, step=decision.step,
                rule=decision.rule_id, unknown=decision.counts_towards_burst,
                burst=decision.burst.active,
                screen_ms=decision.elapsed_ms,
            )
            s.add(row)
            s.flush()
            return row.id

    def finish_call(self, call_row_id: int, *, duration_s: float, outcome: str) -> None:
        """Store how a logged call ended."""
        with self.db.session() as s:
            s.execute(update(CallRow).where(CallRow.id == call_row_id)
                      .values(duration_s=duration_s, outcome=outcome[:60]))

    def calls(
        self, *, limit: int = 50, offset: int = 0, action: str | None = None,
        number: str | None = None, since: datetime | None = None, until: datetime | None = None,
    ) -> list[CallRow]:
        """Logged calls, newest first, filtered."""
        query = select(CallRow).order_by(CallRow.at.desc(), CallRow.id.desc())
        if action:
            query = query.where(
                (CallRow.action == action) | CallRow.action.startswith(action + ":")
            )
        if number:
            query = query.where(CallRow.number == number)
        if since:
            query = query.where(CallRow.at >= since)
        if until:
            query = query.where(CallRow.at < until)
        with self.db.session() as s:
            return list(s.scalars(query.limit(limit).offset(offset)))

    # ------------------------------------------------------------------ voicemail

    def save_voicemail(self, call_row_id: int | None, *, at: datetime, path: str,
                       duration_s: float, size_bytes: int, number: str | None,
                       display_name: str) -> int:
        """Log a recorded message; return its id."""
        with self.db.session() as s:
            row = VoicemailRow(call_id=call_row_id, at=at, path=path, duration_s=duration_s,
                               size_bytes=size_bytes, number=number,
                               display_name=display_name[:256])
            s.add(row)
            s.flush()
            return row.id

    def voicemail_bytes(self) -> int:
        """Bytes used by all voicemails."""
        with self.db.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(VoicemailRow.size_bytes), 0))) or 0)

    def voicemails(self, *, limit: int = 50, offset: int = 0) -> list[VoicemailRow]:
        """Voicemails, newest first."""
        with self.db.session() as s:
            query = select(VoicemailRow).order_by(VoicemailRow.at.desc()).limit(limit)
            return list(s.scalars(query.offset(offset)))

    # ------------------------------------------------------------------ lines

    def set_line_state(self, name: str, state: str, error: str | None) -> None:
        """Record a line's registration state (only when it changes, to spare the SD card)."""
        with self.db.session() as s:
            row = s.get(LineStateRow, name)
            if row is None:
                s.add(LineStateRow(name=name, state=state, error=error, changed_at=utcnow()))
            elif (row.state, row.error) != (state, error):
                row.state, row.error, row.changed_at = state, error, utcnow()

    def line_states(self) -> list[LineStateRow]:
        """Every line's last known state."""
        with self.db.session() as s:
            return list(s.scalars(select(LineStateRow).order_by(LineStateRow.name)))


def validate_setting(key: str, value: Any) -> Any:
    """Check a run-time setting; raise EntryError naming the key and what is allowed."""
    if key not in DEFAULT_SETTINGS:
        raise EntryError(f"unknown setting {key!r}; known: {', '.join(DEFAULT_SETTINGS)}")
    default = DEFAULT_SETTINGS[key]
    try:
        if key == "paused_until":
            if value is not None:
                datetime.fromisoformat(str(value))
            return value
        if key == "block_action":
            return str(Action.parse(str(value)))
        if key == "default_mode":
            return DefaultMode(value).value
        if key == "digest_time":
            if value in (None, ""):
                return None
            hh, _, mm = str(value).partition(":")
            if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60
                    and len(mm) == 2):
                raise ValueError("expected HH:MM, e.g. 08:00")
            return f"{int(hh):02d}:{mm}"
        if key == "challenge_digit":
            if str(value) not in list("0123456789*#"):
                raise ValueError("expected one key: 0-9, * or #")
            return str(value)
    except ValueError as exc:
        raise EntryError(f"{key} = {value!r}: {exc}") from None
    if not isinstance(value, dict):
        raise EntryError(f"{key}: expected a table with {', '.join(default)}")
    merged = {**default, **value}
    for name, current in merged.items():
        if name not in default:
            raise EntryError(f"{key}.{name}: unknown; allowed: {', '.join(default)}")
        if name == "action":
            try:
                merged[name] = str(Action.parse(str(current)))
            except ValueError as exc:
                raise EntryError(f"{key}.action: {exc}") from None
        elif name == "enabled":
            if not isinstance(current, bool):
                raise EntryError(f"{key}.enabled = {current!r}: expected true or false")
        elif isinstance(current, bool) or not isinstance(current, int | float) or current <= 0:
            raise EntryError(f"{key}.{name} = {current!r}: expected a number above 0")
    return merged


def iter_lines(data: bytes) -> Iterator[str]:
    """Decode an uploaded file's bytes (UTF-8 with or without BOM, else Latin-1) to lines."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    yield from io.StringIO(text)


def resolve_voicemail_path(voicemail_dir: Path, relative: str) -> Path:
    """The absolute path of a stored recording, refusing anything outside the folder."""
    path = (voicemail_dir / relative).resolve()
    if voicemail_dir.resolve() not in path.parents:
        raise ValueError(f"recording path {relative!r} is outside the voicemail folder")
    return path
