"""Bounded work for calls: a few worker threads, a queue with a limit, slots, and counters.

The receive thread must never wait on screening or the database, and a flood must never turn
into a thread (and a database connection) per INVITE. New calls go through `WorkerPool.offer`:
a full queue refuses at once and the UA sheds the call, counted in `LoadCounters`. What an
admitted call still has to do later (log how a ring ended) goes through `WorkerPool.follow_up`,
which is never refused: each admitted call adds at most one, so they are bounded by the calls
themselves. A call that needs minutes of media gets a thread of its own (`spawn`) while it holds
one of the `Slots`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

WORKERS = 8
"""Threads screening calls and carrying out short actions. Screening is mostly CPU under the
GIL, but each call's log row still waits on a database commit, so a few more than the cores
keep screening going meanwhile; with `max_calls` media threads and the scheduler's two they
stay within SQLAlchemy's default pool (5 + 10 overflow), which a thread per INVITE exhausted."""
QUEUE_LIMIT = 256
"""New calls waiting for a worker; a full queue sheds (about a quarter of a second of work)."""
DEFERRED_WAKES_LIMIT = 8
"""Tasks a receive thread may queue before it wakes a worker even though it has more to read
(see `WorkerPool.defer_wakes_on`)."""
BUSY_FRESH_S = 0.005
"""A worker that started its task less than this long ago will soon take the next one itself:
a new task wakes nobody while such workers outnumber the tasks waiting (see `WorkerPool`)."""

Task = Callable[[], None]
Later = Callable[[float, Task], object]
"""Runs a callback after a delay in seconds (`gateway.sip.transaction.Timers.call_later`)."""


class Occasional:
    """A warning that a flood would repeat per call: the first goes out at once, then at most
    one every `interval` seconds saying how many it stands for (journald writes to the SD card)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -interval
        self._unlogged = 0

    def warn(self, logger: logging.Logger, message: str, *args: object) -> None:
        """Log `message % args` now or fold it into the next one."""
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if now - self._last < self.interval:
                return
            count, self._unlogged, self._last = self._unlogged, 0, now
        if count > 1:
            logger.warning(message + " (and %d more like it since the last such line)", *args,
                           count - 1)
        else:
            logger.warning(message, *args)


class LineBudget:
    """Per-event log lines at most `rate` a second (bursts of `burst`): a flood's calls would
    each write two lines to the journal (on the SD card), at a quarter of a refused call's CPU.
    What is held back is counted and said with the next line that goes out."""

    def __init__(self, rate: float = 5.0, burst: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = clock()
        self._said_at = self._at
        self._held = 0

    def take(self) -> int | None:
        """None: hold this event's lines back (counted). Else the number held back since the
        last line that went out (0 in quiet times), to be said first."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                self._held += 1
                return None
            self._tokens -= 1
            held, self._held = self._held, 0
            self._said_at = now
            return held

    def overdue(self, after_s: float = 10.0) -> int:
        """What was held back, if no line has gone out for `after_s` seconds to say it (the
        flood is over): reset, for the caller to say now. 0 otherwise."""
        with self._lock:
            if not self._held or self.clock() - self._said_at < after_s:
                return 0
            held, self._held = self._held, 0
            self._said_at = self.clock()
            return held


_FLAG_GUARD = threading.Lock()


