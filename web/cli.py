"""`ringfence web` (serve the UI with waitress) and `ringfence set-password`."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path
from typing import Any

import waitress

from gateway.config import Settings, cannot_listen
from gateway.store import Store, open_store
from web import create_app
from web.security import PasswordError, new_api_token, password_is_set, set_password

# `ringfence run` never imports this module (gateway.cli skips it), so Flask stays out of the
# gateway process; every other command registers these subcommands.

log = logging.getLogger(__name__)

WEB_THREADS = 4  # enough for one owner's phone and laptop; small on a Raspberry Pi


def _store(settings: Settings) -> Store:
    return open_store(settings, upgrade=False)


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the web UI with waitress on `web.listen` (or print a new API token)."""
    if args.new_api_token:
        token = new_api_token(_store(settings))
        print(token)
        print("API token created: it is shown only this once; the old one no longer works.",
              file=sys.stderr)
        return 0
    app = create_app(settings)
    listen = settings.web.listen
    if not password_is_set(app.extensions["ringfence"].store):
        log.warning("no password is set: open http://%s/ to choose one, or run "
                    "`ringfence set-password`", listen)
    try:
        server = waitress.create_server(app, host=listen.host, port=listen.port,
                                        threads=WEB_THREADS, ident="ringfence",
                                        clear_untrusted_proxy_headers=True)
    except OSError as exc:
        log.error("%s", cannot_listen("the web UI", listen, exc, "[web] listen"))
        return 1
    log.info("web UI on http://%s/", listen)
    server.run()
    return 0


def _read_password(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordError(f"cannot read {args.password_file!r}: {exc.strerror}") from None
        return text.rstrip("\r\n"), None
    first = getpass.getpass("New web UI password: ")
    return first, getpass.getpass("Same password again: ")


def cmd_set_password(args: argparse.Namespace, settings: Settings) -> int:
    """Set the web UI password (asked twice, or read from --password-file)."""
    try:
        password, confirm = _read_password(args)
        set_password(_store(settings), password, confirm)
    except PasswordError as exc:
        print(f"ringfence set-password: {exc}", file=sys.stderr)
        return 2
    print("web UI password set; existing sessions are logged out")
    return 0


def register_commands(subparsers: Any) -> None:
    """Add the `web` and `set-password` subcommands."""
    web = subparsers.add_parser("web", help="serve the owner's web UI (waitress)")
    web.add_argument("--new-api-token", action="store_true",
                     help="create a new JSON API token, print it once and exit")
    web.set_defaults(handler=cmd_web)
    pw = subparsers.add_parser("set-password", help="set the web UI password")
    pw.add_argument("--password-file", help="read the password from this file's first line")
    pw.set_defaults(handler=cmd_set_password)
