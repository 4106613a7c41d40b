"""The `ringfence` command: one module per group of subcommands, all on one `Store`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.cli import notify, ops, screening
from gateway.cli.common import Handler, UsageError, parse_duration, parse_expiry
from gateway.config import ConfigError, load_settings
from gateway.files import tighten_umask
from gateway.store.db import SchemaError
from gateway.store.errors import EntryError


def build_parser(*, with_web: bool = True) -> argparse.ArgumentParser:
    """The argument parser with every subcommand (`web` and `set-password` with `with_web`)."""
    parser = argparse.ArgumentParser(prog="ringfence", description=__doc__)
    parser.add_argument("--config", "-c", help="config file (default: $RINGFENCE_CONFIG)")
    parser.add_argument("--version", action="version", version=f"ringfence {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    screening.register_commands(sub)
    ops.register_commands(sub)
    if with_web:
        # Lazy: `web.cli` brings Flask along, which the gateway process (`run`) must not carry.
        from web.cli import register_commands as register_web

        register_web(sub)
    notify.register_commands(sub)
    return parser


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
    tighten_umask()  # before anything creates a file: the database, a backup, a recording
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(with_web=_command_word(words) != "run").parse_args(words)
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


__all__ = ["UsageError", "main", "parse_duration", "parse_expiry"]
