"""The owner's screening commands: lists, permit, pause, rules, import/export, screen, calls,
messages, and the telemarketing complaint report."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.call.record import CallBook
from gateway.call.screen import Screener
from gateway.cli.common import (
    UsageError,
    owner_store,
    parse_duration,
    parse_expiry,
    parse_when,
    print_json,
)
from gateway.config import Settings
from gateway.feeds.vcard import import_contacts
from gateway.numbers import national_format
from gateway.ops.report import (
    FORMATS,
    Language,
    build_report,
    period,
    render_csv,
    render_json,
    render_text,
)
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Rules, decide
from gateway.screening.ratelimit import History, PastCall
from gateway.screening.rules import ListEntry, ListName
from gateway.store.batch import write_batch
from gateway.store.calls import CallFilter
from gateway.store.decode import FileProblem
from gateway.store.errors import BroadEntry
from gateway.store.list_files import iter_lines
from gateway.store.messages import VERDICTS, MessageFilter
from gateway.store.writer import CallWriter

REPLAY_FLUSH_S = 30.0  # how long `replay --record` waits for the database at the end


def entry_json(entry: ListEntry) -> dict[str, Any]:
    """An entry as `ringfence allow|block list` prints it."""
    return {
        "id": entry.id, "list": entry.list.value, "kind": entry.kind.value,
        "pattern": entry.pattern, "label": entry.label,
        "action": str(entry.action) if entry.action else None,
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
        "once": entry.once, "source": entry.source,
    }


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """allow/block add|list|remove."""
    entries = owner_store(settings).entries
    list_name = ListName(args.command)
    if args.list_command == "add":
        try:
            entry = entries.add(
                list_name, args.pattern, kind=args.kind, label=args.label or "",
                action=getattr(args, "action", None),
                expires_at=parse_expiry(args.expires, settings),
                once=getattr(args, "once", False), confirm=args.yes,
            )
        except BroadEntry as exc:
            raise UsageError(f"{exc}: add --yes to do it") from None
        print_json({"added": entry_json(entry)})
    elif args.list_command == "remove":
        target = args.pattern
        removed = (entries.remove(int(target[1:])) if target.startswith("#")
                   else entries.remove_pattern(list_name, target))
        if not removed:
            print(f"nothing on the {list_name.value} list matches {target!r}", file=sys.stderr)
            return 1
        print(f"removed {target} from the {list_name.value} list")
    else:
        for entry in entries.find(list_name, search=args.search or "", limit=args.limit):
            print_json(entry_json(entry))
    return 0


def cmd_import_vcard(args: argparse.Namespace, settings: Settings) -> int:
    """Allow every phone number of a vCard file (.vcf), labelled with the contact's name."""
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    text = "".join(iter_lines(data))  # UTF-16 and Windows-1252 exports read too
    if "BEGIN:VCARD" not in text.upper():
        raise UsageError(f"{path.name}: there is no vCard in this file")
    report = import_contacts(owner_store(settings), text)
    for rejected in report.rejected[:200]:
        print(f"{path.name}:{rejected.line}: '{rejected.text}' rejected: {rejected.why}",
              file=sys.stderr)
    if len(report.rejected) > 200:
        print(f"... and {len(report.rejected) - 200} more rejected numbers", file=sys.stderr)
    print(f"allow list: {report.added} numbers added from {report.cards} contacts "
          f"({len(report.rejected)} rejected)")
    return 0


