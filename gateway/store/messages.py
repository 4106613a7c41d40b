"""The text log: one row per text message (SIP MESSAGE), accepted, held or refused.

Texts are written with a direct insert, not through the call writer: the gateway answers
202 only once the row is committed, and if the database does not take it the sender gets
500 with Retry-After and sends it again (RFC 3428 §7: a MESSAGE is retried by its sender
until it has a final answer). So a text is never held only in memory, and the journal that
calls need (their caller will not call twice) has nothing to add. Texts are rare next to
calls, and rate-limited per sender, so one commit each costs the SD card little.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select

from gateway.screening.caller import Caller
from gateway.screening.ratelimit import History, PastCall
from gateway.screening.texts import TextDecision, TextVerdict
from gateway.store.db import Database
from gateway.store.events import inert, new_uid
from gateway.store.models import MessageRow

MAX_HISTORY_ROWS = 5_000  # bounds the rate limits' read even during a flood of texts
VERDICTS = tuple(v.value for v in TextVerdict)


@dataclass(frozen=True)
class MessageFilter:
    """Filters of the text log; each is optional."""

    verdict: str | None = None  # accepted | held | refused
    number: str | None = None  # E.164
    since: datetime | None = None
    until: datetime | None = None  # exclusive

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add the WHERE clauses to a query over MessageRow."""
        if self.verdict:
            query = query.where(MessageRow.verdict == self.verdict)
        if self.number:
            query = query.where(MessageRow.number == self.number)
        if self.since:
            query = query.where(MessageRow.at >= self.since)
        if self.until:
            query = query.where(MessageRow.at < self.until)
        return query


EVERY_MESSAGE = MessageFilter()


class Messages:
    """Reads and writes of the `messages` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, caller: Caller, decision: TextDecision, *, at: datetime, body: str,
            charset: str = "utf-8", sip_call_id: str | None = None,
            line: str | None = None) -> str:
        """Store one text and its decision now (one transaction); return its uid."""
        row = MessageRow(
            uid=new_uid(), at=at, line=line or caller.line,
            sip_call_id=(sip_call_id or "")[:200] or None, number=caller.number,
            sender_kind=caller.kind.value, display_name=inert(caller.display_name)[:256],
            raw_from=inert(caller.raw)[:256], body=inert(body), charset=charset[:40],
            verdict=decision.verdict.value, status=decision.status,
            action=decision.action[:40], step=decision.step[:12], rule=decision.rule_id,
            reason=decision.reason, reason_code=decision.reason_code,
            reason_params=decision.reason_params or None, unknown=decision.unknown,
        )
        with self.db.session() as s:
            s.add(row)
        return row.uid

    def history(self, now: datetime, window: timedelta) -> History:
        """Texts in the `window` before `now`, as the rate limits see them."""
        query = (select(MessageRow.at, MessageRow.number, MessageRow.sender_kind,
                        MessageRow.unknown, MessageRow.verdict)
                 .where(MessageRow.at >= now - window, MessageRow.at <= now)
                 .order_by(MessageRow.at.desc()).limit(MAX_HISTORY_ROWS))
        with self.db.engine.connect() as conn:
            return History.of(
                PastCall(at=r.at, key=r.number or r.sender_kind,
                         unknown=bool(r.unknown), action=str(r.verdict))
                for r in conn.execute(query))

    def recent(self, flt: MessageFilter = EVERY_MESSAGE, *, limit: int = 50,
               offset: int = 0) -> list[MessageRow]:
        """A page of texts matching `flt`, newest first."""
        query = flt.apply(select(MessageRow)).order_by(MessageRow.at.desc(),
                                                        MessageRow.id.desc())
        with self.db.session() as s:
            return list(s.scalars(query.limit(limit).offset(offset)))

    def count(self, flt: MessageFilter = EVERY_MESSAGE) -> int:
        """How many texts match `flt`."""
        with self.db.session() as s:
            return int(s.scalar(flt.apply(select(func.count(MessageRow.id)))) or 0)

    def counts_by_verdict(self, since: datetime, until: datetime) -> dict[str, int]:
        """Texts in [since, until) per verdict (every verdict present, 0 when none)."""
        query = (select(MessageRow.verdict, func.count(MessageRow.id))
                 .where(MessageRow.at >= since, MessageRow.at < until)
                 .group_by(MessageRow.verdict))
        totals: Counter[str] = Counter(dict.fromkeys(VERDICTS, 0))
        with self.db.session() as s:
            for verdict, n in s.execute(query):
                totals[str(verdict)] += int(n)
        return dict(totals)

    def by_uid(self, uid: str) -> MessageRow | None:
        """One text by its uid."""
        with self.db.session() as s:
            return s.scalar(select(MessageRow).where(MessageRow.uid == uid))

    def iter_matching(self, flt: MessageFilter = EVERY_MESSAGE) -> Iterator[MessageRow]:
        """Every text matching `flt`, oldest first, read in batches (reports, exports)."""
        query = (flt.apply(select(MessageRow)).order_by(MessageRow.at, MessageRow.id)
                 .execution_options(yield_per=1000))
        with self.db.session() as s:
            yield from s.scalars(query)
