"""Step-4 rules, run-time settings and the screening pause.

Every choice is a picker (an action with its SIP code explained, number types and days as
boxes to tick, countries by name) and a form reports every wrong field at once, next to it,
in the reader's language. The store checks everything again (the CLI and the API share it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from babel.dates import get_day_names
from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from gateway.numbers import NUMBER_TYPES, is_supported_region
from gateway.prompts import challenge_prompt_name
from gateway.screening.rules import ATTESTATIONS, PROMPTS, REJECT_CODES, Action, RuleKind
from gateway.screening.telemarketing import RANGES
from gateway.screening.words import N_
from gateway.store.entries import MAX_LABEL_LENGTH
from gateway.store.errors import EntryError
from gateway.store.settings import DEFAULT_SETTINGS, validate_setting
from web.forms import FieldError
from web.helpers import (
    _,
    action_words,
    current_language,
    error_words,
    label,
    local_time,
    local_url,
    prompt_words,
    stored_label,
)
from web.i18n import FORMAT_LOCALES, country_name, gettext
from web.state import state

bp = Blueprint("rules", __name__)

# Parameters each rule kind takes, and how the form shows them.
PARAM_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "number_type": (("types", "checks"),),
    "country": (("regions", "list"), ("mode", "choice")),
    "telemarketing": (("country", "choice"), ("outside_hours_only", "bool")),
    "quiet_hours": (("start", "time"), ("end", "time"), ("days", "days")),
    "stir_attestation": (("attest", "attest"), ("mismatch", "bool"), ("stale", "bool"),
                         ("max_age", "seconds")),
}
SETTING_GROUPS = ("repeat", "burst", "greylist")
CHALLENGE_KEYS = "0123456789*#"

# What a caller hears or sees for each SIP code a call may be refused with.
REJECT_EXPLAINED = {
    404: N_("the number does not exist"),
    410: N_("the number is no longer in service"),
    433: N_("withheld numbers are not accepted"),
    480: N_("nobody can answer right now"),
    486: N_("the line is busy"),
    600: N_("busy everywhere"),
    603: N_("the call is declined; your other phones stop ringing"),
    604: N_("the number does not exist anywhere"),
    607: N_("the call is unwanted (tells the network it is spam)"),
}
# Prompts that make sense after each kind of answer (announce hangs up; voicemail records).
ANNOUNCE_PROMPTS = ("not_in_service", "sit", "closed", "spoof_shield")
VOICEMAIL_PROMPTS = ("greeting", "spoof_shield", "closed")
CHALLENGE_PROMPTS = ("challenge", "published")

# Messages of the form checks (English msgids; the field's own label is shown beside them).
WHOLE_NUMBER = N_("expected a whole number, not {value}")
AT_LEAST = N_("expected at least {minimum}")
A_NUMBER = N_("expected a number such as 0.5, not {value}")
PICK_ACTION = N_("choose an action from the list")
PICK_ONE = N_("choose one of the list")


def action_choices(current: str | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The action picker: groups of (stored action, words), the current one kept if unusual.

    Built once per request (the rules page has a dozen pickers).
    """
    groups: list[tuple[str, list[tuple[str, str]]]] | None = g.get("ringfence_actions")
    if groups is None:
        groups = g.ringfence_actions = _action_groups()
    known = {value for _group, options in groups for value, _text in options}
    if current and current not in known:
        return [(_("As set now"), [(current, action_words(current))]), *groups]
    return groups


def _action_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    reject = [(f"reject:{code}", _("refuse with {code} {text}: {meaning}", code=code,
                                   text=gettext(REJECT_CODES[code]),
                                   meaning=gettext(REJECT_EXPLAINED[code])))
              for code in REJECT_CODES]
    groups = [
        (_("Ring"), [("pass", _("ring through: your phone rings"))]),
        (_("Refuse the call"), reject),
        (_("Answer with a message, then hang up"),
         [(str(Action.parse(f"announce:{p}")), _("play {prompt}, then hang up",
                                                   prompt=prompt_words(p)))
          for p in ANNOUNCE_PROMPTS]),
        (_("Voicemail"),
         [(str(Action.parse(f"voicemail:{p}")), _("voicemail after {prompt}",
                                                    prompt=prompt_words(p)))
          for p in VOICEMAIL_PROMPTS]),
        (_("Ask to press a key"),
         [(str(Action.parse(f"challenge:{p}")), _("ask for the key with {prompt}; who presses "
                                                    "it may leave a message, their next call "
                                                    "rings", prompt=prompt_words(p)))
          for p in CHALLENGE_PROMPTS]),
    ]
    return groups


