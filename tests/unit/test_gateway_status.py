"""The gateway's heartbeat: written at start, every few minutes and at stop; judged by the UI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from gateway.call.process import Heartbeat, listening_addresses
from gateway.config import Settings
from gateway.store import Store
from gateway.store.models import GatewayStatusRow, utcnow
from gateway.store.status import HEARTBEAT_SECONDS, SILENT_AFTER, liveness
from tests.helpers import Services


def _row(**values: object) -> GatewayStatusRow:
    now = utcnow()
    fields = {"instance": "pi x", "host": "pi", "pid": os.getpid(), "mode": "direct",
              "listening": ["127.0.0.1:5060"], "version": "0.1.0", "started_at": now,
              "seen_at": now, "stopped_at": None}
    fields.update(values)
    return GatewayStatusRow(**fields)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_gateway_on_another_host_is_up_while_it_beats() -> None:
    now = utcnow()
    assert liveness(_row(seen_at=now - timedelta(minutes=6)), now, host="web").state == "up"
    silent = liveness(_row(seen_at=now - SILENT_AFTER - timedelta(seconds=1)), now, host="web")
    assert silent.state == "silent"


def test_on_its_own_host_a_dead_process_shows_at_once() -> None:
    now = utcnow()
    assert liveness(_row(), now, host="pi").state == "up"  # this test's own pid
    assert liveness(_row(pid=_dead_pid()), now, host="pi").state == "silent"
    # A live pid with an old beat is another process that took the number.
    old = _row(seen_at=now - SILENT_AFTER - timedelta(seconds=1))
    assert liveness(old, now, host="pi").state == "silent"


def test_a_clean_stop_is_told_apart() -> None:
    now = utcnow()
    stopped = liveness(_row(started_at=now - timedelta(hours=1), stopped_at=now), now, host="pi")
    assert stopped.state == "stopped" and stopped.since == now


def test_the_heartbeat_writes_at_start_every_interval_and_at_stop(service: Services,
                                                                  settings: Settings) -> None:
    store: Store = service.store
    clock = [1000.0]
    beat = Heartbeat(store, settings, clock=lambda: clock[0])
    [row] = store.status.all()
    assert row.mode == "direct" and row.listening == listening_addresses(settings)
    assert row.listening == [str(settings.gateway.listen)]
    first_seen = row.seen_at
    clock[0] += HEARTBEAT_SECONDS - 1
    beat.tick()
    assert store.status.all()[0].seen_at == first_seen  # no write before the interval
    clock[0] += 1
    beat.tick()
    assert store.status.all()[0].seen_at > first_seen
    beat.stopped()
    assert liveness(store.status.all()[0], utcnow()).state == "stopped"
    # A restart reuses the row: the UI shows one gateway, running again.
    Heartbeat(store, settings)
    [again] = store.status.all()
    assert again.stopped_at is None and liveness(again, utcnow()).state == "up"


def test_a_failing_database_never_stops_the_gateway(settings: Settings,
                                                    service: Services) -> None:
    broken = service.store

    class Refuses:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("database is locked")

    broken.status = Refuses()  # type: ignore[assignment]
    beat = Heartbeat(broken, settings)
    assert beat.instance is None
    beat.tick()
    beat.stopped()
