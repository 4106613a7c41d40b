"""Apply a batch of call-flow events (`gateway.store.events`) in one transaction.

One commit per batch instead of three per call is most of what keeps a flood from wearing
the SD card: rows of a batch share table and index pages, and hit counters are summed per
entry and rule before they are written. Every event may be applied again without effect (a
replay of the journal after a crash): calls and voicemails whose `uid` is already stored are
skipped, and a call's hit is counted only by the insert that created its row.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, exc, insert, select, update
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
                logged = batch.calls.get(event.uid)
                if logged is not None:
                    # Most rejected calls end within the batch that logs them: one INSERT
                    # with the outcome instead of an INSERT and an UPDATE.
                    batch.calls[event.uid] = dataclasses.replace(
                        logged, duration_s=event.duration_s, outcome=event.outcome)
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


def _call_values(event: CallLogged) -> dict[str, Any]:
    return {
        "uid": event.uid, "at": event.at, "line": event.line, "sip_call_id": event.sip_call_id,
        "number": event.number, "caller_kind": event.caller_kind,
        "display_name": event.display_name, "raw_from": event.raw_from,
        "verstat": event.verstat, "action": event.action, "reason": event.reason,
        "reason_code": event.reason_code, "reason_params": event.reason_params,
        "step": event.step, "rule": event.rule, "unknown": event.unknown, "burst": event.burst,
        "duration_s": event.duration_s,
        "outcome": event.outcome[:OUTCOME_LENGTH] if event.outcome is not None else None,
        "screen_ms": event.screen_ms,
    }


def _write_calls(s: Session, batch: _Batch) -> None:
    if not batch.calls:
        return
    stored = set(s.scalars(select(CallRow.uid).where(CallRow.uid.in_(list(batch.calls)))))
    new = [c for c in batch.calls.values() if c.uid not in stored]
    for call in batch.calls.values():
        if call.uid in stored and call.outcome is not None:
            # Logged by an earlier batch, ended in this one (a journal replay): the end only.
            batch.finishes.append(CallFinished(call.uid, call.duration_s or 0.0, call.outcome))
    if not new:
        return
    s.execute(insert(_CALLS), [_call_values(c) for c in new])
    entry_hits: Counter[int] = Counter()
    entry_last: dict[int, datetime] = {}
    rule_hits: Counter[int] = Counter()
    for call in new:  # only rows created now count: a replayed batch counts nothing twice
        if call.entry_id is not None:
            entry_hits[call.entry_id] += 1
            entry_last[call.entry_id] = max(call.at, entry_last.get(call.entry_id, call.at))
        if call.rule_id is not None:
            rule_hits[call.rule_id] += 1
    if entry_hits:
        s.execute(_ENTRY_HITS, [{"b_id": i, "b_n": n, "b_at": entry_last[i]}
                                for i, n in sorted(entry_hits.items())])
    if rule_hits:
        s.execute(_RULE_HITS, [{"b_id": i, "b_n": n} for i, n in sorted(rule_hits.items())])


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


def write_batch(db: Database, events: Sequence[Event]) -> None:
    """Apply `events` in one transaction (all or nothing); raise what the database raised."""
    batch = _Batch.of(events)
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
