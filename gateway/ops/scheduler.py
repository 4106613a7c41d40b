"""Everything that runs on a clock in the gateway process. The only importer of APScheduler.

One BackgroundScheduler, fixed job ids, `replace_existing=True`:
- ``ringfence.digest``: the daily digest, a CronTrigger in the owner's zone (DST-safe);
- ``ringfence.retention``: the daily purge;
- ``ringfence.subscriptions``: refreshes list subscriptions that are due;
- ``ringfence.tick``: every minute, alerts and retries of failed sends;
- ``ringfence.catch_up``: once at start, sends the latest digest if it was missed.

The first three live in a SQLAlchemyJobStore (table ``apscheduler_jobs`` in the same database),
so their next run time survives a restart: a run missed while the Pi was off fires once on
start (coalesce, misfire_grace_time). That alone can repeat work (e.g. the autumn day when
02:30 happens twice) or miss it (a first start after digest time), so the jobs themselves are
idempotent: a digest is claimed per (period, channel) in the notifications table before it is
sent. The tick and the catch-up are in memory: they derive everything from the database.

Job functions take no arguments (stored jobs are pickled by reference); they find the running
scheduler's context in a module variable, so only one RingfenceScheduler runs per process. A job
that starts after the scheduler stopped (``shutdown(wait=False)`` lets submitted jobs run) finds
no context and does nothing.

Shutting down never overlaps a round of job processing (see _RoundGuardedScheduler): APScheduler
3 alone can kill its own thread with a JobLookupError, or log "Error submitting job", when
``shutdown()`` lands in the middle of a round.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.events import (  # type: ignore[import-untyped]  # APScheduler 3 ships no types
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.jobstores.memory import MemoryJobStore  # type: ignore[import-untyped]
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from gateway.config import Settings
from gateway.feeds.subscriptions import refresh_due
from gateway.notify.notifier import DIGEST_GRACE, Notifier
from gateway.ops.retention import run_retention as purge_old_data
from gateway.store.db import Database
from gateway.store.settings import RuntimeSettings

log = logging.getLogger(__name__)

JOB_DIGEST = "ringfence.digest"
JOB_RETENTION = "ringfence.retention"
JOB_SUBSCRIPTIONS = "ringfence.subscriptions"
JOB_TICK = "ringfence.tick"
JOB_CATCH_UP = "ringfence.catch_up"
JOBS_TABLE = "apscheduler_jobs"
SUBSCRIPTION_CHECK_MINUTES = 15


class _HasDatabase(Protocol):
    """What start_scheduler needs of the screening service."""

    @property
    def db(self) -> Database: ...


class _Context:
    """What the job functions work with."""

    def __init__(self, settings: Settings, db: Database, notifier: Notifier) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier
        self.follow_digest_time: Callable[[], None] | None = None


def with_ui_digest_time(settings: Settings, db: Database) -> Settings:
    """`settings` with the digest time the owner set in the web UI, if any, applied."""
    chosen = RuntimeSettings(db).get("digest_time")
    if not chosen or chosen == settings.notify.digest_time:
        return settings
    return dataclasses.replace(settings,
                               notify=dataclasses.replace(settings.notify, digest_time=chosen))


_context: _Context | None = None
_context_lock = threading.Lock()


def _current() -> _Context | None:
    """The running scheduler's context; None once it stopped (a job that starts late skips)."""
    context = _context
    if context is None:
        log.debug("the scheduler has stopped; skipping a job that started late")
    return context


# --------------------------------------------------------------------------- job functions
# Module-level so that the SQLAlchemy job store can pickle them by reference.


def run_digest() -> None:
    """The daily digest job."""
    context = _current()
    if context is not None:
        context.notifier.send_due_digest()


def run_tick() -> None:
    """The minute job: a digest time changed in the UI, alerts and retries."""
    context = _current()
    if context is None:
        return
    if context.follow_digest_time is not None:
        context.follow_digest_time()
    context.notifier.tick()


def run_retention() -> None:
    """The daily purge."""
    context = _current()
    if context is not None:
        purge_old_data(context.db, context.settings)


def run_subscriptions() -> None:
    """Refresh subscriptions whose time has come."""
    context = _current()
    if context is not None:
        refresh_due(context.db, context.settings)


# --------------------------------------------------------------------------- triggers


def _hh_mm(text: str) -> tuple[int, int]:
    hour, minute = text.split(":")
    return int(hour), int(minute)


