"""The `ringfence digest --preview`, `subscriptions` and `retention` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.cli import main
from gateway.store.models import DigestSnapshotRow, NotificationRow
from tests.helpers import Services
from tests.integration.notify_support import http_server, make_settings

pytestmark = pytest.mark.clock


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "data"\nlanguage = "en"\n')
    assert main(["-c", str(path), "db", "upgrade"]) == 0
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["-c", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_prints_every_format_and_records_nothing(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replay = config.parent / "calls.csv"
    replay.write_text("2026-11-22T10:00,0612345678,<b>Bob</b>\n"
                      "2026-11-22T10:05,0162000001,PUB\n")
    assert run(config, capsys, "replay", str(replay), "--record")[0] == 0
    code, text, _ = run(config, capsys, "digest", "--preview", "--date", "2026-11-23")
    assert code == 0 and text.startswith("Subject: Ringfence: 2 calls, 1 screened")
    code, page, _ = run(config, capsys, "digest", "--preview", "--date", "2026-11-23",
                        "--format", "html")
    assert code == 0 and page.startswith("<!DOCTYPE html>") and "<b>Bob" not in page
    code, sms, _ = run(config, capsys, "digest", "--date", "2026-11-23", "--format", "sms")
    assert code == 0 and sms.startswith("[") and "Ringfence 23 Nov" in sms
    assert run(config, capsys, "digest", "--preview", "--date", "23/11")[0] == 2
    settings = make_settings(config.parent)
    with Services.open(settings).db.session() as s:
        assert s.scalar(select(func.count()).select_from(NotificationRow)) == 0
        assert s.scalar(select(func.count()).select_from(DigestSnapshotRow)) == 0


def test_subscription_commands(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = "".join(f"+3316200{i:04d}\n" for i in range(150)).encode()
    with http_server() as server:
        server.responses = [(200, big, "text/plain")]
        url = f"http://127.0.0.1:{server.port}/list"
        code, out, _ = run(config, capsys, "subscriptions", "add", "block", url, "--label", "spam",
                           "--lan")
        assert code == 0 and "150 entries" in out
        [listed] = [json.loads(line) for line in
                    run(config, capsys, "subscriptions", "list")[1].splitlines()]
        assert (listed["entries"], listed["source"], listed["label"]) == (
            150, "subscription:1", "spam")
        server.responses = [(200, b"+33162000001\n", "text/plain")]
        code, _, err = run(config, capsys, "subscriptions", "refresh", "1")
        assert code == 1 and "shrank from 150 to 1" in err
        assert run(config, capsys, "subscriptions", "refresh", "1", "--force")[0] == 0
        code, _, err = run(config, capsys, "subscriptions", "add", "block", "ftp://x/y")
        assert code == 2 and "only http" in err
    assert run(config, capsys, "subscriptions", "remove", "1")[0] == 0
    assert run(config, capsys, "subscriptions", "remove", "1")[0] == 1
    assert run(config, capsys, "subscriptions", "list")[1] == ""
    code, out, _ = run(config, capsys, "retention")
    assert code == 0 and "calls" in out


def test_notify_test_without_channels_says_how_to_add_one(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(config, capsys, "notify", "test")
    assert code == 1 and "apprise_urls" in err
