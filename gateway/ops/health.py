"""Health of an installation: the status `ringfence status` and `/healthz` show, and metrics.

Everything is read from the database and the data folder, so the web UI and the CLI report
the gateway's state without talking to the gateway process: the gateway writes each line's
registration state to `line_states`, every call with its screening time to `calls`, and its
call writer's state (rows waiting for the database, rows lost) to `<data_dir>/journal/`.
`collect_status` and `collect_metrics` do the reading; `render_text` and `prometheus_text`
are pure and unit-tested on hand-made values.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select, text
from sqlalchemy.engine import make_url

from gateway import __version__
from gateway.config import Settings
from gateway.store.db import Database, SchemaError, check_schema, current_revision, head_revision
from gateway.store.journal import REJECTED_FILE, journal_backlog, journal_dir, read_status
from gateway.store.models import CallRow, LineStateRow, SubscriptionRow, VoicemailRow
from gateway.store.status import read_load

# Below this much free space on the data folder's disk, recording and logging are at risk.
MIN_FREE_BYTES = 200 * 1024 * 1024
# Warn before the voicemail cap is reached; the gateway stops recording at the cap.
VOICEMAIL_WARN_RATIO = 0.9
# Screening must finish well inside the 0.2-0.8 s before a phone audibly rings
# (docs/architecture.md).
LATENCY_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5, 1.0)


def redact_url(url: str) -> str:
    """The database URL with any password hidden, for display."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as its scheme only
        return url.split(":", 1)[0] + ":…"


def sqlite_file_missing(url: str) -> Path | None:
    """The SQLite file a URL names when it does not exist (opening it would create it)."""
    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _database_status(db: Database | None, settings: Settings) -> dict[str, Any]:
    info: dict[str, Any] = {
        "ok": False, "url": redact_url(settings.database_url), "schema": None,
        "expected_schema": head_revision(), "error": None,
    }
    missing = sqlite_file_missing(settings.database_url) if db is None else None
    if missing is not None:
        info["error"] = f"no database at {missing}: run `ringfence db upgrade`"
        return info
    if db is None:
        return info
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        info["schema"] = current_revision(db.engine)
        check_schema(db.engine)
    except SchemaError as exc:
        info["error"] = str(exc)
        return info
    except Exception as exc:
        # The message of a driver error may hold the host but never the password.
        info["error"] = f"cannot reach the database: {type(exc).__name__}: {exc}".splitlines()[0]
        return info
    info["ok"] = True
    return info


def _line_status(db: Database, settings: Settings) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = {r.name: r for r in s.scalars(select(LineStateRow))}
    lines: list[dict[str, Any]] = []
    for line in settings.lines:
        row = rows.pop(line.name, None)
        lines.append({
            "name": line.name,
            "state": row.state if row else "unknown",
            "error": row.error if row else "the gateway has not reported this line yet",
            "since": _iso(row.changed_at) if row else None,
            "ok": row is not None and row.state == "registered",
        })
    # A line removed from the config may still have a row: shown, but not a problem.
    for name, row in sorted(rows.items()):
        lines.append({"name": name, "state": row.state, "error": row.error,
                      "since": _iso(row.changed_at), "ok": True, "configured": False})
    return lines


def disk_status(path: Path) -> dict[str, Any]:
    """Free and total bytes of the disk holding `path` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total,
            "ok": usage.free >= MIN_FREE_BYTES}


def call_log_status(data_dir: Path) -> dict[str, Any]:
    """The call writer's state from its status file, and the events left in its journal."""
    folder = journal_dir(data_dir)
    written = read_status(folder)
    in_journal = journal_backlog(folder)
    if written is None:  # no gateway has run here since the writer exists
        return {"state": "unknown", "pending": in_journal, "in_journal": in_journal,
                "waiting_since": None, "last_error": None, "journal_error": None,
                "dropped_total": 0, "dropped_since_start": 0, "last_dropped_at": None,
                "rejected_total": 0, "updated_at": None, "ok": in_journal == 0}
    pending = in_journal if written.state == "stopped" else max(written.pending, in_journal)
    return {
        "state": written.state, "pending": pending, "in_journal": in_journal,
        "waiting_since": written.waiting_since, "last_error": written.last_error,
        "journal_error": written.journal_error, "dropped_total": written.dropped_total,
        "dropped_since_start": written.dropped_since_start,
        "last_dropped_at": written.last_dropped_at, "rejected_total": written.rejected_total,
        "updated_at": written.updated_at,
        "ok": pending == 0 and written.dropped_since_start == 0,
    }


