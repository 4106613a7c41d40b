"""The Notifications page: a real test send to a loopback apprise endpoint, subscriptions."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gateway.config import Settings
from tests.helpers import Services
from tests.integration.notify_support import http_server
from tests.web.support import login, make_app, post

pytestmark = pytest.mark.clock


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def test_test_message_reaches_the_channel_and_failures_show(
    make_settings: Callable[[str], Settings],
) -> None:
    with http_server() as sink:
        settings = make_settings(
            f'language = "en"\n[notify]\napprise_urls = ["json://127.0.0.1:{sink.port}/hook"]\n')
        service = Services.open(settings)
        app = make_app(settings, service)
        with app.test_client() as client:
            login(client, service)
            page = client.get("/notifications")
            assert page.status_code == 200 and "json" in text(page)
            sent = post(client, "/notifications/test")
            assert sent.status_code == 200 and 'id="test-results"' in text(sent)
            assert sink.bodies, "the apprise endpoint received nothing"
            assert "Ringfence" in json.loads(sink.bodies[-1])["message"] + \
                json.loads(sink.bodies[-1]).get("title", "")
            sink.post_status = 500  # the channel's own error is shown, not swallowed
            failed = post(client, "/notifications/test")
            assert 'class="error"' in text(failed)


def test_subscriptions_are_validated_listed_and_refreshed(
    make_settings: Callable[[str], Settings],
) -> None:
    with http_server() as sink:
        sink.responses.append((200, b"0612345678,pest\n0699999999\n", "text/csv"))
        settings = make_settings('language = "en"')
        service = Services.open(settings)
        app = make_app(settings, service)
        with app.test_client() as client:
            login(client, service)
            bad = post(client, "/notifications/subscriptions",
                       {"list": "block", "url": "ftp://example.invalid/x", "refresh_hours": "24"})
            assert bad.status_code == 400 and 'value="ftp://example.invalid/x"' in text(bad)
            url = f"http://127.0.0.1:{sink.port}/list.csv"
            ok = post(client, "/notifications/subscriptions",
                      {"list": "block", "url": url, "label": "neighbours", "refresh_hours": "6",
                       "lan": "1"})
            assert ok.status_code == 200 and url in text(ok)
            refreshed = post(client, "/notifications/subscriptions/1/refresh")
            assert "Refreshed: 2 entries" in text(refreshed)
            sources = {e.pattern: e.source for e in service.store.entries.find("block")}
            assert sources == {"+33612345678": "subscription:1", "+33699999999": "subscription:1"}
            removed = post(client, "/notifications/subscriptions/1/remove")
            assert "Subscription removed" in text(removed)
            assert service.store.entries.count("block") == 0


def test_digest_time_set_in_the_ui_moves_the_scheduled_digest(
    make_settings: Callable[[str], Settings],
) -> None:
    from gateway.ops.scheduler import JOB_DIGEST, start_scheduler

    settings = make_settings('language = "en"\n[notify]\ndigest_time = "08:00"\n')
    service = Services.open(settings)
    app = make_app(settings, service)
    scheduler = start_scheduler(settings, service)
    try:
        with app.test_client() as client:
            login(client, service)
            bad = post(client, "/notifications/digest-time", {"digest_time": "25:00"})
            assert bad.status_code == 400 and 'value="25:00"' in text(bad)
            assert "HH:MM" in text(bad)
            ok = post(client, "/notifications/digest-time", {"digest_time": "19:30"})
            assert ok.status_code == 200 and 'value="19:30"' in text(ok)
        scheduler.follow_digest_time()  # what the minute tick does in the gateway
        trigger = repr(scheduler.scheduler.get_job(JOB_DIGEST, jobstore="default").trigger)
        assert "hour='19'" in trigger and "minute='30'" in trigger
    finally:
        scheduler.shutdown(wait=False)
