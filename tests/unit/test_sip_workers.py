"""The bounded work of `gateway.sip.workers` (pool, slots, counters, occasional warnings), the
timer heap's compaction, and the parser's ASCII numbers and answerable refusals."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip import ua as ua_module
from gateway.sip.message import SipMessage, SipParseError, ascii_number, parse_message
from gateway.sip.transaction import Timers
from gateway.sip.transport import SipTransport, Source
from gateway.sip.workers import (
    BUSY_FRESH_S,
    DEFERRED_WAKES_LIMIT,
    Flag,
    LineBudget,
    LoadCounters,
    Occasional,
    Slots,
    WorkerPool,
)


def test_a_full_queue_refuses_new_work_at_once_but_never_a_follow_up() -> None:
    gate = threading.Event()
    started = threading.Event()
    order: list[str] = []
    pool = WorkerPool(workers=1, queue_limit=2)
    pool.start()
    try:
        assert pool.offer(lambda: (started.set(), gate.wait(10), order.append("busy")))
        assert started.wait(10)  # the only worker is taken
        assert pool.offer(lambda: order.append("new 1"))
        assert pool.offer(lambda: order.append("new 2"))
        assert not pool.offer(lambda: order.append("shed"))  # full: refused, not blocked
        assert pool.queued() == 2 and pool.busy() == 1
        pool.follow_up(lambda: order.append("follow-up"))  # never refused
        gate.set()
    finally:
        pool.stop(5)
    assert order == ["busy", "follow-up", "new 1", "new 2"]  # follow-ups first


def test_stop_finishes_what_was_queued_and_joins_the_threads_it_spawned() -> None:
    ran: list[str] = []
    pool = WorkerPool(workers=2, queue_limit=10)
    pool.start()
    release = threading.Event()
    pool.spawn("call-media", lambda: (release.wait(10), ran.append("media")))
    for n in range(5):
        pool.offer(lambda n=n: ran.append(f"task {n}"))  # type: ignore[misc]
    assert pool.spawned() == 1
    release.set()
    pool.stop(5)
    assert sorted(ran) == ["media", *(f"task {n}" for n in range(5))]
    assert pool.spawned() == 0
    assert not pool.offer(lambda: None)  # stopped: new work is refused
    late: list[str] = []
    pool.follow_up(lambda: late.append("logged anyway"))  # a call's end is never lost
    assert late == ["logged anyway"]


def test_a_task_that_raises_does_not_take_the_worker_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = threading.Event()
    pool = WorkerPool(workers=1, queue_limit=4)
    pool.start()
    try:
        pool.offer(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
        pool.offer(done.set)
        assert done.wait(10)
    finally:
        pool.stop(5)
    assert "call task failed" in caplog.text


def test_slots_are_bounded_and_never_go_negative() -> None:
    slots = Slots(2)
    assert slots.try_acquire() and slots.try_acquire()
    assert not slots.try_acquire()
    slots.release()
    slots.release()
    slots.release()
    assert slots.active == 0


def test_counters_and_gauges_in_one_snapshot() -> None:
    counters = LoadCounters()
    counters.add("shed", 3)
    counters.gauge("queued", lambda: 7)
    snapshot = counters.snapshot()
    assert snapshot["shed"] == 3 and snapshot["queued"] == 7 and snapshot["invites"] == 0
    assert set(LoadCounters.NAMES) <= set(snapshot)


def test_an_occasional_warning_folds_a_flood_into_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.occasional")
    warning = Occasional(interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.occasional"):
        for n in range(100):
            warning.warn(logger, "call %d refused", n)
        warning.interval = 0  # the next one is due: it says how many it stands for
        warning.warn(logger, "call %d refused", 100)
    assert [r.getMessage() for r in caplog.records] == [
        "call 0 refused", "call 100 refused (and 99 more like it since the last such line)"]


def test_cancelled_timers_do_not_pile_up_in_the_heap() -> None:
    timers = Timers()
    try:
        handles = [timers.call_later(3600, lambda: None) for _ in range(5000)]
        for handle in handles:
            timers.cancel(handle)
        assert timers.pending() == 0
        assert timers.queued() <= 1024  # rebuilt once most entries were dead
    finally:
        timers.stop()


@given(st.text(max_size=12))
def test_ascii_number_takes_ascii_digits_only(text: str) -> None:
    value = ascii_number(text)
    stripped = text.strip()
    if stripped and len(stripped) <= 10 and all(c in "0123456789" for c in stripped):
        assert value == int(stripped)
    else:
        assert value is None  # '²', '٠', '-1', '1e3', '', 11 digits...


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/7.0/UDP h;branch=z9hG4bK1\r\n\r\n", 505),
        (b"OPTIONS mailto:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>"
         b";tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", 416),
        (b"OPTIONS <sip:a@b> SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>"
         b";tag=1\r\nTo: <sip:c@d>\r\nTo: <sip:e@f>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", 400),
    ],
    ids=["version", "scheme", "angle-brackets", "two-To"],
)
def test_a_refused_request_carries_the_status_to_answer(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status and info.value.request is not None


def test_a_refused_response_or_garbage_has_nothing_to_answer() -> None:
    for data in (b"SIP/2.0 4294967301 big\r\nVia: SIP/2.0/UDP h\r\n\r\n", b"garbage\r\n\r\n"):
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.request is None


def test_a_quoted_nul_is_valid_and_a_bare_one_is_not() -> None:
    head = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n")
    quoted = head + b'From: "a\\\x00b" <sip:a@b>;tag=1\r\n\r\n'
    assert parse_message(quoted).from_().display_name == "a\x00b"
    with pytest.raises(SipParseError, match="NUL"):
        parse_message(head + b"From: a\x00b <sip:a@b>;tag=1\r\n\r\n")


def test_work_offered_while_every_worker_is_busy_wakes_nobody() -> None:
    # A notify per INVITE was a GIL hand-off each in a flood (20 % of the CPU): busy workers
    # take the next task themselves.
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []
    pool = WorkerPool(workers=1, queue_limit=100)
    pool.start()
    try:
        assert pool.offer(lambda: (started.set(), gate.wait(10)))
        assert started.wait(10)
        before = pool.wakes
        for i in range(50):
            assert pool.offer(lambda i=i: done.append(i))
        assert pool.wakes == before  # the only worker is busy: nobody to wake
        gate.set()
    finally:
        pool.stop(5)
    assert done == list(range(50))  # and none was lost


def _until(predicate: object, timeout: float = 10.0) -> bool:
    """Poll `predicate()` until it is true or `timeout` passes (a readiness wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_the_receive_thread_wakes_a_worker_only_once_its_socket_is_empty() -> None:
    # A wake-up handed the CPU to the woken worker while the receive thread held the GIL: the
    # CANCELs queued behind an INVITE waited for its screening (p99 of CANCEL -> 487).
    pool = WorkerPool(workers=1, queue_limit=100)
    seen: list[tuple[int, int]] = []
    ran = threading.Event()

    def handle(message: SipMessage, source: Source) -> None:  # on the receive thread
        before = pool.wakes
        assert pool.offer(ran.set)
        seen.append((before, pool.wakes))

    transport = SipTransport("127.0.0.1", 0, handle, tcp=False)
    transport.idle_listener = pool
    pool.start()
    transport.start()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert transport.udp_thread is not None
        pool.defer_wakes_on(transport.udp_thread)
        assert _until(lambda: pool.idle() == 1)  # the worker waits: an offer would wake it
        peer.sendto(b"OPTIONS sip:home@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;"
                    b"branch=z9hG4bKdefer\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: "
                    b"<sip:home@127.0.0.1>\r\nCall-ID: defer\r\nCSeq: 1 OPTIONS\r\n"
                    b"Content-Length: 0\r\n\r\n", ("127.0.0.1", transport.port))
        assert ran.wait(10)  # woken once the loop found its socket empty
        assert len(seen) == 1 and seen[0][0] == seen[0][1]  # not by the offer itself
    finally:
        peer.close()
        transport.stop()
        pool.stop(5)


def test_a_loop_with_no_wake_up_held_back_does_not_look_for_idleness() -> None:
    # A refused-call flood queues no work: an extra empty read per packet would be waste.
    class Listener:
        def __init__(self) -> None:
            self.deferred = False
            self.checks: list[bool] = []  # asked at each turn of the loop, before it reads
            self.idle_calls = 0

        def has_deferred(self) -> bool:
            self.checks.append(self.deferred)
            return self.deferred

        def wake_deferred(self) -> None:
            self.idle_calls += 1

    listener = Listener()
    got = threading.Event()
    transport = SipTransport("127.0.0.1", 0, lambda message, source: got.set(), tcp=False)
    transport.idle_listener = listener
    transport.start()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.sendto(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
                    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
                    b"Call-ID: idle\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                    ("127.0.0.1", transport.port))
        assert got.wait(10)
        assert _until(lambda: len(listener.checks) >= 2)  # the turn after the message
        assert listener.idle_calls == 0  # it waits on its socket now
        listener.deferred = True  # the next turn of the loop looks
        peer.sendto(b"\r\n\r\n", ("127.0.0.1", transport.port))  # a keep-alive wakes it
        assert _until(lambda: listener.idle_calls > 0)
    finally:
        peer.close()
        transport.stop()


def test_held_back_wake_ups_go_out_once_enough_work_waits() -> None:
    pool = WorkerPool(workers=1, queue_limit=100)
    done: list[int] = []
    pool.start()
    try:
        assert _until(lambda: pool.idle() == 1)
        pool.defer_wakes_on(threading.current_thread())
        for i in range(DEFERRED_WAKES_LIMIT):
            assert pool.offer(lambda i=i: done.append(i))
        assert pool.wakes == 0 and pool.queued() == DEFERRED_WAKES_LIMIT
        pool.follow_up(lambda: done.append(-1))  # one more than the limit: a worker now
        assert pool.wakes == 1
        assert _until(lambda: len(done) == DEFERRED_WAKES_LIMIT + 1)
        assert done[0] == -1  # follow-ups first, as ever
        pool.wake_deferred()  # nothing is left to wake for
        assert pool.wakes == 1
    finally:
        pool.stop(5)


def test_other_threads_wake_a_worker_at_once() -> None:
    pool = WorkerPool(workers=1, queue_limit=100)
    pool.start()
    try:
        assert _until(lambda: pool.idle() == 1)
        pool.defer_wakes_on(threading.Thread(target=lambda: None))  # another thread than this one
        ran = threading.Event()
        assert pool.offer(ran.set)
        assert pool.wakes == 1 and ran.wait(10)
    finally:
        pool.stop(5)


def test_the_worker_woken_is_the_one_idle_last() -> None:
    """Its caches and its own SQLite connection are warm: a flood keeps using one worker."""
    pool = WorkerPool(workers=2, queue_limit=100)
    ran_on: list[str] = []
    pool.start()
    try:
        assert _until(lambda: pool.idle() == 2)
        for _ in range(5):
            finished = threading.Event()
            assert pool.offer(lambda done=finished: (
                ran_on.append(threading.current_thread().name), done.set()))
            assert finished.wait(10) and _until(lambda: pool.idle() == 2)
        assert len(set(ran_on)) == 1, ran_on  # first in, first woken would alternate
    finally:
        pool.stop(5)


class _ManualLater:
    """A `later` whose callbacks run when the test says, and a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, delay: float, callback: Callable[[], None]) -> None:
        self.scheduled.append((delay, callback))

    def run_due(self) -> None:
        due, self.scheduled = self.scheduled, []
        for _, callback in due:
            callback()


def test_a_task_waits_for_a_worker_busy_since_moments_and_not_for_one_busy_longer() -> None:
    manual = _ManualLater()
    pool = WorkerPool(workers=2, queue_limit=100, clock=manual.clock, later=manual)
    gate, started = threading.Event(), threading.Event()
    ran_on: list[str] = []
    pool.start()
    try:
        assert _until(lambda: pool.idle() == 2)
        assert pool.offer(lambda: (ran_on.append(threading.current_thread().name),
                                   started.set(), gate.wait(10)))
        assert started.wait(10)
        wakes = pool.wakes
        manual.now += BUSY_FRESH_S / 2
        assert pool.offer(lambda: ran_on.append(threading.current_thread().name))
        assert pool.wakes == wakes and pool.queued() == 1  # the busy worker takes it next
        assert [delay for delay, _ in manual.scheduled] == [2 * BUSY_FRESH_S]  # and a look
        manual.now += BUSY_FRESH_S  # still busy: perhaps stuck on the database
        manual.run_due()
        assert pool.wakes == wakes + 1  # the look woke the other worker for it
        assert _until(lambda: len(ran_on) == 2)
        assert ran_on[0] != ran_on[1]  # run while the first worker is still busy
        manual.now += 1.0
        assert pool.offer(lambda: ran_on.append(threading.current_thread().name))
        assert pool.wakes == wakes + 2  # busy for long: an offer wakes a worker at once
        assert _until(lambda: len(ran_on) == 3)
    finally:
        gate.set()
        pool.stop(5)


def test_without_a_later_every_task_wakes_an_idle_worker() -> None:
    pool = WorkerPool(workers=2, queue_limit=100)
    gate, started, ran = threading.Event(), threading.Event(), threading.Event()
    pool.start()
    try:
        assert _until(lambda: pool.idle() == 2)
        assert pool.offer(lambda: (started.set(), gate.wait(10)))
        assert started.wait(10)
        assert pool.offer(ran.set)
        assert ran.wait(10)  # at once, though the first worker started moments ago
    finally:
        gate.set()
        pool.stop(5)


class _CountingCondition:
    """A threading.Condition that counts its notify() calls."""

    def __init__(self, inner: threading.Condition) -> None:
        self.inner = inner
        self.notified = 0

    def __enter__(self) -> bool:
        return self.inner.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)  # type: ignore[arg-type]

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        self.inner.notify(n)

    def notify_all(self) -> None:
        self.inner.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        return self.inner.wait(timeout)


def test_a_timer_later_than_the_next_one_does_not_wake_the_timer_thread() -> None:
    timers = Timers()
    counting = _CountingCondition(timers._cond)
    timers._cond = counting  # type: ignore[assignment]
    ran = threading.Event()
    try:
        timers.call_later(0.05, ran.set)
        first = counting.notified
        for _ in range(20):
            timers.call_later(30.0, lambda: None)  # later: the thread's own wait covers them
        assert counting.notified == first
        timers.call_later(0.0, lambda: None)  # sooner than anything: wakes it
        assert counting.notified == first + 1
        assert ran.wait(10)
    finally:
        timers.stop()


def test_a_flag_wakes_every_waiter_once_set_and_times_out_otherwise() -> None:
    flag = Flag()
    assert not flag.is_set() and flag.wait(0) is False and flag.wait(0.01) is False
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(flag.wait(30))) for _ in range(4)]
    for thread in waiters:
        thread.start()
    setters = [threading.Thread(target=flag.set) for _ in range(4)]  # at once: no double release
    for thread in setters:
        thread.start()
    for thread in [*setters, *waiters]:
        thread.join(30)
    assert woken == [True] * 4 and flag.is_set() and flag.wait() is True
    flag.set()  # again: nothing happens


def test_a_call_builds_no_threading_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # Five Events per call (each a Condition catching three AttributeErrors) were 10 % of the
    # CPU of a ring-and-cancel flood.
    invite = parse_message(
        b"INVITE sip:home@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        b"From: <sip:+33612345678@127.0.0.1>;tag=1\r\nTo: <sip:home@127.0.0.1>\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")

    def refused() -> None:
        raise AssertionError("a threading.Event was built")

    monkeypatch.setattr(threading, "Event", refused)
    call = ua_module.Call(object(), invite, object())  # type: ignore[arg-type]
    assert not call.ended.is_set() and not call.cancelled.is_set()


def test_a_line_budget_lets_a_burst_through_then_counts_what_it_holds_back() -> None:
    now = [100.0]
    budget = LineBudget(rate=5.0, burst=20, clock=lambda: now[0])
    assert [budget.take() for _ in range(20)] == [0] * 20
    assert [budget.take() for _ in range(7)] == [None] * 7
    now[0] += 1.0  # five more lines' worth
    assert budget.take() == 7  # the first line out says how many were held back
    assert [budget.take() for _ in range(4)] == [0] * 4
    assert budget.take() is None
    now[0] += 3600  # a quiet hour refills to the burst, no more
    assert [budget.take() for _ in range(20)] == [1] + [0] * 19
    assert budget.take() is None


def test_what_a_budget_held_back_is_said_once_the_flood_is_over() -> None:
    now = [0.0]
    budget = LineBudget(rate=1.0, burst=1, clock=lambda: now[0])
    assert budget.take() == 0
    assert budget.take() is None and budget.take() is None
    assert budget.overdue(after_s=10) == 0  # the flood may go on: the next line will say it
    now[0] += 10.0
    assert budget.overdue(after_s=10) == 2  # nothing went out for 10 s: say it now, once
    assert budget.overdue(after_s=10) == 0