def day_names() -> list[tuple[int, str]]:
    """Monday (0) to Sunday (6) in the reader's language."""
    names = get_day_names("wide", locale=FORMAT_LOCALES.get(current_language(), "en_GB"))
    return [(d, str(names[d])) for d in range(7)]


def telemarketing_countries() -> list[tuple[str, str]]:
    """Countries whose telemarketing ranges Ringfence knows, by name."""
    return [(code, country_name(code, current_language())) for code in sorted(RANGES)]


def _values(form: Mapping[str, Any], key: str) -> list[str]:
    """Every value of a field: ticked boxes arrive one by one, typed lists with commas."""
    raw = form.getlist(key) if hasattr(form, "getlist") else [form.get(key, "")]
    return [part.strip() for value in raw for part in str(value or "").split(",")
            if part.strip()]


def _whole(form: Mapping[str, Any], field: str, errors: dict[str, str], *,
           minimum: int) -> int | None:
    raw = str(form.get(field, "")).strip()
    try:
        value = int(raw)
    except ValueError:
        errors[field] = _(WHOLE_NUMBER, value=raw or "…")
        return None
    if value < minimum:
        errors[field] = _(AT_LEAST, minimum=minimum)
        return None
    return value


def _action(form: Mapping[str, Any], field: str, errors: dict[str, str]) -> str | None:
    raw = str(form.get(field, "")).strip()
    try:
        return str(Action.parse(raw))
    except ValueError:
        errors[field] = _(PICK_ACTION)
        return None


