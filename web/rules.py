"""Step-4 rules, run-time settings and the screening pause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from gateway.numbers import NUMBER_TYPES
from gateway.screening.rules import PROMPTS, RuleKind
from gateway.screening.telemarketing import RANGES
from gateway.store.errors import EntryError
from gateway.store.settings import DEFAULT_SETTINGS, validate_setting
from web.forms import FieldError
from web.helpers import _, label, stored_label
from web.state import state

bp = Blueprint("rules", __name__)

# Parameters each rule kind takes, and how the form shows them.
PARAM_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "number_type": (("types", "list"),),
    "country": (("regions", "list"), ("mode", "choice")),
    "telemarketing": (("country", "text"), ("outside_hours_only", "bool")),
    "quiet_hours": (("start", "time"), ("end", "time"), ("days", "days")),
}
SETTING_GROUPS = ("repeat", "burst", "greylist")


def _int(form: MultiDict[str, str] | dict[str, Any], field: str, *, minimum: int = 0) -> int:
    raw = str(form.get(field, "")).strip()
    try:
        value = int(raw)
    except ValueError:
        raise FieldError(field, f"{field} = {raw!r}: expected a whole number") from None
    if value < minimum:
        raise FieldError(field, f"{field} = {value}: expected at least {minimum}")
    return value


def params_from_form(kind: str, form: MultiDict[str, str] | dict[str, Any]) -> dict[str, Any]:
    """Read a rule's parameters from `params.<name>` fields."""
    params: dict[str, Any] = {}
    for name, shape in PARAM_FIELDS.get(kind, ()):
        key = f"params.{name}"
        raw = str(form.get(key, "")).strip()
        if shape == "list":
            params[name] = [p.strip().upper() for p in raw.split(",") if p.strip()]
        elif shape == "bool":
            params[name] = bool(form.get(key))
        elif shape == "days":
            try:
                params[name] = [int(p) for p in raw.replace(" ", "").split(",") if p]
            except ValueError:
                raise FieldError(key, f"days = {raw!r}: expected weekday numbers 0 (Monday) "
                                 "to 6 (Sunday), separated by commas") from None
        else:
            params[name] = raw
    return params


def rule_error_field(exc: EntryError, kind: str) -> str:
    """The input of a rule form that a store error names (parameters are ``params.<name>``)."""
    if any(exc.field == name for name, _shape in PARAM_FIELDS.get(kind, ())):
        return f"params.{exc.field}"
    return exc.field

def rule_as_form(rule: Any) -> dict[str, Any]:
    """Show a stored rule's values the way the form expects them."""
    form: dict[str, Any] = {"action": str(rule.action), "priority": str(rule.priority),
                            "label": label(rule.label), "enabled": "1" if rule.enabled else ""}
    for name, shape in PARAM_FIELDS.get(rule.kind.value, ()):
        value = rule.params.get(name)
        if shape in ("list", "days"):
            form[f"params.{name}"] = ", ".join(str(v) for v in value or [])
        elif shape == "bool":
            form[f"params.{name}"] = "1" if value else ""
        else:
            form[f"params.{name}"] = "" if value is None else str(value)
    return form


def settings_as_form(values: dict[str, Any]) -> dict[str, Any]:
    """Flatten the run-time settings into `group.field` form values."""
    form: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            for name, inner in value.items():
                form[f"{key}.{name}"] = ("1" if inner else "") if name == "enabled" else str(inner)
        elif value is not None:
            form[key] = str(value)
    return form


def settings_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    """Read and validate every run-time setting; raise FieldError naming the first bad one."""
    values: dict[str, Any] = {}
    for key in ("block_action", "default_mode", "challenge_digit"):
        values[key] = form.get(key, "").strip()
    for group in SETTING_GROUPS:
        table: dict[str, Any] = {}
        for name, default in DEFAULT_SETTINGS[group].items():
            field = f"{group}.{name}"
            raw = form.get(field, "").strip()
            if name == "enabled":
                table[name] = bool(form.get(field))
            elif name == "action":
                table[name] = raw
            elif isinstance(default, float):
                try:
                    table[name] = float(raw)
                except ValueError:
                    raise FieldError(field, f"{field} = {raw!r}: expected a number") from None
            else:
                table[name] = _int(form, field, minimum=1)
        values[group] = table
    for key, value in values.items():
        try:
            values[key] = validate_setting(key, value)
        except EntryError as exc:
            raise FieldError(exc.field, str(exc)) from None
    return values


