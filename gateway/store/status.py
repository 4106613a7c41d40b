"""The gateway's heartbeat: written by `ringfence run`, read by the UI to say whether it is up.

A row per gateway instance (its host and listening addresses) is written when the gateway
starts, every HEARTBEAT_SECONDS while it runs and when it stops cleanly: about a dozen small
writes an hour, cheap on an SD card. The UI judges a row with `liveness`: stopped, alive (a
recent beat, or, on the same host, its process still exists) or silent (no beat for two
intervals: crashed, killed or the machine is off).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from gateway.store.db import Database
from gateway.store.journal import replace_json
from gateway.store.models import GatewayStatusRow

HEARTBEAT_SECONDS = 300
# A gateway that has not written for this long is presumed down (two beats missed).
SILENT_AFTER = timedelta(seconds=2 * HEARTBEAT_SECONDS + 30)


def this_host() -> str:
    """The machine's name, as the heartbeat records it."""
    return socket.gethostname()[:100]


def process_exists(pid: int) -> bool:
    """Whether a process with `pid` runs on this machine (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user (the systemd service's)
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Liveness:
    """What the UI says about a gateway: "up", "stopped" or "silent", and since when."""

    state: str
    since: datetime


def liveness(row: GatewayStatusRow, now: datetime, *, host: str | None = None) -> Liveness:
    """Judge a heartbeat row at `now`; on the gateway's own host its process is checked too."""
    if row.stopped_at is not None and row.stopped_at >= row.started_at:
        return Liveness("stopped", row.stopped_at)
    recent = now - row.seen_at <= SILENT_AFTER
    if (host if host is not None else this_host()) == row.host:
        # On its own host a crash shows at once: no need to wait for a missed beat. A recent
        # beat is still required, since a process started later may have taken the pid.
        recent = recent and process_exists(row.pid)
    return Liveness("up", row.started_at) if recent else Liveness("silent", row.seen_at)


class GatewayStatus:
    """Reads and writes of the `gateway_status` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def started(self, *, mode: str, listening: Sequence[str], version: str, at: datetime,
                pid: int | None = None, host: str | None = None) -> str:
        """Record that a gateway started listening; return its instance key for `beat`."""
        host = host or this_host()
        instance = f"{host} {' '.join(listening)}"[:200]
        with self.db.session() as s:
            row = s.get(GatewayStatusRow, instance)
            if row is None:
                row = GatewayStatusRow(instance=instance)
                s.add(row)
            row.host, row.pid, row.mode = host, pid if pid is not None else os.getpid(), mode
            row.listening, row.version = list(listening), version[:20]
            row.started_at = row.seen_at = at
            row.stopped_at = None
        return instance

    def beat(self, instance: str, at: datetime) -> None:
        """Record that the gateway is still running."""
        with self.db.session() as s:
            row = s.get(GatewayStatusRow, instance)
            if row is not None:
                row.seen_at = at

    def stopped(self, instance: str, at: datetime) -> None:
        """Record a clean stop."""
        with self.db.session() as s:
            row = s.get(GatewayStatusRow, instance)
            if row is not None:
                row.seen_at = row.stopped_at = at

    def all(self) -> list[GatewayStatusRow]:
        """Every gateway that ever wrote a heartbeat, the most recently seen first."""
        with self.db.session() as s:
            return list(s.scalars(select(GatewayStatusRow)
                                  .order_by(GatewayStatusRow.seen_at.desc())))


# --------------------------------------------------------------------------- load file

LOAD_FILE = "load.json"
"""`<data_dir>/load.json`: what the running gateway did under load (see `LoadReport`)."""
LOAD_WRITE_SECONDS = 10
"""While the counts move, the file is rewritten at most this often (a few hundred bytes)."""


@dataclass
class LoadReport:
    """The gateway's load counters since it started, as `ringfence status`, `/metrics` and
    the dashboard show them. A file, not a row: readable while the database is down, which
    is when shedding matters, and written only when a count moved."""

    pid: int = 0
    started_at: str | None = None
    updated_at: str | None = None
    stopped: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # LoadCounters.NAMES

    def count(self, name: str) -> int:
        """One counter (0 when absent)."""
        return int(self.counts.get(name, 0))


def write_load(data_dir: Path, report: LoadReport) -> None:
    """Replace the load file (atomically, like the call writer's status)."""
    replace_json(data_dir / LOAD_FILE, asdict(report))


def read_load(data_dir: Path) -> LoadReport | None:
    """The last load report a gateway wrote here, or None (none yet, or unreadable)."""
    try:
        data = json.loads((data_dir / LOAD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("counts", {}), Mapping):
        return None
    try:
        counts = {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}
        return LoadReport(pid=int(data.get("pid") or 0), started_at=data.get("started_at"),
                          updated_at=data.get("updated_at"), stopped=bool(data.get("stopped")),
                          counts=counts)
    except (TypeError, ValueError):
        return None