def load_status(data_dir: Path) -> dict[str, Any] | None:
    """What the gateway counted under load since it started (its `load.json`), or None."""
    report = read_load(data_dir)
    if report is None:
        return None
    return {"pid": report.pid, "started_at": report.started_at,
            "updated_at": report.updated_at, "stopped": report.stopped,
            "invites": report.count("invites"), "shed": report.count("shed"),
            "refused_no_media_slot": report.count("refused_no_media_slot"),
            "left_fork_ringing_full": report.count("left_fork_ringing_full"),
            "scanners_dropped": report.count("scanners_dropped")}


def collect_status(settings: Settings, db: Database | None = None,
                   *, now: datetime | None = None) -> dict[str, Any]:
    """Gather the installation's health as a JSON-ready dict with `ok` and `problems`."""
    now = now or datetime.now(UTC)
    own_db = db is None and sqlite_file_missing(settings.database_url) is None
    if own_db:
        db = Database(settings.database_url)
    try:
        status: dict[str, Any] = {
            "version": __version__,
            "checked_at": now.isoformat(),
            "database": _database_status(db, settings),
            "lines": [],
            "last_call": None,
            "calls_24h": None,
            "disk": disk_status(settings.data_dir),
            "voicemail": None,
            "call_log": call_log_status(settings.data_dir),
            "load": load_status(settings.data_dir),
            "subscriptions": [],
        }
        if db is not None and status["database"]["ok"]:
            status["lines"] = _line_status(db, settings)
            status["subscriptions"] = _subscription_status(db)
            with db.session() as s:
                last = s.scalar(select(func.max(CallRow.at)))
                recent = s.scalar(select(func.count(CallRow.id))
                                  .where(CallRow.at >= now - timedelta(days=1)))
                used = s.scalar(select(func.coalesce(func.sum(VoicemailRow.size_bytes), 0)))
            status["last_call"] = _iso(last)
            status["calls_24h"] = int(recent or 0)
            cap = settings.voicemail.max_total_mb * 1024 * 1024
            used_bytes = int(used or 0)
            status["voicemail"] = {
                "bytes": used_bytes, "cap_bytes": cap,
                "ratio": round(used_bytes / cap, 4) if cap else None,
                "ok": cap == 0 or used_bytes < cap,
            }
    finally:
        if own_db and db is not None:
            db.dispose()
    problems, warnings = _judge(status)
    status["ok"] = not problems
    status["problems"] = problems
    status["warnings"] = warnings
    return status


def _subscription_status(db: Database) -> list[dict[str, Any]]:
    """Each subscription's last refresh: a failing one keeps its last good entries."""
    with db.session() as s:
        rows = list(s.scalars(select(SubscriptionRow).order_by(SubscriptionRow.id)))
    return [{"id": row.id, "kind": row.kind, "list": row.list, "label": row.label,
             "entries": row.entry_count, "last_success": _iso(row.last_success_at),
             "last_attempt": _iso(row.last_attempt_at), "error": row.last_error,
             "ok": not row.last_error} for row in rows]


