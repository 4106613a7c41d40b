"""The same schema, repository and screening on a real PostgreSQL server started by the test."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from gateway.config import Settings
from gateway.service import open_service
from tests.helpers import TUESDAY_AFTERNOON as NOW

pytestmark = pytest.mark.slow


def test_postgres_runs_the_same_screening(postgres_url: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(f'database = "{postgres_url}"')
    service = open_service(settings)
    try:
        repo = service.repo
        assert "telemarketing" in [r.kind.value for r in repo.rules()]
        report = repo.import_csv(io.StringIO("0612345678,pest\n0612345678\nbad\n0162*\n"),
                                 "block")
        assert (report.added, report.duplicates, len(report.rejected)) == (2, 1, 1)
        repo.add_entry("block", "06 99 ?? ?? ??", action="announce:sit")
        assert str(service.screen(service.caller("0612345678"), NOW).action) == "reject:603"
        assert str(service.screen(service.caller("0699112233"), NOW).action) == "announce:sit"
        who = service.caller("0700000001")
        for minute in range(4):
            at = NOW + timedelta(minutes=minute)
            service.record_call(who, service.screen(who, at), at=at)
        assert next(r.action for r in repo.calls(limit=4)) == "voicemail"  # repeat limit
        [row] = repo.calls(limit=1)
        assert row.at == NOW + timedelta(minutes=3) and row.at.tzinfo is not None
        # The schema migrates idempotently on PostgreSQL too.
        open_service(settings).db.dispose()
    finally:
        service.db.dispose()
