"""The JSON API under /api/: the UI's operations for scripts, with a bearer token.

Errors are ``{"error": "...", "field": "..."}`` with a 4xx status. There is no CSRF check: a
browser never sends the Authorization header by itself, so a forged request carries no token.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from gateway.feeds.subscriptions import SubscriptionError, add_subscription, list_subscriptions
from gateway.feeds.vcard import import_contacts
from gateway.ops.report import Language, build_report, period, render_csv, render_json
from gateway.screening.rules import BURST_PROFILES, ListEntry, ListName, Rule
from gateway.store.decode import FileProblem
from gateway.store.errors import BroadEntry, EntryError
from gateway.store.messages import VERDICTS, MessageFilter
from gateway.store.models import CallRow, MessageRow, SubscriptionRow, VoicemailRow
from gateway.store.settings import validate_setting
from web.calls import export_file as calls_export_file
from web.calls import parse_filter
from web.dashboard import gateways, overview
from web.forms import FieldError, parse_expires
from web.rules import pause_delta
from web.screen import parse_at, screen_number
from web.security import check_api_token
from web.state import state
from web.transfer import export_file, import_csv_bytes
from web.voicemail import audio as voicemail_audio
from web.voicemail import known_prompt_names, save_prompt
from web.wav import MAX_PROMPT_BYTES, WavError

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 500


class ApiError(Exception):
    """An API failure with its status and the field it is about."""

    def __init__(self, message: str, status: int = 400, field: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.extra = extra or {}


def fail(message: str, status: int = 400, field: str | None = None,
         extra: dict[str, Any] | None = None) -> NoReturn:
    """Stop with a JSON error (`extra` adds fields to the error object)."""
    raise ApiError(message, status, field, extra)


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        fail(f"{key}: expected true or false", field=key)
    return value


def _query_flag(key: str) -> bool:
    return request.args.get(key, "").strip().lower() in ("1", "true", "yes")


def broad_json(exc: BroadEntry) -> dict[str, Any]:
    """What a 409 for an unconfirmed broad entry says besides the message."""
    return {"covers": exc.reach.numbers, "countries": list(exc.reach.countries),
            "confirm": "send the same request with \"confirm\": true to add it"}


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": str(exc)}
    if exc.field:
        body["field"] = exc.field
    body.update(exc.extra)
    return jsonify(body), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    return jsonify({"error": exc.description or exc.name}), exc.code or 500


@bp.before_request
def _require_token() -> BaseResponse | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    st = state()
    if scheme.lower() != "bearer" or not check_api_token(st.store, token.strip(),
                                                         st.api_file_hash):
        response = jsonify({"error": "missing or wrong API token (Authorization: Bearer ...)"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="ringfence"'
        return response
    return None


def body() -> dict[str, Any]:
    """The JSON object sent with the request."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        fail("send a JSON object with Content-Type: application/json")
    return data


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        fail(f"{key}: expected a string", field=key)
    return value


def _page_args() -> tuple[int, int]:
    try:
        limit = min(MAX_PAGE, max(1, int(request.args.get("limit", "50"))))
        offset = max(0, int(request.args.get("offset", "0")))
    except ValueError:
        fail("limit and offset must be whole numbers", field="limit")
    return limit, offset


def entry_json(entry: ListEntry) -> dict[str, Any]:
    """An entry as JSON (the same fields as `ringfence allow list`)."""
    return {"id": entry.id, "list": entry.list.value, "kind": entry.kind.value,
            "pattern": entry.pattern, "label": entry.label,
            "action": str(entry.action) if entry.action else None,
            "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
            "once": entry.once, "source": entry.source}


def rule_json(rule: Rule) -> dict[str, Any]:
    """A rule as JSON."""
    return {"id": rule.id, "kind": rule.kind.value, "enabled": rule.enabled,
            "priority": rule.priority, "action": str(rule.action), "params": rule.params,
            "label": rule.label}


def call_json(row: CallRow) -> dict[str, Any]:
    """A logged call as JSON."""
    return {"id": row.id, "at": row.at.isoformat(), "number": row.number,
            "caller_kind": row.caller_kind, "name": row.display_name or None,
            "action": row.action, "reason": row.reason, "reason_code": row.reason_code,
            "reason_params": row.reason_params, "step": row.step, "rule": row.rule,
            "line": row.line, "outcome": row.outcome, "duration_s": row.duration_s}


