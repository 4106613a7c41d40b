"""The same schema, repository and screening on a real PostgreSQL server started by the test."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from gateway.config import Settings
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services

pytestmark = pytest.mark.slow


def test_postgres_runs_the_same_screening(postgres_url: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(f'database = "{postgres_url}"')
    service = Services.open(settings)
    try:
        store = service.store
        assert "telemarketing" in [r.kind.value for r in store.rules.all()]
        report = store.list_files.import_csv(
            io.StringIO("0612345678,pest\n0612345678\nbad\n0162*\n"), "block")
        assert (report.added, report.duplicates, len(report.rejected)) == (2, 1, 1)
        store.entries.add("block", "06 99 ?? ?? ??", action="announce:sit")
        screener = service.screener
        assert str(screener.screen(screener.caller("0612345678"), NOW).action) == "reject:603"
        assert str(screener.screen(screener.caller("0699112233"), NOW).action) == "announce:sit"
        who = service.screener.caller("0700000001")
        for minute in range(4):
            at = NOW + timedelta(minutes=minute)
            service.book.record_call(who, service.screener.screen(who, at), at=at)
        assert next(r.action for r in store.calls.recent(limit=4)) == "voicemail"  # repeat limit
        [row] = store.calls.recent(limit=1)
        assert row.at == NOW + timedelta(minutes=3) and row.at.tzinfo is not None
        # The schema migrates idempotently on PostgreSQL too.
        Services.open(settings).db.dispose()
    finally:
        service.db.dispose()


def test_an_export_imports_back_the_same_entries_on_postgres(postgres_url: str,  # type: ignore[no-untyped-def]
                                                              make_settings) -> None:
    settings: Settings = make_settings(f'database = "{postgres_url}"')
    service = Services.open(settings)
    try:
        entries, files = service.store.entries, service.store.list_files
        entries.add("block", "0612000001", label="=spam, really", action="reject:404")
        entries.add("block", "0612000002", expires_at=NOW - timedelta(days=2))
        entries.add("allow", "0612000003", label="once", once=True)

        def listed() -> list[tuple[object, ...]]:
            return sorted((e.list.value, e.pattern, str(e.action) if e.action else None,
                           e.label, e.expires_at, e.once) for e in entries.find())

        before = listed()
        exported = {name: io.StringIO() for name in ("allow", "block")}
        for name, out in exported.items():
            files.export_csv(name, out)
        for entry in entries.find():
            entries.remove(entry.id)
        for name, out in exported.items():  # batched inserts: PostgreSQL has no staging
            assert files.import_csv(io.StringIO(out.getvalue()), name).rejected == []
        assert listed() == before
    finally:
        service.db.dispose()
