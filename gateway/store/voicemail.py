"""Voicemail: the rows of recorded messages and their WAV files under the voicemail folder.

Rows store paths relative to the folder; `resolve_voicemail_path` refuses anything that would
leave it, so a row changed by a restored backup can never make Ringfence read or delete
another file.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select, update

from gateway.store.db import Database, rowcount
from gateway.store.models import VoicemailRow


def resolve_voicemail_path(voicemail_dir: Path, relative: str) -> Path:
    """The absolute path of a stored recording, refusing anything outside the folder."""
    path = (voicemail_dir / relative).resolve()
    if voicemail_dir.resolve() not in path.parents:
        raise ValueError(f"recording path {relative!r} is outside the voicemail folder")
    return path


class Voicemails:
    """Reads and writes of the `voicemails` table and its files."""

    def __init__(self, db: Database, folder: Path) -> None:
        self.db = db
        self.folder = folder

    def relative(self, path: Path) -> str:
        """How a recording's path is stored: relative to the folder when it is inside it."""
        folder = self.folder.resolve()
        resolved = path.resolve()
        return str(resolved.relative_to(folder)) if folder in resolved.parents else str(path)

    def path_of(self, row: VoicemailRow) -> Path:
        """The file of a stored recording (ValueError if it points outside the folder)."""
        return resolve_voicemail_path(self.folder, row.path)

    def save(self, call_row_id: int | None, *, at: datetime, path: str, duration_s: float,
             size_bytes: int, number: str | None, display_name: str,
             interrupted: bool = False) -> int:
        """Log a recorded message; return its id."""
        with self.db.session() as s:
            row = VoicemailRow(call_id=call_row_id, at=at, path=path, duration_s=duration_s,
                               size_bytes=size_bytes, number=number,
                               display_name=display_name[:256], interrupted=interrupted)
            s.add(row)
            s.flush()
            return row.id

    def bytes_used(self) -> int:
        """Bytes used by all voicemails."""
        with self.db.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(VoicemailRow.size_bytes), 0))) or 0)

    def recent(self, *, limit: int = 50, offset: int = 0) -> list[VoicemailRow]:
        """Voicemails, newest first."""
        with self.db.session() as s:
            query = select(VoicemailRow).order_by(VoicemailRow.at.desc()).limit(limit)
            return list(s.scalars(query.offset(offset)))

    def count(self, *, unheard_only: bool = False, since: datetime | None = None,
              until: datetime | None = None) -> int:
        """How many voicemails there are (optionally only unheard ones, or left in a period)."""
        query = select(func.count(VoicemailRow.id))
        if unheard_only:
            query = query.where(VoicemailRow.heard.is_(False))
        if since is not None:
            query = query.where(VoicemailRow.at >= since)
        if until is not None:
            query = query.where(VoicemailRow.at < until)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def get(self, voicemail_id: int) -> VoicemailRow | None:
        """One voicemail by id."""
        with self.db.session() as s:
            return s.get(VoicemailRow, voicemail_id)

    def mark_heard(self, voicemail_id: int, heard: bool = True) -> bool:
        """Mark a voicemail heard (or not); False if there is none."""
        with self.db.session() as s:
            result = s.execute(update(VoicemailRow).where(VoicemailRow.id == voicemail_id)
                               .values(heard=heard))
        return rowcount(result) > 0

    def delete(self, voicemail_id: int) -> bool:
        """Delete a voicemail's file and row; False if there is none."""
        row = self.get(voicemail_id)
        if row is None:
            return False
        # A path outside the folder is never touched (ValueError); the row still goes.
        with contextlib.suppress(ValueError):
            self.path_of(row).unlink(missing_ok=True)
        with self.db.session() as s:
            s.execute(delete(VoicemailRow).where(VoicemailRow.id == voicemail_id))
        return True
