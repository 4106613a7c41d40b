"""Gather what a digest says from the database, and the digest calendar (periods, windows).

A digest's period is the local date of its scheduled moment (`notify.digest_time` in
`settings.timezone`); it covers the time since the previous day's moment. Periods are keyed by
date, so the autumn day on which 02:30 happens twice still has one digest, and the spring day on
which 02:30 never happens still has one (at 03:30, as zoneinfo and APScheduler both place it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.notify.digest import (
    BurstItem,
    CallerCount,
    DigestData,
    EntryChange,
    LookItem,
    RuleChange,
    VoicemailItem,
)
from gateway.numbers import national_format
from gateway.screening.ratelimit import History, PastCall, burst_state
from gateway.store.db import Database
from gateway.store.models import (
    CallRow,
    DigestSnapshotRow,
    ListEntryRow,
    RuleRow,
    SettingRow,
    SubscriptionRow,
    VoicemailRow,
)
from gateway.store.settings import DEFAULT_SETTINGS

TOP = 10
REPEAT_MIN_CALLS = 2  # an unknown number that called at least this often is worth a look
MAX_BURST_ROWS = 20_000  # bounds the burst scan even on a day of flooding
SNAPSHOT_SETTINGS = ("paused_until", "block_action", "default_mode", "repeat", "burst",
                     "greylist", "challenge_digit")


# --------------------------------------------------------------------------- calendar


def digest_moment(day: date, settings: Settings) -> datetime:
    """When the digest of local date `day` is due, in UTC."""
    hour, minute = (int(p) for p in settings.notify.digest_time.split(":"))
    # fold=0: a time skipped by spring-forward maps to just after the gap, as APScheduler does.
    local = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(settings.timezone))
    return local.astimezone(UTC)


def digest_window(day: date, settings: Settings) -> tuple[datetime, datetime]:
    """The UTC interval [previous moment, this moment) a digest reports on."""
    return digest_moment(day - timedelta(days=1), settings), digest_moment(day, settings)


def due_period(now: datetime, settings: Settings) -> date:
    """The latest local date whose digest moment is at or before `now`."""
    today = now.astimezone(ZoneInfo(settings.timezone)).date()
    return today if digest_moment(today, settings) <= now else today - timedelta(days=1)


def period_key(day: date) -> str:
    """The notifications table's period for a digest."""
    return day.isoformat()


# --------------------------------------------------------------------------- rule snapshots


