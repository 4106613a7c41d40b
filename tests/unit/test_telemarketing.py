"""French telemarketing ranges, legal hours and public holidays."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from gateway.screening.telemarketing import (
    _easter_sunday,
    french_public_holidays,
    telemarketing_prefix,
    within_legal_hours,
)

pytestmark = pytest.mark.clock


def test_easter_dates() -> None:
    # Known Easter Sundays (published calendars).
    assert _easter_sunday(2024) == date(2024, 3, 31)
    assert _easter_sunday(2025) == date(2025, 4, 20)
    assert _easter_sunday(2026) == date(2026, 4, 5)
    assert _easter_sunday(2027) == date(2027, 3, 28)


def test_french_holidays_2026() -> None:
    holidays = french_public_holidays(2026)
    assert len(holidays) == 11
    assert date(2026, 4, 6) in holidays  # Easter Monday
    assert date(2026, 5, 14) in holidays  # Ascension
    assert date(2026, 5, 25) in holidays  # Whit Monday
    assert date(2026, 7, 14) in holidays


def test_legal_windows() -> None:
    assert within_legal_hours(datetime(2026, 11, 24, 10, 0), "FR")
    assert within_legal_hours(datetime(2026, 11, 24, 12, 59), "FR")
    assert not within_legal_hours(datetime(2026, 11, 24, 13, 30), "FR")  # lunch
    assert within_legal_hours(datetime(2026, 11, 24, 19, 59), "FR")
    assert not within_legal_hours(datetime(2026, 11, 24, 20, 0), "FR")
    assert not within_legal_hours(datetime(2026, 11, 24, 9, 59), "FR")
    assert not within_legal_hours(datetime(2026, 11, 28, 11, 0), "FR")  # Saturday
    assert not within_legal_hours(datetime(2026, 12, 25, 11, 0), "FR")  # Christmas, Friday
    assert within_legal_hours(datetime(2026, 11, 24, 3, 0), "US")  # no table: no limit


def test_protected_ranges_are_never_telemarketing() -> None:
    for number in ("+33937000000", "+33938000000", "+33939000000"):
        assert telemarketing_prefix(number, "FR") is None
    assert telemarketing_prefix("+33947512345", "FR") == "+339475"
    assert telemarketing_prefix("+33947412345", "FR") is None
    assert telemarketing_prefix("+33162000000", "BE") is None