def voicemail_json(row: VoicemailRow) -> dict[str, Any]:
    """A voicemail as JSON."""
    return {"id": row.id, "at": row.at.isoformat(), "number": row.number,
            "name": row.display_name or None, "duration_s": row.duration_s,
            "size_bytes": row.size_bytes, "heard": row.heard, "interrupted": row.interrupted,
            "audio": f"/api/voicemails/{row.id}/audio"}


# ---------------------------------------------------------------------------- read


@bp.get("/stats")
def stats() -> Response:
    """Counts for today and the week, the 24 h and 7-day series, burst and pause state."""
    data = overview()
    return jsonify({
        "today": data.today, "week": data.week,
        "hours": {"start": data.hour_start.isoformat(), "buckets": data.hours},
        "days": {"start": data.day_start.isoformat(), "buckets": data.days},
        "burst": {"enabled": data.burst_enabled, "active": data.burst.active,
                  "started_at": data.burst.started_at.isoformat()
                  if data.burst.started_at else None,
                  "distinct_callers": data.burst.distinct_callers,
                  "profile": data.burst_profile, "action": data.burst_action},
        "paused_until": data.paused_until.isoformat() if data.paused_until else None,
        # Messages actually left; "voicemail" above counts the calls sent there.
        "messages": data.messages,
        "texts": data.texts,  # text messages (SIP MESSAGE) received
    })


@bp.get("/lines")
def lines() -> Response:
    """Registration state of each SIP line, and each gateway's heartbeat."""
    return jsonify({"lines": [
        {"name": r.name, "state": r.state, "error": r.error, "changed_at": r.changed_at.isoformat()}
        for r in state().store.lines.all()],
        "gateways": [{"host": g.row.host, "mode": g.row.mode, "listening": g.row.listening,
                      "state": g.life.state, "since": g.life.since.isoformat(),
                      "started_at": g.row.started_at.isoformat(),
                      "seen_at": g.row.seen_at.isoformat(), "version": g.row.version}
                     for g in gateways()]})


@bp.get("/calls")
def calls() -> Response:
    """Logged calls, newest first; filters action, date, number; limit/offset."""
    parsed = parse_filter(dict(request.args))
    if parsed.errors:
        field, message = next(iter(parsed.errors.items()))
        fail(message, field=field)
    limit, offset = _page_args()
    store = state().store
    return jsonify({"total": store.calls.count(parsed.flt), "limit": limit,
                    "offset": offset,
                    "calls": [call_json(r) for r in store.calls.recent(parsed.flt,
                                                                        limit=limit,
                                                                        offset=offset)]})


def message_json(row: MessageRow) -> dict[str, Any]:
    """A text message as JSON (the text as received: JSON escapes it)."""
    return {"id": row.id, "at": row.at.isoformat(), "number": row.number,
            "sender_kind": row.sender_kind, "name": row.display_name or None,
            "text": row.body, "verdict": row.verdict, "status": row.status,
            "action": row.action, "reason": row.reason, "reason_code": row.reason_code,
            "reason_params": row.reason_params, "step": row.step, "rule": row.rule,
            "line": row.line}


@bp.get("/messages")
def messages() -> Response:
    """Text messages, newest first; `verdict` (accepted, held, refused); limit/offset."""
    verdict = request.args.get("verdict", "").strip()
    if verdict and verdict not in VERDICTS:
        fail(f"verdict {verdict!r}: expected accepted, held or refused", field="verdict")
    flt = MessageFilter(verdict=verdict or None)
    limit, offset = _page_args()
    store = state().store
    return jsonify({"total": store.messages.count(flt), "limit": limit, "offset": offset,
                    "messages": [message_json(r) for r in store.messages.recent(
                        flt, limit=limit, offset=offset)]})


