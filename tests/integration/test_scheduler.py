"""The scheduler: DST days, a digest missed while stopped, restarts, and two racing processes."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from gateway.notify.collect import digest_moment, due_period
from gateway.notify.notifier import Notifier
from gateway.ops.scheduler import JOB_CATCH_UP, JOB_DIGEST, digest_trigger, start_scheduler
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
