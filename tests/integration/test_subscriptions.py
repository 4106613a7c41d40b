"""List subscriptions served by a local HTTP server: failures keep the old entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.feeds import subscriptions as subs
from tests.helpers import Services
from tests.integration.notify_support import http_server, make_settings

pytestmark = pytest.mark.clock

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def patterns(service: object, source: str) -> set[str]:
    store = service.store  # type: ignore[attr-defined]
    return {e.pattern for e in store.entries.find("block", source=source)}


def test_failed_download_keeps_entries_then_refresh_replaces_them(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    service.store.entries.add("block", "0612345678", label="mine")
    with http_server() as server:
        server.responses = [(200, b"number,label\n0162000001,pub\n0162000002\n", "text/csv")]
        sub = subs.add_subscription(service.db, "block", f"http://127.0.0.1:{server.port}/l.csv",
                                    lan=True)
        source = subs.source_of(sub.id)
        first = subs.refresh(service.db, settings, sub.id, NOW)
        assert (first.ok, first.entries) == (True, 2)
        assert patterns(service, source) == {"+33162000001", "+33162000002"}

        server.responses = [(500, b"oops", "text/plain"),
                            (200, b"0162000003\n0162000004\n0162000005\n", "text/plain")]
        failed = subs.refresh(service.db, settings, sub.id, NOW + timedelta(days=1))
        assert not failed.ok and "500" in (failed.error or "")
        assert patterns(service, source) == {"+33162000001", "+33162000002"}
        [row] = subs.list_subscriptions(service.db)
        assert row.last_error and row.entry_count == 2
        assert subs.is_due(row, NOW + timedelta(days=1, hours=1))  # retried within the hour

        done = subs.refresh_due(service.db, settings, NOW + timedelta(days=1, hours=1))
        assert [r.entries for r in done] == [3]
        assert patterns(service, source) == {"+33162000003", "+33162000004", "+33162000005"}
    assert patterns(service, "manual") == {"+33612345678"}  # never touched
    [row] = subs.list_subscriptions(service.db)
    assert (row.entry_count, row.last_error) == (3, None)


def test_empty_or_html_or_oversized_lists_are_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "[subscriptions]\nmax_mb = 1\n")
    service = Services.open(settings)
    with http_server() as server:
        sub = subs.add_subscription(service.db, "block", f"http://127.0.0.1:{server.port}/l",
                                    lan=True)
        server.responses = [(200, b"0162000001\n", "text/plain")]
        assert subs.refresh(service.db, settings, sub.id, NOW).ok
        for body, ctype in [(b"", "text/plain"), (b"# nothing\nnot a number\n", "text/plain"),
                            (b"<html><body>login</body></html>", "text/plain"),
                            (b"0162000009\n", "text/html"),
                            (b"0162000009\n" * 200_000, "text/plain")]:
            server.responses = [(200, body, ctype)]
            result = subs.refresh(service.db, settings, sub.id, NOW)
            assert not result.ok, body[:30]
            assert patterns(service, subs.source_of(sub.id)) == {"+33162000001"}


def test_local_file_subscription_and_removal(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    listing = tmp_path / "friends.txt"
    listing.write_text("+33612345678\n0698765432,Marie\n")
    sub = subs.add_subscription(service.db, "allow", str(listing), label="friends")
    assert subs.refresh(service.db, settings, sub.id, NOW).entries == 2
    assert len(service.store.entries.find("allow", source=subs.source_of(sub.id))) == 2
    assert subs.remove_subscription(service.db, settings, sub.id)
    assert service.store.entries.find("allow") == []
    assert subs.list_subscriptions(service.db) == []
