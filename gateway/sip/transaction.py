"""RFC 3261 §17 transactions (the parts a UAS that also registers needs) and a timer thread.

Server transactions absorb retransmitted requests by resending the last response; INVITE server
transactions retransmit a non-2xx final response until the ACK (timer G) and give up after
64*T1 (timer H), so nobody can make us send responses to an address for ever. Client
transactions (REGISTER, BYE, REFER, OPTIONS) retransmit over UDP with T1 doubling up to T2
(timer E) and give up after 64*T1 (timer F). T1 is per transaction layer, so tests can shrink
every timer at once.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.transport import SipTransport, Source, Target, TcpConnection

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAGIC_COOKIE = "z9hG4bK"
TIMER_SLACK_S = 0.002
"""Timers due this close together run in one wake of the timer thread (a flood's timers
are a few per INVITE, a millisecond apart at 1,000/s); none runs more than this early."""
MAX_RETRANSMITTING = 256
"""Final responses being retransmitted at once (timer G). Past this a final goes out once and
the caller's own retransmissions fetch it again: a flood of spoofed INVITEs cannot turn us into
a steady source of packets towards its victim."""


def new_branch() -> str:
    """A fresh RFC 3261 branch id."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag."""
    return secrets.token_hex(6)


class Timers:
    """One thread running callbacks at given times; cancel by handle."""

    def __init__(self) -> None:
        # The heap holds (due, handle) only; the callbacks live in `_callbacks` until they
        # run or are cancelled. A cancelled timer (most of them: every ACK cancels timer G)
        # then lets go of its transaction at once rather than when it falls due, so a flood
        # leaves no pile of closures for the garbage collector to walk.
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="sip-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        """Run `callback` after `delay` seconds; return a handle for `cancel`."""
        handle = next(self._counter)
        with self._cond:
            entry = (time.monotonic() + delay, handle)
            # Wake the thread only when it must wake sooner than it planned: a flood adds a
            # few timers per INVITE, and each wake-up cost a GIL hand-off (7 % of the CPU).
            sooner = not self._heap or entry[0] < self._heap[0][0]
            heapq.heappush(self._heap, entry)
            self._callbacks[handle] = callback
            if sooner:
                self._cond.notify()
        return handle

    def cancel(self, handle: int | None) -> None:
        """Forget a pending callback (no-op when it already ran)."""
        if handle is None:
            return
        with self._cond:
            self._callbacks.pop(handle, None)
            # Cancelled entries stay in the heap until their time (two numbers each); rebuild
            # when most are dead, so a flood of short transactions cannot grow it unbounded.
            if len(self._heap) > 1024 and len(self._callbacks) < len(self._heap) // 4:
                self._heap = [e for e in self._heap if e[1] in self._callbacks]
                heapq.heapify(self._heap)

    def pending(self) -> int:
        """Callbacks still waiting to run (for tests and leak checks)."""
        with self._cond:
            return len(self._callbacks)

    def queued(self) -> int:
        """Entries in the heap, cancelled ones included (for leak checks)."""
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        """Stop the thread; pending callbacks never run."""
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    # Cancelled entries on top are dropped before sleeping: most timers are
                    # cancelled (timer G and timer H by the ACK), and
                    # waking for each would be a GIL hand-off for nothing.
                    while self._heap and self._heap[0][1] not in self._callbacks:
                        heapq.heappop(self._heap)
                    if not self._running:
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now + TIMER_SLACK_S:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                # Everything due within the slack runs in this one wake, in time order.
                due: list[Callable[[], None]] = []
                while self._heap and self._heap[0][0] <= now + TIMER_SLACK_S:
                    _, handle = heapq.heappop(self._heap)
                    callback = self._callbacks.pop(handle, None)
                    if callback is not None:
                        due.append(callback)
            for callback in due:
                try:
                    callback()
                except Exception:
                    log.exception("timer callback failed")


def server_key(request: SipRequest) -> tuple[str, str, str]:
    """Transaction id of a request (RFC 3261 §17.2.3); ACK and CANCEL map to the INVITE's."""
    via = request.top_via()
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return branch, via.sent_by(), method
    # RFC 2543 peers: no usable branch, match on dialog identifiers instead
    number, _ = request.cseq()
    tag = request.from_().tag or ""
    return f"{request.call_id}|{tag}|{number}", via.sent_by(), method


