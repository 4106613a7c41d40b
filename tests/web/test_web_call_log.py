"""The dashboard's line about the gateway's call writer, read from its status file."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from flask.testing import FlaskClient
from sqlalchemy import exc

from gateway.config import Settings
from gateway.store.events import CallLogged, Event
from gateway.store.journal import Journal, WriterStatus, journal_dir, write_status
from gateway.store.writer import CallWriter


def locked(events: Sequence[Event]) -> None:
    raise exc.OperationalError("INSERT", {}, Exception("database is locked"))


def test_the_dashboard_says_when_calls_wait_for_the_database(client: FlaskClient,
                                                              settings: Settings) -> None:
    assert 'id="call-log"' not in client.get("/").get_data(as_text=True)
    folder = journal_dir(settings.data_dir)
    writer = CallWriter(locked, Journal(folder), status_dir=folder)
    for n in range(3):
        writer.submit(CallLogged(uid=f"u{n}", at=datetime(2026, 11, 24, 14, tzinfo=UTC),
                                 caller_kind="number", action="reject:603"))
    writer.step()  # the database says no: the calls go to the journal, the status says so
    html = client.get("/").get_data(as_text=True)
    assert "The call log is behind: 3 call events wait for the database since" in html
    assert "call-log-lost" not in html
    writer.journal.close()  # type: ignore[union-attr]


def test_the_dashboard_says_when_call_events_were_lost(client: FlaskClient,
                                                       settings: Settings) -> None:
    write_status(journal_dir(settings.data_dir),
                 WriterStatus(dropped_total=7, dropped_since_start=4, state="ok"))
    html = client.get("/").get_data(as_text=True)
    assert "4 call events were lost since the gateway started" in html
