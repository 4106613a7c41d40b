"""Small builders shared by unit and property tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.numbers import parse_caller
from gateway.screening import (
    Action,
    Caller,
    ListEntry,
    ListName,
    MatchKind,
    Rule,
    RuleKind,
)

# Tuesday 24 November 2026, 15:00 in Paris: inside legal telemarketing hours.
TUESDAY_AFTERNOON = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def caller(text: str, name: str = "", **kwargs: Any) -> Caller:
    """A French-home caller."""
    return parse_caller(text, "FR", display_name=name, **kwargs)


_ids = iter(range(1, 10**9))


def entry(list_name: str, kind: str, pattern: str, **kwargs: Any) -> ListEntry:
    """A list entry with a fresh id."""
    return ListEntry(id=next(_ids), list=ListName(list_name), kind=MatchKind(kind),
                     pattern=pattern, **kwargs)


def rule(kind: str, action: str = "reject:603", **params: Any) -> Rule:
    """An enabled rule."""
    return Rule(id=next(_ids), kind=RuleKind(kind), action=Action.parse(action), params=params)
