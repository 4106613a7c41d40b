"""Telemarketing number ranges and legal calling hours, per country. Pure data and date maths.

France: ARCEP decision 2022-1583 (in force 1 January 2023) reserves these ranges for
telemarketing / automated calls. Decree 2022-1313 limits telemarketing calls to Monday–Friday,
10:00–13:00 and 14:00–20:00, never on public holidays (since 1 March 2023); from 11 August 2026
only with prior consent (law 2025-594 of 30 June 2025, Code de la consommation art. L. 223-1:
`CONSENT_REQUIRED_FROM`). 0937–0939 are delivery drivers and ride-hailing: never in a range here.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

# E.164 prefixes. 0162 → +33162; overseas 09475–09479 → +339475…+339479.
RANGES: dict[str, tuple[str, ...]] = {
    "FR": (
        "+33162", "+33163", "+33270", "+33271", "+33377", "+33378", "+33424", "+33425",
        "+33568", "+33569", "+33948", "+33949",
        "+339475", "+339476", "+339477", "+339478", "+339479",
    ),
}

# Ranges that a preset must never cover, whatever its table says (ARCEP: 0937–0939).
PROTECTED: dict[str, tuple[str, ...]] = {"FR": ("+33937", "+33938", "+33939")}

# Since this date telemarketing needs the consumer's prior consent, at any hour (France).
CONSENT_REQUIRED_FROM = date(2026, 8, 11)

LEGAL_WINDOWS: dict[str, tuple[tuple[time, time], ...]] = {
    "FR": ((time(10, 0), time(13, 0)), (time(14, 0), time(20, 0))),
}


def telemarketing_prefix(number: str, country: str) -> str | None:
    """The reserved range `number` (E.164) falls in, or None."""
    if any(number.startswith(p) for p in PROTECTED.get(country, ())):
        return None
    for prefix in RANGES.get(country, ()):
        if number.startswith(prefix):
            return prefix
    return None


def national_range(prefix: str) -> str:
    """Show an E.164 prefix of a French range the way French owners know it: +33162 → 0162."""
    return "0" + prefix[3:] if prefix.startswith("+33") else prefix


def _easter_sunday(year: int) -> date:
    """Gregorian Easter (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def french_public_holidays(year: int) -> frozenset[date]:
    """Metropolitan France's eleven public holidays of `year`."""
    easter = _easter_sunday(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    moving = [easter + timedelta(days=1), easter + timedelta(days=39), easter + timedelta(days=50)]
    return frozenset([date(year, m, d) for m, d in fixed] + moving)


def legal_hours_breach(local: datetime, country: str) -> str | None:
    """Why telemarketing is not allowed at `local` (a local wall-clock time) in `country`:
    "weekend", "holiday" or "hours"; None when it is allowed (or the country has no rule)."""
    windows = LEGAL_WINDOWS.get(country)
    if windows is None:
        return None
    if local.weekday() >= 5:
        return "weekend"
    if local.date() in french_public_holidays(local.year):
        return "holiday"
    clock = local.time()
    return None if any(start <= clock < end for start, end in windows) else "hours"


def within_legal_hours(local: datetime, country: str) -> bool:
    """Whether telemarketing is allowed at `local` (a local wall-clock time) in `country`."""
    return legal_hours_breach(local, country) is None