def params_from_form(kind: str, form: Mapping[str, Any],
                     errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Read a rule's parameters from `params.<name>` fields, noting every bad one in `errors`.

    Without `errors` the first problem raises FieldError (the API's way).
    """
    found: dict[str, str] = {} if errors is None else errors
    params: dict[str, Any] = {}
    for name, shape in PARAM_FIELDS.get(kind, ()):
        key = f"params.{name}"
        if shape == "checks":  # number types
            types = [t.upper() for t in _values(form, key)]
            bad = [t for t in types if t not in NUMBER_TYPES]
            if not types:
                found[key] = _("tick at least one number type")
            elif bad:
                found[key] = _("{value} is not a number type", value=", ".join(bad))
            params[name] = types
        elif shape == "list":  # country codes
            regions = [r.upper() for r in _values(form, key)]
            bad = [r for r in regions if not is_supported_region(r)]
            if not regions:
                found[key] = _("type at least one country code, such as FR")
            elif bad:
                found[key] = _("{value} is not a country code (FR, BE, GB…)",
                               value=", ".join(bad))
            params[name] = regions
        elif shape == "bool":
            params[name] = bool(form.get(key))
        elif shape == "days":
            days = _values(form, key)
            if not all(d.isdigit() and 0 <= int(d) <= 6 for d in days):
                found[key] = _("days are 0 (Monday) to 6 (Sunday)")
            elif not days:
                found[key] = _("tick at least one day")
            params[name] = sorted({int(d) for d in days if d.isdigit()})
        elif shape == "attest":  # STIR/SHAKEN attestation levels
            levels = sorted({v.upper() for v in _values(form, key)})
            if any(v not in ATTESTATIONS for v in levels):
                found[key] = _("attestations are A, B and C")
            params[name] = levels
        elif shape == "seconds":
            raw = str(form.get(key, "")).strip()
            if not raw.isdigit() or not 10 <= int(raw) <= 3600:
                found[key] = _("expected 10 to 3600 seconds, not {value}", value=raw or "…")
            params[name] = int(raw) if raw.isdigit() else raw
        elif shape == "time":
            raw = str(form.get(key, "")).strip()
            match = re.fullmatch(r"(\d{1,2}):(\d{2})", raw)
            if not match or int(match[1]) > 23 or int(match[2]) > 59:
                found[key] = _("expected a time of day such as 22:00, not {value}",
                               value=raw or "…")
            params[name] = raw
        else:  # a choice
            raw = str(form.get(key, "")).strip()
            allowed = sorted(RANGES) if name == "country" else ["block", "allow_only"]
            if raw not in allowed:
                found[key] = _(PICK_ONE)
            params[name] = raw
    if errors is None and found:
        field, message = next(iter(found.items()))
        raise FieldError(field, message)
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
        if shape in ("list", "checks", "days", "attest"):
            form[f"params.{name}"] = [str(v) for v in value or []]
        elif shape == "bool":
            form[f"params.{name}"] = "1" if value else ""
        else:
            form[f"params.{name}"] = "" if value is None else str(value)
    return form


# Fields whose values are lists in the form (boxes to tick, codes typed with commas).
LIST_FIELDS = frozenset(f"params.{name}" for fields in PARAM_FIELDS.values()
                        for name, shape in fields if shape in ("checks", "days", "list",
                                                                "attest"))


def posted_form(form: Any) -> dict[str, Any]:
    """A posted form as the template shows it again: ticked boxes as lists."""
    return {key: _values(form, key) if key in LIST_FIELDS else form.get(key, "")
            for key in form}


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


def settings_from_form(form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Read and check every run-time setting of the form: (values, an error per bad field)."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    mode = str(form.get("default_mode", "")).strip()
    if mode not in ("pass", "greylist", "challenge", "voicemail"):
        errors["default_mode"] = _(PICK_ONE)
    values["default_mode"] = mode
    values["block_action"] = _action(form, "block_action", errors)
    digit = str(form.get("challenge_digit", "")).strip()
    if len(digit) != 1 or digit not in CHALLENGE_KEYS:
        errors["challenge_digit"] = _("one key: 0 to 9, * or #")
    values["challenge_digit"] = digit
    for group in SETTING_GROUPS:
        table: dict[str, Any] = {}
        for name, default in DEFAULT_SETTINGS[group].items():
            field = f"{group}.{name}"
            if name == "enabled":
                table[name] = bool(form.get(field))
            elif name == "action":
                table[name] = _action(form, field, errors)
            elif isinstance(default, float):
                raw = str(form.get(field, "")).strip().replace(",", ".")
                try:
                    table[name] = float(raw)
                    if table[name] <= 0:
                        errors[field] = _("expected a number above 0")
                except ValueError:
                    errors[field] = _(A_NUMBER, value=raw or "…")
            else:
                table[name] = _whole(form, field, errors, minimum=1)
        values[group] = table
    if not errors:
        for key, value in values.items():
            try:
                values[key] = validate_setting(key, value)
            except EntryError as exc:  # a rule of the store's the form does not know yet
                errors[exc.field] = error_words(exc)
    return values, errors


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
    digit = str(store.runtime.get("challenge_digit"))
    return render_template(
        "rules.html", rules=rules, rule_forms=forms, rule_errors=rule_errors or {},
        param_fields=PARAM_FIELDS, settings_form=settings_form
        or settings_as_form(store.runtime.all()), settings_errors=settings_errors or {},
        new_rule=new_rule or {"kind": "country", "action": "voicemail", "priority": "100",
                              "params.mode": "block", "params.start": "22:00",
                              "params.end": "07:00", "params.days": [str(d) for d in range(7)],
                              "params.country": "FR"},
        new_errors=new_errors or {}, rule_kinds=[k.value for k in RuleKind],
        number_types=NUMBER_TYPES, telemarketing_countries=telemarketing_countries(),
        prompts=PROMPTS, day_names=day_names(), action_choices=action_choices,
        challenge_keys=CHALLENGE_KEYS, challenge_prompt=challenge_prompt_name(digit)
        if digit in CHALLENGE_KEYS else "challenge",
        paused_until=paused_until, pause_errors=pause_errors or {},
        setting_fields={g: list(DEFAULT_SETTINGS[g]) for g in SETTING_GROUPS},
    ), status


@bp.route("/rules")
def index() -> tuple[str, int]:
    """Show rules, settings and the pause control."""
    return _render()


def _rule_changes(kind: str, form: Any, errors: dict[str, str]) -> dict[str, Any]:
    """A rule form's values, every bad field noted in `errors`."""
    changes: dict[str, Any] = {
        "action": _action(form, "action", errors),
        "priority": _whole(form, "priority", errors, minimum=0),
        "label": stored_label(form.get("label", "")),
    }
    if len(str(form.get("label", "")).strip()) > MAX_LABEL_LENGTH:
        errors["label"] = _("at most {n} characters", n=MAX_LABEL_LENGTH)
    if kind in PARAM_FIELDS:
        changes["params"] = params_from_form(kind, form, errors)
    return changes


@bp.route("/rules/<int:rule_id>", methods=["POST"])
def update(rule_id: int) -> BaseResponse | tuple[str, int]:
    """Change a rule: enabled, action, priority, label and parameters."""
    store = state().store
    rule = next((r for r in store.rules.all() if r.id == rule_id), None)
    if rule is None:
        return _render(status=404)
    errors: dict[str, str] = {}
    changes = _rule_changes(rule.kind.value, request.form, errors)
    changes["enabled"] = bool(request.form.get("enabled"))
    if not errors:
        try:
            store.rules.update(rule_id, **changes)
        except EntryError as exc:
            errors[rule_error_field(exc, rule.kind.value)] = error_words(exc)
    if errors:
        return _render(rule_forms={rule_id: posted_form(request.form)},
                       rule_errors={rule_id: errors}, status=400)
    flash(_("Rule saved."))
    return redirect(url_for("rules.index") + f"#rule-{rule_id}")


@bp.route("/rules/add", methods=["POST"])
def add() -> BaseResponse | tuple[str, int]:
    """Add a rule (e.g. the telemarketing preset, a country, quiet hours)."""
    store = state().store
    form = request.form
    kind = form.get("kind", "")
    errors: dict[str, str] = {}
    if kind not in {k.value for k in RuleKind}:
        errors["kind"] = _(PICK_ONE)
    changes = _rule_changes(kind, form, errors)
    if not errors:
        try:
            store.rules.add(kind, changes["action"], changes.get("params", {}),
                            priority=changes["priority"], label=changes["label"])
        except EntryError as exc:
            errors[rule_error_field(exc, kind)] = error_words(exc)
    if errors:
        return _render(new_rule=posted_form(form), new_errors=errors, status=400)
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
    values, errors = settings_from_form(request.form)
    if errors:
        return _render(settings_form=dict(request.form), settings_errors=errors, status=400)
    for key, value in values.items():
        store.runtime.set(key, value)
    flash(_("Settings saved."))
    return redirect(url_for("rules.index") + "#settings")


def pause_delta(amount: str, unit: str) -> timedelta:
    """How long a pause lasts; raise FieldError naming the bad field."""
    if unit not in ("minutes", "hours"):
        raise FieldError("unit", N_("unit {unit}: expected minutes or hours"), unit=unit)
    raw = str(amount).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise FieldError("amount", N_("amount: expected a whole number of at least 1, not "
                                      "{value}"), value=raw)
    value = int(raw)
    delta = timedelta(minutes=value) if unit == "minutes" else timedelta(hours=value)
    if delta > timedelta(days=30):
        raise FieldError("amount", N_("amount: a pause may last at most 30 days"))
    return delta


@bp.route("/pause", methods=["POST"])
def pause() -> BaseResponse | tuple[str, int]:
    """Pause screening (every call rings) for N minutes or hours, or resume it."""
    store = state().store
    # The dashboard's pause button comes back to the dashboard.
    back = local_url(request.form.get("back"), url_for("rules.index"))
    if request.form.get("resume"):
        store.runtime.set("paused_until", None)
        flash(_("Screening resumed."))
        return redirect(back)
    try:
        delta = pause_delta(request.form.get("amount", ""), request.form.get("unit", ""))
    except FieldError as exc:
        return _render(pause_errors={exc.field: error_words(exc)}, status=400)
    until = datetime.now(UTC) + delta
    store.runtime.set("paused_until", until.isoformat())
    flash(_("Screening paused until {time}: every call rings.", time=local_time(until)))
    return redirect(back)