class Flag:
    """`threading.Event`'s set / is_set / wait, cheaper to create: a call has five.

    An Event builds a Condition, whose constructor catches three AttributeErrors: 10 % of the
    CPU of a flood of unknown callers that ring and cancel. A latch: a lock held until set.
    """

    __slots__ = ("_flag", "_latch")

    def __init__(self) -> None:
        self._flag = False
        self._latch = threading.Lock()
        self._latch.acquire()

    def is_set(self) -> bool:
        """Whether `set` was called."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter (again: nothing happens)."""
        with _FLAG_GUARD:  # two threads setting at once must release the latch once
            if self._flag:
                return
            self._flag = True
            self._latch.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set or `timeout` seconds passed; return whether it is set."""
        if self._flag:
            return True
        if self._latch.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._latch.release()  # let the next waiter through
        return self._flag


class LoadCounters:
    """Counts of what the gateway did under load, for `ringfence status` and `/metrics`."""

    NAMES = (
        "invites",  # new INVITEs that reached screening or were shed
        "shed",  # refused with 503 because the work queue was full: never screened
        "refused_no_media_slot",  # kept away with a 6xx: all media slots busy
        "left_fork_ringing_full",  # a pass answered 480: too many calls ringing already
        "texts",  # text messages (SIP MESSAGE) handed to screening
        "scanners_dropped",  # requests from known SIP scanners, dropped without an answer
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.NAMES, 0)
        self._gauges: dict[str, Callable[[], int]] = {}

    def add(self, name: str, count: int = 1) -> None:
        """Add to a counter (names in NAMES)."""
        with self._lock:
            self._counts[name] += count

    def get(self, name: str) -> int:
        """One counter's value."""
        with self._lock:
            return self._counts[name]

    def gauge(self, name: str, read: Callable[[], int]) -> None:
        """Report `read()` under `name` in every snapshot (queue depth, slots in use)."""
        with self._lock:
            self._gauges[name] = read

    def snapshot(self) -> dict[str, int]:
        """Every counter and gauge now, by name."""
        with self._lock:
            values = dict(self._counts)
            gauges = dict(self._gauges)
        for name, read in gauges.items():
            values[name] = read()
        return values


