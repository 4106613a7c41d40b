"""Run-time settings: what the owner changes in the CLI or UI, stored in the `settings` table.

Screening settings (pause, block action, rate limits, default mode…) are validated here and
bump `rules_version`, the counter that tells the screener its cached policy is stale. The web
UI's own credentials live in the same table under ``web_`` keys, unvalidated and without a
version bump: they are read through `get_private`/`set_private` only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from gateway.screening.rules import Action, DefaultMode
from gateway.store.db import Database
from gateway.store.errors import EntryError
from gateway.store.models import SettingRow

RULES_VERSION_KEY = "rules_version"
PRIVATE_PREFIX = "web_"
# The web UI's credentials. They belong to this installation: a restore never takes them from
# an archive (a stranger's backup would otherwise bring the stranger's password and token).
PASSWORD_KEY = "web_password_hash"
API_TOKEN_KEY = "web_api_token_hash"
EPOCH_KEY = "web_auth_epoch"
CREDENTIAL_KEYS = (PASSWORD_KEY, API_TOKEN_KEY, EPOCH_KEY)

# Run-time settings (owner-editable in CLI/UI) and their defaults.
DEFAULT_SETTINGS: dict[str, Any] = {
    "paused_until": None,
    "block_action": "reject:603",
    "default_mode": "pass",
    "repeat": {"enabled": True, "max_calls": 3, "window_minutes": 10, "action": "voicemail"},
    "burst": {
        "enabled": True, "distinct_callers": 5, "window_minutes": 10, "duration_minutes": 60,
        "action": "voicemail:spoof_shield",
    },
    "greylist": {"min_minutes": 0.5, "window_minutes": 30, "action": "reject:486"},
    "challenge_digit": "5",
    "digest_time": None,  # HH:MM set in the UI; None means notify.digest_time from the config
}

_VERSION_QUERY = select(SettingRow.value).where(SettingRow.key == RULES_VERSION_KEY)


def bump_rules_version(session: Session) -> None:
    """Mark lists, rules or settings as changed, inside the session that changed them."""
    row = session.get(SettingRow, RULES_VERSION_KEY)
    if row is None:
        session.add(SettingRow(key=RULES_VERSION_KEY, value=1))
    else:
        row.value = int(row.value) + 1


def read_rules_version(conn: Connection) -> int:
    """The current rules version, on an open connection (the screener's per-call read)."""
    return int(conn.execute(_VERSION_QUERY).scalar() or 0)


def validate_setting(key: str, value: Any) -> Any:
    """Check a run-time setting; raise EntryError naming the key and what is allowed."""
    if key not in DEFAULT_SETTINGS:
        raise EntryError(f"unknown setting {key!r}; known: {', '.join(DEFAULT_SETTINGS)}", key)
    default = DEFAULT_SETTINGS[key]
    try:
        if key == "paused_until":
            if value is not None and datetime.fromisoformat(str(value)).tzinfo is None:
                # A naive time cannot be compared with the aware time of a call: every call
                # would fail open and the block list would be ignored.
                raise ValueError("expected a time with its UTC offset, "
                                 "e.g. 2026-11-24T16:00+01:00")
            return value
        if key == "block_action":
            return str(Action.parse(str(value)))
        if key == "default_mode":
            return DefaultMode(value).value
        if key == "digest_time":
            if value in (None, ""):
                return None
            hh, _, mm = str(value).partition(":")
            if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60
                    and len(mm) == 2):
                raise ValueError("expected HH:MM, e.g. 08:00")
            return f"{int(hh):02d}:{mm}"
        if key == "challenge_digit":
            if str(value) not in list("0123456789*#"):
                raise ValueError("expected one key: 0-9, * or #")
            return str(value)
    except ValueError as exc:
        raise EntryError(f"{key} = {value!r}: {exc}", key) from None
    if not isinstance(value, dict):
        raise EntryError(f"{key}: expected a table with {', '.join(default)}", key)
    merged = {**default, **value}
    for name, current in merged.items():
        field = f"{key}.{name}"
        if name not in default:
            raise EntryError(f"{field}: unknown; allowed: {', '.join(default)}", field)
        if name == "action":
            try:
                merged[name] = str(Action.parse(str(current)))
            except ValueError as exc:
                raise EntryError(f"{key}.action: {exc}", field) from None
        elif name == "enabled":
            if not isinstance(current, bool):
                raise EntryError(f"{field} = {current!r}: expected true or false", field)
        elif isinstance(current, bool) or not isinstance(current, int | float) or current <= 0:
            raise EntryError(f"{field} = {current!r}: expected a number above 0", field)
    return merged


class RuntimeSettings:
    """Reads and writes of the `settings` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def version(self) -> int:
        """A counter bumped by every change to lists, rules or screening settings."""
        with self.db.engine.connect() as conn:
            return read_rules_version(conn)

    def get(self, key: str) -> Any:
        """A run-time setting, or its default."""
        with self.db.session() as s:
            row = s.get(SettingRow, key)
            return DEFAULT_SETTINGS.get(key) if row is None else row.value

    def all(self) -> dict[str, Any]:
        """Every run-time setting with defaults filled in."""
        with self.db.session() as s:
            stored = {r.key: r.value for r in s.scalars(select(SettingRow))}
        merged = dict(DEFAULT_SETTINGS)
        merged.update({k: v for k, v in stored.items() if k in DEFAULT_SETTINGS})
        return merged

    def set(self, key: str, value: Any) -> None:
        """Store a validated run-time setting; raise EntryError naming the field otherwise."""
        value = validate_setting(key, value)
        with self.db.session() as s:
            row = s.get(SettingRow, key)
            if row is None:
                s.add(SettingRow(key=key, value=value))
            else:
                row.value = value
            bump_rules_version(s)

    def get_private(self, key: str) -> Any:
        """Read a ``web_`` setting (credentials, UI language), or None."""
        if not key.startswith(PRIVATE_PREFIX):
            raise KeyError(f"{key!r} is not a private (web_) setting")
        with self.db.session() as s:
            return s.scalar(select(SettingRow.value).where(SettingRow.key == key))

    def set_private(self, key: str, value: Any) -> None:
        """Write a ``web_`` setting; screening never reads these, so no version bump."""
        if not key.startswith(PRIVATE_PREFIX):
            raise KeyError(f"{key!r} is not a private (web_) setting")
        with self.db.session() as s:
            row = s.get(SettingRow, key)
            if row is None:
                s.add(SettingRow(key=key, value=value))
            else:
                row.value = value
