"""What `ringfence status`, `/healthz` and `/metrics` say about the gateway's call writer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.config import Settings
from gateway.ops.health import (
    call_log_status,
    collect_metrics,
    collect_status,
    prometheus_text,
    public_status,
    render_text,
)
from gateway.store.events import CallLogged
from gateway.store.journal import Journal, WriterStatus, journal_dir, write_status
from tests.helpers import Services

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def test_no_writer_yet_is_fine(tmp_path: Path) -> None:
    log = call_log_status(tmp_path)
    assert log["ok"] and log["state"] == "unknown" and log["pending"] == 0


def test_rows_waiting_for_the_database_are_a_problem(service: Services,
                                                      settings: Settings) -> None:
    write_status(journal_dir(settings.data_dir), WriterStatus(
        state="waiting", pending=12, in_journal=12, waiting_since="2026-11-24T14:00:00+00:00",
        last_error="OperationalError: database is locked"))
    status = collect_status(settings, service.db)
    assert not status["ok"] and not status["call_log"]["ok"]
    assert status["problems"] == ["call log: 12 event(s) wait for the database since "
                                  "2026-11-24T14:00:00+00:00; kept in the journal"]
    text = render_text(status)
    assert "call log   WAITING: 12 event(s) not in the database yet" in text
    assert "database is locked" in text
    assert public_status(status)["call_log_ok"] is False
    metrics = prometheus_text(collect_metrics(settings, service.db))
    assert "ringfence_call_log_pending 12" in metrics


def test_a_journal_left_by_a_stopped_gateway_is_counted_from_the_file(
        service: Services, settings: Settings) -> None:
    folder = journal_dir(settings.data_dir)
    journal = Journal(folder)
    journal.append([CallLogged(uid=f"u{n}", at=NOW, caller_kind="number", action="pass")
                    for n in range(3)])
    journal.close()
    write_status(folder, WriterStatus(state="stopped", pending=3, in_journal=3))
    status = collect_status(settings, service.db)
    assert status["call_log"]["pending"] == 3
    assert "3 event(s) wait in the journal; the gateway writes them when it starts" in \
        status["problems"][0]


def test_lost_events_are_a_problem_until_the_next_start_then_a_warning(
        service: Services, settings: Settings) -> None:
    folder = journal_dir(settings.data_dir)
    write_status(folder, WriterStatus(dropped_total=5, dropped_since_start=5,
                                      last_dropped_at="2026-11-24T14:00:00+00:00"))
    status = collect_status(settings, service.db)
    assert any("5 event(s) lost since the gateway started" in p for p in status["problems"])
    assert "ringfence_call_log_lost_total 5" in prometheus_text(
        collect_metrics(settings, service.db))
    write_status(folder, WriterStatus(dropped_total=5, dropped_since_start=0))
    status = collect_status(settings, service.db)
    assert status["ok"]
    assert status["warnings"] == ["call log: 5 event(s) lost before the gateway last started"]
    assert "call log   OK, nothing waiting; 5 event(s) lost" in render_text(status)
