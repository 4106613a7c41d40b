"""Small builders shared by unit and property tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.call.record import CallBook
from gateway.call.screen import Screener
from gateway.config import Settings
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
from gateway.store import Store, open_store
from gateway.store.db import Database

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


@dataclass
class Services:
    """The real pieces on one test database: the store, the screener and the call book."""

    store: Store
    screener: Screener
    book: CallBook

    @classmethod
    def open(cls, settings: Settings, *, upgrade: bool = True) -> Services:
        """Open (and by default migrate) the settings' database and seed its defaults."""
        store = open_store(settings, upgrade=upgrade)
        return cls(store, Screener(store, settings), CallBook(store, settings))

    @property
    def settings(self) -> Settings:
        """The settings the pieces were opened with."""
        return self.screener.settings

    @property
    def db(self) -> Database:
        """The store's database."""
        return self.store.db
