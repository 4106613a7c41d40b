"""The same schema, repository and screening on a real PostgreSQL server started by the test."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from gateway.config import Settings
from gateway.store.calls import CallFilter
from gateway.store.models import utcnow
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


def test_postgres_searches_numbers_and_names_and_keeps_the_heartbeat(
        postgres_url: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(f'database = "{postgres_url}"')
    service = Services.open(settings)
    try:
        store = service.store
        # The module's database is shared: numbers of their own (06 55…, 06 59…, 06 60…).
        for number, name in (("0655345678", "Jean DUPONT"), ("0655999999", ""),
                             ("0659000000", ""), ("0660000000", "")):
            who = service.screener.caller(number, name)
            service.book.record_call(who, service.screener.screen(who, NOW), at=NOW)

        def found(text: str) -> set[str]:
            return {r.number or "" for r in store.calls.recent(CallFilter().search(text, "FR"))}

        assert found("06 55") == {"+33655345678", "+33655999999"}
        assert found("0659") == {"+33659000000"}  # the range ends at +3366, not after it
        assert found("dupont") == {"+33655345678"}  # ILIKE: any case
        assert found("5345") == {"+33655345678"}
        store.entries.add("block", "0655*", confirm=True)
        assert [e.pattern for e in store.entries.find("block", search="0655345678")] == \
            ["+33655"]
        instance = store.status.started(mode="direct", listening=["127.0.0.1:5060"],
                                        version="0.1.0", at=utcnow())
        store.status.beat(instance, utcnow())
        [row] = store.status.all()
        assert row.listening == ["127.0.0.1:5060"] and row.stopped_at is None
    finally:
        service.db.dispose()
