"""The `ringfence` command."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.config import ConfigError, Settings, load_settings
from gateway.numbers import national_format
from gateway.screening.ratelimit import History, PastCall
from gateway.screening.rules import ListEntry, ListName
from gateway.store.db import SchemaError
from gateway.store.repository import EntryError

Handler = Callable[[argparse.Namespace, Settings], int]
_DURATION = re.compile(r"^(\d+)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(ValueError):
    """A command-line value is wrong; the message names the option."""


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '30m', '2h', '7d' or '1w'."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise UsageError(f"{text!r} is not a duration: use e.g. 30m, 2h, 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_when(text: str, settings: Settings) -> datetime:
    """Parse an ISO time; a time without zone is local to the configured time zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO time such as 2026-11-23T14:30") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(settings.timezone))


def parse_expiry(text: str | None, settings: Settings) -> datetime | None:
    """An expiry given as a duration from now or as an ISO time."""
    if not text:
        return None
    if _DURATION.match(text.strip().lower()):
        return datetime.now(UTC) + parse_duration(text)
    return parse_when(text, settings)


def _service(settings: Settings) -> Any:
    from gateway.service import open_service

    return open_service(settings, upgrade=False)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, default=str))


def _entry_json(entry: ListEntry, settings: Settings) -> dict[str, Any]:
    return {
        "id": entry.id, "list": entry.list.value, "kind": entry.kind.value,
        "pattern": entry.pattern, "label": entry.label,
        "action": str(entry.action) if entry.action else None,
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
        "once": entry.once, "source": entry.source,
    }


# ---------------------------------------------------------------------------- commands


