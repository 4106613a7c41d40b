"""Send a message on every channel at most once, retry failures with backoff, record everything.

The `notifications` row is written *before* sending (status "sending"): its unique
(kind, period, channel) key is the claim. Whoever loses the insert (a second process, a second
trigger, a restart) skips. After sending, the row becomes "sent", "retry" (with the time of the
next attempt) or "failed". A row left in "sending" by a crash is never resent: we cannot know
whether the mail left, and a lost digest is better than a doubled one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway.notify.message import ERROR_LIMIT, Channel, Message, SendError
from gateway.store.db import Database
from gateway.store.models import NotificationRow

log = logging.getLogger(__name__)

STALE_SENDING = timedelta(minutes=15)  # far longer than any SMTP timeout
RETRY_BATCH = 50


def _rowcount(result: Any) -> int:
    """Rows an UPDATE touched (the typed Result hides CursorResult.rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Outcome:
    """What happened on one channel."""

    channel: str
    status: str  # sent | retry | failed | skipped (someone else has it)
    error: str | None = None


class Outbox:
    """Claims, sends, records and retries notifications for a set of channels."""

    def __init__(self, db: Database, channels: Sequence[Channel],
                 retry_minutes: Sequence[int] = (1, 5, 15, 60, 240)) -> None:
        self.db = db
        self.channels = {channel.name: channel for channel in channels}
        self.retry_minutes = tuple(retry_minutes)

    def already_claimed(self, kind: str, period: str) -> bool:
        """Whether any channel has a row for this message (so it was sent or is being sent)."""
        with self.db.session() as s:
            found = s.scalar(select(NotificationRow.id).where(
                NotificationRow.kind == kind, NotificationRow.period == period).limit(1))
        return found is not None

    def _claim(self, kind: str, period: str, channel: str, message: Message,
               now: datetime) -> int | None:
        try:
            with self.db.session() as s:
                row = NotificationRow(
                    kind=kind, period=period[:80], channel=channel, status="sending", attempts=1,
                    subject=message.subject[:200], payload=message.to_payload(), created_at=now,
                )
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            return None

    def deliver(self, kind: str, period: str, message: Message, now: datetime,
                *, only: Sequence[str] | None = None) -> list[Outcome]:
        """Send `message` once per channel for (kind, period); return each channel's outcome."""
        outcomes = []
        for name, channel in self.channels.items():
            if only is not None and name not in only:
                continue
            row_id = self._claim(kind, period, name, message, now)
            if row_id is None:
                outcomes.append(Outcome(name, "skipped"))
                continue
            outcomes.append(self._attempt(row_id, channel, kind, period, message, 1, now))
        return outcomes

    def _attempt(self, row_id: int, channel: Channel, kind: str, period: str, message: Message,
                 attempts: int, now: datetime) -> Outcome:
        try:
            channel.send(message)
        except SendError as exc:
            return self._failed(row_id, channel.name, kind, period, attempts, str(exc),
                                exc.permanent, now)
        except Exception as exc:  # a channel bug must not stop the other channels
            log.exception("%s %s on %s: unexpected error", kind, period, channel.name)
            return self._failed(row_id, channel.name, kind, period, attempts,
                                f"{type(exc).__name__}: {exc}", False, now)
        with self.db.session() as s:
            s.execute(update(NotificationRow).where(NotificationRow.id == row_id).values(
                status="sent", sent_at=now, last_error=None, next_attempt_at=None))
        log.info("%s %s sent on %s", kind, period, channel.name)
        return Outcome(channel.name, "sent")

    def _failed(self, row_id: int, channel: str, kind: str, period: str, attempts: int,
                error: str, permanent: bool, now: datetime) -> Outcome:
        give_up = permanent or attempts > len(self.retry_minutes)
        next_at = None if give_up else now + timedelta(minutes=self.retry_minutes[attempts - 1])
        status = "failed" if give_up else "retry"
        with self.db.session() as s:
            s.execute(update(NotificationRow).where(NotificationRow.id == row_id).values(
                status=status, last_error=error[:ERROR_LIMIT], next_attempt_at=next_at))
        if give_up:
            log.error("%s %s on %s failed after %d attempt(s)%s, giving up: %s", kind, period,
                      channel, attempts, " (permanent error)" if permanent else "", error)
        else:
            log.warning("%s %s on %s failed (attempt %d), retrying at %s: %s", kind, period,
                        channel, attempts, next_at, error)
        return Outcome(channel, status, error)

    def retry_due(self, now: datetime) -> list[Outcome]:
        """Resend every row whose retry time has come; each row is claimed atomically first."""
        with self.db.session() as s:
            due = list(s.execute(
                select(NotificationRow.id, NotificationRow.kind, NotificationRow.period,
                       NotificationRow.channel, NotificationRow.attempts,
                       NotificationRow.payload)
                .where(NotificationRow.status == "retry", NotificationRow.next_attempt_at <= now)
                .order_by(NotificationRow.next_attempt_at).limit(RETRY_BATCH)
            ))
        outcomes = []
        for row_id, kind, period, channel_name, attempts, payload in due:
            with self.db.session() as s:
                # The status check in the WHERE makes this the claim: one process wins.
                won = _rowcount(s.execute(
                    update(NotificationRow)
                    .where(NotificationRow.id == row_id, NotificationRow.status == "retry")
                    # next_attempt_at = now: expire_stale measures a stuck retry from here.
                    .values(status="sending", attempts=attempts + 1, next_attempt_at=now)
                ))
            if not won:
                continue
            channel = self.channels.get(channel_name)
            if channel is None:
                outcomes.append(self._failed(row_id, channel_name, kind, period, attempts + 1,
                                             "channel no longer configured", True, now))
                continue
            outcomes.append(self._attempt(row_id, channel, kind, period,
                                          Message.from_payload(payload), attempts + 1, now))
        return outcomes

    def expire_stale(self, now: datetime) -> int:
        """Mark rows stuck in "sending" (a crash mid-send) as failed, without resending."""
        with self.db.session() as s:
            count = _rowcount(s.execute(
                update(NotificationRow)
                .where(NotificationRow.status == "sending",
                       NotificationRow.created_at < now - STALE_SENDING,
                       (NotificationRow.next_attempt_at.is_(None))
                       | (NotificationRow.next_attempt_at < now - STALE_SENDING))
                .values(status="failed",
                        last_error="interrupted while sending (crash or restart); not resent "
                                   "so that it cannot arrive twice")
            ))
        return count


def recent_notifications(db: Database, limit: int = 50, *, kind: str | None = None
                         ) -> list[NotificationRow]:
    """The latest notification records, newest first (for the web UI and status)."""
    query = select(NotificationRow).order_by(NotificationRow.created_at.desc(),
                                             NotificationRow.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(NotificationRow.kind == kind)
    with db.session() as s:
        return list(s.scalars(query))