def digest_trigger(settings: Settings) -> CronTrigger:
    """Every day at `notify.digest_time` in the owner's zone."""
    hour, minute = _hh_mm(settings.notify.digest_time)
    return CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(settings.timezone))


def retention_trigger(settings: Settings) -> CronTrigger:
    """Every day at `retention.time` in the owner's zone."""
    hour, minute = _hh_mm(settings.retention.time)
    return CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(settings.timezone))


class _RoundGuardedScheduler(BackgroundScheduler):  # type: ignore[misc]  # untyped base
    """A BackgroundScheduler whose shutdown waits for a round of job processing to end.

    In APScheduler 3, ``shutdown()`` marks the scheduler stopped *before* it takes the job-store
    lock, while the scheduler thread runs each round (``_process_jobs``) holding that lock and
    reading the state. Two things then go wrong, both seen at SIGTERM right after a start:
    - a round in progress submits a run-once job (the catch-up) and removes it; ``remove_job``
      of a stopped scheduler only looks among jobs not yet added, so it raises JobLookupError
      and the scheduler thread dies with a traceback;
    - the thread always runs one more round after shutdown woke it; a job due by then is
      submitted to the executor that was just shut down: "Error submitting job", a traceback.
    Here a round holds `_round`, and shutdown takes it to set `_stopping`: a round in progress
    finishes first (on a scheduler still running), later rounds do nothing.
    """

    def __init__(self, **options: Any) -> None:
        self._round = threading.Lock()
        self._stopping = False
        super().__init__(**options)

    def start(self, paused: bool = False) -> None:
        with self._round:
            self._stopping = False
        super().start(paused=paused)

    def _process_jobs(self) -> float | None:
        with self._round:
            if self._stopping:
                return None  # wait for the wake-up of shutdown(), then the thread ends
            wait: float | None = super()._process_jobs()
            return wait

    def shutdown(self, wait: bool = True) -> None:
        with self._round:
            if self._stopping:
                return  # another thread is already shutting it down
            self._stopping = True
        super().shutdown(wait)

    @property
    def stopping(self) -> bool:
        """Whether shutdown has begun (jobs still running must not reschedule)."""
        return self._stopping