class Slots:
    """A bounded count shared by every UA: media slots (`max_calls`), calls ringing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take a slot, or return False when all are taken."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.active = max(0, self.active - 1)


class WorkerPool:
    """A fixed set of threads running short tasks; follow-ups first, then new work.

    Screening is CPU under the GIL: a second worker running beside the first makes no call
    faster, and every thread wanting the GIL at once costs futex calls and context switches
    (with eight workers woken in turn, 24 futex calls per call of a ring + CANCEL flood). So a
    new task wakes an idle worker only when the tasks waiting outnumber the workers already on
    their way or busy since less than `BUSY_FRESH_S` (they take the next task themselves); a
    worker busy for longer may be waiting on the database or a certificate fetch, and then
    the task wakes another. One that blocks before then is caught by a look `later` (the
    SIP timers), scheduled while tasks wait on busy workers: without `later`, every task
    wakes an idle worker. The worker woken is the one that went idle last (its caches and
    its own SQLite connection are warm), not the one idle longest.
    """

    def __init__(self, workers: int = WORKERS, queue_limit: int = QUEUE_LIMIT,
                 name: str = "call-work", clock: Callable[[], float] = time.monotonic,
                 later: Later | None = None) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.name = name
        self.clock = clock
        self.later = later
        self._look_pending = False
        self._new: deque[Task] = deque()
        self._follow_ups: deque[Task] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._spawned: set[threading.Thread] = set()
        self._busy = 0
        self._running = False
        # Idle workers' latches, the last to go idle on top: a wake releases one.
        self._idle: list[threading.Lock] = []
        # Workers woken that have not taken a task yet, and when each busy worker started its
        # task (by worker number; None while idle).
        self._waking = 0
        self.wakes = 0  # wake-ups sent in all (tests and the bench count them)
        self._started: list[float | None] = [None] * workers
        # Receive threads whose wake-ups wait until they have nothing left to read (see
        # `defer_wakes_on`), and how many tasks they queued without waking anyone.
        # Threads, not their idents: an ident is reused once its thread has ended.
        self._deferring: frozenset[threading.Thread] = frozenset()
        self._deferred = 0

    def defer_wakes_on(self, thread: threading.Thread) -> None:
        """Let `thread` (a receive loop) queue work without waking a worker at once.

        A wake-up hands the woken worker the CPU, often on the receiving thread's own core,
        while that thread still holds the GIL: the CANCELs and ACKs queued behind it wait for
        a worker's screening. Its wakes are sent by `wake_deferred`, which the loop calls when
        its socket is empty, or as soon as `DEFERRED_WAKES_LIMIT` tasks wait.
        """
        with self._cond:
            self._deferring = self._deferring | {thread}

    def has_deferred(self) -> bool:
        """Whether a receive thread holds back a wake-up (a hint: read without the lock)."""
        return self._deferred > 0

    def wake_deferred(self) -> None:
        """Send the wake-ups a receive thread held back (its socket is empty now)."""
        if not self._deferred:
            return
        with self._cond:
            self._deferred = 0
            self._wake_as_needed()  # tasks a busy worker took meanwhile need nobody woken

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._cond:
            if self._running:
                return
            self._running = True
        for number in range(self.workers):
            thread = threading.Thread(target=self._work, args=(number,),
                                      name=f"{self.name}-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def offer(self, task: Task) -> bool:
        """Queue new work; False at once when the queue is full or the pool is stopping."""
        with self._cond:
            if not self._running or len(self._new) >= self.queue_limit:
                return False
            self._new.append(task)
            self._wake_or_defer()
            return True

    def _wake_or_defer(self) -> None:
        # Called with the lock held.
        if (threading.current_thread() in self._deferring
                and self._deferred < DEFERRED_WAKES_LIMIT):
            self._deferred += 1
            return
        self._deferred = 0
        self._wake_as_needed()

    def _wake_as_needed(self) -> None:
        """Wake idle workers until those coming take every task waiting (lock held)."""
        waiting = len(self._new) + len(self._follow_ups)
        if not waiting or not self._idle:
            return
        coming = self._waking
        if self._busy and self.later is not None:
            fresh_after = self.clock() - BUSY_FRESH_S
            coming += sum(1 for started in self._started
                          if started is not None and started > fresh_after)
        while waiting > coming and self._idle:
            self._waking += 1
            coming += 1
            self.wakes += 1
            self._idle.pop().release()
        if waiting > self._waking and self._idle and not self._look_pending and self.later:
            # Left to busy workers: look again soon, in case one of them is stuck after all.
            self._look_pending = True
            self.later(2 * BUSY_FRESH_S, self._look_again)

    def _look_again(self) -> None:
        with self._cond:
            self._look_pending = False
            if self._running:
                self._wake_as_needed()

    def follow_up(self, task: Task) -> None:
        """Queue the rest of work already admitted; never refused, run before new work."""
        with self._cond:
            running = self._running
            if running:
                self._follow_ups.append(task)
                self._wake_or_defer()
        if not running:
            # Stopped (or never started): run it here rather than lose a call's log entry.
            self._run(task)

    def spawn(self, name: str, task: Task) -> threading.Thread:
        """Run long work (a call with media) on a thread of its own, joined by `stop`."""

        def run() -> None:
            try:
                self._run(task)
            finally:
                with self._cond:
                    self._spawned.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._cond:
            # Started while the set is locked: `stop` must never see (and join) an unstarted
            # thread, which raises RuntimeError.
            self._spawned.add(thread)
            thread.start()
        return thread

    def queued(self) -> int:
        """New calls waiting for a worker."""
        with self._cond:
            return len(self._new)

    def idle(self) -> int:
        """Workers waiting for work now."""
        with self._cond:
            return len(self._idle)

    def busy(self) -> int:
        """Workers running a task now."""
        with self._cond:
            return self._busy

    def spawned(self) -> int:
        """Threads of their own alive now (calls with media)."""
        with self._cond:
            return len(self._spawned)

    def stop(self, grace: float = 5.0) -> None:
        """Finish what is queued (follow-ups and new work), then end; wait up to `grace`."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._running = False
            while self._idle:
                self._waking += 1
                self._idle.pop().release()
            spawned = list(self._spawned)
        for thread in [*spawned, *self._threads]:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        with self._cond:
            left = list(self._follow_ups)
            self._follow_ups.clear()
        for task in left:  # whatever the workers could not reach in time: record it anyway
            self._run(task)

    def _work(self, number: int) -> None:
        latch = threading.Lock()  # held while this worker sleeps; released to wake it
        latch.acquire()
        while True:
            with self._cond:
                if self._follow_ups:
                    task = self._follow_ups.popleft()
                elif self._new:
                    task = self._new.popleft()
                elif self._running:
                    self._idle.append(latch)
                    task = None
                else:
                    return  # stopping and nothing left
                if task is not None:
                    self._busy += 1
                    self._started[number] = self.clock()
            if task is None:
                latch.acquire()  # until a wake pops this latch off the idle stack
                with self._cond:
                    self._waking = max(0, self._waking - 1)
                continue
            try:
                self._run(task)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._started[number] = None

    @staticmethod
    def _run(task: Task) -> None:
        try:
            task()
        except Exception:  # a task's bug must not take a worker with it
            log.exception("call task failed")
