"""apprise channels against a local HTTP endpoint (json://), and the `notify test` command."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.cli import main
from gateway.notify.notifier import Notifier
from gateway.store.models import NotificationRow
from tests.helpers import Services
from tests.integration.notify_support import http_server, make_settings

pytestmark = pytest.mark.clock

AFTER_DIGEST = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)


def test_digest_reaches_a_json_endpoint(tmp_path: Path) -> None:
    with http_server() as sink:
        url = f"json://127.0.0.1:{sink.port}/hook"
        settings = make_settings(tmp_path, f'[notify]\napprise_urls = ["{url}"]\n')
        service = Services.open(settings)
        outcomes = Notifier(service.db, settings).send_digest(date(2026, 11, 23), AFTER_DIGEST)
        assert [o.status for o in outcomes] == ["sent"]
    assert sink.paths == ["/hook"]
    body = json.loads(sink.bodies[0])
    assert body["title"].startswith("Ringfence: 0 calls")
    assert "Ringfence daily digest" in body["message"]
    assert outcomes[0].channel.startswith("json:") and "127.0.0.1" not in outcomes[0].channel


def test_failing_endpoint_is_retried_with_its_error_recorded(tmp_path: Path) -> None:
    with http_server() as sink:
        sink.post_status = 500
        url = f"json://127.0.0.1:{sink.port}/hook"
        settings = make_settings(tmp_path, f'[notify]\napprise_urls = ["{url}"]\n')
        service = Services.open(settings)
        notifier = Notifier(service.db, settings)
        [outcome] = notifier.send_digest(date(2026, 11, 23), AFTER_DIGEST)
        assert outcome.status == "retry"
        assert "500" in (outcome.error or "")
        sink.post_status = 200
        notifier.tick(AFTER_DIGEST + timedelta(minutes=2))
    with service.db.session() as s:
        row = s.scalars(select(NotificationRow)).one()
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(sink.bodies) == 2


def test_notify_test_prints_each_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    with http_server() as good, http_server() as bad:
        bad.post_status = 403
        config = tmp_path / "config.toml"
        config.write_text(
            'data_dir = "data"\nlanguage = "en"\n[notify]\napprise_urls = ['
            f'"json://127.0.0.1:{good.port}/ok", "json://127.0.0.1:{bad.port}/no"]\n')
        assert main(["-c", str(config), "db", "upgrade"]) == 0
        capsys.readouterr()
        assert main(["-c", str(config), "notify", "test"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith("json:") and out[0].endswith(": OK")
    assert "FAILED" in out[1] and "403" in out[1]
    assert json.loads(good.bodies[0])["title"] == "Ringfence: test message"
