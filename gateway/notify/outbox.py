"""Send a message on every channel at most once, retry failures with backoff, record everything.

The `notifications` row is written *before* sending (status "sending"): its unique
(kind, period, channel) key is the claim. Whoever loses the insert (a second process, a second
trigger, a restart) skips. After sending, the row becomes "sent", "retry" (with the time of the
next attempt) or "failed".

While it is "sending", the row's `phase` says how far the send got, each phase committed before
the step it names: "claimed", "connecting" (talking to the server, which cannot have the
message yet), "data" (from the moment the message itself may reach the server: the SMTP DATA
command, or the whole send of a channel that cannot tell, such as apprise). A send interrupted
by a crash is resolved by its phase when the gateway starts (`resolve_interrupted`, for rows of
a process that is gone) or once it is stale: before "data" it is sent again, since nobody can
have it; from "data" on it is never resent, since a lost digest is better than a doubled one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway.notify.message import ERROR_LIMIT, Channel, Message, SendError, StagedChannel
from gateway.store.db import Database
from gateway.store.models import NotificationRow

log = logging.getLogger(__name__)

STALE_SENDING = timedelta(minutes=15)  # far longer than any SMTP timeout
RETRY_BATCH = 50
CLAIMED, CONNECTING, DATA = "claimed", "connecting", "data"
BEFORE_DATA = (CLAIMED, CONNECTING)  # nobody can have the message yet: safe to send again
NOT_RESENT = ("interrupted while sending (crash or restart) after the message may have reached "
              "the server; not resent so that it cannot arrive twice")
RESENT = "interrupted (crash or restart) before the message reached the server; sent again"


def this_sender() -> str:
    """Who is sending: this host and process, so that a restart knows a send was orphaned."""
    return f"{socket.gethostname()}:{os.getpid()}"[:80]


def sender_gone(sender: str | None) -> bool:
    """Whether the process that claimed a send is certainly gone (same host, pid not alive)."""
    if not sender:
        return False
    host, _, pid = sender.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine (PostgreSQL shared): only the stale timeout tells
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, as another user
        return False
    return False


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
                    phase=CLAIMED, sender=this_sender(),
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

    def _phase(self, row_id: int, phase: str) -> None:
        """Record how far a send got, committed before the step it names."""
        with self.db.session() as s:
            s.execute(update(NotificationRow).where(NotificationRow.id == row_id)
                      .values(phase=phase))

    def _attempt(self, row_id: int, channel: Channel, kind: str, period: str, message: Message,
                 attempts: int, now: datetime) -> Outcome:
        try:
            if isinstance(channel, StagedChannel):
                self._phase(row_id, CONNECTING)
                channel.send_staged(message, lambda: self._phase(row_id, DATA))
            else:  # it cannot say when the message leaves: from now on it may have
                self._phase(row_id, DATA)
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
                status="sent", sent_at=now, last_error=None, next_attempt_at=None, phase=None))
        log.info("%s %s sent on %s", kind, period, channel.name)
        return Outcome(channel.name, "sent")

    def _failed(self, row_id: int, channel: str, kind: str, period: str, attempts: int,
                error: str, permanent: bool, now: datetime) -> Outcome:
        give_up = permanent or attempts > len(self.retry_minutes)
        next_at = None if give_up else now + timedelta(minutes=self.retry_minutes[attempts - 1])
        status = "failed" if give_up else "retry"
        with self.db.session() as s:
            s.execute(update(NotificationRow).where(NotificationRow.id == row_id).values(
                status=status, last_error=error[:ERROR_LIMIT], next_attempt_at=next_at,
                phase=None))
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
                    .values(status="sending", attempts=attempts + 1, next_attempt_at=now,
                            phase=CLAIMED, sender=this_sender())
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
        """Resolve rows stuck in "sending" for STALE_SENDING (a crash mid-send), by phase."""
        cutoff = now - STALE_SENDING
        stuck = ((NotificationRow.created_at < cutoff)
                 & (NotificationRow.next_attempt_at.is_(None)
                    | (NotificationRow.next_attempt_at < cutoff)))
        return self._resolve(stuck, now)

    def resolve_interrupted(self, now: datetime) -> int:
        """On start: resolve, by phase, the sends of processes that are gone (kill -9, power
        cut); a send of a process still alive, or of another host, waits for `expire_stale`."""
        with self.db.session() as s:
            rows = list(s.execute(select(NotificationRow.id, NotificationRow.sender)
                                  .where(NotificationRow.status == "sending")))
        orphans = [row_id for row_id, sender in rows if sender_gone(sender)]
        return self._resolve(NotificationRow.id.in_(orphans), now) if orphans else 0

    def _resolve(self, which: Any, now: datetime) -> int:
        sending = NotificationRow.status == "sending"
        before_data = NotificationRow.phase.in_(BEFORE_DATA)
        with self.db.session() as s:
            # Nobody can have the message: send it again at once (counted as an attempt).
            resent = _rowcount(s.execute(
                update(NotificationRow).where(sending, which, before_data)
                .values(status="retry", next_attempt_at=now, last_error=RESENT, phase=None)))
            # It may have reached the server (or a row from before phases: the same doubt).
            lost = _rowcount(s.execute(
                update(NotificationRow)
                .where(sending, which, NotificationRow.phase.is_(None) | ~before_data)
                .values(status="failed", last_error=NOT_RESENT, phase=None)))
        if resent:
            log.warning("%d notification(s) interrupted before reaching the server; sending "
                        "them again", resent)
        if lost:
            log.warning("%d notification(s) interrupted after they may have reached the "
                        "server; marked failed, not resent", lost)
        return resent + lost


def recent_notifications(db: Database, limit: int = 50, *, kind: str | None = None
                         ) -> list[NotificationRow]:
    """The latest notification records, newest first (for the web UI and status)."""
    query = select(NotificationRow).order_by(NotificationRow.created_at.desc(),
                                             NotificationRow.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(NotificationRow.kind == kind)
    with db.session() as s:
        return list(s.scalars(query))
