"""Test a number: what would happen to a call, exactly as `ringfence screen` answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template, request

from gateway.call.screen import Screener
from gateway.config import Settings
from gateway.numbers import national_format
from web.forms import FieldError
from web.state import state

bp = Blueprint("screen", __name__)


def parse_at(text: str, settings: Settings) -> datetime:
    """Parse the optional time (local when it has no zone); now when empty."""
    text = (text or "").strip()
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError("at", f"{text!r} is not a date and time such as 2026-11-23T14:30") \
            from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(settings.timezone))


def screen_number(screener: Screener, settings: Settings, number: str, name: str,
                  when: datetime) -> dict[str, Any]:
    """Dry-run one caller; the same fields `ringfence screen` prints. Nothing is logged."""
    if not number.strip():
        raise FieldError("number", "number: type a phone number")
    caller = screener.caller(number, name)
    decision = screener.evaluate(caller, when)
    return {
        "caller": caller.number or caller.kind.value,
        "formatted": national_format(caller.number, settings.home_region)
        if caller.number else None,
        "name": caller.display_name or None,
        "caller_kind": caller.kind.value,
        "number_type": caller.number_type,
        **decision.as_dict(),
    }


@bp.route("/test")
def index() -> tuple[str, int]:
    """Show the form and, when a number is given, the decision."""
    st = state()
    form = dict(request.args)
    result = None
    errors: dict[str, str] = {}
    if "number" in request.args:
        try:
            when = parse_at(form.get("at", ""), st.settings)
            result = screen_number(st.screener, st.settings, form.get("number", ""),
                                   form.get("name", ""), when)
        except FieldError as exc:
            errors[exc.field] = str(exc)
    return render_template("test.html", form=form, result=result, errors=errors), \
        400 if errors else 200
