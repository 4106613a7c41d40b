"""The complaint report page: unlawful or suspicious telemarketing calls and texts per number,
the text to paste into SignalConso or a complaint to the operator, and its CSV download."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, render_template, request

from gateway.ops.report import (
    Language,
    Report,
    build_report,
    fact_text,
    moment_text,
    period,
    render_csv,
    render_text,
)
from web.helpers import _
from web.state import state

bp = Blueprint("report", __name__)


def _date(name: str, errors: dict[str, str]) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = _("Expected a date (YYYY-MM-DD).")
        return None


def _language() -> Language:
    return "en" if request.args.get("language") == "en" else "fr"


def _report(errors: dict[str, str]) -> Report:
    st = state()
    today = datetime.now(ZoneInfo(st.settings.timezone)).date()
    since, until = _date("since", errors), _date("until", errors)
    try:
        first, last = period(since, until, today)
    except ValueError:
        errors["since"] = _("The first day is after the last day.")
        first, last = period(None, None, today)
    return build_report(st.store, first, last, timezone=st.settings.timezone,
                        home_region=st.settings.home_region)


@bp.route("/report")
def index() -> str:
    """The report for the chosen dates (the last 30 days by default)."""
    errors: dict[str, str] = {}
    report = _report(errors)
    language = _language()
    return render_template("report.html", report=report, errors=errors, language=language,
                           text=render_text(report, language), fact_text=fact_text,
                           moment_text=moment_text, args=request.args)


@bp.route("/report/telemarketing.csv")
def download() -> Response:
    """The same report as CSV (one row per call or text)."""
    report = _report({})
    name = f"ringfence-report-{report.since.isoformat()}-{report.until.isoformat()}.csv"
    return Response(render_csv(report, _language()), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})
