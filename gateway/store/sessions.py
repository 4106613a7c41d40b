"""The web UI's sessions, kept on the server so that logging out really ends one.

The browser's signed cookie carries a random session id; the table keeps only its SHA-256
and when it was last seen. A session is valid while its row exists and was seen within the
lifetime: logout deletes the row, a new password deletes them all.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete

from gateway.store.db import Database, rowcount
from gateway.store.models import WebSessionRow, utcnow

# How stale `seen_at` may get before a request writes it again: a sliding lifetime without a
# write per page view (SD cards wear with every commit).
TOUCH_EVERY = timedelta(hours=1)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class WebSessions:
    """Create, check and end the web UI's sessions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, lifetime: timedelta, now: datetime | None = None) -> str:
        """Start a session and return its id (for the cookie); expired rows are swept."""
        now = now or utcnow()
        session_id = secrets.token_urlsafe(32)
        with self.db.session() as s:
            s.execute(delete(WebSessionRow).where(WebSessionRow.seen_at < now - lifetime))
            s.add(WebSessionRow(id_hash=_hash(session_id), created_at=now, seen_at=now))
        return session_id

    def check(self, session_id: str | None, lifetime: timedelta,
              now: datetime | None = None) -> bool:
        """Whether `session_id` names a live session; refreshes its last-seen time hourly."""
        if not session_id:
            return False
        now = now or utcnow()
        key = _hash(session_id)
        with self.db.session() as s:
            row = s.get(WebSessionRow, key)
            if row is None:
                return False
            if row.seen_at + lifetime <= now:
                s.delete(row)
                return False
            if now - row.seen_at >= TOUCH_EVERY:
                row.seen_at = now
            return True

    def end(self, session_id: str | None) -> bool:
        """End one session (logout); False if it did not exist."""
        if not session_id:
            return False
        with self.db.session() as s:
            return rowcount(s.execute(
                delete(WebSessionRow).where(WebSessionRow.id_hash == _hash(session_id)))) > 0

    def end_all(self) -> int:
        """End every session (a new password, restored credentials); return how many."""
        with self.db.session() as s:
            return rowcount(s.execute(delete(WebSessionRow)))
