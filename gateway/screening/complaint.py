"""What made calls unlawful or suspicious, per calling number: the facts of a complaint. Pure.

Each fact says whether it is the law or a heuristic (`Basis`), so the owner knows what a
complaint can rest on:

- law: the number is in a range ARCEP reserves for telemarketing (decision 2022-1583);
- law: the call came outside the hours decree 2022-1313 allows telemarketing (Code de la
  consommation art. D. 223-9: Monday to Friday 10-13 h and 14-20 h, never on a weekend or a
  public holiday) — it applies to sales calls, which a reserved range says the call was;
- law: since 11 August 2026 telemarketing needs the consumer's prior consent at any hour
  (law 2025-594 of 30 June 2025, Code de la consommation art. L. 223-1) — unlawful unless
  the owner gave this caller consent;
- law: more than four calls in 30 days (art. D. 223-9) — the limit is per professional, and
  one number is only a hint that the calls came from the same one;
- heuristic: `repeat_calls` calls or more from one number within `repeat_days` days;
- the owner's: the number is on the owner's block list.

A number is reported when it is in a reserved range, on the block list, or repeats; the
hours and consent facts are then given for each of its calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from gateway.screening.telemarketing import (
    CONSENT_REQUIRED_FROM,
    legal_hours_breach,
    national_range,
    telemarketing_prefix,
)

DECREE_LIMIT = 4  # calls in DECREE_DAYS by one professional (art. D. 223-9, third paragraph)
DECREE_DAYS = 30


class Basis(StrEnum):
    """What a fact rests on."""

    LAW = "law"
    HEURISTIC = "heuristic"
    OWNER = "owner"  # the owner's own list


@dataclass(frozen=True)
class Fact:
    """One reason a call or a number is in the report: a code, its basis and its values."""

    code: str  # arcep_range | outside_hours | no_consent | over_limit | repeats | block_list
    basis: Basis
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ReportedCall:
    """A logged call, as the report needs it."""

    at: datetime  # aware
    number: str  # E.164
    action: str  # as the log stores it: pass, reject:603, announce:sit…
    outcome: str | None = None
    step: str = ""  # the screening step that decided (block: the owner's block list)


@dataclass(frozen=True)
class CallFinding:
    """One call of a reported number: its local time and its own facts (hours, consent)."""

    call: ReportedCall
    local: datetime
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class NumberFinding:
    """A reported number: the facts about it and each of its calls."""

    number: str
    facts: tuple[Fact, ...]
    calls: tuple[CallFinding, ...]

    @property
    def unlawful_calls(self) -> int:
        """Calls with at least one fact of law of their own (hours, consent)."""
        return sum(1 for c in self.calls if any(f.basis is Basis.LAW for f in c.facts))


def most_within(times: Sequence[datetime], window: timedelta) -> int:
    """The largest number of `times` (sorted) within any span shorter than `window`."""
    best = left = 0
    for right, moment in enumerate(times):
        while moment - times[left] >= window:
            left += 1
        best = max(best, right - left + 1)
    return best


def call_facts(local: datetime, country: str) -> tuple[Fact, ...]:
    """The facts of law about one sales call at local time `local`."""
    facts: list[Fact] = []
    breach = legal_hours_breach(local, country)
    if breach is not None:
        facts.append(Fact("outside_hours", Basis.LAW, {"why": breach}))
    if country == "FR" and local.date() >= CONSENT_REQUIRED_FROM:
        facts.append(Fact("no_consent", Basis.LAW))
    return tuple(facts)


def analyse(calls: Iterable[ReportedCall], timezone: str, *, country: str = "FR",
            repeat_calls: int = 3, repeat_days: int = 7) -> list[NumberFinding]:
    """The reported numbers among `calls`, the most-calling first."""
    zone = ZoneInfo(timezone)
    by_number: dict[str, list[ReportedCall]] = {}
    for call in calls:
        by_number.setdefault(call.number, []).append(call)
    findings: list[NumberFinding] = []
    for number, its_calls in by_number.items():
        its_calls.sort(key=lambda c: c.at)
        times = [c.at for c in its_calls]
        facts: list[Fact] = []
        prefix = telemarketing_prefix(number, country)
        if prefix is not None:
            facts.append(Fact("arcep_range", Basis.LAW, {"range": national_range(prefix)}))
        over = most_within(times, timedelta(days=DECREE_DAYS))
        if over > DECREE_LIMIT:
            facts.append(Fact("over_limit", Basis.LAW, {"count": over, "days": DECREE_DAYS,
                                                        "limit": DECREE_LIMIT}))
        repeats = most_within(times, timedelta(days=repeat_days))
        if repeats >= repeat_calls:
            facts.append(Fact("repeats", Basis.HEURISTIC, {"count": repeats,
                                                           "days": repeat_days}))
        if any(c.step == "block" for c in its_calls):
            facts.append(Fact("block_list", Basis.OWNER))
        if not any(f.code in ("arcep_range", "repeats", "block_list") for f in facts):
            continue
        findings.append(NumberFinding(number, tuple(facts), tuple(
            CallFinding(c, c.at.astimezone(zone), call_facts(c.at.astimezone(zone), country))
            for c in its_calls)))
    findings.sort(key=lambda f: (-len(f.calls), f.number))
    return findings
