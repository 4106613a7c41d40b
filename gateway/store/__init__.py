"""The database: engine and migrations (`db`), tables (`models`), and one module per concern.

`Store` gathers them for one database; the CLI, the web UI and the gateway all go through it:
`store.entries` (allow/block lists), `store.list_files` (CSV in and out), `store.rules`,
`store.runtime` (run-time settings), `store.calls` (the call log), `store.voicemails`,
`store.lines` (registration states), `store.status` (the gateway's heartbeat),
`store.screening` (what a call's screening reads) and `store.web_sessions` (the web UI's
logged-in sessions).

The gateway's call flow writes through its call writer instead (`store.writer`: events from
`store.events`, applied in batches by `store.batch`, spooled to `store.journal`).
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import Settings
from gateway.store.calls import CallLog
from gateway.store.db import Database, check_schema
from gateway.store.entries import Entries
from gateway.store.errors import EntryError
from gateway.store.lines import LineStates
from gateway.store.list_files import ImportReport, ListFiles
from gateway.store.rules import RuleStore
from gateway.store.screening import ScreeningReads
from gateway.store.sessions import WebSessions
from gateway.store.settings import RuntimeSettings
from gateway.store.status import GatewayStatus
from gateway.store.voicemail import Voicemails

__all__ = ["EntryError", "ImportReport", "Store", "open_database", "open_store"]


class Store:
    """Every table of one database, grouped by concern."""

    def __init__(self, db: Database, *, home_region: str = "FR",
                 timezone: str = "Europe/Paris", voicemail_dir: Path = Path("voicemail")) -> None:
        self.db = db
        self.home_region = home_region
        self.timezone = timezone
        self.runtime = RuntimeSettings(db)
        self.entries = Entries(db, home_region)
        self.list_files = ListFiles(db, home_region)
        self.rules = RuleStore(db, home_region)
        self.calls = CallLog(db)
        self.voicemails = Voicemails(db, voicemail_dir)
        self.lines = LineStates(db)
        self.status = GatewayStatus(db)
        self.web_sessions = WebSessions(db)
        self.screening = ScreeningReads(db, self.runtime, self.rules, home_region=home_region,
                                        timezone=timezone)

    @classmethod
    def for_settings(cls, db: Database, settings: Settings) -> Store:
        """A store for `db` with the installation's region, zone and voicemail folder."""
        return cls(db, home_region=settings.home_region, timezone=settings.timezone,
                   voicemail_dir=settings.voicemail_dir)

    def ensure_defaults(self) -> None:
        """Seed the default rules once, on a new database."""
        self.rules.seed_defaults()

    def close(self) -> None:
        """Close pooled connections."""
        self.db.dispose()


def open_database(settings: Settings, *, upgrade: bool = False) -> Database:
    """Open the configured database, optionally creating or upgrading its schema."""
    db = Database(settings.database_url)
    if upgrade:
        db.upgrade()
    else:
        check_schema(db.engine)
    return db


def open_store(settings: Settings, *, upgrade: bool = True) -> Store:
    """Open the database (migrating it by default), seed defaults and return the store."""
    store = Store.for_settings(open_database(settings, upgrade=upgrade), settings)
    store.ensure_defaults()
    return store
