"""Read and write queries the web UI needs beyond the repository: counts, stats, voicemail.

Each function opens one short session: the gateway writes to the same SQLite file, and a long
read transaction in the UI would hold back its WAL checkpoints.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, delete, func, select, update

from gateway.store.db import Database
from gateway.store.models import CallRow, ListEntryRow, VoicemailRow
from gateway.store.repository import resolve_voicemail_path

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


@dataclass(frozen=True)
class CallFilter:
    """Filters of the call log; each is optional."""

    action: str | None = None  # an action kind ("reject") or a full action ("reject:603")
    number: str | None = None  # E.164
    day: date | None = None  # a local calendar day
    timezone: str = "Europe/Paris"

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add the WHERE clauses to a query over CallRow."""
        if self.action:
            query = query.where((CallRow.action == self.action)
                                | CallRow.action.startswith(self.action + ":"))
        if self.number:
            query = query.where(CallRow.number == self.number)
        if self.day:
            since, until = day_bounds(self.day, self.timezone)
            query = query.where(CallRow.at >= since, CallRow.at < until)
        return query


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The instants a local calendar day starts and ends."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def count_calls(db: Database, flt: CallFilter) -> int:
    """How many calls match a filter."""
    with db.session() as s:
        return int(s.scalar(flt.apply(select(func.count(CallRow.id)))) or 0)


def list_calls(db: Database, flt: CallFilter, *, limit: int, offset: int) -> list[CallRow]:
    """A page of calls, newest first."""
    query = flt.apply(select(CallRow)).order_by(CallRow.at.desc(), CallRow.id.desc())
    with db.session() as s:
        return list(s.scalars(query.limit(limit).offset(offset)))


def get_call(db: Database, call_id: int) -> CallRow | None:
    """One call by id."""
    with db.session() as s:
        return s.get(CallRow, call_id)


def counts_by_category(db: Database, since: datetime, until: datetime) -> dict[str, int]:
    """Calls in [since, until) per category."""
    query = (select(CallRow.action, func.count(CallRow.id))
             .where(CallRow.at >= since, CallRow.at < until).group_by(CallRow.action))
    totals: Counter[str] = Counter({c: 0 for c in CATEGORIES})
    with db.session() as s:
        for action, n in s.execute(query):
            totals[category(str(action))] += int(n)
    return dict(totals)


def buckets(db: Database, since: datetime, step: timedelta, count: int) -> list[dict[str, int]]:
    """Calls per category in `count` consecutive buckets of `step` starting at `since`.

    One grouped COUNT per bucket, each an index range scan on `at`: the database counts, and
    no call row is loaded into Python. Hour/day functions differ between SQLite and
    PostgreSQL, so the buckets are ranges computed here rather than GROUP BY an expression.
    """
    result: list[dict[str, int]] = []
    with db.session() as s:
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


def count_entries(db: Database, list_name: str, search: str = "") -> int:
    """How many entries a list has that match `search` (the way `Repository.entries` filters)."""
    query = select(func.count(ListEntryRow.id)).where(ListEntryRow.list == list_name)
    if search:
        query = query.where(ListEntryRow.pattern.contains(search)
                            | ListEntryRow.label.contains(search))
    with db.session() as s:
        return int(s.scalar(query) or 0)


def pending_permits(db: Database, limit: int = 50) -> list[ListEntryRow]:
    """"Permit next call" entries not used yet, newest first."""
    query = (select(ListEntryRow).where(ListEntryRow.list == "allow", ListEntryRow.once.is_(True))
             .order_by(ListEntryRow.id.desc()).limit(limit))
    with db.session() as s:
        return list(s.scalars(query))


def count_voicemails(db: Database, *, unheard_only: bool = False) -> int:
    """How many voicemails there are (optionally only unheard ones)."""
    query = select(func.count(VoicemailRow.id))
    if unheard_only:
        query = query.where(VoicemailRow.heard.is_(False))
    with db.session() as s:
        return int(s.scalar(query) or 0)


def get_voicemail(db: Database, voicemail_id: int) -> VoicemailRow | None:
    """One voicemail by id."""
    with db.session() as s:
        return s.get(VoicemailRow, voicemail_id)


def mark_heard(db: Database, voicemail_id: int, heard: bool = True) -> bool:
    """Mark a voicemail heard (or not); False if there is none."""
    with db.session() as s:
        result = s.execute(update(VoicemailRow).where(VoicemailRow.id == voicemail_id)
                           .values(heard=heard))
        changed = int(getattr(result, "rowcount", 0) or 0)
    return changed > 0


def delete_voicemail(db: Database, voicemail_dir: Path, voicemail_id: int) -> bool:
    """Delete a voicemail's file and row; False if there is none."""
    row = get_voicemail(db, voicemail_id)
    if row is None:
        return False
    # A path outside the folder is never touched (ValueError); the row still goes.
    with contextlib.suppress(ValueError):
        resolve_voicemail_path(voicemail_dir, row.path).unlink(missing_ok=True)
    with db.session() as s:
        s.execute(delete(VoicemailRow).where(VoicemailRow.id == voicemail_id))
    return True