def _judge(status: dict[str, Any]) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    database = status["database"]
    if not database["ok"]:
        problems.append(f"database: {database['error'] or 'not reachable'}")
    for line in status["lines"]:
        if not line["ok"]:
            detail = f" ({line['error']})" if line.get("error") else ""
            problems.append(f"line {line['name']}: {line['state']}{detail}")
    disk = status["disk"]
    if not disk["ok"]:
        problems.append(f"disk: only {_human_bytes(disk['free_bytes'])} free on {disk['path']}")
    log_problems, log_warnings = _judge_call_log(status["call_log"])
    problems += log_problems
    warnings += log_warnings
    load = status.get("load")
    if load and load["shed"]:
        # A warning, not a problem: a shed caller got 503 (never a ring) and may retry.
        warnings.append(f"load: {load['shed']} call(s) shed with 503 since the gateway started "
                        f"at {load['started_at']} (the work queue was full; not screened, "
                        "not logged)")
    voicemail = status["voicemail"]
    if voicemail is not None:
        if not voicemail["ok"]:
            problems.append("voicemail: the storage cap is reached; new messages are not "
                            "recorded until some are deleted")
        elif voicemail["ratio"] is not None and voicemail["ratio"] >= VOICEMAIL_WARN_RATIO:
            warnings.append(f"voicemail: {voicemail['ratio']:.0%} of the cap used")
    # A warning, not a problem: screening goes on with the last good entries, and the error
    # (URLs, user names) stays out of the public /healthz, which shows only problems.
    for sub in status.get("subscriptions", []):
        if not sub["ok"]:
            what = "address book" if sub["kind"] == "carddav" else "list"
            kept = (f"{sub['entries']} entries from {sub['last_success']} kept"
                    if sub["last_success"] else "never fetched")
            warnings.append(f"subscription {sub['id']} ({what}"
                            f"{', ' + sub['label'] if sub['label'] else ''}): {sub['error']} "
                            f"({kept})")
    return problems, warnings


def _judge_call_log(log: dict[str, Any]) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    if log["pending"]:
        if log["state"] == "stopped" or log["state"] == "unknown":
            problems.append(f"call log: {log['pending']} event(s) wait in the journal; the "
                            "gateway writes them when it starts")
        else:
            # The database's own message stays out of `problems` (shown without login by
            # /healthz); `render_text` prints it.
            since = f" since {log['waiting_since']}" if log.get("waiting_since") else ""
            where = ("in memory only: the journal cannot be written"
                     if log.get("journal_error") else "kept in the journal")
            problems.append(f"call log: {log['pending']} event(s) wait for the database{since}; "
                            f"{where}")
    if log["dropped_since_start"]:
        problems.append(f"call log: {log['dropped_since_start']} event(s) lost since the gateway "
                        f"started (last at {log['last_dropped_at']}): neither the database nor "
                        "the journal could take them")
    earlier = log["dropped_total"] - log["dropped_since_start"]
    if earlier > 0:
        warnings.append(f"call log: {earlier} event(s) lost before the gateway last started")
    if log.get("journal_error") and not log["pending"]:
        warnings.append(f"call log: {log['journal_error']}")
    if log["rejected_total"]:
        warnings.append(f"call log: {log['rejected_total']} event(s) refused by the database, "
                        f"kept in journal/{REJECTED_FILE}")
    return problems, warnings


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def render_text(status: dict[str, Any]) -> str:
    """The status as a few lines for a person at a terminal."""
    out = [f"Ringfence {status['version']}: {'OK' if status['ok'] else 'PROBLEM'}"]
    database = status["database"]
    if database["ok"]:
        out.append(f"  database   OK, schema {database['schema']} ({database['url']})")
    else:
        out.append(f"  database   FAILED: {database['error']} ({database['url']})")
    if status["lines"]:
        for line in status["lines"]:
            mark = "OK" if line["ok"] else "FAILED"
            since = f" since {line['since']}" if line.get("since") else ""
            error = f": {line['error']}" if line.get("error") and not line["ok"] else ""
            out.append(f"  line {line['name']:<6} {mark}, {line['state']}{since}{error}")
    else:
        out.append("  lines      none configured (direct SIP only)")
    if status["calls_24h"] is not None:
        out.append(f"  last call  {status['last_call'] or 'never'}; "
                   f"{status['calls_24h']} in the last 24 h")
    log = status["call_log"]
    if log["pending"]:
        since = f" since {log['waiting_since']}" if log.get("waiting_since") else ""
        error = f": {log['last_error']}" if log.get("last_error") else ""
        out.append(f"  call log   WAITING: {log['pending']} event(s) not in the database yet, "
                   f"{log['in_journal']} in the journal{since}{error}")
    else:
        lost = f"; {log['dropped_total']} event(s) lost" if log["dropped_total"] else ""
        out.append(f"  call log   OK, nothing waiting{lost}")
    load = status.get("load")
    if load is not None:
        out.append(f"  load       {load['invites']} new call(s) since {load['started_at']}: "
                   f"{load['shed']} shed (503), {load['refused_no_media_slot']} refused "
                   f"(media slots full), {load['left_fork_ringing_full']} not rung "
                   f"(too many ringing); {load['scanners_dropped']} SIP scanner request(s) "
                   "dropped")
    disk = status["disk"]
    out.append(f"  disk       {_human_bytes(disk['free_bytes'])} free of "
               f"{_human_bytes(disk['total_bytes'])} ({disk['path']})")
    voicemail = status["voicemail"]
    if voicemail is not None:
        out.append(f"  voicemail  {_human_bytes(voicemail['bytes'])} of "
                   f"{_human_bytes(voicemail['cap_bytes'])}")
    subscriptions = status.get("subscriptions") or []
    if subscriptions:
        failing = sum(not sub["ok"] for sub in subscriptions)
        out.append(f"  feeds      {len(subscriptions)} subscription(s), "
                   + (f"{failing} failing (see the warnings)" if failing else "all refreshed"))
    out.extend(f"  problem:   {p}" for p in status["problems"])
    out.extend(f"  warning:   {w}" for w in status["warnings"])
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metrics:
    """The numbers `/metrics` exposes, read from the database in one go."""

    database_up: bool
    calls_by_action: dict[str, int] = field(default_factory=dict)
    line_states: dict[str, str] = field(default_factory=dict)
    # Cumulative counts of calls screened within each bucket's upper bound, in seconds.
    latency_buckets: tuple[tuple[float, int], ...] = ()
    latency_count: int = 0
    latency_sum_s: float = 0.0
    voicemail_bytes: int = 0
    voicemail_cap_bytes: int = 0
    call_log_pending: int = 0  # events the gateway's call writer holds (memory and journal)
    call_log_lost: int = 0  # events lost in all (neither the database nor the journal took them)
    # The running gateway's load counters since it started (`load.json`), by name.
    load: dict[str, int] = field(default_factory=dict)
    version: str = __version__
    schema: str | None = None


