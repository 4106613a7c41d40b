"""The telemarketing complaint report: which numbers and facts (law vs heuristic), each call in
the owner's zone (a Sunday, a public holiday, both DST nights in Europe/Paris), the paste-ready
text, the CSV (neutralised) and the 33700 form of texts."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Settings
from gateway.ops.report import build_report, period, render_csv, render_json, render_text
from gateway.screening.complaint import Basis, ReportedCall, analyse, most_within
from gateway.screening.decide import Decision
from gateway.screening.rules import Action
from gateway.screening.telemarketing import legal_hours_breach, within_legal_hours
from gateway.screening.texts import TextDecision, TextVerdict
from tests.helpers import Services

pytestmark = pytest.mark.clock

PARIS = "Europe/Paris"
TUESDAY_15H = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # 15:00 in Paris
SUNDAY_11H = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # 11:00 in Paris
TUESDAY_21H = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)  # 21:00 in Paris
ARMISTICE_11H = datetime(2026, 11, 11, 10, 0, tzinfo=UTC)  # a Wednesday, public holiday
# 25 October 2026: Paris goes back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
DST_FIRST = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
DST_SECOND = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET


def call(at: datetime, number: str = "+33162000001", action: str = "reject:603",
         step: str = "rule") -> ReportedCall:
    return ReportedCall(at=at, number=number, action=action, step=step)


def codes(facts: tuple) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(f.code, f.basis.value) for f in facts]


def test_legal_hours_say_why_and_agree_with_the_screening_rule() -> None:
    assert legal_hours_breach(datetime(2026, 11, 22, 11, 0), "FR") == "weekend"
    assert legal_hours_breach(datetime(2026, 11, 11, 11, 0), "FR") == "holiday"
    assert legal_hours_breach(datetime(2026, 11, 24, 13, 30), "FR") == "hours"
    assert legal_hours_breach(datetime(2026, 11, 24, 15, 0), "FR") is None
    for hour in range(24):
        moment = datetime(2026, 11, 24, hour, 15)
        assert within_legal_hours(moment, "FR") is (legal_hours_breach(moment, "FR") is None)


def test_a_reserved_range_is_law_and_each_call_says_if_it_was_outside_hours() -> None:
    [finding] = analyse([call(TUESDAY_15H), call(SUNDAY_11H), call(ARMISTICE_11H)], PARIS)
    assert codes(finding.facts) == [("arcep_range", "law")]  # 2 calls in 7 days: no repeat
    assert finding.facts[0].params == {"range": "0162"}
    by_time = {c.local.strftime("%a %H:%M"): c.facts for c in finding.calls}
    assert codes(by_time["Sun 11:00"]) == [("outside_hours", "law"), ("no_consent", "law")]
    assert by_time["Sun 11:00"][0].params == {"why": "weekend"}
    assert by_time["Wed 11:00"][0].params == {"why": "holiday"}
    assert codes(by_time["Tue 15:00"]) == [("no_consent", "law")]  # after 11 August 2026
    assert finding.unlawful_calls == 3


def test_before_11_august_2026_a_call_in_legal_hours_breaks_no_law() -> None:
    [finding] = analyse([call(datetime(2026, 6, 2, 13, 0, tzinfo=UTC))], PARIS)  # 15:00
    assert finding.calls[0].facts == () and finding.unlawful_calls == 0


def test_ordinary_numbers_are_reported_only_when_they_repeat_or_are_blocked() -> None:
    friend = [call(TUESDAY_21H, "+33612345678", "pass", "default")]
    assert analyse(friend, PARIS) == []
    pest = [call(TUESDAY_21H + timedelta(days=i), "+33612345679", "reject:603", "block")
            for i in range(2)]
    [finding] = analyse(pest, PARIS)
    assert codes(finding.facts) == [("block_list", "owner")]
    flood = [call(TUESDAY_15H + timedelta(days=i), "+33612345670", "pass", "default")
             for i in range(5)]
    [finding] = analyse(flood, PARIS)
    assert codes(finding.facts) == [("over_limit", "law"), ("repeats", "heuristic")]


def test_most_within_counts_a_sliding_window() -> None:
    times = [TUESDAY_15H + timedelta(days=d) for d in (0, 1, 2, 10, 11)]
    assert most_within(times, timedelta(days=7)) == 3
    assert most_within(times, timedelta(days=30)) == 5
    assert most_within([], timedelta(days=1)) == 0


def test_both_dst_night_calls_are_on_the_sunday_with_their_own_offsets() -> None:
    [finding] = analyse([call(DST_FIRST), call(DST_SECOND)], PARIS)
    assert [c.local.isoformat() for c in finding.calls] == [
        "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"]
    assert all(c.facts[0].params == {"why": "weekend"} for c in finding.calls)


# --------------------------------------------------------------------------- from the store


@pytest.fixture
def service(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, database=f"sqlite:///{tmp_path}/rf.db")
    return Services.open(settings)


def log(service: Services, number: str, at: datetime, action: str = "reject:603",
        step: str = "rule") -> None:
    decision = Decision(Action.parse(action), "t", step)
    service.book.record_call(service.screener.caller(number), decision, at=at)


def text(service: Services, number: str, body: str, at: datetime,
         verdict: TextVerdict = TextVerdict.REFUSED, step: str = "rule") -> None:
    decision = TextDecision(verdict, 603, reason="t", step=step)
    service.store.messages.add(service.screener.caller(number), decision, at=at, body=body)


def test_the_report_reads_the_period_in_the_owners_zone(service: Services) -> None:
    log(service, "0162000001", DST_FIRST)
    log(service, "0162000001", DST_SECOND)
    log(service, "0162000001", datetime(2026, 10, 25, 23, 30, tzinfo=UTC))  # 26 Oct, 00:30
    log(service, "0612345678", DST_FIRST, "pass", "default")
    report = build_report(service.store, date(2026, 10, 25), date(2026, 10, 25),
                          timezone=PARIS)
    assert [n.finding.number for n in report.numbers] == ["+33162000001"]
    assert report.totals == {"numbers": 1, "calls": 2, "unlawful_calls": 2,
                             "outside_hours": 2, "texts": 0}
    words = render_text(report)
    assert "dimanche 25/10/2026 02:30" in words and words.count("02:30") == 2
    assert "[loi] numéro dans une tranche réservée par l'ARCEP" in words
    assert "décision n° 2022-1583" in words and "décret n° 2022-1313" in words
    assert "Ringfence : rejeté (603)" in words
    english = render_text(report, "en")
    assert "Sunday 2026-10-25 02:30" in english and "[law] call outside the hours" in english


def test_texts_get_the_33700_form_and_stay_inert(service: Services) -> None:
    log(service, "0162000001", SUNDAY_11H)
    text(service, "0162000001", "=HYPERLINK(\"http://x\")\x1b[2J\u202eevil", SUNDAY_11H)
    text(service, "0755000000", "only a text, blocked", SUNDAY_11H, step="block")
    text(service, "0612345678", "a friend", SUNDAY_11H, verdict=TextVerdict.ACCEPTED,
         step="default")
    report = build_report(service.store, date(2026, 11, 1), date(2026, 11, 30),
                          timezone=PARIS)
    assert sorted(n.finding.number for n in report.numbers) == ["+33162000001",
                                                                "+33755000000"]
    words = render_text(report)
    assert "transférez-le tel quel au 33700" in words and "(01 62 00 00 01)" in words
    assert "\x1b" not in words and "\u202e" not in words
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    assert rows[0][:3] == ["number", "national", "kind"]
    texts = [r for r in rows[1:] if r[2] == "text"]
    assert any(r[9].startswith("'=HYPERLINK") for r in texts)  # neutralised for spreadsheets
    calls = [r for r in rows[1:] if r[2] == "call"]
    assert calls[0][4] == "dimanche" and "hors des horaires" in calls[0][6]
    data = render_json(report, "en")
    sms = next(n for n in data["numbers"] if n["number"] == "+33162000001")["texts"]
    assert sms[0]["forward_to"] == "33700"
    assert data["numbers"][0]["facts"][0]["basis"] == Basis.LAW.value


@time_machine.travel(datetime(2026, 11, 29, 23, 30, tzinfo=UTC), tick=False)  # 30/11 in Paris
def test_the_default_period_is_the_last_30_local_days() -> None:
    today = datetime.now(UTC).astimezone(ZoneInfo(PARIS)).date()
    assert period(None, None, today) == (date(2026, 11, 1), date(2026, 11, 30))
    with pytest.raises(ValueError, match="after --until"):
        period(date(2026, 11, 2), date(2026, 11, 1), today)


@given(st.lists(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                             timezones=st.just(UTC)), min_size=1, max_size=12),
       st.sampled_from(["Europe/Paris", "America/Cayenne", "Pacific/Noumea"]))
def test_outside_hours_is_told_exactly_when_the_screening_rule_says_so(
    moments: list[datetime], zone: str,
) -> None:
    [finding] = analyse([call(m) for m in moments], zone)  # a reserved range: always reported
    assert len(finding.calls) == len(moments)
    for c in finding.calls:
        outside = any(f.code == "outside_hours" for f in c.facts)
        assert outside is not within_legal_hours(c.local, "FR")
        assert c.local.utcoffset() == c.call.at.astimezone(ZoneInfo(zone)).utcoffset()
        assert all(f.basis is Basis.LAW for f in c.facts)
    assert 1 <= most_within(sorted(moments), timedelta(days=7)) <= len(moments)