def _report_date(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        fail(f"{name} {raw[:40]!r}: expected a date as YYYY-MM-DD", field=name)


@bp.get("/report/telemarketing")
def telemarketing_report() -> BaseResponse:
    """The complaint report (as `ringfence report telemarketing`): JSON, or CSV."""
    st = state()
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        fail(f"format {fmt[:20]!r}: expected json or csv", field="format")
    language: Language = "en" if request.args.get("language") == "en" else "fr"
    today = datetime.now(ZoneInfo(st.settings.timezone)).date()
    try:
        since, until = period(_report_date("since"), _report_date("until"), today)
    except ValueError as exc:
        fail(str(exc).replace("--", ""), field="since")
    report = build_report(st.store, since, until, timezone=st.settings.timezone,
                          home_region=st.settings.home_region)
    if fmt == "csv":
        return BaseResponse(render_csv(report, language), mimetype="text/csv", headers={
            "Content-Disposition": "attachment; filename=ringfence-report.csv"})
    return jsonify(render_json(report, language))


@bp.get("/calls/export")
def calls_export() -> BaseResponse:
    """The calls matching the same filters as GET /api/calls, as CSV (no paging)."""
    parsed = parse_filter(dict(request.args))
    if parsed.errors:
        field, message = next(iter(parsed.errors.items()))
        fail(message, field=field)
    return send_file(calls_export_file(parsed.flt), mimetype="text/csv", as_attachment=True,
                     download_name="ringfence-calls.csv")


@bp.post("/screen")
def screen() -> Response:
    """What would happen to a call from a number (dry run, as `ringfence screen`)."""
    data = body()
    st = state()
    try:
        when = parse_at(_text(data, "at"), st.settings)
        return jsonify(screen_number(st.screener, st.settings, _text(data, "number"),
                                     _text(data, "name"), when))
    except FieldError as exc:
        fail(str(exc), field=exc.field)


# ---------------------------------------------------------------------------- lists


def _list_arg(name: str) -> str:
    if name not in ("allow", "block"):
        fail(f"list {name!r}: expected allow or block", 404, "list")
    return name


@bp.get("/lists/<name>")
def list_entries(name: str) -> Response:
    """Entries of a list, newest first; `q` searches pattern and label."""
    list_name = _list_arg(name)
    limit, offset = _page_args()
    search = request.args.get("q", "").strip()
    st = state()
    return jsonify({
        "total": st.store.entries.count(list_name, search),
        "limit": limit, "offset": offset,
        "entries": [entry_json(e) for e in st.store.entries.find(
            list_name, search=search, limit=limit, offset=offset)],
    })


def _entry_from_body(list_name: str, data: dict[str, Any]) -> dict[str, Any]:
    st = state()
    action = _text(data, "action").strip() or None
    if action and list_name == "allow":
        fail("allow entries take no action: an allowed call always rings", field="action")
    once = data.get("once", False)
    if not isinstance(once, bool):
        fail("once: expected true or false", field="once")
    try:
        expires = parse_expires(_text(data, "expires"), st.settings)
    except FieldError as exc:
        fail(str(exc), field=exc.field)
    kind = _text(data, "kind").strip() or None
    return {"text": _text(data, "pattern"), "kind": kind, "label": _text(data, "label").strip(),
            "action": action, "expires_at": expires, "once": once and list_name == "allow",
            "confirm": _flag(data, "confirm")}


@bp.post("/lists/<name>")
def add_entry(name: str) -> tuple[Response, int]:
    """Add (or update) an entry."""
    list_name = _list_arg(name)
    fields = _entry_from_body(list_name, body())
    try:
        entry = state().store.entries.add(list_name, source="api", **fields)
    except BroadEntry as exc:
        # 409: the request is fine but reaches a whole country or more than a million
        # numbers; the same request with "confirm": true adds it.
        fail(str(exc), 409, exc.field, broad_json(exc))
    except EntryError as exc:
        fail(str(exc), field=exc.field)
    return jsonify(entry_json(entry)), 201


@bp.post("/lists/<name>/numbers")
def add_numbers(name: str) -> Response:
    """Put several numbers on a list at once (moving them from the other list)."""
    list_name = _list_arg(name)
    data = body()
    numbers = data.get("numbers")
    if (not isinstance(numbers, list) or not numbers
            or not all(isinstance(n, str) for n in numbers)):
        fail("numbers: expected a list of phone numbers", field="numbers")
    if len(numbers) > MAX_PAGE:
        fail(f"numbers: at most {MAX_PAGE} at once", field="numbers")
    added, refused = state().store.entries.add_numbers(
        list_name, numbers, label=_text(data, "label").strip()[:200], source="api")
    return jsonify({"added": [entry_json(e) for e in added],
                    "refused": [{"number": text, "error": str(why)} for text, why in refused]})


@bp.post("/entries/delete")
def delete_entries() -> Response:
    """Remove several entries at once: {"ids": [1, 2, 3]}."""
    ids = body().get("ids")
    if (not isinstance(ids, list) or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
        fail("ids: expected a list of entry ids", field="ids")
    if len(ids) > 1000:
        fail("ids: at most 1000 at once", field="ids")
    gone = state().store.entries.remove_many(ids)
    found = {e.id for e in gone}
    return jsonify({"deleted": sorted(found), "missing": [i for i in ids if i not in found]})


@bp.get("/entries/<int:entry_id>")
def get_entry(entry_id: int) -> Response:
    """One entry."""
    entry = state().store.entries.get(entry_id)
    if entry is None:
        fail(f"there is no entry {entry_id}", 404)
    return jsonify(entry_json(entry))


@bp.delete("/entries/<int:entry_id>")
def delete_entry(entry_id: int) -> Response:
    """Remove an entry."""
    if not state().store.entries.remove(entry_id):
        fail(f"there is no entry {entry_id}", 404)
    return jsonify({"deleted": entry_id})


@bp.post("/permit")
def permit() -> tuple[Response, int]:
    """Let the next call from a number ring once (default: within a day)."""
    data = body()
    st = state()
    try:
        expires = parse_expires(_text(data, "expires"), st.settings) or (
            datetime.now(UTC) + timedelta(days=1))
        entry = st.store.entries.add(
            ListName.ALLOW, _text(data, "number"), kind="exact",
            label=_text(data, "label") or "permit next call", once=True, expires_at=expires)
    except FieldError as exc:
        fail(str(exc), field=exc.field)
    except EntryError as exc:
        fail(str(exc), field="number")
    return jsonify(entry_json(entry)), 201


@bp.post("/lists/<name>/import")
def import_list(name: str) -> Response:
    """Import a CSV body (number_or_pattern[,label] per line) into a list.

    Any encoding and separator `gateway.store.decode` knows; `?confirm=1` also imports the
    entries that reach a whole country or more than a million numbers (else "unconfirmed").
    """
    list_name = _list_arg(name)
    action = request.args.get("action") or None
    if action and list_name == "allow":
        fail("allow entries take no action", field="action")
    try:
        report = import_csv_bytes(state().store, request.get_data(), list_name, action,
                                  confirm=_query_flag("confirm"))
    except FileProblem as exc:
        fail(str(exc), field="body")
    except ValueError as exc:
        fail(str(exc), field="action")
    return jsonify({"added": report.added, "duplicates": report.duplicates,
                    "rejected": [{"line": r.line, "text": r.text, "error": r.why}
                                 for r in report.rejected[:1000]],
                    "rejected_count": report.rejected_count,
                    "unconfirmed": [{"line": r.line, "text": r.text, "error": r.why}
                                    for r in report.unconfirmed[:1000]],
                    "encoding": report.encoding, "delimiter": report.delimiter})


@bp.get("/lists/<name>/export")
def export_list(name: str) -> BaseResponse:
    """A list as CSV."""
    list_name = _list_arg(name)
    return send_file(export_file(state().store, list_name), mimetype="text/csv",
                     as_attachment=True, download_name=f"ringfence-{list_name}.csv")


@bp.post("/contacts")
def contacts() -> Response:
    """Allow every number of a vCard body, labelled with the contact's name."""
    text = request.get_data().decode("utf-8", errors="replace")
    if "BEGIN:VCARD" not in text.upper():
        fail("the body has no vCard in it", field="body")
    report = import_contacts(state().store, text)
    return jsonify({"cards": report.cards, "added": report.added,
                    "rejected": [{"line": r.line, "text": r.text, "error": r.why}
                                 for r in report.rejected]})


# ---------------------------------------------------------------------------- rules, settings


@bp.get("/rules")
def rules() -> Response:
    """Every step-4 rule."""
    return jsonify({"rules": [rule_json(r) for r in state().store.rules.all()]})


@bp.post("/rules")
def add_rule() -> tuple[Response, int]:
    """Add a rule: kind, action, params, priority, enabled, label."""
    data = body()
    params = data.get("params", {})
    if not isinstance(params, dict):
        fail("params: expected an object", field="params")
    priority = data.get("priority", 100)
    if not isinstance(priority, int) or isinstance(priority, bool):
        fail("priority: expected a whole number", field="priority")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        fail("enabled: expected true or false", field="enabled")
    try:
        rule = state().store.rules.add(_text(data, "kind"), _text(data, "action"), params,
                                             enabled=enabled, priority=priority,
                                             label=_text(data, "label"))
    except EntryError as exc:
        fail(str(exc), field=_rule_field(exc))
    return jsonify(rule_json(rule)), 201


def _rule_field(exc: EntryError) -> str:
    """The API's field for a rule error: kind, action, or params for any rule parameter."""
    return exc.field if exc.field in ("kind", "action") else "params"


@bp.patch("/rules/<int:rule_id>")
def update_rule(rule_id: int) -> Response:
    """Change a rule's enabled, action, params, priority or label."""
    data = body()
    for key, kind in (("enabled", bool), ("priority", int), ("label", str), ("action", str),
                      ("params", dict)):
        if key in data and (not isinstance(data[key], kind)
                            or (kind is int and isinstance(data[key], bool))):
            fail(f"{key}: wrong type", field=key)
    unknown = set(data) - {"enabled", "priority", "label", "action", "params"}
    if unknown:
        fail(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    try:
        rule = state().store.rules.update(rule_id, **data)
    except EntryError as exc:
        if exc.field == "id":
            fail(str(exc), 404)
        fail(str(exc), field=_rule_field(exc))
    return jsonify(rule_json(rule))


@bp.delete("/rules/<int:rule_id>")
def delete_rule(rule_id: int) -> Response:
    """Delete a rule."""
    if not state().store.rules.delete(rule_id):
        fail(f"there is no rule {rule_id}", 404)
    return jsonify({"deleted": rule_id})


@bp.get("/settings")
def get_settings() -> Response:
    """The run-time screening settings."""
    return jsonify(state().store.runtime.all())


@bp.patch("/settings")
def patch_settings() -> Response:
    """Change some run-time settings; all are checked before any is stored."""
    data = body()
    checked: dict[str, Any] = {}
    for key, value in data.items():
        try:
            checked[key] = validate_setting(key, value)
        except EntryError as exc:
            fail(str(exc), field=exc.field)  # nested ones too: "repeat.max_calls"
    store = state().store
    for key, value in checked.items():
        store.runtime.set(key, value)
    return jsonify(store.runtime.all())


@bp.post("/burst/profile")
def burst_profile() -> Response:
    """Choose what burst mode does: {"profile": "spoofed"} or {"profile": "published"}."""
    name = _text(body(), "profile")
    if name not in BURST_PROFILES:
        fail(f"profile {name!r}: expected one of {', '.join(BURST_PROFILES)}", field="profile")
    store = state().store
    store.runtime.set("burst", {**store.runtime.get("burst"),
                                "action": str(BURST_PROFILES[name])})
    return jsonify({"profile": name, "burst": store.runtime.get("burst")})


@bp.post("/pause")
def pause() -> Response:
    """Pause screening for `minutes` or `hours`."""
    data = body()
    unit = "hours" if "hours" in data else "minutes"
    amount = data.get(unit)
    try:
        delta = pause_delta(str(amount), unit)
    except FieldError as exc:
        fail(str(exc).replace("amount", unit), field=unit)
    until = datetime.now(UTC) + delta
    state().store.runtime.set("paused_until", until.isoformat())
    return jsonify({"paused_until": until.isoformat()})


@bp.delete("/pause")
def resume() -> Response:
    """Resume screening."""
    state().store.runtime.set("paused_until", None)
    return jsonify({"paused_until": None})


# ---------------------------------------------------------------------------- subscriptions


def subscription_json(row: SubscriptionRow) -> dict[str, Any]:
    """A list subscription as JSON (the fields of `ringfence subscriptions list`)."""
    return {"id": row.id, "list": row.list, "url": row.url, "label": row.label,
            "refresh_hours": row.refresh_hours, "enabled": row.enabled, "lan": row.lan,
            "entries": row.entry_count, "rejected": row.rejected_count,
            "last_success": row.last_success_at.isoformat() if row.last_success_at else None,
            "last_error": row.last_error, "kind": row.kind, "user": row.username or None,
            "password_file": row.password_file}


@bp.get("/subscriptions")
def subscriptions() -> Response:
    """Every list subscription."""
    return jsonify({"subscriptions": [subscription_json(r)
                                      for r in list_subscriptions(state().store.db)]})


@bp.post("/subscriptions")
def subscribe() -> tuple[Response, int]:
    """Subscribe a list: list, url, label, refresh_hours, lan (true for a LAN source);
    kind "carddav" with user and password_file for an address book."""
    data = body()
    hours = data.get("refresh_hours", state().settings.subscriptions.refresh_hours)
    if not isinstance(hours, int) or isinstance(hours, bool):
        fail("refresh_hours: expected a whole number of hours", field="refresh_hours")
    lan = data.get("lan", False)
    if not isinstance(lan, bool):
        fail("lan: expected true or false", field="lan")
    try:
        row = add_subscription(state().store.db, _text(data, "list"), _text(data, "url"),
                               label=_text(data, "label"), refresh_hours=hours, lan=lan,
                               kind=_text(data, "kind") or "list", username=_text(data, "user"),
                               password_file=_text(data, "password_file") or None)
    except SubscriptionError as exc:
        fail(str(exc), field=exc.field or "url")
    return jsonify(subscription_json(row)), 201


# ---------------------------------------------------------------------------- voicemail


@bp.put("/prompts/<lang>/<name>")
def upload_prompt(lang: str, name: str) -> Response:
    """Store the owner's recording of a prompt (raw PCM WAV body, at most 5 MB)."""
    if lang not in ("fr", "en"):
        fail(f"language {lang!r}: expected fr or en", 404, "lang")
    names = known_prompt_names()
    if name not in names:
        fail(f"prompt {name!r}: expected one of {', '.join(names)}", 404, "name")
    data = request.get_data()
    if len(data) > MAX_PROMPT_BYTES:
        fail("the file is larger than 5 MB", 413, "body")
    try:
        save_prompt(lang, name, data)
    except WavError as exc:
        fail(str(exc), field="body")
    return jsonify({"lang": lang, "name": name, "size_bytes": len(data)})


@bp.get("/voicemails")
def voicemails() -> Response:
    """Voicemails, newest first."""
    limit, offset = _page_args()
    st = state()
    return jsonify({"total": st.store.voicemails.count(),
                    "voicemails": [voicemail_json(r) for r in
                                   st.store.voicemails.recent(limit=limit, offset=offset)]})


@bp.get("/voicemails/<int:voicemail_id>/audio")
def voicemail_file(voicemail_id: int) -> BaseResponse:
    """The recording (audio/wav, Range requests supported)."""
    return voicemail_audio(voicemail_id)


@bp.post("/voicemails/<int:voicemail_id>/heard")
def voicemail_heard(voicemail_id: int) -> Response:
    """Mark heard (body {"heard": false} marks it unheard)."""
    data = request.get_json(silent=True) or {}
    heard = data.get("heard", True) if isinstance(data, dict) else True
    if not isinstance(heard, bool):
        fail("heard: expected true or false", field="heard")
    if not state().store.voicemails.mark_heard(voicemail_id, heard):
        fail(f"there is no voicemail {voicemail_id}", 404)
    return jsonify({"id": voicemail_id, "heard": heard})


@bp.delete("/voicemails/<int:voicemail_id>")
def voicemail_delete(voicemail_id: int) -> Response:
    """Delete a voicemail's file and row."""
    st = state()
    if not st.store.voicemails.delete(voicemail_id):
        fail(f"there is no voicemail {voicemail_id}", 404)
    return jsonify({"deleted": voicemail_id})


