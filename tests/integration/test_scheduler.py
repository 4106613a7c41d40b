"""The scheduler: DST days, a digest missed while stopped, restarts, and two racing processes."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.base import STATE_STOPPED
from sqlalchemy import select

from gateway.notify.collect import digest_moment, due_period
from gateway.notify.notifier import Notifier
from gateway.ops.scheduler import (
    JOB_CATCH_UP,
    JOB_DIGEST,
    RingfenceScheduler,
    digest_trigger,
    start_scheduler,
)
from gateway.store.models import NotificationRow
from tests.helpers import Services
from tests.integration.notify_support import make_settings, smtp_server, smtp_toml

PARIS = ZoneInfo("Europe/Paris")
ROOT = Path(__file__).resolve().parents[2]


def fire_times(trigger: object, start: datetime, count: int) -> list[datetime]:
    times, previous, now = [], None, start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)  # type: ignore[attr-defined]
        times.append(fire)
        previous = now = fire
    return times


@pytest.mark.clock
def test_spring_forward_digest_at_0230_is_sent_once(tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, '[notify]\ndigest_time = "02:30"\n'
                                 + smtp_toml(sink.port))
        service = Services.open(settings)
        fires = fire_times(digest_trigger(settings), datetime(2026, 3, 28, 12, tzinfo=PARIS), 2)
        # 29 March 2026: 02:00 jumps to 03:00. The trigger fires once, at 01:30 UTC (03:30).
        assert [f.astimezone(UTC) for f in fires] == [
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
        assert digest_moment(date(2026, 3, 29), settings) == fires[0].astimezone(UTC)
        notifier = Notifier(service.db, settings)
        with time_machine.travel(fires[0], tick=False):
            assert due_period(datetime.now(UTC), settings) == date(2026, 3, 29)
            assert [o.status for o in notifier.send_due_digest()] == ["sent"]
        assert sink.wait_for(1)
        assert "29 Mar" in sink.messages[0]["Subject"]


@pytest.mark.clock
def test_fall_back_day_fires_twice_but_sends_once(tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, '[notify]\ndigest_time = "02:30"\n'
                                 + smtp_toml(sink.port))
        service = Services.open(settings)
        fires = fire_times(digest_trigger(settings), datetime(2026, 10, 24, 12, tzinfo=PARIS), 3)
        # 25 October 2026: 02:30 happens twice (CEST, then CET); APScheduler fires at both.
        assert [f.astimezone(UTC) for f in fires] == [
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
            datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
        notifier = Notifier(service.db, settings)
        statuses = []
        for fire in fires[:2]:
            with time_machine.travel(fire, tick=False):
                statuses.append([o.status for o in notifier.send_due_digest()])
        assert statuses == [["sent"], []]
        assert sink.wait_for(1)
    assert len(sink.messages) == 1


def digests(service: object) -> list[tuple[str, str]]:
    with service.db.session() as s:  # type: ignore[attr-defined]
        return [(r.period, r.status) for r in s.scalars(
            select(NotificationRow).where(NotificationRow.kind == "digest"))]


@pytest.mark.clock
def test_missed_digest_is_sent_once_on_start_and_not_again_after_restart(
        tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, smtp_toml(sink.port))
        service = Services.open(settings)
        # The Pi was off at 08:00; it starts at 09:15 the same morning.
        with time_machine.travel(datetime(2026, 11, 23, 9, 15, tzinfo=PARIS), tick=True):
            first = start_scheduler(settings, service)
            try:
                assert first.wait_for_runs(JOB_CATCH_UP, 1)
            finally:
                first.shutdown()
            assert sink.wait_for(1)
            assert digests(service) == [("2026-11-23", "sent")]
            next_run = None
            second = start_scheduler(settings, service)
            try:
                assert second.wait_for_runs(JOB_CATCH_UP, 1)
                next_run = second.next_run(JOB_DIGEST)
            finally:
                second.shutdown()
        assert len(sink.messages) == 1
        assert next_run is not None and next_run.astimezone(PARIS) == datetime(
            2026, 11, 24, 8, 0, tzinfo=PARIS)


@pytest.mark.clock
def test_stored_job_keeps_its_missed_run_across_a_restart(tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, smtp_toml(sink.port))
        service = Services.open(settings)
        with time_machine.travel(datetime(2026, 11, 22, 19, 0, tzinfo=PARIS), tick=True):
            scheduler = start_scheduler(settings, service)
            try:
                assert scheduler.wait_for_runs(JOB_CATCH_UP, 1)  # 22 Nov already sent
            finally:
                scheduler.shutdown()
        assert sink.wait_for(1)
        # Off overnight; back at 10:00. The stored job's 08:00 run is still pending.
        with time_machine.travel(datetime(2026, 11, 23, 10, 0, tzinfo=PARIS), tick=True):
            scheduler = start_scheduler(settings, service)
            try:
                assert scheduler.wait_for_runs(JOB_DIGEST, 1)
                assert scheduler.wait_for_runs(JOB_CATCH_UP, 1)
            finally:
                scheduler.shutdown()
        assert sink.wait_for(2)
    assert sorted(digests(service)) == [("2026-11-22", "sent"), ("2026-11-23", "sent")]
    assert len(sink.messages) == 2


@pytest.mark.clock
def test_scheduler_starts_with_no_channel(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    scheduler = start_scheduler(settings, service)
    try:
        assert scheduler.wait_for_runs(JOB_CATCH_UP, 1)
        assert scheduler.next_run(JOB_DIGEST) is not None
    finally:
        scheduler.shutdown()
    assert digests(service) == []


RACER = """
import sys
from datetime import date, datetime, UTC
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from gateway.notify.notifier import Notifier
from tests.helpers import Services
from tests.integration.notify_support import make_settings, smtp_toml
settings = make_settings(Path(sys.argv[2]), smtp_toml(int(sys.argv[3])))
service = Services.open(settings, upgrade=False)
Path(sys.argv[4]).touch()
import time
for _ in range(100_000):  # start together (bounded)
    if Path(sys.argv[5]).exists():
        break
    time.sleep(0.001)
