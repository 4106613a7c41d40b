"""What every `ringfence` subcommand shares: value parsers, JSON output, opening the store."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import Settings
from gateway.store import Store, open_store

Handler = Callable[[argparse.Namespace, Settings], int]
_DURATION = re.compile(r"^(\d+)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(ValueError):
    """A command-line value is wrong; the message names the option."""


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '30m', '2h', '7d' or '1w'."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise UsageError(f"{text!r} is not a duration: use e.g. 30m, 2h, 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_when(text: str, settings: Settings) -> datetime:
    """Parse an ISO time; a time without zone is local to the configured time zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO time such as 2026-11-23T14:30") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(settings.timezone))


def parse_expiry(text: str | None, settings: Settings) -> datetime | None:
    """An expiry given as a duration from now or as an ISO time."""
    if not text:
        return None
    if _DURATION.match(text.strip().lower()):
        return datetime.now(UTC) + parse_duration(text)
    return parse_when(text, settings)


def print_json(data: Any) -> None:
    """One JSON line on standard output."""
    print(json.dumps(data, ensure_ascii=False, default=str))


def owner_store(settings: Settings) -> Store:
    """The store for an owner's command: the schema must be current (no migration here)."""
    return open_store(settings, upgrade=False)
