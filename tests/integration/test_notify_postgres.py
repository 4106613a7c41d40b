"""Migration 0002, the send-once claim and the stored scheduler jobs on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import time_machine
from alembic import command
from sqlalchemy import inspect

from gateway.notify.channels import Message
from gateway.notify.notifier import Notifier
from gateway.ops.scheduler import JOB_CATCH_UP, JOB_DIGEST, JOBS_TABLE, start_scheduler
from gateway.store.db import _alembic_config, current_revision, head_revision
from tests.helpers import Services
from tests.integration.notify_support import make_settings, smtp_server, smtp_toml

pytestmark = [pytest.mark.slow, pytest.mark.clock]


def test_notify_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, f'database = "{postgres_url}"\n'
                                 + smtp_toml(sink.port))
        service = Services.open(settings)
        try:
            engine = service.db.engine
            assert current_revision(engine) == head_revision()  # 0002 and later
            command.downgrade(_alembic_config(engine), "0001")
            assert "notifications" not in inspect(engine).get_table_names()
            command.upgrade(_alembic_config(engine), "head")
            assert {"notifications", "digest_snapshots", "subscriptions"} <= set(
                inspect(engine).get_table_names())

            now = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)
            first = Notifier(service.db, settings).send_digest(date(2026, 11, 23), now)
            # A second sender that got past the quick check still loses the unique insert.
            late = Notifier(service.db, settings)
            outcome = late.outbox.deliver("digest", "2026-11-23", _message(), now)
            assert [o.status for o in first] == ["sent"]
            assert [o.status for o in outcome] == ["skipped"]
            assert sink.wait_for(1)

            # The catch-up sends the latest due digest by the clock: pinned to that morning,
            # that is the one already sent (on the wall clock it would be today's).
            with time_machine.travel(datetime(2026, 11, 23, 8, 30, tzinfo=UTC), tick=True):
                scheduler = start_scheduler(settings, service)
                try:
                    assert scheduler.wait_for_runs(JOB_CATCH_UP, 1)
                    assert scheduler.next_run(JOB_DIGEST) is not None
                finally:
                    scheduler.shutdown()
            assert JOBS_TABLE in inspect(engine).get_table_names()
        finally:
            service.db.dispose()
    assert len(sink.messages) == 1


def _message() -> Message:
    return Message(kind="digest", subject="s", text="t")
