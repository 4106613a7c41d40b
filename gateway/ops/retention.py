"""The daily purge: old calls and voicemails (with their WAV files), the voicemail size cap,
expired list entries, and old notification records."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from gateway.config import Settings
from gateway.store.db import Database
from gateway.store.entries import Entries
from gateway.store.models import CallRow, MessageRow, NotificationRow, VoicemailRow, utcnow
from gateway.store.voicemail import resolve_voicemail_path

log = logging.getLogger(__name__)

BATCH = 1000  # rows per transaction: short write locks, so the gateway never waits long


@dataclass
class RetentionReport:
    """What one purge removed."""

    calls: int = 0
    voicemails_old: int = 0
    voicemails_for_space: int = 0
    entries_expired: int = 0
    notifications: int = 0

    def summary(self) -> str:
        """One line for the log and the CLI."""
        return (f"{self.calls} calls, {self.voicemails_old} old voicemails, "
                f"{self.voicemails_for_space} voicemails over the size cap, "
                f"{self.entries_expired} expired list entries, "
                f"{self.notifications} notification records removed")


def _remove_file(folder: Path, relative: str) -> None:
    try:
        resolve_voicemail_path(folder, relative).unlink(missing_ok=True)
    except ValueError:
        log.warning("not deleting %r: outside the voicemail folder", relative)
    except OSError as exc:
        log.warning("could not delete recording %s: %s", relative, exc.strerror)


def _delete_voicemails(db: Database, folder: Path, rows: list[tuple[int, str]]) -> None:
    # Files first, then rows: a crash in between leaves a row without a file (shown as
    # missing, purged next time), never an orphan file that nothing counts against the cap.
    for _, path in rows:
        _remove_file(folder, path)
    with db.session() as s:
        s.execute(delete(VoicemailRow).where(VoicemailRow.id.in_([i for i, _ in rows])))


def purge_old_voicemails(db: Database, folder: Path, before: datetime) -> int:
    """Delete voicemails recorded before `before`; return how many."""
    removed = 0
    while True:
        with db.session() as s:
            rows = [(r.id, r.path) for r in s.execute(
                select(VoicemailRow.id, VoicemailRow.path).where(VoicemailRow.at < before)
                .order_by(VoicemailRow.at).limit(BATCH))]
        if not rows:
            return removed
        _delete_voicemails(db, folder, rows)
        removed += len(rows)


def enforce_voicemail_cap(db: Database, folder: Path, cap_bytes: int) -> int:
    """Delete the oldest heard voicemails, then the oldest, until the total fits `cap_bytes`."""
    removed = 0
    with db.session() as s:
        total = int(s.scalar(select(func.coalesce(func.sum(VoicemailRow.size_bytes), 0))) or 0)
    for heard in (True, False):
        while total > cap_bytes:
            with db.session() as s:
                candidates = list(s.execute(
                    select(VoicemailRow.id, VoicemailRow.path, VoicemailRow.size_bytes)
                    .where(VoicemailRow.heard.is_(heard))
                    .order_by(VoicemailRow.at, VoicemailRow.id).limit(100)))
            if not candidates:
                break
            batch: list[tuple[int, str]] = []
            for row_id, path, size in candidates:
                if total <= cap_bytes:
                    break
                batch.append((row_id, path))
                total -= int(size or 0)
            _delete_voicemails(db, folder, batch)
            removed += len(batch)
    return removed


def _delete_in_batches(db: Database, id_column: Any, time_column: Any, before: datetime) -> int:
    removed = 0
    table = id_column.class_
    while True:
        with db.session() as s:
            ids = list(s.scalars(select(id_column).where(time_column < before).limit(BATCH)))
            if not ids:
                return removed
            s.execute(delete(table).where(id_column.in_(ids)))
        removed += len(ids)


def run_retention(db: Database, settings: Settings, now: datetime | None = None
                  ) -> RetentionReport:
    """Apply every retention rule once."""
    now = now or utcnow()
    keep = settings.retention
    folder = settings.voicemail_dir
    report = RetentionReport()
    if keep.voicemail_days:
        report.voicemails_old = purge_old_voicemails(
            db, folder, now - timedelta(days=keep.voicemail_days))
    report.voicemails_for_space = enforce_voicemail_cap(
        db, folder, settings.voicemail.max_total_mb * 1024 * 1024)
    if keep.calls_days:
        report.calls = _delete_in_batches(db, CallRow.id, CallRow.at,
                                          now - timedelta(days=keep.calls_days))
        # Texts are kept as long as calls: they are the same log, of another kind.
        report.calls += _delete_in_batches(db, MessageRow.id, MessageRow.at,
                                           now - timedelta(days=keep.calls_days))
    if keep.notifications_days:
        report.notifications = _delete_in_batches(
            db, NotificationRow.id, NotificationRow.created_at,
            now - timedelta(days=keep.notifications_days))
    report.entries_expired = Entries(db, settings.home_region).purge_expired(now)
    log.info("retention: %s", report.summary())
    return report