outcomes = Notifier(service.db, settings).send_digest(date(2026, 11, 23),
                                                      datetime(2026, 11, 23, 7, 5, tzinfo=UTC))
print(",".join(o.status for o in outcomes))
"""


def test_two_processes_racing_send_one_email(tmp_path: Path) -> None:
    with smtp_server() as sink:
        settings = make_settings(tmp_path, smtp_toml(sink.port))
        Services.open(settings)  # create the schema once
        go = tmp_path / "go"
        workers = [
            subprocess.Popen([sys.executable, "-c", RACER, str(ROOT), str(tmp_path),
                              str(sink.port), str(tmp_path / f"ready{i}"), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        try:
            for i in range(2):
                for _ in range(1200):  # bounded: both processes have opened the database
                    if (tmp_path / f"ready{i}").exists() or workers[i].poll() is not None:
                        break
                    time.sleep(0.05)
            go.touch()
            results = [w.communicate(timeout=120) for w in workers]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
        assert all(w.returncode == 0 for w in workers), results
        statuses = sorted(out.strip() for out, _ in results)
        assert statuses in (["", "sent"], ["sent", "skipped"]), results
        assert sink.wait_for(1)
    assert len(sink.messages) == 1
    assert [s for _, s in digests(Services.open(settings))] == ["sent"]


@pytest.mark.clock
def test_an_unreadable_stored_job_does_not_stop_the_start(tmp_path: Path) -> None:
    from sqlalchemy import text

    settings = make_settings(tmp_path)
    service = Services.open(settings)
    scheduler = start_scheduler(settings, service)
    scheduler.shutdown()
    with service.db.engine.begin() as conn:  # as if pickled by a Ringfence that is gone
        conn.execute(text("UPDATE apscheduler_jobs SET job_state = :junk WHERE id = :id"),
                     {"junk": b"not a pickle", "id": JOB_DIGEST})
    scheduler = start_scheduler(settings, service)
    try:
        assert scheduler.wait_for_runs(JOB_CATCH_UP, 1)
        assert scheduler.next_run(JOB_DIGEST) is not None
    finally:
        scheduler.shutdown()


# --------------------------------------------------------------------------- shutdown races
# APScheduler 3's shutdown() marks the scheduler stopped before it takes the job-store lock
# that each round of job processing holds. These tests stop the scheduler thread at a chosen
# point of a round, shut down from another thread, then let the round go on: with the round
# guard the shutdown waits for the round; without it the thread dies or logs a traceback.


class _Gate:
    """Holds the scheduler thread at one point until released (bounded, never a hang)."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            self.release.wait(10)