def take_snapshot(db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    """The current rules (by id) and run-time settings, as plain JSON values."""
    with db.session() as s:
        rules = {
            str(r.id): {"kind": r.kind, "action": r.action, "params": r.params or {},
                        "enabled": r.enabled, "priority": r.priority, "label": r.label}
            for r in s.scalars(select(RuleRow))
        }
        stored = {r.key: r.value for r in s.scalars(
            select(SettingRow).where(SettingRow.key.in_(SNAPSHOT_SETTINGS)))}
    return rules, stored


def save_snapshot(db: Database, period: str, now: datetime) -> None:
    """Store this period's snapshot once (the first process to get here wins)."""
    rules, stored = take_snapshot(db)
    values = {"period": period, "taken_at": now, "rules": rules, "settings": stored}
    with db.session() as s:
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            s.execute(postgresql.insert(DigestSnapshotRow).values(**values)
                      .on_conflict_do_nothing())
        elif dialect == "sqlite":
            s.execute(sqlite.insert(DigestSnapshotRow).values(**values).on_conflict_do_nothing())
        elif s.get(DigestSnapshotRow, period) is None:  # pragma: no cover - other backends
            s.add(DigestSnapshotRow(**values))


def _describe_rule(rule: dict[str, Any]) -> str:
    label = f" \"{rule['label']}\"" if rule.get("label") else ""
    state = "" if rule.get("enabled", True) else " (off)"
    params = rule.get("params") or {}
    shown = f" {params}" if params else ""
    return f"{rule['kind']}{label} -> {rule['action']}{shown}{state}"


def diff_snapshots(before_rules: dict[str, Any], before_settings: dict[str, Any],
                   after_rules: dict[str, Any], after_settings: dict[str, Any]
                   ) -> list[RuleChange]:
    """What changed between two snapshots, in the owner's terms."""
    changes: list[RuleChange] = []
    for rule_id in sorted(set(after_rules) - set(before_rules), key=int):
        changes.append(RuleChange("added", _describe_rule(after_rules[rule_id])))
    for rule_id in sorted(set(before_rules) - set(after_rules), key=int):
        changes.append(RuleChange("removed", _describe_rule(before_rules[rule_id])))
    for rule_id in sorted(set(before_rules) & set(after_rules), key=int):
        if before_rules[rule_id] != after_rules[rule_id]:
            changes.append(RuleChange("changed", _describe_rule(after_rules[rule_id])))
    for key in SNAPSHOT_SETTINGS:
        if before_settings.get(key) != after_settings.get(key):
            changes.append(RuleChange("setting", f"{key} = {after_settings.get(key)}"))
    return changes


def _previous_snapshot(s: Session, period: str) -> DigestSnapshotRow | None:
    return s.scalar(select(DigestSnapshotRow).where(DigestSnapshotRow.period < period)
                    .order_by(DigestSnapshotRow.period.desc()).limit(1))


# --------------------------------------------------------------------------- bursts


@dataclass(frozen=True)
class BurstEpisode:
    """A burst as the log shows it: first and last triggering call, and its shielded calls."""

    started_at: datetime
    last_trigger_at: datetime
    ends_at: datetime  # last trigger + burst duration: when decide() stops seeing it
    callers: int
    shielded_calls: int

    def ended(self, now: datetime) -> bool:
        """Whether burst mode is over at `now`."""
        return self.ends_at <= now


def burst_triggers(calls: Sequence[tuple[datetime, str, bool, bool]], *, threshold: int,
                   window: timedelta, after: datetime | None = None
                   ) -> list[tuple[datetime, int]]:
    """The calls (after `after`) that completed the burst threshold, with the caller count.

    `burst_state`, the screening core's own definition, is asked about each call, so the
    digest, the alerts and the gateway agree on what a burst is.
    """
    ordered = History.of(PastCall(at=at, key=key, unknown=unknown)
                         for at, key, unknown, _ in calls).calls
    times = [call.at for call in ordered]
    tiny = timedelta(microseconds=1)
    triggers: list[tuple[datetime, int]] = []
    for call in ordered:
        if not call.unknown or (after is not None and call.at <= after):
            continue
        # Only the calls of the window before this one matter: handing burst_state that slice
        # keeps a day of flooding linear in the number of calls instead of quadratic.
        nearby = History(ordered[bisect_left(times, call.at - window - tiny):
                                 bisect_right(times, call.at)])
        state = burst_state(nearby, call.at, threshold=threshold, window=window, duration=tiny)
        if state.active:
            triggers.append((call.at, state.distinct_callers))
    return triggers


def merge_triggers(episodes: Sequence[BurstEpisode], triggers: Sequence[tuple[datetime, int]],
                   duration: timedelta) -> list[BurstEpisode]:
    """Extend `episodes` with later triggers: burst mode lasts `duration` after each one."""
    merged = list(episodes)
    for at, callers in triggers:
        if merged and at < merged[-1].ends_at:
            last = merged[-1]
            merged[-1] = BurstEpisode(last.started_at, at, at + duration,
                                      max(last.callers, callers), last.shielded_calls)
        else:
            merged.append(BurstEpisode(at, at, at + duration, callers, 0))
    return merged


def burst_episodes(calls: Sequence[tuple[datetime, str, bool, bool]], *, threshold: int,
                   window: timedelta, duration: timedelta) -> list[BurstEpisode]:
    """Bursts in a call log of (at, key, unknown, burst flag), with their shielded calls."""
    episodes = merge_triggers(
        [], burst_triggers(calls, threshold=threshold, window=window), duration)
    flagged = [at for at, _, _, burst in calls if burst]
    return [
        BurstEpisode(e.started_at, e.last_trigger_at, e.ends_at, e.callers,
                     sum(1 for at in flagged if e.started_at <= at < e.ends_at))
        for e in episodes
    ]


def load_calls_for_bursts(db: Database, start: datetime, end: datetime
                          ) -> list[tuple[datetime, str, bool, bool]]:
    """(at, key, unknown, burst) of calls in [start, end), oldest first, newest kept if capped."""
    with db.session() as s:
        rows = s.execute(
            select(CallRow.at, CallRow.number, CallRow.caller_kind, CallRow.unknown,
                   CallRow.burst)
            .where(CallRow.at >= start, CallRow.at < end)
            .order_by(CallRow.at.desc()).limit(MAX_BURST_ROWS)  # the newest matter most
        ).all()
    return [(r.at, r.number or r.caller_kind, bool(r.unknown), bool(r.burst))
            for r in reversed(rows)]


def burst_parameters(db: Database) -> tuple[int, timedelta, timedelta] | None:
    """(threshold, window, duration) of the current burst setting, or None when it is off."""
    settings = burst_settings(db)
    if not settings.get("enabled", True):
        return None
    return (int(settings["distinct_callers"]), timedelta(minutes=float(settings["window_minutes"])),
            timedelta(minutes=float(settings["duration_minutes"])))


def shielded_calls(db: Database, start: datetime, end: datetime) -> int:
    """Calls logged with burst mode on in [start, end)."""
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(CallRow).where(
            CallRow.at >= start, CallRow.at < end, CallRow.burst.is_(True))) or 0)