@dataclass
class ServerTransaction:
    """One request we answer; keeps the last response's bytes to absorb retransmissions.

    Only bytes and a route are kept once the final response is out: RFC 3261 keeps completed
    transactions for 32 s, and at a flood's rate the parsed messages would add up.
    """

    layer: TransactionLayer
    key: tuple[str, str, str]
    method: str
    source: Source
    request: SipRequest | None = None  # dropped after the final response
    last_status: int = 0
    response_bytes: bytes = b""
    route: TcpConnection | Target | None = None
    completed: bool = False
    confirmed: bool = False
    timer: int | None = None
    forget_timer: int | None = None  # timer H/J, or timer I once the ACK came
    retransmitting: bool = False
    on_ack: Callable[[], None] | None = None
    created: float = field(default_factory=time.monotonic)

    @property
    def is_invite(self) -> bool:
        """Whether this is an INVITE transaction."""
        return self.method == "INVITE"

    @property
    def final_sent(self) -> bool:
        """Whether a final (>= 200) response went out."""
        return self.last_status >= 200

    def respond(self, response: SipResponse) -> None:
        """Send `response` and move the state machine on."""
        data = response.to_bytes()
        route = self.layer.transport.response_route(response, self.source)
        with self.layer.lock:
            if self.final_sent:
                log.debug("dropping %d after final response on %s", response.status, self.key)
                return
            self.last_status = response.status
            self.response_bytes = data
            self.route = route
            if response.status >= 200:
                self.request = None
        if route is not None:
            self.layer.transport.send_routed(data, route)
        if response.status < 200:
            return
        t1 = self.layer.t1
        if self.is_invite and response.status < 300:
            # 2xx: the transaction ends; the UA core retransmits the 200 until the ACK.
            self.layer.forget_server(self, after=64 * t1)
            return
        self.completed = True
        if self.is_invite and self.source.transport == "udp" and self.layer.start_retransmitting():
            self.retransmitting = True
            self._schedule_retransmit(t1)
        # Timer H (INVITE: give up waiting for the ACK) and timer J (others: absorb
        # retransmitted requests, none over a reliable transport); forget_server also stops
        # timer G.
        reliable = self.source.transport != "udp"
        self.layer.forget_server(self, after=0.0 if reliable and not self.is_invite
                                 else 64 * t1)

    def _schedule_retransmit(self, interval: float) -> None:
        def resend() -> None:
            if self.confirmed or self.route is None:
                return
            self.layer.transport.send_routed(self.response_bytes, self.route)
            self._schedule_retransmit(min(interval * 2, self.layer.t2))

        self.timer = self.layer.timers.call_later(interval, resend)

    def stop_retransmitting(self) -> None:
        """Stop timer G (the ACK came, or timer H fired); idempotent."""
        self.layer.timers.cancel(self.timer)
        self.timer = None
        with self.layer.lock:
            was, self.retransmitting = self.retransmitting, False
        if was:
            self.layer.stop_retransmitting()

    def retransmitted(self) -> None:
        """The same request came again: resend the last response (RFC 3261 §17.2.1)."""
        if self.route is not None and self.response_bytes:
            self.layer.transport.send_routed(self.response_bytes, self.route)

    def acked(self) -> None:
        """An ACK for our non-2xx final response arrived."""
        first = not self.confirmed
        self.confirmed = True
        self.stop_retransmitting()
        if first and self.completed:
            # Confirmed (RFC 3261 §17.2.1): timer I absorbs ACK retransmissions for T4 over
            # UDP, none over a reliable transport. Keeping every refused call's transaction
            # until timer H instead (32 s) held 32,000 of them in a 1,000/s flood, and the
            # garbage collector's walks over them were the flood's worst pauses.
            reliable = self.source.transport != "udp"
            self.layer.forget_server(self, after=0.0 if reliable else self.layer.t4)
        if self.on_ack is not None:
            self.on_ack()


ResponseCallback = Callable[[SipResponse | None], None]


@dataclass
class ClientTransaction:
    """One request we sent; calls `on_final` with the final response or None on timeout."""

    layer: TransactionLayer
    key: tuple[str, str]
    request: SipRequest
    target: Target
    on_final: ResponseCallback
    on_provisional: Callable[[SipResponse], None] | None = None
    done: bool = False
    proceeding: bool = False  # a provisional answer came: resend every T2 (RFC 3261 §17.1.2.2)
    retransmit_timer: int | None = None
    timeout_timer: int | None = None

    def start(self) -> None:
        """Send and arm the retransmission and timeout timers."""
        data = self.request.to_bytes()
        self.layer.transport.send(data, self.target)
        if self.target.transport == "udp":
            self._arm_retransmit(self.layer.t1, data)
        self.timeout_timer = self.layer.timers.call_later(64 * self.layer.t1, self._timed_out)

    def _arm_retransmit(self, interval: float, data: bytes) -> None:
        def resend() -> None:
            if self.done:
                return
            self.layer.transport.send(data, self.target)
            self._arm_retransmit(min(interval * 2, self.layer.t2), data)

        self.retransmit_timer = self.layer.timers.call_later(interval, resend)

    def _timed_out(self) -> None:
        if self.done:
            return
        self.done = True
        self.layer.timers.cancel(self.retransmit_timer)
        self.layer.forget_client(self)
        log.info("no answer to %s %s from %s:%s", self.request.method, self.request.uri,
                 self.target.host, self.target.port)
        self.on_final(None)

    def received(self, response: SipResponse) -> None:
        """A response matched this transaction."""
        if self.done:
            return
        if response.status < 200:
            # Proceeding (RFC 3261 §17.1.2.2): keep resending, but every T2 rather than at the
            # doubling interval, so a lost final answer over UDP is still asked for again.
            if not self.proceeding:
                self.proceeding = True
                self.layer.timers.cancel(self.retransmit_timer)
                if self.target.transport == "udp":
                    self._arm_retransmit(self.layer.t2, self.request.to_bytes())
            if self.on_provisional is not None:
                self.on_provisional(response)
            return
        self.done = True
        self.layer.timers.cancel(self.retransmit_timer)
        self.layer.timers.cancel(self.timeout_timer)
        self.layer.forget_client(self)
        self.on_final(response)

    def abandon(self) -> None:
        """Stop without calling back (shutdown)."""
        self.done = True
        self.layer.timers.cancel(self.retransmit_timer)
        self.layer.timers.cancel(self.timeout_timer)
        self.layer.forget_client(self)


