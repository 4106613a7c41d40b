"""A digest killed mid-send (issue 11, item 8): a real `ringfence run` sends the day's digest
to a real SMTP server (aiosmtpd) that stalls before DATA, or in DATA, is killed with SIGKILL
there, and started again. Before DATA nobody can have the message: it is sent again, once.
Once DATA may have reached the server it is never resent."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.integration.notify_support import SmtpSink, smtp_toml
from tests.peers import free_port, wait_until
from tests.peers.gateway_process import GatewayProcess

pytestmark = [pytest.mark.slow, pytest.mark.clock]


@dataclass
class StallingSink(SmtpSink):
    """An SMTP server that holds the first client at RCPT or in DATA until released."""

    stall_at: str = "RCPT"
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def _hold(self, step: str) -> None:
        if step == self.stall_at and not self.stalled.is_set():
            self.stalled.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        await self._hold("RCPT")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # The message is the server's once it has it all, whether or not the client lives
        # to read the 250 (a real server queues it: it will be delivered).
        reply = await super().handle_DATA(server, session, envelope)
        await self._hold("DATA")
        return reply


@contextmanager
def stalling_server(stall_at: str) -> Iterator[StallingSink]:
    sink = StallingSink(port=free_port(), stall_at=stall_at)
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        sink.release.set()
        controller.stop()


def digest_due_now() -> str:
    """A digest time a minute ago (UTC), so the gateway sends the digest when it starts."""
    return f"{datetime.now(UTC) - timedelta(minutes=1):%H:%M}"


def notification(gateway: GatewayProcess) -> tuple[str, str | None, str | None]:
    conn = sqlite3.connect(gateway.database_file, timeout=30)
    try:
        row = conn.execute("SELECT status, phase, last_error FROM notifications "
                           "WHERE kind = 'digest'").fetchone()
        return (str(row[0]), row[1], row[2]) if row else ("none", None, None)
    finally:
        conn.close()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Any]:
    made: list[GatewayProcess] = []

    def make(port: int) -> GatewayProcess:
        extra = (f'timezone = "UTC"\nlanguage = "en"\n[notify]\n'
                 f'digest_time = "{digest_due_now()}"\n'
                 + smtp_toml(port).replace("timeout = 10", "timeout = 120"))
        gateway = GatewayProcess(tmp_path / "gateway", extra=extra)
        assert gateway.cli("db", "upgrade").returncode == 0
        made.append(gateway)
        return gateway

    try:
        yield make
    finally:
        for gateway in made:
            gateway.stop()


def test_a_digest_killed_before_data_is_sent_once_after_the_restart(make_gateway: Any) -> None:
    with stalling_server("RCPT") as sink:
        gateway = make_gateway(sink.port)
        gateway.start()
        assert sink.stalled.wait(60), "the digest never reached RCPT"
        assert notification(gateway)[:2] == ("sending", "connecting")
        gateway.kill()
        sink.release.set()
        assert sink.messages == []
        gateway.start()  # the send of the dead process is settled before any job
        assert sink.wait_for(1, 60), f"the digest was not sent again: {notification(gateway)}"
        wait_until(lambda: notification(gateway)[0] == "sent", 30, "the row to say sent")
        assert gateway.stop() == 0
        assert len(sink.messages) == 1
        assert str(sink.messages[0]["Subject"])
    assert "sending them again" in gateway.log()


def test_a_digest_killed_once_data_was_sent_is_never_resent(make_gateway: Any) -> None:
    with stalling_server("DATA") as sink:
        gateway = make_gateway(sink.port)
        gateway.start()
        assert sink.stalled.wait(60), "the digest never reached DATA"
        assert notification(gateway)[:2] == ("sending", "data")
        assert len(sink.messages) == 1  # the server has it, the client never hears so
        gateway.kill()
        sink.release.set()
        gateway.start()
        # The scheduler settles the dead process's send just after SIP answers (calls first).
        wait_until(lambda: notification(gateway)[0] != "sending", 30, "the send to be settled")
        status, phase, error = notification(gateway)
        assert (status, phase) == ("failed", None) and "not resent" in (error or "")
        assert gateway.stop() == 0
        assert len(sink.messages) == 1
    assert "marked failed, not resent" in gateway.log()
