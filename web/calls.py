"""The call log: what happened to each call, search, CSV export, several rows at once, live."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from gateway import untrusted
from gateway.numbers import number_query, to_e164
from gateway.screening.caller import Caller
from gateway.screening.rules import ListEntry, ListName, MatchKind
from gateway.store.calls import CallFilter
from gateway.store.csv_cells import neutralise
from gateway.store.models import CallRow, utcnow
from web.helpers import (
    ONGOING_SECONDS,
    _,
    _n,
    local_url,
    outcome_text,
    paginate,
    reason_words,
)
from web.state import state

bp = Blueprint("calls", __name__)

ACTION_FILTERS = ("pass", "reject", "announce", "voicemail", "challenge")
ONGOING = timedelta(seconds=ONGOING_SECONDS)
FILTER_ARGS = ("q", "number", "date", "action")
MAX_BULK = 200


@dataclass
class ParsedFilter:
    """A call filter read from query arguments, with an error per bad field."""

    flt: CallFilter
    errors: dict[str, str]


def parse_filter(args: dict[str, str]) -> ParsedFilter:
    """Read the action, date, number and search filters; bad values are reported, not fatal.

    `number` is a number in any written form, complete (``06 12 34 56 78``) or partial
    (``0612``, ``06 12``, ``+33612``); `q` is the same or a part of the caller's name.
    """
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
    typed = args.get("number", "").strip()
    if typed:
        number = to_e164(typed, settings.home_region)
        if number is None and number_query(typed, settings.home_region) is None:
            errors["number"] = _("{value} is not a phone number", value=typed)
    flt = (CallFilter.for_day(day, settings.timezone, action=action, number=number) if day
           else CallFilter(action=action, number=number))
    if typed and number is None and "number" not in errors:
        flt = flt.search(typed, settings.home_region)  # a partial number
    return ParsedFilter(flt.search(args.get("q", ""), settings.home_region), errors)


def list_statuses(numbers: Iterable[str | None]) -> dict[str, ListEntry]:
    """The entry that decides each number's calls now (allow first, as screening does)."""
    st = state()
    now = utcnow()
    found: dict[str, ListEntry] = {}
    for number, entries in st.store.screening.candidates_for_numbers(
            [n for n in numbers if n]).items():
        live = [e for e in entries if e.active(now) and covers(e, number, st.screener.caller)]
        chosen = ([e for e in live if e.list is ListName.ALLOW]
                  or [e for e in live if e.list is ListName.BLOCK])
        if chosen:
            found[number] = min(chosen, key=lambda e: (e.kind is not MatchKind.EXACT,
                                                        -len(e.pattern), e.id))
    return found


def covers(entry: ListEntry, number: str, caller_of: Callable[[str], Caller]) -> bool:
    """Whether `entry` matches `number`; only globs and regexes need the parsed caller (parsing
    50 numbers was a third of the call log's time)."""
    if entry.kind is MatchKind.EXACT:
        return entry.pattern == number
    if entry.kind is MatchKind.PREFIX:
        return number.startswith(entry.pattern)
    return entry.matches(caller_of(number))


def is_ongoing(row: CallRow, now: datetime | None = None) -> bool:
    """Whether a call without an outcome is still going on."""
    return row.outcome is None and (now or utcnow()) - row.at < ONGOING


def filter_args(args: Any) -> dict[str, Any]:
    """The call log's filter arguments of a request, without empty ones."""
    return {k: str(args.get(k, "")).strip() for k in FILTER_ARGS if str(args.get(k, "")).strip()}


def row_context(rows: list[CallRow], back: str) -> dict[str, Any]:
    """What the call row macro needs besides the rows: list states, links, labels."""
    # Words and URLs made once: per row they were a quarter of the page's time.
    labels = {"block": _("Block"), "allow": _("Allow"), "new": _("new call"),
              "select": _("Select {number}"), "on_block": _("on the block list now"),
              "on_allow": _("on the allow list now")}
    return {"statuses": list_statuses(r.number for r in rows), "back": back,
            "confirm_url": url_for("lists.confirm"), "labels": labels}


@bp.route("/calls")
def index() -> str:
    """List calls, newest first, filtered and paginated."""
    store = state().store
    parsed = parse_filter(dict(request.args))
    page = paginate(store.calls.count(parsed.flt))
    rows = store.calls.recent(parsed.flt, limit=page.size, offset=page.offset)
    args = filter_args(request.args)
    live = None
    if page.number == 1:
        # Only the first page grows when a call comes in.
        live = url_for("calls.live", **args)
    return render_template("calls.html", rows=rows, page=page, errors=parsed.errors,
                           form=request.args, actions=ACTION_FILTERS, live=live,
                           last_id=store.calls.last_id(),
                           export_url=url_for("calls.export", **args),
                           **row_context(rows, request.full_path))