def collect_metrics(settings: Settings, db: Database) -> Metrics:
    """Read the counters from the database; a database error gives `database_up` 0."""
    log = call_log_status(settings.data_dir)  # a file: readable when the database is not
    pending, lost = int(log["pending"]), int(log["dropped_total"])
    report = read_load(settings.data_dir)
    load = dict(report.counts) if report is not None else {}
    try:
        with db.session() as s:
            by_action = {str(a): int(n) for a, n in s.execute(
                select(CallRow.action, func.count(CallRow.id)).group_by(CallRow.action))}
            states = {r.name: r.state for r in s.scalars(select(LineStateRow))}
            # One pass over calls computes every bucket: CASE per bucket, summed.
            timed = CallRow.screen_ms.is_not(None)
            columns = [func.coalesce(func.sum(case((timed & (CallRow.screen_ms <= b * 1000), 1),
                                                   else_=0)), 0)
                       for b in LATENCY_BUCKETS_S]
            row = s.execute(select(
                func.count(CallRow.screen_ms), func.coalesce(func.sum(CallRow.screen_ms), 0.0),
                *columns)).one()
            voicemail = s.scalar(select(func.coalesce(func.sum(VoicemailRow.size_bytes), 0)))
        schema = current_revision(db.engine)
    except Exception:
        return Metrics(database_up=False,
                       voicemail_cap_bytes=settings.voicemail.max_total_mb * 1024 * 1024,
                       call_log_pending=pending, call_log_lost=lost, load=load)
    for line in settings.lines:
        states.setdefault(line.name, "unknown")
    return Metrics(
        database_up=True,
        calls_by_action=by_action,
        line_states=states,
        latency_buckets=tuple(zip(LATENCY_BUCKETS_S, (int(n) for n in row[2:]), strict=True)),
        latency_count=int(row[0] or 0),
        latency_sum_s=float(row[1] or 0.0) / 1000,
        voicemail_bytes=int(voicemail or 0),
        voicemail_cap_bytes=settings.voicemail.max_total_mb * 1024 * 1024,
        schema=schema,
        call_log_pending=pending,
        call_log_lost=lost,
        load=load,
    )


