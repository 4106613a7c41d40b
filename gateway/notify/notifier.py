"""The notification jobs the scheduler runs: the daily digest, and the minute tick
(alerts, retries of failed sends, clean-up of sends interrupted by a crash)."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from gateway.config import Settings
from gateway.notify.alerts import AlertWatcher
from gateway.notify.channels import configured_channels
from gateway.notify.collect import (
    collect_digest,
    digest_moment,
    due_period,
    period_key,
    save_snapshot,
)
from gateway.notify.digest import RenderedDigest, build_digest
from gateway.notify.message import Channel, Message, SendError
from gateway.notify.outbox import Outbox, Outcome
from gateway.store.db import Database
from gateway.store.models import utcnow

log = logging.getLogger(__name__)

# A digest missed while the Pi was off is still sent when it comes back within this time;
# older ones are dropped (the next digest covers its own day, and a pile of stale digests
# helps nobody). Under 24 h, so at most one period is ever due.
DIGEST_GRACE = timedelta(hours=12)


def render_digest(db: Database, settings: Settings, day: date,
                  now: datetime | None = None) -> RenderedDigest:
    """Gather and render the digest of local date `day` (reads only: used by the preview)."""
    data = collect_digest(db, settings, day, now=now)
    return build_digest(data, settings.language, settings.notify.sms_max_parts)


class Notifier:
    """Digest and alerts over the configured channels."""

    def __init__(self, db: Database, settings: Settings,
                 channels: list[Channel] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.channels = configured_channels(settings) if channels is None else channels
        self.outbox = Outbox(db, self.channels, settings.notify.retry_minutes)
        self.alerts = AlertWatcher(db, settings, self.outbox)

    def send_digest(self, day: date, now: datetime | None = None) -> list[Outcome]:
        """Send the digest of `day` on every channel that has not had it yet."""
        now = now or utcnow()
        if not self.channels or not self.settings.notify.digest_enabled:
            return []
        period = period_key(day)
        if self.outbox.already_claimed("digest", period):
            log.info("digest %s already sent (or being sent); skipping", period)
            return []
        save_snapshot(self.db, period, now)
        rendered = render_digest(self.db, self.settings, day, now)
        message = Message(kind="digest", subject=rendered.subject, text=rendered.text,
                          html=rendered.html, sms=rendered.sms)
        return self.outbox.deliver("digest", period, message, now)

    def send_due_digest(self, now: datetime | None = None) -> list[Outcome]:
        """Send the latest digest that is due, if it is recent enough and not yet sent."""
        now = now or utcnow()
        day = due_period(now, self.settings)
        if now - digest_moment(day, self.settings) > DIGEST_GRACE:
            log.info("digest %s is more than %s late; not sending it", day, DIGEST_GRACE)
            return []
        return self.send_digest(day, now)

    def tick(self, now: datetime | None = None) -> None:
        """The minute job: alerts, retries, and stuck sends."""
        now = now or utcnow()
        if not self.channels:
            return  # nothing could be sent: spare the database the minute queries
        self.alerts.check(now)
        try:
            self.outbox.expire_stale(now)  # those that may be sent again go out just below
            self.outbox.retry_due(now)
        except Exception:
            log.exception("retrying notifications failed")

    def resolve_interrupted(self, now: datetime | None = None) -> None:
        """On start: settle the sends a crash interrupted (sent again, or known lost)."""
        try:
            self.outbox.resolve_interrupted(now or utcnow())
        except Exception:
            log.exception("could not look for notifications interrupted by a crash")

    def send_test(self, only: list[str] | None = None) -> list[tuple[str, str | None]]:
        """Send a test message on each channel now; return (channel, error or None)."""
        if self.settings.language == "fr":
            subject, body = "Ringfence : message de test", "Ce canal fonctionne."
        else:
            subject, body = "Ringfence: test message", "This channel works."
        message = Message(kind="test", subject=subject, text=body + "\n",
                          html=f"<p>{body}</p>", sms=(f"{subject}. {body}",))
        results: list[tuple[str, str | None]] = []
        for channel in self.channels:
            if only and not any(channel.name == o or channel.name.startswith(o + ":")
                                for o in only):
                continue
            try:
                channel.send(message)
            except SendError as exc:
                results.append((channel.name, str(exc)))
            except Exception as exc:
                results.append((channel.name, f"{type(exc).__name__}: {exc}"))
            else:
                results.append((channel.name, None))
        return results