def cmd_permit(args: argparse.Namespace, settings: Settings) -> int:
    """Let the next call from a number ring, once."""
    entry = owner_store(settings).entries.add(
        ListName.ALLOW, args.number, kind="exact", label=args.label or "permit next call",
        once=True, expires_at=parse_expiry(args.expires, settings),
    )
    print_json({"permitted_once": entry_json(entry)})
    return 0


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    """Pause screening for a while (every call rings), or resume it."""
    runtime = owner_store(settings).runtime
    if args.duration in ("off", "resume", "0"):
        runtime.set("paused_until", None)
        print("screening resumed")
        return 0
    until = datetime.now(UTC) + parse_duration(args.duration)
    runtime.set("paused_until", until.isoformat())
    local = until.astimezone(ZoneInfo(settings.timezone))
    print(f"screening paused until {local:%Y-%m-%d %H:%M} ({settings.timezone})")
    return 0


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected key=value, e.g. types=PREMIUM_RATE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw.split(",") if key in ("types", "regions") else raw
        if key in ("types", "regions") and isinstance(params[key], str):
            params[key] = [params[key]]
    return params


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Show or change step-4 rules and the run-time settings."""
    store = owner_store(settings)
    rules, runtime = store.rules, store.runtime
    sub = args.rules_command or "list"
    if sub == "add":
        rule = rules.add(args.kind, args.action, _parse_params(args.param),
                         priority=args.priority, label=args.label or "")
        print(f"added rule {rule.id}")
    elif sub == "set":
        changes: dict[str, Any] = {}
        if args.enable or args.disable:
            changes["enabled"] = bool(args.enable)
        if args.action:
            changes["action"] = args.action
        if args.param:
            changes["params"] = _parse_params(args.param)
        if args.priority is not None:
            changes["priority"] = args.priority
        rules.update(args.id, **changes)
        print(f"rule {args.id} updated")
    elif sub == "delete":
        if not rules.delete(args.id):
            print(f"there is no rule {args.id}", file=sys.stderr)
            return 1
        print(f"rule {args.id} deleted")
    elif sub == "setting":
        if args.value is None:
            print_json({args.key: runtime.get(args.key)})
        else:
            try:
                value = json.loads(args.value)
            except json.JSONDecodeError:
                value = args.value
            runtime.set(args.key, value)
            print_json({args.key: runtime.get(args.key)})
    else:
        for rule in rules.all():
            print_json({"id": rule.id, "kind": rule.kind.value, "enabled": rule.enabled,
                        "priority": rule.priority, "action": str(rule.action),
                        "params": rule.params, "label": rule.label})
        print_json({"settings": runtime.all()})
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a CSV of numbers or patterns into a list."""
    list_files = owner_store(settings).list_files
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        report = list_files.import_file(data, args.list, action=args.action, confirm=args.yes)
    except FileProblem as exc:
        raise UsageError(f"{path.name}: {exc}") from None
    for rejected in report.rejected[:200]:
        print(f"{path.name}:{rejected.line}: '{rejected.text}' rejected: {rejected.why}",
              file=sys.stderr)
    if report.rejected_count > 200:
        print(f"... and {report.rejected_count - 200} more rejected lines", file=sys.stderr)
    for held in report.unconfirmed[:200]:
        print(f"{path.name}:{held.line}: '{held.text}' left out: {held.why}", file=sys.stderr)
    if report.unconfirmed:
        print(f"{len(report.unconfirmed)} entries reaching a whole country or more than a "
              "million numbers were left out: import again with --yes to add them too",
              file=sys.stderr)
    print(f"{args.list} list: {report.summary()} (read as {report.encoding}, separated by "
          f"{_SEPARATOR_NAMES.get(report.delimiter, report.delimiter)!s})")
    return 0


_SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Export a list as CSV to a file or standard output."""
    list_files = owner_store(settings).list_files
    if args.file in (None, "-"):
        list_files.export_csv(args.list, sys.stdout)
        return 0
    with Path(args.file).open("w", encoding="utf-8", newline="") as out:
        count = list_files.export_csv(args.list, out)
    print(f"{count} entries written to {args.file}", file=sys.stderr)
    return 0


def screen_json(caller: Caller, decision: Decision, settings: Settings) -> dict[str, Any]:
    """A decision as `ringfence screen` prints it."""
    return {
        "caller": caller.number or caller.kind.value,
        "formatted": national_format(caller.number, settings.home_region) if caller.number else
        None,
        "name": caller.display_name or None,
        "caller_kind": caller.kind.value,
        "number_type": caller.number_type,
        **decision.as_dict(),
    }


def cmd_screen(args: argparse.Namespace, settings: Settings) -> int:
    """Dry-run one caller through the engine: nothing is logged."""
    screener = Screener(owner_store(settings), settings)
    now = parse_when(args.at, settings) if args.at else datetime.now(UTC)
    caller = screener.caller(args.number, args.name or "")
    print_json(screen_json(caller, screener.evaluate(caller, now), settings))
    return 0


def _replay_rows(file: str, settings: Settings) -> list[tuple[datetime, str, str]]:
    """(time, number, name) rows of a replay CSV, in time order; bad lines are reported."""
    try:
        stream = Path(file).open(encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {file!r}: {exc.strerror}") from None
    rows: list[tuple[datetime, str, str]] = []
    with stream:
        for line_no, fields in enumerate(csv.reader(stream), start=1):
            if not fields or fields[0].strip().lower() in ("", "time") or fields[0].startswith("#"):
                continue
            if len(fields) < 2:
                print(f"{file}:{line_no}: expected time,number[,name]", file=sys.stderr)
                continue
            try:
                at = parse_when(fields[0].strip(), settings)
            except UsageError as exc:
                print(f"{file}:{line_no}: {exc}", file=sys.stderr)
                continue
            rows.append((at, fields[1].strip(), ",".join(fields[2:]).strip()))
    rows.sort(key=lambda r: r[0])
    return rows


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a CSV of calls (time,number[,name]) in order, with the history they build."""
    store = owner_store(settings)
    # With --record the calls go through a batched writer (no journal: a command that cannot
    # write says so and fails); the screener sees the ones not committed yet.
    writer = CallWriter(functools.partial(write_batch, store.db), None) if args.record else None
    if writer is not None:
        writer.start()
    screener = Screener(store, settings, writer)
    book = CallBook(store, settings, writer)
    policy = store.screening.policy()
    past: list[PastCall] = []
    consumed: set[int] = set()
    for at, number, name in _replay_rows(args.file, settings):
        caller = screener.caller(number, name)
        if args.record:
            decision = screener.screen(caller, at)
            ref = book.record_call(caller, decision, at=at, line="replay")
            # A replayed call has no real end; an outcome keeps it from looking in progress.
            book.finish_call(ref, duration_s=0.0, outcome="replayed")
        else:
            entries = [e for e in store.screening.candidate_entries(caller)
                       if e.id not in consumed]
            decision = decide(caller, Rules(policy, entries), History(tuple(past)), at)
            if decision.consume_entry_id is not None:
                consumed.add(decision.consume_entry_id)
            past.append(PastCall(at=at, key=caller.key, unknown=decision.counts_towards_burst,
                                 action=str(decision.action)))
        print_json({"time": at.isoformat(), **screen_json(caller, decision, settings)})
    if writer is not None:
        written = writer.flush(REPLAY_FLUSH_S)
        writer.stop(timeout=1.0)
        status = writer.status()
        if not written or status.dropped_since_start or status.rejected_total:
            print(f"the database did not take every replayed call "
                  f"({status.last_error or 'refused or timed out'})", file=sys.stderr)
            return 1
    return 0