def load_bursts(db: Database, start: datetime, end: datetime) -> list[BurstEpisode]:
    """Burst episodes that overlap [start, end), with the current burst settings."""
    parameters = burst_parameters(db)
    if parameters is None:
        return []
    threshold, window, duration = parameters
    calls = load_calls_for_bursts(db, start - window - duration, end)
    episodes = burst_episodes(calls, threshold=threshold, window=window, duration=duration)
    return [e for e in episodes if e.started_at < end and e.ends_at > start]


def burst_settings(db: Database) -> dict[str, Any]:
    """The stored burst settings with their defaults filled in."""
    with db.session() as s:
        row = s.get(SettingRow, "burst")
    return {**DEFAULT_SETTINGS["burst"], **(row.value if row is not None else {})}


# --------------------------------------------------------------------------- the digest


def _caller_text(number: str | None, kind: str, home_region: str) -> str:
    if not number:
        return kind  # "withheld" / "invalid": the digest translates these
    try:
        return national_format(number, home_region)
    except Exception:  # a malformed stored value is shown raw (and made inert later)
        return number


def collect_digest(db: Database, settings: Settings, day: date, *,
                   now: datetime | None = None) -> DigestData:
    """Everything the digest of local date `day` reports (reads only)."""
    start, end = digest_window(day, settings)
    now = now or end
    zone = ZoneInfo(settings.timezone)
    region = settings.home_region
    # Internal calls (the router's intercom) are the family's, not calls to report.
    window = (CallRow.at >= start, CallRow.at < end, CallRow.step != "internal")

    def caller(number: str | None, kind: str = "number") -> str:
        return _caller_text(number, kind, region)

    with db.session() as s:
        by_kind: dict[str, int] = {}
        for action, count in s.execute(
                select(CallRow.action, func.count()).where(*window).group_by(CallRow.action)):
            kind = str(action).partition(":")[0]
            by_kind[kind] = by_kind.get(kind, 0) + int(count)
        total = sum(by_kind.values())
        top_blocked = [
            CallerCount(caller(r.number), r.name or "", int(r.n))
            for r in s.execute(
                select(CallRow.number, func.max(CallRow.display_name).label("name"),
                       func.count().label("n"))
                .where(*window, CallRow.action != "pass", CallRow.number.is_not(None))
                .group_by(CallRow.number).order_by(func.count().desc(), CallRow.number)
                .limit(TOP))
        ]
        voicemails = [
            VoicemailItem(v.at.astimezone(zone), caller(v.number, "withheld"), v.display_name,
                          v.duration_s)
            for v in s.scalars(select(VoicemailRow)
                               .where(VoicemailRow.at >= start, VoicemailRow.at < end)
                               .order_by(VoicemailRow.at).limit(200))
        ]
        look: list[LookItem] = []
        seen: set[str] = set()
        # Passed challenges first: a person who pressed the key is the likeliest real caller.
        for challenged in s.execute(
                select(CallRow.number, func.max(CallRow.display_name).label("name"))
                .where(*window, CallRow.number.is_not(None),
                       CallRow.outcome.ilike("%challenge%pass%"))
                .group_by(CallRow.number).limit(TOP)):
            seen.add(challenged.number)
            look.append(LookItem(caller(challenged.number), challenged.name or "", "challenge"))
        for auto in s.execute(
                select(ListEntryRow.pattern, ListEntryRow.label)
                .where(ListEntryRow.source == "auto", ListEntryRow.list == "allow",
                       ListEntryRow.created_at >= start, ListEntryRow.created_at < end)
                .limit(TOP)):
            if auto.pattern not in seen:
                seen.add(auto.pattern)
                look.append(LookItem(caller(auto.pattern), auto.label or "", "auto"))
        # Unknown callers that kept trying and were not turned away outright (a rejected
        # telemarketer is in "most screened"; someone sent to voicemail twice may be a person).
        for r in s.execute(
                select(CallRow.number, func.max(CallRow.display_name).label("name"),
                       func.count().label("n"))
                .where(*window, CallRow.unknown.is_(True), CallRow.number.is_not(None),
                       ~CallRow.action.startswith("reject"),
                       ~CallRow.action.startswith("announce"))
                .group_by(CallRow.number).having(func.count() >= REPEAT_MIN_CALLS)
                .order_by(func.count().desc(), CallRow.number).limit(TOP)):
            if r.number not in seen:
                seen.add(r.number)
                look.append(LookItem(caller(r.number), r.name or "", "repeat", int(r.n)))

        entry_window = (ListEntryRow.created_at >= start, ListEntryRow.created_at < end,
                        ~ListEntryRow.source.startswith("subscription:"))
        new_entries = [
            EntryChange(e.list, caller(e.pattern) if e.kind == "exact" else e.pattern, e.label,
                        e.source)
            for e in s.scalars(select(ListEntryRow).where(*entry_window)
                               .order_by(ListEntryRow.created_at).limit(TOP * 5))
        ]
        subscriptions = [
            (sub.label or sub.url, sub.entry_count)
            for sub in s.scalars(select(SubscriptionRow).where(
                SubscriptionRow.last_success_at >= start, SubscriptionRow.last_success_at < end))
        ]
        previous = _previous_snapshot(s, period_key(day))
        before = (previous.rules, previous.settings) if previous is not None else None
        current = s.get(DigestSnapshotRow, period_key(day))
        after = (current.rules, current.settings) if current is not None else None
    if after is None:
        after = take_snapshot(db)
    rule_changes = diff_snapshots(*before, *after) if before is not None else []

    bursts = [
        BurstItem(e.started_at.astimezone(zone),
                  e.ends_at.astimezone(zone) if e.ended(now) else None,
                  e.callers, e.shielded_calls)
        for e in load_bursts(db, start, end)
    ]
    order = ("pass", "reject", "announce", "voicemail", "challenge")
    by_action = tuple(sorted(by_kind.items(),
                             key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])))
    return DigestData(
        period=period_key(day), start=start.astimezone(zone), end=end.astimezone(zone),
        total_calls=total, by_action=by_action, top_blocked=tuple(top_blocked),
        voicemails=tuple(voicemails), bursts=tuple(bursts), worth_a_look=tuple(look),
        new_entries=tuple(new_entries), subscription_entries=tuple(subscriptions),
        rule_changes=tuple(rule_changes), first_digest=before is None,
    )

