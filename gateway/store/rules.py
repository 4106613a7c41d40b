"""Step-4 rules (withheld, invalid, number type, country, telemarketing, verstat, quiet hours)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from gateway.numbers import NUMBER_TYPES, is_supported_region
from gateway.screening.rules import Action, Rule, RuleKind, validate_rule_params
from gateway.screening.telemarketing import RANGES
from gateway.store.db import Database, rowcount
from gateway.store.errors import EntryError, entry_error
from gateway.store.models import RuleRow, SettingRow
from gateway.store.settings import bump_rules_version

RULE_FIELDS = ("enabled", "priority", "label")


def check_rule_params(kind: RuleKind, params: dict[str, Any]) -> dict[str, Any]:
    """`validate_rule_params` with this installation's numbering facts."""
    return validate_rule_params(kind, params, number_types=NUMBER_TYPES,
                                is_region=is_supported_region)


def rule_kind(kind: str) -> RuleKind:
    """The rule kind named `kind`; raise EntryError("kind") listing the known ones."""
    try:
        return RuleKind(kind)
    except ValueError:
        raise EntryError(
            f"kind {kind!r}: expected one of {', '.join(k.value for k in RuleKind)}", "kind"
        ) from None


def rule_from_row(row: RuleRow) -> Rule:
    """The screening core's value for a stored rule."""
    return Rule(
        id=row.id, kind=RuleKind(row.kind), action=Action.parse(row.action),
        params=dict(row.params or {}), enabled=row.enabled, priority=row.priority,
        label=row.label,
    )


def default_rules(home_region: str) -> list[dict[str, Any]]:
    """The rules a new installation starts with; the telemarketing preset is on in France."""
    rules: list[dict[str, Any]] = [
        {"kind": "withheld", "action": "voicemail", "enabled": True, "priority": 10,
         "label": "withheld numbers leave a message"},
        {"kind": "invalid", "action": "voicemail", "enabled": True, "priority": 20,
         "label": "invalid numbers leave a message"},
        {"kind": "verstat_failed", "action": "voicemail", "enabled": True, "priority": 30,
         "label": "failed STIR/SHAKEN"},
        {"kind": "number_type", "action": "reject:603", "enabled": False, "priority": 40,
         "params": {"types": ["PREMIUM_RATE", "SHARED_COST"]}, "label": "premium rate"},
        {"kind": "country", "action": "voicemail", "enabled": False, "priority": 50,
         "params": {"regions": [home_region], "mode": "allow_only"},
         "label": "foreign numbers"},
        {"kind": "quiet_hours", "action": "voicemail", "enabled": False, "priority": 70,
         "params": {"start": "22:00", "end": "07:00", "days": [0, 1, 2, 3, 4, 5, 6]},
         "label": "night"},
    ]
    if home_region in RANGES:
        rules.append(
            {"kind": "telemarketing", "action": "reject:603", "enabled": True, "priority": 60,
             "params": {"country": home_region, "outside_hours_only": False},
             "label": "telemarketing ranges"}
        )
    # Last, so that the ids of the older defaults stay as they were. It only acts on an
    # Identity header, which most lines never carry; a person can still press the key.
    rules.append(
        {"kind": "stir_attestation", "action": "challenge", "enabled": True, "priority": 35,
         "params": {"attest": ["C"], "mismatch": True, "stale": True, "max_age": 60},
         "label": "doubtful STIR/SHAKEN"}
    )
    return rules


def _checked(kind: RuleKind, action: str | None, params: dict[str, Any] | None
             ) -> tuple[str | None, dict[str, Any] | None]:
    try:
        checked_action = None if action is None else str(Action.parse(action))
        checked_params = None if params is None else check_rule_params(kind, params)
    except ValueError as exc:
        raise entry_error(exc, "action") from None
    return checked_action, checked_params


class RuleStore:
    """Reads and writes of the step-4 rules."""

    def __init__(self, db: Database, home_region: str) -> None:
        self.db = db
        self.home_region = home_region

    def all(self) -> list[Rule]:
        """Every step-4 rule, by priority."""
        with self.db.session() as s:
            rows = s.scalars(select(RuleRow).order_by(RuleRow.priority, RuleRow.id))
            return [rule_from_row(r) for r in rows]

    def add(self, kind: str, action: str, params: dict[str, Any] | None = None, *,
            enabled: bool = True, priority: int = 100, label: str = "") -> Rule:
        """Add a rule; raise EntryError naming the bad field."""
        kind_ = rule_kind(kind)
        checked_action, checked_params = _checked(kind_, action, params or {})
        with self.db.session() as s:
            row = RuleRow(kind=kind_.value, action=checked_action, params=checked_params,
                          enabled=enabled, priority=priority, label=label)
            s.add(row)
            s.flush()
            bump_rules_version(s)
            return rule_from_row(row)

    def update(self, rule_id: int, **changes: Any) -> Rule:
        """Change a rule's action, params, enabled, priority or label."""
        with self.db.session() as s:
            row = s.get(RuleRow, rule_id)
            if row is None:
                raise EntryError(f"there is no rule {rule_id}", "id")
            kind = RuleKind(row.kind)
            params = changes.pop("params", None)
            action, merged = _checked(
                kind, changes.pop("action", None),
                None if params is None else {**(row.params or {}), **params})
            if action is not None:
                row.action = action
            if merged is not None:
                row.params = merged
            for key in RULE_FIELDS:
                if key in changes:
                    setattr(row, key, changes.pop(key))
            if changes:
                name = next(iter(changes))
                raise EntryError(f"unknown rule field {name!r}", name)
            bump_rules_version(s)
            return rule_from_row(row)

    def delete(self, rule_id: int) -> bool:
        """Delete a rule; False if there was none."""
        with self.db.session() as s:
            deleted = rowcount(s.execute(delete(RuleRow).where(RuleRow.id == rule_id)))
            bump_rules_version(s)
        return bool(deleted)

    def note_used(self, rule_id: int) -> None:
        """Count a hit on a rule (the gateway counts them in its call writer's batches)."""
        with self.db.session() as s:
            s.execute(update(RuleRow).where(RuleRow.id == rule_id).values(hits=RuleRow.hits + 1))

    def seed_defaults(self) -> bool:
        """Add the default rules once, on a new database; return whether it did."""
        with self.db.session() as s:
            if s.get(SettingRow, "seeded") is not None:
                return False
            for rule in default_rules(self.home_region):
                s.add(RuleRow(**{"params": {}, **rule}))
            s.add(SettingRow(key="seeded", value=True))
            bump_rules_version(s)
        return True