def cmd_calls(args: argparse.Namespace, settings: Settings) -> int:
    """Print the most recent calls as JSON lines."""
    calls = owner_store(settings).calls
    for row in calls.recent(CallFilter(action=args.action), limit=args.limit):
        print_json({
            "time": row.at.astimezone(ZoneInfo(settings.timezone)).isoformat(),
            "caller": row.number or row.caller_kind, "name": row.display_name or None,
            "action": row.action, "reason": row.reason, "outcome": row.outcome,
            "duration_s": row.duration_s, "line": row.line,
        })
    return 0


def cmd_messages(args: argparse.Namespace, settings: Settings) -> int:
    """Print the most recent texts as JSON lines (strangers' text as sent: JSON escapes it)."""
    messages = owner_store(settings).messages
    zone = ZoneInfo(settings.timezone)
    for row in messages.recent(MessageFilter(verdict=args.verdict), limit=args.limit):
        print_json({
            "time": row.at.astimezone(zone).isoformat(),
            "sender": row.number or row.sender_kind, "name": row.display_name or None,
            "text": row.body, "verdict": row.verdict, "status": row.status,
            "action": row.action, "reason": row.reason, "reason_code": row.reason_code,
            "rule": row.rule, "line": row.line,
        })
    return 0


def _report_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r}: expected a date as YYYY-MM-DD") from None


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Print the telemarketing complaint report (text to paste, CSV or JSON)."""
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    try:
        since, until = period(_report_date(args.since, "--since"),
                              _report_date(args.until, "--until"), today)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report = build_report(owner_store(settings), since, until, timezone=settings.timezone,
                          home_region=settings.home_region)
    language: Language = "en" if args.language == "en" else "fr"
    if args.format == "json":
        print_json(render_json(report, language))
    elif args.format == "csv":
        sys.stdout.write(render_csv(report, language))
    else:
        sys.stdout.write(render_text(report, language))
    return 0


def register_commands(sub: Any) -> None:
    """Add the lists, rules and screening commands to the `ringfence` parser."""
    for name in ("allow", "block"):
        lp = sub.add_parser(name, help=f"the {name} list")
        lsub = lp.add_subparsers(dest="list_command", required=True)
        add = lsub.add_parser("add", help="add a number, prefix (0162*), glob or re:regex")
        add.add_argument("pattern")
        add.add_argument("--label", "-l")
        add.add_argument("--kind", choices=["exact", "prefix", "glob", "regex"])
        add.add_argument("--expires", help="a duration (2h, 7d) or an ISO time")
        add.add_argument("--yes", "--confirm", action="store_true",
                         help="add it even if it reaches a whole country or more than a "
                         "million numbers")
        if name == "block":
            add.add_argument("--action", help="e.g. reject:603, announce:sit, voicemail")
        else:
            add.add_argument("--once", action="store_true", help="only for the next call")
        rm = lsub.add_parser("remove", help="remove by pattern, or by id as #ID")
        rm.add_argument("pattern")
        ls = lsub.add_parser("list", help="print entries as JSON lines")
        ls.add_argument("--search")
        ls.add_argument("--limit", type=int, default=1000)
        lp.set_defaults(handler=cmd_list)
        if name == "allow":
            vcf = lsub.add_parser("import-vcard", help="allow every phone number of a vCard "
                                  "file (.vcf), labelled with the contact's name")
            vcf.add_argument("file")
            vcf.set_defaults(handler=cmd_import_vcard)

    permit = sub.add_parser("permit", help="let the next call from NUMBER ring")
    permit.add_argument("number")
    permit.add_argument("--label")
    permit.add_argument("--expires", default="1d")
    permit.set_defaults(handler=cmd_permit)

    pause = sub.add_parser("pause", help="pause screening: DURATION (30m, 2h) or off")
    pause.add_argument("duration")
    pause.set_defaults(handler=cmd_pause)

    rules = sub.add_parser("rules", help="show or change rules and settings")
    rsub = rules.add_subparsers(dest="rules_command")
    rsub.add_parser("list")
    radd = rsub.add_parser("add")
    radd.add_argument("kind")
    radd.add_argument("--action", required=True)
    radd.add_argument("--param", action="append", default=[], help="key=value (JSON or text)")
    radd.add_argument("--priority", type=int, default=100)
    radd.add_argument("--label")
    rset = rsub.add_parser("set")
    rset.add_argument("id", type=int)
    rset.add_argument("--enable", action="store_true")
    rset.add_argument("--disable", action="store_true")
    rset.add_argument("--action")
    rset.add_argument("--param", action="append", default=[])
    rset.add_argument("--priority", type=int)
    rdel = rsub.add_parser("delete")
    rdel.add_argument("id", type=int)
    rsetting = rsub.add_parser("setting", help="show or set a run-time setting (JSON value)")
    rsetting.add_argument("key")
    rsetting.add_argument("value", nargs="?")
    rules.set_defaults(handler=cmd_rules)

    imp = sub.add_parser("import", help="import a CSV (number_or_pattern[,label]) into a list")
    imp.add_argument("file")
    imp.add_argument("--list", choices=["allow", "block"], default="block")
    imp.add_argument("--action", help="action for imported block entries")
    imp.add_argument("--yes", "--confirm", action="store_true",
                     help="also import entries that reach a whole country or more than a "
                     "million numbers (left out otherwise)")
    imp.set_defaults(handler=cmd_import)
    exp = sub.add_parser("export", help="export a list as CSV")
    exp.add_argument("file", nargs="?")
    exp.add_argument("--list", choices=["allow", "block"], default="block")
    exp.set_defaults(handler=cmd_export)

    screen = sub.add_parser("screen", help="what would happen to a call (dry run)")
    screen.add_argument("number")
    screen.add_argument("--name", help="display name")
    screen.add_argument("--at", help="ISO time (default: now)")
    screen.set_defaults(handler=cmd_screen)
    replay = sub.add_parser("replay", help="replay calls from a CSV: time,number[,name]")
    replay.add_argument("file")
    replay.add_argument("--record", action="store_true", help="log the calls as if real")
    replay.set_defaults(handler=cmd_replay)
    calls = sub.add_parser("calls", help="recent calls")
    calls.add_argument("--limit", type=int, default=20)
    calls.add_argument("--action")
    calls.set_defaults(handler=cmd_calls)

    messages = sub.add_parser("messages", help="recent text messages (SIP MESSAGE)")
    messages.add_argument("--limit", type=int, default=20)
    messages.add_argument("--verdict", choices=list(VERDICTS),
                          help="only accepted, held or refused texts")
    messages.set_defaults(handler=cmd_messages)

    report = sub.add_parser("report", help="reports to act on: telemarketing complaints")
    rep_sub = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    tm = rep_sub.add_parser(
        "telemarketing", help="per calling number: unlawful or suspicious calls and texts, "
        "ready for SignalConso, the operator or 33700")
    tm.add_argument("--since", help="first local date, YYYY-MM-DD (default: 30 days ago)")
    tm.add_argument("--until", help="last local date, YYYY-MM-DD (default: today)")
    tm.add_argument("--format", choices=list(FORMATS), default="text")
    tm.add_argument("--language", choices=["fr", "en"],
                    help="language of the words (default: fr, for a French authority)")
    tm.set_defaults(handler=cmd_report)