def live_answer(token: str, build: Any) -> Response:
    """A poll's answer: 304 when nothing changed since the page's `If-None-Match`, else JSON.

    Polling every few seconds, rather than a server-sent event stream, never keeps one of
    waitress's four threads busy for an idle page; a 304 costs two indexed queries.
    """
    etag = f'"{token}"'
    if request.headers.get("If-None-Match") == etag:
        response = Response(status=304)
    else:
        response = jsonify({"token": token, **build()})
    response.headers["ETag"] = etag
    return response


def _ids(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.isdigit()][:MAX_BULK]


@bp.route("/calls/live")
def live() -> Response:
    """New calls since `after`, and the calls of `open` that have ended, as row HTML."""
    store = state().store
    token = store.calls.live_token(utcnow() - ONGOING)
    after = int(request.args.get("after", "0")) if request.args.get("after", "").isdigit() \
        else 0

    def build() -> dict[str, Any]:
        parsed = parse_filter(dict(request.args))
        fresh = store.calls.recent(replace(parsed.flt, after_id=after), limit=50)
        changed = [r for r in store.calls.by_ids(_ids(request.args.get("open", "")))
                   if not is_ongoing(r)]
        back = url_for("calls.index", **filter_args(request.args))
        context = row_context(fresh + changed, back)
        return {
            "after": max([after, *(r.id for r in fresh)]),
            "rows": [render_template("_call_row.html", c=r, fresh=True, **context)
                     for r in fresh],
            "updated": {str(r.id): render_template("_call_row.html", c=r, **context)
                        for r in changed},
            "count": _n("{n} call", "{n} calls", store.calls.count(parsed.flt)),
            "fresh": len(fresh),
            "announce": _n("{n} new call", "{n} new calls", len(fresh)) if fresh else "",
        }

    return live_answer(token, build)


# ---------------------------------------------------------------------------- CSV export

EXPORT_COLUMNS = ("time", "number", "name", "caller_kind", "action", "what_happened",
                  "outcome", "duration_s", "reason", "step", "rule", "line")


def export_calls(rows: Iterable[CallRow], out: IO[str], timezone: str) -> int:
    """Write calls as CSV like the list exports: no control or bidi character, and no cell a
    spreadsheet would evaluate (`untrusted.strip_controls`, `csv_cells.neutralise`)."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    zone = ZoneInfo(timezone)
    count = 0
    for row in rows:
        at = row.at.astimezone(zone)
        writer.writerow([neutralise(untrusted.strip_controls(str(value))) for value in (
            at.isoformat(timespec="seconds"), row.number or "", row.display_name,
            row.caller_kind, row.action, outcome_text(row), row.outcome or "",
            "" if row.duration_s is None else f"{row.duration_s:.1f}", reason_words(row),
            row.step, row.rule or "", row.line or "")])
        count += 1
    return count


def export_file(flt: CallFilter) -> IO[bytes]:
    """The matching calls as a CSV in a temporary file (on disk past 1 MiB), rewound.

    The database read finishes before the download starts, as for the list exports: a slow
    phone on Wi-Fi never keeps a read transaction open on the gateway's database.
    """
    st = state()
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - sent, then closed
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    export_calls(st.store.calls.iter_matching(flt), text, st.settings.timezone)
    text.flush()
    text.detach()
    spool.seek(0)
    return spool


@bp.route("/calls/export.csv")
def export() -> BaseResponse:
    """Download the call log (with the page's filters) as CSV."""
    parsed = parse_filter(dict(request.args))
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return send_file(export_file(parsed.flt), mimetype="text/csv", as_attachment=True,
                     download_name=f"ringfence-calls-{stamp}.csv")


# ---------------------------------------------------------------------------- several rows


@bp.route("/calls/bulk", methods=["POST"])
def bulk() -> BaseResponse | tuple[str, int]:
    """Block or allow the numbers of the ticked rows: first say what changes."""
    list_name = request.form.get("list", "")
    back = local_url(request.form.get("back"), url_for("calls.index"))
    numbers = list(dict.fromkeys(n for n in request.form.getlist("number") if n))[:MAX_BULK]
    if list_name not in ("allow", "block"):
        return redirect(back)
    if not numbers:
        flash(_("Tick at least one call first."))
        return redirect(back)
    return render_template("confirm_many.html", list_name=list_name, numbers=numbers,
                           back=back, block_action=state().store.runtime.get("block_action"),
                           statuses=list_statuses(numbers)), 200
