"""The call log: filters, pagination, and one click to allow or block a caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask import Blueprint, render_template, request

from gateway.numbers import to_e164
from gateway.store.calls import CallFilter
from web.helpers import _, paginate
from web.state import state

bp = Blueprint("calls", __name__)

ACTION_FILTERS = ("pass", "reject", "announce", "voicemail", "challenge")


@dataclass
class ParsedFilter:
    """A call filter read from query arguments, with an error per bad field."""

    flt: CallFilter
    errors: dict[str, str]


def parse_filter(args: dict[str, str]) -> ParsedFilter:
    """Read action, date and number filters; bad values are reported, not fatal."""
    settings = state().settings
    errors: dict[str, str] = {}
    action = args.get("action", "").strip() or None
    if action and action.partition(":")[0] not in ACTION_FILTERS:
        errors["action"] = _("unknown action {value}", value=action)
        action = None
    day = None
    if args.get("date", "").strip():
        try:
            day = date.fromisoformat(args["date"].strip())
        except ValueError:
            errors["date"] = _("{value} is not a date (YYYY-MM-DD)", value=args["date"])
    number = None
    if args.get("number", "").strip():
        number = to_e164(args["number"], settings.home_region)
        if number is None:
            errors["number"] = _("{value} is not a phone number", value=args["number"])
    flt = (CallFilter.for_day(day, settings.timezone, action=action, number=number) if day
           else CallFilter(action=action, number=number))
    return ParsedFilter(flt, errors)


@bp.route("/calls")
def index() -> str:
    """List calls, newest first, filtered and paginated."""
    store = state().store
    parsed = parse_filter(dict(request.args))
    page = paginate(store.calls.count(parsed.flt))
    rows = store.calls.recent(parsed.flt, limit=page.size, offset=page.offset)
    return render_template("calls.html", rows=rows, page=page, errors=parsed.errors,
                           form=request.args, actions=ACTION_FILTERS)
