"""Reading form fields and turning store errors into per-field messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.cli.common import UsageError, parse_expiry
from gateway.config import Settings
from gateway.screening.rules import InvalidField, ListEntry, MatchKind
from gateway.screening.words import N_
from web.helpers import error_words


class FieldError(InvalidField):
    """A form value is wrong: `field` names the input, the message (a template filled from
    `params`, translated by `helpers.error_words`) says why."""


def parse_expires(text: str, settings: Settings) -> datetime | None:
    """An expiry typed as a duration (2h, 7d) or a date-time; raise FieldError if neither."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = parse_expiry(text, settings)
    except (UsageError, ValueError):
        raise FieldError("expires", N_("{text} is neither a duration (30m, 2h, 7d) nor a "
                                       "date and time (2026-12-31T18:00)"), text=text) from None
    if value is not None and value <= datetime.now(UTC):
        raise FieldError("expires", N_("{text} is in the past"), text=text)
    return value


def entry_fields(form: Any, settings: Settings, list_name: str) -> dict[str, Any]:
    """Read and check an entry form; raise FieldError naming the first bad field."""
    kind = (form.get("kind") or "").strip() or None
    if kind is not None and kind not in {k.value for k in MatchKind}:
        raise FieldError("kind", N_("kind {kind}: expected exact, prefix, glob or regex"),
                         kind=kind)
    action = (form.get("action") or "").strip() or None
    if list_name == "allow":
        action = None
    return {
        "text": form.get("pattern", ""),
        "kind": kind,
        "label": (form.get("label") or "").strip(),
        "action": action,
        "expires_at": parse_expires(form.get("expires", ""), settings),
        "once": list_name == "allow" and bool(form.get("once")),
        # Set by the confirmation step for an entry that reaches a country or a million numbers.
        "confirm": form.get("confirm") == "1",
    }


def entry_as_form(entry: ListEntry, timezone: str) -> dict[str, str]:
    """Show a stored entry the way the owner would type it (expiry in local time)."""
    pattern = entry.pattern
    if entry.kind is MatchKind.PREFIX:
        pattern += "*"
    elif entry.kind is MatchKind.REGEX:
        pattern = "re:" + pattern
    return {
        "pattern": pattern, "kind": entry.kind.value, "label": entry.label,
        "action": str(entry.action) if entry.action else "",
        "expires": entry.expires_at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")
        if entry.expires_at else "",
        "once": "1" if entry.once else "",
    }


def error_for(exc: Exception) -> tuple[str, str]:
    """The (field, message in the reader's language) of a FieldError or EntryError."""
    if isinstance(exc, InvalidField):
        return exc.field, error_words(exc)
    return "pattern", error_words(exc)