def _shut_down_while_held(scheduler: RingfenceScheduler, gate: _Gate) -> None:
    assert gate.reached.wait(10), "the scheduler thread never reached the gate"
    stopper = threading.Thread(target=scheduler.shutdown, name="stopper")
    stopper.start()
    # Unguarded, shutdown() marks the scheduler stopped at once and then waits for the lock;
    # guarded, it waits before that. Either way give it the time to get there.
    deadline = time.monotonic() + 0.5
    while scheduler.scheduler.state != STATE_STOPPED and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.release.set()
    stopper.join(15)
    assert not stopper.is_alive()


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that ended a thread, as 'thread: Type'."""
    errors: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", hook)
    return errors


def _apscheduler_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.name.startswith("apscheduler") and r.levelno >= logging.ERROR]


@pytest.mark.clock
def test_shutdown_during_the_round_that_runs_the_catch_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        thread_errors: list[str]) -> None:
    # Held between "the catch-up is due" and "a run-once job is removed once submitted".
    gate = _Gate()
    gate.armed = True
    submit = BaseExecutor.submit_job

    def held_submit(self: BaseExecutor, job: Any, run_times: Any) -> None:
        if job.id == JOB_CATCH_UP:
            gate.hold()
        submit(self, job, run_times)

    monkeypatch.setattr(BaseExecutor, "submit_job", held_submit)
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    scheduler = start_scheduler(settings, service)
    _shut_down_while_held(scheduler, gate)
    assert thread_errors == []  # was: APScheduler: JobLookupError: ... ringfence.catch_up
    assert _apscheduler_errors(caplog) == []
    assert scheduler.runs[JOB_CATCH_UP] == 1  # the round finished on a running scheduler


@pytest.mark.clock
def test_shutdown_while_a_round_waits_to_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, thread_errors: list[str]) -> None:
    # Held at the top of the first round from 08:00 on (the digest is due), before the lock.
    gate = _Gate()
    gate.armed = True
    eight = datetime(2026, 11, 23, 8, 0, tzinfo=PARIS)

    class HoldAtRoundStart(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.getMessage() == "Looking for jobs to run" and datetime.now(UTC) >= eight:
                gate.hold()
            return True

    apscheduler_log = logging.getLogger("apscheduler.scheduler")
    hold = HoldAtRoundStart()
    caplog.set_level(logging.DEBUG, logger="apscheduler.scheduler")
    apscheduler_log.addFilter(hold)
    try:
        settings = make_settings(tmp_path)
        service = Services.open(settings)
        with time_machine.travel(datetime(2026, 11, 23, 7, 59, 59, tzinfo=PARIS), tick=True):
            scheduler = start_scheduler(settings, service)
            _shut_down_while_held(scheduler, gate)
    finally:
        apscheduler_log.removeFilter(hold)
    assert thread_errors == []
    assert _apscheduler_errors(caplog) == []  # was: Error submitting job "run_digest ..."
    assert scheduler.runs[JOB_DIGEST] == 1
