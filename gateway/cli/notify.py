"""`ringfence notify test`, `ringfence digest --preview`, `ringfence subscriptions …`,
`ringfence retention`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.cli.common import owner_store
from gateway.config import Settings
from gateway.feeds import subscriptions as subs
from gateway.notify.collect import due_period
from gateway.notify.notifier import Notifier, render_digest
from gateway.ops.retention import run_retention
from gateway.store.models import utcnow


def cmd_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Send a test message on each channel and print each channel's result."""
    notifier = Notifier(owner_store(settings).db, settings)
    if not notifier.channels:
        print("no channel configured: set [notify.smtp] host or notify.apprise_urls",
              file=sys.stderr)
        return 1
    results = notifier.send_test(args.channel or None)
    if not results:
        names = ", ".join(c.name for c in notifier.channels)
        print(f"no channel matches {args.channel}; configured: {names}", file=sys.stderr)
        return 1
    for name, error in results:
        print(f"{name}: {'OK' if error is None else 'FAILED: ' + error}")
    return 0 if all(error is None for _, error in results) else 1


def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    """Print the digest that would be sent (nothing is sent or recorded)."""
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            raise ValueError(f"--date {args.date!r}: expected YYYY-MM-DD") from None
    else:
        day = due_period(utcnow(), settings)
    rendered = render_digest(owner_store(settings).db, settings, day, now=utcnow())
    if args.format == "html":
        print(rendered.html, end="")
    elif args.format == "sms":
        for part in rendered.sms:
            print(f"[{len(part)}] {part}")
    else:
        print(f"Subject: {rendered.subject}\n")
        print(rendered.text, end="")
    return 0


def _local(moment: datetime | None, settings: Settings) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="minutes")


def cmd_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    """add | list | remove | refresh list subscriptions."""
    db = owner_store(settings).db
    command = args.subscriptions_command or "list"
    try:
        if command == "add":
            row = subs.add_subscription(db, args.list, args.url, label=args.label or "",
                                        refresh_hours=args.every
                                        or settings.subscriptions.refresh_hours, lan=args.lan,
                                        kind=args.kind, username=args.user or "",
                                        password_file=args.password_file)
            what = "address book" if row.kind == "carddav" else "list"
            print(f"subscription {row.id} added: {row.list} list from the {what} at {row.url}")
            if not args.no_refresh:
                return _print_refresh(subs.refresh(db, settings, row.id))
        elif command == "remove":
            if not subs.remove_subscription(db, settings, args.id):
                print(f"there is no subscription {args.id}", file=sys.stderr)
                return 1
            print(f"subscription {args.id} and its entries removed")
        elif command == "refresh":
            rows = subs.list_subscriptions(db)
            ids = [args.id] if args.id is not None else [r.id for r in rows]
            worst = 0
            for sub_id in ids:
                worst = max(worst, _print_refresh(subs.refresh(db, settings, sub_id,
                                                               force=args.force)))
            return worst
        else:
            for row in subs.list_subscriptions(db):
                print(json.dumps({
                    "id": row.id, "list": row.list, "url": row.url, "label": row.label,
                    "source": subs.source_of(row.id), "entries": row.entry_count,
                    "rejected": row.rejected_count, "refresh_hours": row.refresh_hours,
                    "last_success": _local(row.last_success_at, settings),
                    "last_error": row.last_error, "lan": row.lan, "kind": row.kind,
                    "user": row.username or None, "password_file": row.password_file,
                }, ensure_ascii=False))
    except subs.SubscriptionError as exc:
        print(f"ringfence subscriptions: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_refresh(result: Any) -> int:
    if result.ok:
        what = "numbers" if result.kind == "carddav" else "lines"
        print(f"subscription {result.subscription_id}: {result.entries} entries "
              f"({result.rejected} {what} rejected)")
        return 0
    print(f"subscription {result.subscription_id}: refresh failed, previous entries kept: "
          f"{result.error}", file=sys.stderr)
    return 1


def cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    """Run the retention purge now."""
    report = run_retention(owner_store(settings).db, settings)
    print(report.summary())
    return 0


def register_commands(sub: Any) -> None:
    """Add this module's subcommands to the `ringfence` parser."""
    notify = sub.add_parser("notify", help="notification channels")
    nsub = notify.add_subparsers(dest="notify_command", required=True)
    test = nsub.add_parser("test", help="send a test message on each channel")
    test.add_argument("--channel", action="append",
                      help="only this channel: email, a scheme (ntfy) or a full name (ntfy:1a2b)")
    notify.set_defaults(handler=cmd_notify)

    digest = sub.add_parser("digest", help="show the daily digest")
    digest.add_argument("--preview", action="store_true",
                        help="print it without sending (the only mode: sending is scheduled)")
    digest.add_argument("--date", help="the digest of this local date, YYYY-MM-DD")
    digest.add_argument("--format", choices=["text", "html", "sms"], default="text")
    digest.set_defaults(handler=cmd_digest)

    subscriptions = sub.add_parser("subscriptions", help="lists kept in step with a URL or a file")
    ssub = subscriptions.add_subparsers(dest="subscriptions_command")
    add = ssub.add_parser("add", help="subscribe a list to a URL, an absolute file path or "
                                      "(--kind carddav) a CardDAV address book")
    add.add_argument("list", choices=["allow", "block"])
    add.add_argument("url")
    add.add_argument("--kind", choices=list(subs.KINDS), default="list",
                     help="list: number_or_pattern[,label] lines (the default); carddav: the "
                          "phone numbers of an address book's contacts, named after them")
    add.add_argument("--user", help="CardDAV: the account's user name")
    add.add_argument("--password-file",
                     help="CardDAV: absolute path of a file holding the password (read at each "
                          "refresh; keep it 0600)")
    add.add_argument("--label")
    add.add_argument("--every", type=int, help="refresh every N hours")
    add.add_argument("--no-refresh", action="store_true", help="do not fetch it now")
    add.add_argument("--lan", action="store_true",
                     help="the list is on your own network: allow a private, loopback or "
                          "link-local address (refused otherwise)")
    ssub.add_parser("list", help="print subscriptions as JSON lines")
    remove = ssub.add_parser("remove", help="remove a subscription and its entries")
    remove.add_argument("id", type=int)
    refresh = ssub.add_parser("refresh", help="fetch one subscription (or all) now")
    refresh.add_argument("id", type=int, nargs="?")
    refresh.add_argument("--force", action="store_true",
                         help="accept a list that shrank a lot since the last refresh")
    subscriptions.set_defaults(handler=cmd_subscriptions)

    retention = sub.add_parser("retention", help="purge old calls and voicemails now")
    retention.set_defaults(handler=cmd_retention)