class TransactionLayer:
    """Tables of server and client transactions over one transport."""

    def __init__(self, transport: SipTransport, timers: Timers, *, t1: float = T1,
                 t2: float = T2, t4: float | None = None) -> None:
        self.transport = transport
        self.timers = timers
        self.t1 = t1
        self.t2 = t2
        self.t4 = T4 * t1 / T1 if t4 is None else t4  # scales with T1, as the others do
        self.lock = threading.RLock()
        self.server: dict[tuple[str, str, str], ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self.retransmitting = 0  # server transactions running timer G now

    def start_retransmitting(self) -> bool:
        """Take a place among the final responses being retransmitted; False when full."""
        with self.lock:
            if self.retransmitting >= MAX_RETRANSMITTING:
                return False
            self.retransmitting += 1
            return True

    def stop_retransmitting(self) -> None:
        """Give a retransmission place back."""
        with self.lock:
            self.retransmitting = max(0, self.retransmitting - 1)

    def find_server(self, request: SipRequest) -> ServerTransaction | None:
        """The transaction a request (or its ACK/CANCEL) belongs to."""
        with self.lock:
            return self.server.get(server_key(request))

    def new_server(self, request: SipRequest, source: Source) -> ServerTransaction:
        """Open a server transaction for a new request."""
        tx = ServerTransaction(self, server_key(request), request.method, source, request)
        with self.lock:
            self.server[tx.key] = tx
        return tx

    def forget_server(self, tx: ServerTransaction, *, after: float = 0.0) -> None:
        """Drop a server transaction now or after `after` seconds (absorbing retransmits);
        replaces any drop planned before."""
        self.timers.cancel(tx.forget_timer)
        tx.forget_timer = None
        if after <= 0:
            self._drop_server(tx)
        else:
            tx.forget_timer = self.timers.call_later(after,
                                                     functools.partial(self._drop_server, tx))

    def _drop_server(self, tx: ServerTransaction) -> None:
        tx.forget_timer = None
        tx.stop_retransmitting()  # timer H: a final nobody ACKs is not resent for ever
        with self.lock:
            if self.server.get(tx.key) is tx:
                del self.server[tx.key]

    def send_request(
        self,
        request: SipRequest,
        target: Target,
        on_final: ResponseCallback,
        on_provisional: Callable[[SipResponse], None] | None = None,
    ) -> ClientTransaction:
        """Start a client transaction for `request` (its top Via must carry a fresh branch)."""
        via = request.top_via()
        key = (via.branch or "", request.method)
        tx = ClientTransaction(self, key, request, target, on_final, on_provisional)
        with self.lock:
            self.client[key] = tx
        tx.start()
        return tx

    def match_response(self, response: SipResponse) -> ClientTransaction | None:
        """The client transaction a response belongs to (RFC 3261 §17.1.3)."""
        try:
            branch = response.top_via().branch or ""
            _, method = response.cseq()
        except ValueError:
            return None
        with self.lock:
            return self.client.get((branch, method))

    def forget_client(self, tx: ClientTransaction) -> None:
        """Drop a client transaction."""
        with self.lock:
            if self.client.get(tx.key) is tx:
                del self.client[tx.key]

    def abandon_all(self) -> None:
        """Stop every client transaction (shutdown)."""
        with self.lock:
            pending = list(self.client.values())
        for tx in pending:
            tx.abandon()


def wait_for_final(
    layer: TransactionLayer, request: SipRequest, target: Target, timeout: float
) -> SipResponse | None:
    """Send `request` and block until its final response (None on timeout)."""
    done = threading.Event()
    result: list[SipResponse | None] = [None]

    def on_final(response: SipResponse | None) -> None:
        result[0] = response
        done.set()

    tx = layer.send_request(request, target, on_final)
    if not done.wait(timeout):
        tx.abandon()
        return None
    return result[0]
