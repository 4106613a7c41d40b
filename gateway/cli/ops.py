"""Running the installation: check-config, db, run, backup, restore, status."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.call.process import run_gateway
from gateway.config import Settings
from gateway.ops.backup import BackupError, backup_to, read_manifest, restore_from
from gateway.ops.health import collect_status, render_text
from gateway.store import Store, open_database
from gateway.store.db import Database, current_revision, head_revision
from gateway.store.settings import PASSWORD_KEY


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
    if args.db_command == "upgrade":
        db = open_database(settings, upgrade=True)
        Store.for_settings(db, settings).ensure_defaults()
        print(f"database at schema {current_revision(db.engine)}: {settings.database_url}")
        return 0
    db = (open_database(settings, upgrade=False) if args.db_command == "check"
          else Database(settings.database_url))
    print(f"database schema {current_revision(db.engine) or 'none'}, code expects "
          f"{head_revision()}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the SIP gateway until stopped."""
    return run_gateway(settings)


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    """Write a backup archive."""
    path = Path(args.file)
    if path.is_dir() or args.file.endswith("/"):
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = path / f"ringfence-backup-{stamp}.tar.gz"
    manifest = backup_to(path, settings, with_calls=args.with_calls,
                         with_voicemail=args.with_voicemail,
                         with_credentials=args.with_credentials)
    contents = ", ".join(f"{n} {k}" for k, n in manifest["contents"].items())
    print(f"backup written to {path} (schema {manifest['schema_revision']}): {contents}")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """Check an archive and restore it, after confirmation."""
    try:
        manifest = read_manifest(args.file)
    except BackupError as exc:
        print(f"ringfence restore: {exc}", file=sys.stderr)
        return 2
    contents = ", ".join(f"{n} {k}" for k, n in manifest["contents"].items())
    print(f"backup of {manifest.get('created_at')} by Ringfence "
          f"{manifest.get('ringfence_version')} (schema {manifest['schema_revision']}): "
          f"{contents}")
    if not args.yes:
        if not sys.stdin.isatty():
            print("ringfence restore: this replaces the lists, rules and settings; "
                  "add --yes to confirm", file=sys.stderr)
            return 2
        answer = input("Replace the current lists, rules and settings with this backup? "
                       "[y/N] ")
        if answer.strip().lower() not in ("y", "yes", "o", "oui"):
            print("nothing changed")
            return 1
        if args.with_credentials:
            # A second, explicit question: after this only the backup's password works here.
            answer = input("Also replace this installation's web UI password and API token "
                           "with the backup's, logging every session out? Type 'replace': ")
            if answer.strip().lower() != "replace":
                print("nothing changed")
                return 1
    try:
        report = restore_from(args.file, settings, with_credentials=args.with_credentials)
    except BackupError as exc:
        print(f"ringfence restore: {exc}; nothing changed", file=sys.stderr)
        return 2
    print(report.summary())
    if not report.credentials_replaced and not _password_set(settings):
        print("no web UI password is set here yet: run `ringfence set-password`",
              file=sys.stderr)
    return 0


def _password_set(settings: Settings) -> bool:
    db = open_database(settings)
    try:
        return bool(Store.for_settings(db, settings).runtime.get_private(PASSWORD_KEY))
    finally:
        db.dispose()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the installation's health; exit 1 when something is wrong."""
    status = collect_status(settings)
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=1))
    else:
        sys.stdout.write(render_text(status))
    return 0 if status["ok"] else 1


def register_commands(sub: Any) -> None:
    """Add check-config, db, run, backup, restore and status to the `ringfence` parser."""
    sub.add_parser("check-config", help="validate the configuration").set_defaults(
        handler=cmd_check_config)
    db = sub.add_parser("db", help="database schema")
    db.add_argument("db_command", choices=["upgrade", "current", "check"])
    db.set_defaults(handler=cmd_db)
    sub.add_parser("run", help="run the SIP gateway").set_defaults(handler=cmd_run)

    backup = sub.add_parser("backup", help="write lists, rules and settings to a .tar.gz")
    backup.add_argument("file", help="archive to write (or a folder: a dated name is chosen)")
    backup.add_argument("--with-calls", action="store_true", help="include the call log")
    backup.add_argument("--with-voicemail", action="store_true",
                        help="include recorded messages (WAV files)")
    backup.add_argument("--with-credentials", action="store_true",
                        help="include the web UI password hash and API token hash (left out "
                             "by default; only `restore --with-credentials` uses them)")
    backup.set_defaults(handler=cmd_backup)

    restore = sub.add_parser("restore", help="restore a backup made by `ringfence backup`")
    restore.add_argument("file")
    restore.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    restore.add_argument("--with-credentials", action="store_true",
                         help="also take the backup's web UI password and API token (made "
                              "with `backup --with-credentials`); asks a second confirmation. "
                              "Without it this installation's credentials are kept")
    restore.set_defaults(handler=cmd_restore)

    status = sub.add_parser("status", help="lines, database, disk and voicemail health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)