def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the configuration (loading it already did) and say what it sets up."""
    lines = ", ".join(line.name for line in settings.lines) or (
        f"none (direct SIP on {settings.gateway.listen})")
    print(f"configuration OK: {settings.source or 'built-in defaults'}")
    print(f"  home region {settings.home_region}, time zone {settings.timezone}, "
          f"language {settings.language}")
    print(f"  database {settings.database_url}")
    print(f"  lines: {lines}; web UI on {settings.web.listen}")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """Create/upgrade the schema, or show its revision."""
    from gateway.service import open_database
    from gateway.store.db import current_revision, head_revision

    if args.db_command == "upgrade":
        db = open_database(settings, upgrade=True)
        from gateway.store.repository import Repository

        Repository(db, settings.home_region, settings.timezone).ensure_defaults()
        print(f"database at schema {current_revision(db.engine)}: {settings.database_url}")
        return 0
    from gateway.store.db import Database

    db = (open_database(settings, upgrade=False) if args.db_command == "check"
          else Database(settings.database_url))
    print(f"database schema {current_revision(db.engine) or 'none'}, code expects "
          f"{head_revision()}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """allow/block add|list|remove."""
    service = _service(settings)
    repo = service.repo
    list_name = ListName(args.command)
    if args.list_command == "add":
        entry = repo.add_entry(
            list_name, args.pattern, kind=args.kind, label=args.label or "",
            action=getattr(args, "action", None), expires_at=parse_expiry(args.expires, settings),
            once=getattr(args, "once", False),
        )
        _print_json({"added": _entry_json(entry, settings)})
    elif args.list_command == "remove":
        target = args.pattern
        removed = (repo.remove_entry(int(target[1:])) if target.startswith("#")
                   else repo.remove_pattern(list_name, target))
        if not removed:
            print(f"nothing on the {list_name.value} list matches {target!r}", file=sys.stderr)
            return 1
        print(f"removed {target} from the {list_name.value} list")
    else:
        for entry in repo.entries(list_name, search=args.search or "", limit=args.limit):
            _print_json(_entry_json(entry, settings))
    return 0


def cmd_permit(args: argparse.Namespace, settings: Settings) -> int:
    """Let the next call from a number ring, once."""
    entry = _service(settings).repo.add_entry(
        ListName.ALLOW, args.number, kind="exact", label=args.label or "permit next call",
        once=True, expires_at=parse_expiry(args.expires, settings),
    )
    _print_json({"permitted_once": _entry_json(entry, settings)})
    return 0


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    """Pause screening for a while (every call rings), or resume it."""
    repo = _service(settings).repo
    if args.duration in ("off", "resume", "0"):
        repo.set_setting("paused_until", None)
        print("screening resumed")
        return 0
    until = datetime.now(UTC) + parse_duration(args.duration)
    repo.set_setting("paused_until", until.isoformat())
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
    repo = _service(settings).repo
    sub = args.rules_command or "list"
    if sub == "add":
        rule = repo.add_rule(args.kind, args.action, _parse_params(args.param),
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
        repo.update_rule(args.id, **changes)
        print(f"rule {args.id} updated")
    elif sub == "delete":
        if not repo.delete_rule(args.id):
            print(f"there is no rule {args.id}", file=sys.stderr)
            return 1
        print(f"rule {args.id} deleted")
    elif sub == "setting":
        if args.value is None:
            _print_json({args.key: repo.get_setting(args.key)})
        else:
            try:
                value = json.loads(args.value)
            except json.JSONDecodeError:
                value = args.value
            repo.set_setting(args.key, value)
            _print_json({args.key: repo.get_setting(args.key)})
    else:
        for rule in repo.rules():
            _print_json({"id": rule.id, "kind": rule.kind.value, "enabled": rule.enabled,
                         "priority": rule.priority, "action": str(rule.action),
                         "params": rule.params, "label": rule.label})
        _print_json({"settings": repo.all_settings()})
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a CSV of numbers or patterns into a list."""
    repo = _service(settings).repo
    path = Path(args.file)
    try:
        stream = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with stream:
        report = repo.import_csv(stream, args.list, action=args.action)
    for line_no, text, why in report.rejected[:200]:
        print(f"{path.name}:{line_no}: {text!r} rejected: {why}", file=sys.stderr)
    if len(report.rejected) > 200:
        print(f"... and {len(report.rejected) - 200} more rejected lines", file=sys.stderr)
    print(f"{args.list} list: {report.summary()}")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Export a list as CSV to a file or standard output."""
    repo = _service(settings).repo
    if args.file in (None, "-"):
        repo.export_csv(args.list, sys.stdout)
        return 0
    with Path(args.file).open("w", encoding="utf-8", newline="") as out:
        count = repo.export_csv(args.list, out)
    print(f"{count} entries written to {args.file}", file=sys.stderr)
    return 0


def _screen_json(caller: Any, decision: Any, settings: Settings) -> dict[str, Any]:
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
    service = _service(settings)
    now = parse_when(args.at, settings) if args.at else datetime.now(UTC)
    caller = service.caller(args.number, args.name or "")
    decision = service.evaluate(caller, now)
    _print_json(_screen_json(caller, decision, settings))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a CSV of calls (time,number[,name]) in order, with the history they build."""
    service = _service(settings)
    repo = service.repo
    policy = repo.policy()
    past: list[PastCall] = []
    consumed: set[int] = set()
    from gateway.screening.decide import Rules, decide

    try:
        stream = Path(args.file).open(encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {args.file!r}: {exc.strerror}") from None

    rows: list[tuple[int, datetime, str, str]] = []
    with stream:
        for line_no, fields in enumerate(csv.reader(stream), start=1):
            if not fields or fields[0].strip().lower() in ("", "time") or fields[0].startswith("#"):
                continue
            if len(fields) < 2:
                print(f"{args.file}:{line_no}: expected time,number[,name]", file=sys.stderr)
                continue
            try:
                at = parse_when(fields[0].strip(), settings)
            except UsageError as exc:
                print(f"{args.file}:{line_no}: {exc}", file=sys.stderr)
                continue
            rows.append((line_no, at, fields[1].strip(), ",".join(fields[2:]).strip()))
    rows.sort(key=lambda r: r[1])
    for _line_no, at, number, name in rows:
        caller = service.caller(number, name)
        if args.record:
            decision = service.screen(caller, at)
            service.record_call(caller, decision, at=at, line="replay")
        else:
            entries = [e for e in repo.candidate_entries(caller) if e.id not in consumed]
            decision = decide(caller, Rules(policy, entries), History(tuple(past)), at)
            if decision.consume_entry_id is not None:
                consumed.add(decision.consume_entry_id)
            past.append(PastCall(at=at, key=caller.key, unknown=decision.counts_towards_burst,
                                 action=str(decision.action)))
        _print_json({"time": at.isoformat(), **_screen_json(caller, decision, settings)})
    return 0


def cmd_calls(args: argparse.Namespace, settings: Settings) -> int:
    """Print the most recent calls as JSON lines."""
    repo = _service(settings).repo
    for row in repo.calls(limit=args.limit, action=args.action):
        _print_json({
            "time": row.at.astimezone(ZoneInfo(settings.timezone)).isoformat(),
            "caller": row.number or row.caller_kind, "name": row.display_name or None,
            "action": row.action, "reason": row.reason, "outcome": row.outcome,
            "duration_s": row.duration_s, "line": row.line,
        })
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the SIP gateway until stopped."""
    import importlib

    try:
        module = importlib.import_module("gateway.gateway")
    except ModuleNotFoundError:
        print("this build of Ringfence has no SIP gateway", file=sys.stderr)
        return 2
    return int(module.run_gateway(settings))


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="ringfence", description=__doc__)
    parser.add_argument("--config", "-c", help="config file (default: $RINGFENCE_CONFIG)")
    parser.add_argument("--version", action="version", version=f"ringfence {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("check-config", help="validate the configuration").set_defaults(
        handler=cmd_check_config)
    db = sub.add_parser("db", help="database schema")
    db.add_argument("db_command", choices=["upgrade", "current", "check"])
    db.set_defaults(handler=cmd_db)

    for name in ("allow", "block"):
        lp = sub.add_parser(name, help=f"the {name} list")
        lsub = lp.add_subparsers(dest="list_command", required=True)
        add = lsub.add_parser("add", help="add a number, prefix (0162*), glob or re:regex")
        add.add_argument("pattern")
        add.add_argument("--label", "-l")
        add.add_argument("--kind", choices=["exact", "prefix", "glob", "regex"])
        add.add_argument("--expires", help="a duration (2h, 7d) or an ISO time")
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

    sub.add_parser("run", help="run the SIP gateway").set_defaults(handler=cmd_run)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Feature modules add their subcommands here (web UI, notifications, backup...).
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _load_extra_commands() -> None:
    import importlib

    for module_name in ("web.cli", "gateway.notify.cli", "gateway.appliance"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that feature is not part of this build
            raise
        register = getattr(module, "register_commands", None)
        if register is not None and register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(register)


def _command_word(words: Sequence[str]) -> str | None:
    """The subcommand in `words`, skipping global options and their values."""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--config", "-c"):
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ringfence` command."""
    words = list(sys.argv[1:] if argv is None else argv)
    if _command_word(words) != "run":
        # The gateway process needs none of them, and the web UI's pulls in Flask: on a Pi
        # that is memory the gateway would carry for nothing.
        _load_extra_commands()
    args = build_parser().parse_args(words)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"ringfence: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.log_level != "debug":
        # Their per-job and per-migration lines drown the gateway's own in the journal.
        for noisy in ("alembic", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        handler: Handler = args.handler
        return handler(args, settings)
    except (UsageError, EntryError, SchemaError, ValueError) as exc:
        print(f"ringfence {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0


__all__ = ["main", "parse_duration"]