def _render(*, rule_forms: dict[int, dict[str, Any]] | None = None,
            rule_errors: dict[int, dict[str, str]] | None = None,
            settings_form: dict[str, Any] | None = None,
            settings_errors: dict[str, str] | None = None,
            new_rule: dict[str, Any] | None = None, new_errors: dict[str, str] | None = None,
            pause_errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    store = state().store
    rules = store.rules.all()
    forms = {r.id: rule_as_form(r) for r in rules}
    forms.update(rule_forms or {})
    paused = store.runtime.get("paused_until")
    paused_until = datetime.fromisoformat(paused) if paused else None
    if paused_until and paused_until <= datetime.now(UTC):
        paused_until = None
    return render_template(
        "rules.html", rules=rules, rule_forms=forms, rule_errors=rule_errors or {},
        param_fields=PARAM_FIELDS, settings_form=settings_form
        or settings_as_form(store.runtime.all()), settings_errors=settings_errors or {},
        new_rule=new_rule or {"kind": "country", "action": "voicemail", "priority": "100"},
        new_errors=new_errors or {}, rule_kinds=[k.value for k in RuleKind],
        number_types=NUMBER_TYPES, telemarketing_countries=sorted(RANGES), prompts=PROMPTS,
        paused_until=paused_until, pause_errors=pause_errors or {},
        setting_fields={g: list(DEFAULT_SETTINGS[g]) for g in SETTING_GROUPS},
    ), status


@bp.route("/rules")
def index() -> tuple[str, int]:
    """Show rules, settings and the pause control."""
    return _render()


@bp.route("/rules/<int:rule_id>", methods=["POST"])
def update(rule_id: int) -> BaseResponse | tuple[str, int]:
    """Change a rule: enabled, action, priority, label and parameters."""
    store = state().store
    rule = next((r for r in store.rules.all() if r.id == rule_id), None)
    if rule is None:
        return _render(status=404)
    form = request.form
    try:
        changes: dict[str, Any] = {
            "enabled": bool(form.get("enabled")),
            "action": form.get("action", "").strip(),
            "priority": _int(form, "priority"),
            "label": stored_label(form.get("label", "")),
        }
        if rule.kind.value in PARAM_FIELDS:
            changes["params"] = params_from_form(rule.kind.value, form)
        store.rules.update(rule_id, **changes)
    except FieldError as exc:
        return _render(rule_forms={rule_id: dict(form)},
                       rule_errors={rule_id: {exc.field: str(exc)}}, status=400)
    except EntryError as exc:
        field = rule_error_field(exc, rule.kind.value)
        return _render(rule_forms={rule_id: dict(form)},
                       rule_errors={rule_id: {field: str(exc)}}, status=400)
    flash(_("Rule saved."))
    return redirect(url_for("rules.index") + f"#rule-{rule_id}")


@bp.route("/rules/add", methods=["POST"])
def add() -> BaseResponse | tuple[str, int]:
    """Add a rule (e.g. the telemarketing preset, a country, quiet hours)."""
    store = state().store
    form = request.form
    kind = form.get("kind", "")
    try:
        params = params_from_form(kind, form)
        store.rules.add(kind, form.get("action", "").strip(), params,
                      priority=_int(form, "priority"), label=stored_label(form.get("label", "")))
    except FieldError as exc:
        return _render(new_rule=dict(form), new_errors={exc.field: str(exc)}, status=400)
    except EntryError as exc:
        return _render(new_rule=dict(form), new_errors={rule_error_field(exc, kind): str(exc)},
                       status=400)
    flash(_("Rule added."))
    return redirect(url_for("rules.index"))


@bp.route("/rules/<int:rule_id>/delete", methods=["POST"])
def delete(rule_id: int) -> BaseResponse:
    """Delete a rule."""
    state().store.rules.delete(rule_id)
    flash(_("Rule deleted."))
    return redirect(url_for("rules.index"))


@bp.route("/settings", methods=["POST"])
def save_settings() -> BaseResponse | tuple[str, int]:
    """Save thresholds, the default for unknown callers, greylist and challenge digit."""
    store = state().store
    try:
        values = settings_from_form(request.form)
    except FieldError as exc:
        return _render(settings_form=dict(request.form), settings_errors={exc.field: str(exc)},
                       status=400)
    for key, value in values.items():
        store.runtime.set(key, value)
    flash(_("Settings saved."))
    return redirect(url_for("rules.index") + "#settings")


def pause_delta(amount: str, unit: str) -> timedelta:
    """How long a pause lasts; raise FieldError naming the bad field."""
    if unit not in ("minutes", "hours"):
        raise FieldError("unit", f"unit {unit!r}: expected minutes or hours")
    value = _int({"amount": amount}, "amount", minimum=1)
    delta = timedelta(minutes=value) if unit == "minutes" else timedelta(hours=value)
    if delta > timedelta(days=30):
        raise FieldError("amount", "amount: a pause may last at most 30 days")
    return delta


@bp.route("/pause", methods=["POST"])
def pause() -> BaseResponse | tuple[str, int]:
    """Pause screening (every call rings) for N minutes or hours, or resume it."""
    store = state().store
    if request.form.get("resume"):
        store.runtime.set("paused_until", None)
        flash(_("Screening resumed."))
        return redirect(url_for("rules.index"))
    try:
        delta = pause_delta(request.form.get("amount", ""), request.form.get("unit", ""))
    except FieldError as exc:
        return _render(pause_errors={exc.field: str(exc)}, status=400)
    store.runtime.set("paused_until", (datetime.now(UTC) + delta).isoformat())
    flash(_("Screening paused."))
    return redirect(url_for("rules.index"))
