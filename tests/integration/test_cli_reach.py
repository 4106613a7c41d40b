"""`ringfence messages` and `ringfence report telemarketing` on a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from gateway.screening.texts import TextDecision, TextVerdict
from tests.helpers import Services
from tests.integration.test_cli import config, json_lines, ringfence

pytestmark = pytest.mark.clock

__all__ = ["config"]  # the fixture, shared with test_cli

SUNDAY = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # 11:00 in Paris


def seed(config: Path) -> None:
    ringfence(config, "db", "upgrade")
    service = Services.open(load_settings(config))
    try:
        decision = Decision(Action.parse("reject:603"), "t", "rule")
        service.book.record_call(service.screener.caller("0162000001"), decision, at=SUNDAY)
        for verdict, body in ((TextVerdict.ACCEPTED, "À demain\x1b[2J"),
                              (TextVerdict.REFUSED, "Gagnez un iPhone")):
            service.store.messages.add(
                service.screener.caller("0162000001" if verdict is TextVerdict.REFUSED
                                        else "0612345678"),
                TextDecision(verdict, 202 if verdict is TextVerdict.ACCEPTED else 603,
                             reason="t", step="rule"),
                at=SUNDAY, body=body)
    finally:
        service.db.dispose()


def test_messages_prints_json_lines_and_filters_by_verdict(config: Path) -> None:
    seed(config)
    lines = json_lines(ringfence(config, "messages").stdout)
    assert {line["verdict"] for line in lines} == {"accepted", "refused"}
    accepted = next(line for line in lines if line["verdict"] == "accepted")
    assert accepted["text"] == "À demain\x1b[2J" and accepted["time"].endswith("+01:00")
    refused = json_lines(ringfence(config, "messages", "--verdict", "refused").stdout)
    assert [line["sender"] for line in refused] == ["+33162000001"]


def test_report_in_each_format(config: Path) -> None:
    seed(config)
    dates = ("--since", "2026-11-01", "--until", "2026-11-30")
    text = ringfence(config, "report", "telemarketing", *dates).stdout
    assert "dimanche 22/11/2026 11:00" in text and "33700" in text
    assert "[loi] appel hors des horaires autorisés" in text
    data = json.loads(ringfence(config, "report", "telemarketing", *dates,
                                "--format", "json", "--language", "en").stdout)
    assert data["totals"]["numbers"] == 1 and data["numbers"][0]["texts"][0]["text"] == \
        "Gagnez un iPhone"
    csv_text = ringfence(config, "report", "telemarketing", *dates, "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("number,national,kind,local_time")


def test_report_names_a_bad_date(config: Path) -> None:
    result = ringfence(config, "report", "telemarketing", "--since", "22/11/2026", check=False)
    assert result.returncode == 2
    assert "--since '22/11/2026': expected a date as YYYY-MM-DD" in result.stderr
