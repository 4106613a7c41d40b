"""Each line's registration state, written by the gateway for the UI and `ringfence status`."""

from __future__ import annotations

from sqlalchemy import select

from gateway.store.db import Database
from gateway.store.models import LineStateRow, utcnow


class LineStates:
    """Reads and writes of the `line_states` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set(self, name: str, state: str, error: str | None) -> None:
        """Record a line's registration state (only when it changes, to spare the SD card)."""
        with self.db.session() as s:
            row = s.get(LineStateRow, name)
            if row is None:
                s.add(LineStateRow(name=name, state=state, error=error, changed_at=utcnow()))
            elif (row.state, row.error) != (state, error):
                row.state, row.error, row.changed_at = state, error, utcnow()

    def all(self) -> list[LineStateRow]:
        """Every line's last known state."""
        with self.db.session() as s:
            return list(s.scalars(select(LineStateRow).order_by(LineStateRow.name)))