class RingfenceScheduler:
    """The running scheduler; `shutdown()` stops it."""

    def __init__(self, settings: Settings, db: Database, notifier: Notifier) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier
        self.runs: Counter[str] = Counter()  # finished runs per job id (tests and status)
        self._runs_changed = threading.Condition()
        self.scheduler = _RoundGuardedScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE),
                       "volatile": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=ZoneInfo(settings.timezone),
        )
        self.scheduler.add_listener(self._on_event,
                                    EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run at %s", event.job_id,
                        getattr(event, "scheduled_run_time", "?"))
            return
        with self._runs_changed:
            self.runs[event.job_id] += 1
            self._runs_changed.notify_all()

    def wait_for_runs(self, job_id: str, count: int, timeout: float = 30.0) -> bool:
        """Block until `job_id` has finished `count` runs (or `timeout`); return whether it did."""
        with self._runs_changed:
            return self._runs_changed.wait_for(lambda: self.runs[job_id] >= count, timeout)

    def _stored_jobs(self) -> list[dict[str, Any]]:
        settings = self.settings
        return [
            # A digest late by up to DIGEST_GRACE still goes out; coalesce makes it once.
            {"id": JOB_DIGEST, "func": run_digest, "trigger": digest_trigger(settings),
             "misfire_grace_time": int(DIGEST_GRACE.total_seconds())},
            {"id": JOB_RETENTION, "func": run_retention, "trigger": retention_trigger(settings),
             "misfire_grace_time": 24 * 3600},
            {"id": JOB_SUBSCRIPTIONS, "func": run_subscriptions,
             "trigger": IntervalTrigger(minutes=SUBSCRIPTION_CHECK_MINUTES,
                                        timezone=ZoneInfo(settings.timezone)),
             "misfire_grace_time": 3600},
        ]

    def start(self) -> None:
        """Register the jobs and start the background thread."""
        # Start paused so that no stored job fires while the set is being brought up to date.
        self.scheduler.start(paused=True)
        for spec in self._stored_jobs():
            existing = self._stored_job(spec["id"])
            if (existing is not None and existing.func_ref == f"{__name__}:{spec['func'].__name__}"
                    and repr(existing.trigger) == repr(spec["trigger"])
                    and existing.misfire_grace_time == spec["misfire_grace_time"]):
                # Unchanged: keep it, with its stored next run time. Replacing it would
                # recompute that time from now and silently drop a run missed while stopped.
                continue
            self.scheduler.add_job(jobstore="default", replace_existing=True, **spec)
        now = datetime.now(ZoneInfo(self.settings.timezone))
        zone = ZoneInfo(self.settings.timezone)
        self.scheduler.add_job(run_tick, IntervalTrigger(minutes=1, timezone=zone), id=JOB_TICK,
                               jobstore="volatile", replace_existing=True,
                               misfire_grace_time=60,
                               next_run_time=now + timedelta(seconds=5))
        self.scheduler.add_job(run_digest, DateTrigger(run_date=now), id=JOB_CATCH_UP,
                               jobstore="volatile", replace_existing=True,
                               misfire_grace_time=3600)
        self.scheduler.resume()
        log.info("scheduler started: digest at %s (%s), %d channel(s)",
                 self.settings.notify.digest_time, self.settings.timezone,
                 len(self.notifier.channels))

    def follow_digest_time(self) -> None:
        """Move the digest job when the owner changed its time in the web UI."""
        updated = with_ui_digest_time(self.settings, self.db)
        if updated.notify.digest_time == self.settings.notify.digest_time:
            return
        log.info("digest time changed in the UI: %s -> %s", self.settings.notify.digest_time,
                 updated.notify.digest_time)
        self.settings = updated
        self.notifier.settings = updated
        if _context is not None:
            _context.settings = updated
        try:
            self.scheduler.reschedule_job(JOB_DIGEST, jobstore="default",
                                          trigger=digest_trigger(updated))
        except JobLookupError:
            if not self.scheduler.stopping:
                raise
            # A tick that was running when the scheduler stopped: the next start reads the
            # new time from the database anyway.
            log.debug("scheduler stopping; digest job not moved")

    def _stored_job(self, job_id: str) -> Any:
        """The stored job, or None; a job that cannot be read back is dropped and re-added."""
        try:
            return self.scheduler.get_job(job_id, jobstore="default")
        except Exception:
            # e.g. pickled by an older Ringfence whose function no longer exists: losing one
            # pending run is better than a gateway that cannot start.
            log.warning("stored job %s is unreadable; replacing it", job_id, exc_info=True)
            try:
                self.scheduler.remove_job(job_id, jobstore="default")
            except Exception:
                log.debug("could not remove job %s", job_id, exc_info=True)
            return None

    def poke(self) -> None:
        """Run the alert tick now (the gateway calls this after saving a voicemail)."""
        try:
            self.scheduler.modify_job(JOB_TICK, jobstore="volatile",
                                      next_run_time=datetime.now(ZoneInfo(self.settings.timezone)))
        except Exception:
            log.debug("could not bring the tick forward", exc_info=True)

    def next_run(self, job_id: str) -> datetime | None:
        """When a job runs next (None if it is not scheduled)."""
        job = self.scheduler.get_job(job_id)
        return None if job is None else job.next_run_time

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler; with `wait`, let running jobs finish first."""
        global _context
        if self.scheduler.running:  # the guarded scheduler also ignores a second, racing call
            self.scheduler.shutdown(wait=wait)
        with _context_lock:
            if _context is not None and _context.notifier is self.notifier:
                _context = None


def start_scheduler(settings: Settings, service: _HasDatabase) -> RingfenceScheduler:
    """Start the scheduler in this process; safe with no channel configured."""
    global _context
    with _context_lock:
        if _context is not None:
            raise RuntimeError("a Ringfence scheduler is already running in this process")
        # The web UI can change the digest time; the setting lives in the database.
        settings = with_ui_digest_time(settings, service.db)
        notifier = Notifier(service.db, settings)
        # Before any job: a send the previous run was making when it died is sent again
        # (the first tick, 5 s from now) or marked failed, by how far it got.
        notifier.resolve_interrupted()
        _context = _Context(settings, service.db, notifier)
    scheduler = RingfenceScheduler(settings, service.db, notifier)
    _context.follow_digest_time = scheduler.follow_digest_time
    try:
        scheduler.start()
    except BaseException:
        scheduler.shutdown(wait=False)
        raise
    return scheduler