def _escape(value: str) -> str:
    # Label values escape backslash, double quote and line feed (exposition format 0.0.4).
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _family(name: str, kind: str, help_text: str,
            samples: Sequence[tuple[str, Sequence[tuple[str, str]], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{sample}{_labels(labels)} {_number(value)}"
                 for sample, labels, value in samples)
    return lines


def prometheus_text(metrics: Metrics) -> str:
    """Render metrics in the Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []
    out += _family("ringfence_info", "gauge", "Version and schema of this installation.",
                   [("ringfence_info", [("version", metrics.version),
                                        ("schema", metrics.schema or "")], 1)])
    out += _family("ringfence_database_up", "gauge", "1 when the database answers.",
                   [("ringfence_database_up", [], 1 if metrics.database_up else 0)])
    out += _family("ringfence_calls_total", "counter",
                   "Calls screened, by action, as kept in the call log.",
                   [("ringfence_calls_total", [("action", a)], n)
                    for a, n in sorted(metrics.calls_by_action.items())])
    out += _family("ringfence_line_registered", "gauge",
                   "1 when the SIP line is registered, else 0; `state` says why.",
                   [("ringfence_line_registered", [("line", name), ("state", state)],
                     1 if state == "registered" else 0)
                    for name, state in sorted(metrics.line_states.items())])
    histogram: list[tuple[str, Sequence[tuple[str, str]], float]] = [
        ("ringfence_screen_duration_seconds_bucket", [("le", repr(float(bound)))], count)
        for bound, count in metrics.latency_buckets
    ]
    histogram.append(("ringfence_screen_duration_seconds_bucket", [("le", "+Inf")],
                      metrics.latency_count))
    histogram.append(("ringfence_screen_duration_seconds_sum", [], metrics.latency_sum_s))
    histogram.append(("ringfence_screen_duration_seconds_count", [], metrics.latency_count))
    out += _family("ringfence_screen_duration_seconds", "histogram",
                   "Time to load the rules and decide, per call.", histogram)
    out += _family("ringfence_voicemail_bytes", "gauge", "Bytes used by recorded messages.",
                   [("ringfence_voicemail_bytes", [], metrics.voicemail_bytes)])
    out += _family("ringfence_voicemail_cap_bytes", "gauge", "Configured voicemail cap.",
                   [("ringfence_voicemail_cap_bytes", [], metrics.voicemail_cap_bytes)])
    out += _family("ringfence_call_log_pending", "gauge",
                   "Call log events waiting for the database (in memory or the journal).",
                   [("ringfence_call_log_pending", [], metrics.call_log_pending)])
    out += _family("ringfence_call_log_lost_total", "counter",
                   "Call log events lost: neither the database nor the journal took them.",
                   [("ringfence_call_log_lost_total", [], metrics.call_log_lost)])
    for name, help_text in LOAD_METRICS:
        out += _family(f"ringfence_{name}_total", "counter", help_text,
                       [(f"ringfence_{name}_total", [], metrics.load.get(name, 0))])
    return "\n".join(out) + "\n"


LOAD_METRICS = (
    ("invites", "New INVITEs since the gateway started (screened or shed)."),
    ("shed", "Calls refused with 503 since the gateway started: the work queue was full, "
             "so they were neither screened nor logged."),
    ("refused_no_media_slot", "Calls kept away since the gateway started because every "
                              "media slot (max_calls) was busy."),
    ("left_fork_ringing_full", "Calls to ring answered 480 since the gateway started: too "
                               "many calls were ringing already."),
    ("scanners_dropped", "Requests from known SIP scanners (sipvicious, friendly-scanner…) "
                         "dropped without an answer since the gateway started."),
)


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """The part of the status safe to show without login: no paths, URLs or sizes."""
    database = status["database"]
    return {
        "ok": status["ok"],
        "version": status["version"],
        "checked_at": status["checked_at"],
        "database": {"ok": database["ok"], "schema": database["schema"]},
        "lines": {line["name"]: line["state"] for line in status["lines"]},
        "last_call": status["last_call"],
        "disk_ok": status["disk"]["ok"],
        "voicemail_ok": None if status["voicemail"] is None else status["voicemail"]["ok"],
        "call_log_ok": status["call_log"]["ok"],
        "calls_shed": (status.get("load") or {}).get("shed", 0),
        "problems": status["problems"],
    }
