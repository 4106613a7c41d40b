"""The outbox with fake channels: send once, retry with backoff, give up, never resend a crash."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from gateway.notify.channels import Message, SendError
from gateway.notify.outbox import Outbox, recent_notifications
from gateway.store.db import Database
from gateway.store.models import NotificationRow

pytestmark = pytest.mark.clock

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
MESSAGE = Message(kind="digest", subject="subject", text="text")


class FakeChannel:
    """Fails with the queued errors, then succeeds; records what it sent."""

    def __init__(self, name: str, errors: list[SendError] | None = None) -> None:
        self.name = name
        self.errors = list(errors or [])
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)


def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'test.db'}")
    db.upgrade()
    return db


def statuses(db: Database) -> list[tuple[str, str, int]]:
    with db.session() as s:
        return [(r.channel, r.status, r.attempts) for r in s.scalars(
            select(NotificationRow).order_by(NotificationRow.id))]


def test_each_channel_gets_it_once(tmp_path: Path) -> None:
    db = database(tmp_path)
    a, b = FakeChannel("email"), FakeChannel("ntfy:1")
    outbox = Outbox(db, [a, b])
    assert [o.status for o in outbox.deliver("digest", "2026-11-23", MESSAGE, NOW)] == \
        ["sent", "sent"]
    assert [o.status for o in outbox.deliver("digest", "2026-11-23", MESSAGE, NOW)] == \
        ["skipped", "skipped"]
    assert len(a.sent) == len(b.sent) == 1
    assert outbox.already_claimed("digest", "2026-11-23")
    assert not outbox.already_claimed("digest", "2026-11-24")


def test_one_failing_channel_does_not_hold_back_the_other(tmp_path: Path) -> None:
    db = database(tmp_path)
    broken = FakeChannel("email", [SendError("SMTP 535 bad login", permanent=True)])
    fine = FakeChannel("ntfy:1")
    Outbox(db, [broken, fine]).deliver("digest", "p", MESSAGE, NOW)
    assert statuses(db) == [("email", "failed", 1), ("ntfy:1", "sent", 1)]


def test_transient_errors_follow_the_backoff_then_give_up(tmp_path: Path) -> None:
    db = database(tmp_path)
    channel = FakeChannel("email", [SendError("timeout")] * 3)
    outbox = Outbox(db, [channel], retry_minutes=(1, 5))
    outbox.deliver("digest", "p", MESSAGE, NOW)
    with db.session() as s:
        row = s.scalars(select(NotificationRow)).one()
    assert (row.status, row.next_attempt_at) == ("retry", NOW + timedelta(minutes=1))
    assert outbox.retry_due(NOW + timedelta(seconds=59)) == []
    [second] = outbox.retry_due(NOW + timedelta(minutes=1))
    assert second.status == "retry"
    with db.session() as s:
        row = s.scalars(select(NotificationRow)).one()
    assert row.next_attempt_at == NOW + timedelta(minutes=6)
    [third] = outbox.retry_due(NOW + timedelta(minutes=6))
    assert third.status == "failed"
    assert outbox.retry_due(NOW + timedelta(days=1)) == []
    assert statuses(db) == [("email", "failed", 3)] and channel.sent == []


def test_a_send_interrupted_by_a_crash_is_not_resent(tmp_path: Path) -> None:
    db = database(tmp_path)
    outbox = Outbox(db, [FakeChannel("email")])
    with db.session() as s:  # what a crash between the claim and the send leaves behind
        s.add(NotificationRow(kind="digest", period="p", channel="email", status="sending",
                              attempts=1, subject="s", payload=MESSAGE.to_payload(),
                              created_at=NOW))
    assert outbox.expire_stale(NOW + timedelta(minutes=5)) == 0
    assert outbox.expire_stale(NOW + timedelta(minutes=20)) == 1
    assert [o.status for o in outbox.deliver("digest", "p", MESSAGE, NOW)] == ["skipped"]
    [row] = recent_notifications(db)
    assert row.status == "failed" and "not resent" in (row.last_error or "")


def test_a_retry_for_a_removed_channel_fails_cleanly(tmp_path: Path) -> None:
    db = database(tmp_path)
    Outbox(db, [FakeChannel("email", [SendError("down")])]).deliver("digest", "p", MESSAGE, NOW)
    Outbox(db, []).retry_due(NOW + timedelta(hours=1))
    assert statuses(db) == [("email", "failed", 2)]


def test_two_retriers_claim_a_row_once(tmp_path: Path) -> None:
    db = database(tmp_path)
    first = FakeChannel("email", [SendError("down")])
    Outbox(db, [first]).deliver("digest", "p", MESSAGE, NOW)
    with db.session() as s:  # another process already took the retry
        s.execute(update(NotificationRow).values(status="sending"))
    assert Outbox(db, [FakeChannel("email")]).retry_due(NOW + timedelta(hours=1)) == []


def test_message_round_trips_through_its_payload() -> None:
    message = Message(kind="voicemail", subject="s", text="t", html="<p>h</p>", sms=("a", "b"),
                      attachments=("/x.wav",))
    assert Message.from_payload(message.to_payload()) == message


class StagedFake(FakeChannel):
    """Reports the DATA step like the email channel; `at_data` runs right after it."""

    def __init__(self, name: str, db: Database) -> None:
        super().__init__(name)
        self.db = db
        self.phases: list[str | None] = []

    def send_staged(self, message: Message, before_data: Callable[[], None]) -> None:
        self.phases.append(phase(self.db))
        before_data()
        self.phases.append(phase(self.db))
        self.send(message)


def phase(db: Database) -> str | None:
    with db.session() as s:
        return s.scalars(select(NotificationRow.phase)).one()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def interrupted(db: Database, phase_name: str | None, sender: str | None) -> None:
    """What a kill -9 during a send leaves behind."""
    with db.session() as s:
        s.add(NotificationRow(kind="digest", period="p", channel="email", status="sending",
                              attempts=1, subject="s", payload=MESSAGE.to_payload(),
                              created_at=NOW, phase=phase_name, sender=sender))


def test_each_phase_is_committed_before_the_step_it_names(tmp_path: Path) -> None:
    db = database(tmp_path)
    staged = StagedFake("email", db)
    plain = FakeChannel("ntfy:1")
    seen: list[str | None] = []
    plain.send = lambda message: seen.append(  # type: ignore[method-assign]
        next(r.phase for r in recent_notifications(db) if r.channel == "ntfy:1"))
    Outbox(db, [staged, plain]).deliver("digest", "p", MESSAGE, NOW)
    assert staged.phases == ["connecting", "data"]
    assert seen == ["data"]  # a channel that cannot tell: it may have the message at once
    assert [r.phase for r in recent_notifications(db)] == [None, None]  # settled


@pytest.mark.parametrize("phase_name", ["claimed", "connecting"])
def test_a_send_killed_before_data_is_sent_again_on_start(tmp_path: Path,
                                                          phase_name: str) -> None:
    db = database(tmp_path)
    interrupted(db, phase_name, f"{socket.gethostname()}:{dead_pid()}")
    channel = FakeChannel("email")
    outbox = Outbox(db, [channel])
    assert outbox.resolve_interrupted(NOW + timedelta(seconds=30)) == 1
    [outcome] = outbox.retry_due(NOW + timedelta(seconds=35))
    assert outcome.status == "sent" and channel.sent == [MESSAGE]
    assert statuses(db) == [("email", "sent", 2)]


@pytest.mark.parametrize("phase_name", ["data", None])
def test_a_send_killed_once_data_may_have_left_is_never_resent(tmp_path: Path,
                                                               phase_name: str | None) -> None:
    db = database(tmp_path)
    interrupted(db, phase_name, f"{socket.gethostname()}:{dead_pid()}")
    channel = FakeChannel("email")
    outbox = Outbox(db, [channel])
    assert outbox.resolve_interrupted(NOW) == 1
    assert outbox.retry_due(NOW + timedelta(days=1)) == [] and channel.sent == []
    [row] = recent_notifications(db)
    assert row.status == "failed" and "not resent" in (row.last_error or "")


def test_a_send_of_a_live_process_or_another_host_waits_for_the_stale_timeout(
        tmp_path: Path) -> None:
    db = database(tmp_path)
    interrupted(db, "connecting", f"{socket.gethostname()}:{os.getpid()}")  # sending now
    with db.session() as s:
        s.add(NotificationRow(kind="digest", period="q", channel="email", status="sending",
                              attempts=1, subject="s", payload=MESSAGE.to_payload(),
                              created_at=NOW, phase="connecting", sender="other-pi:12"))
    outbox = Outbox(db, [FakeChannel("email")])
    assert outbox.resolve_interrupted(NOW) == 0
    assert outbox.expire_stale(NOW + timedelta(minutes=20)) == 2
    assert [o.status for o in outbox.retry_due(NOW + timedelta(minutes=20))] == ["sent"] * 2
