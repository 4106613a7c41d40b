"""Reading form fields and turning store errors into per-field messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.cli.common import UsageError, parse_expiry
from gateway.config import Settings
from gateway.screening.rules import ListEntry, MatchKind
from gateway.store.errors import EntryError


class FieldError(ValueError):
    """A form value is wrong: `field` names the input, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_expires(text: str, settings: Settings) -> datetime | None:
    """An expiry typed as a duration (2h, 7d) or a date-time; raise FieldError if neither."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = parse_expiry(text, settings)
    except (UsageError, ValueError):
        raise FieldError("expires", f"{text!r} is neither a duration (30m, 2h, 7d) nor a "
                         "date and time (2026-12-31T18:00)") from None
    if value is not None and value <= datetime.now(UTC):
        raise FieldError("expires", f"{text!r} is in the past")
    return value


def entry_fields(form: Any, settings: Settings, list_name: str) -> dict[str, Any]:
    """Read and check an entry form; raise FieldError naming the first bad field."""
    kind = (form.get("kind") or "").strip() or None
    if kind is not None and kind not in {k.value for k in MatchKind}:
        raise FieldError("kind", f"kind {kind!r}: expected exact, prefix, glob or regex")
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
    """The (field, message) of a FieldError or EntryError."""
    if isinstance(exc, FieldError):
        return exc.field, str(exc)
    if isinstance(exc, EntryError):
        return exc.field, str(exc)
    return "pattern", str(exc)
