"""The gateway process: one SIP user agent per line (or one direct listener), until a signal.

`run_gateway` opens the store, starts the call writer (which first writes what its journal
kept from an earlier run, and closes the calls that run left open), saves the messages that
run was recording (`gateway.call.mailbox`), starts the user agents and
registrations with `handle_call` as the call handler, starts the scheduler, and stops
everything cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway import __version__
from gateway.call.handle import from_home_network, handle_call, log_decision, log_held_calls
from gateway.call.passport import CheckSignature
from gateway.call.ports import (
    CallEnvironment,
    Capacity,
    KeepsTexts,
    Media,
    MediaFactory,
    PromptResolver,
    Records,
    ReportsLines,
    Screens,
    ScreensTexts,
    TextEnvironment,
)
from gateway.call.record import CallBook
from gateway.call.repeats import RepeatRefusals
from gateway.call.screen import Screener
from gateway.call.signals import StopSignals
from gateway.call.text import handle_text
from gateway.config import HostPort, LineConfig, Settings, cannot_listen
from gateway.media.sdp import parse_sdp
from gateway.ops.scheduler import RingfenceScheduler, start_scheduler
from gateway.prompts import prompt_path
from gateway.sip.message import SipRequest
from gateway.sip.register import Registration
from gateway.sip.transaction import T1, Timers
from gateway.sip.transport import Source
from gateway.sip.ua import (
    Call,
    CallHandler,
    QuickRefusal,
    Refusal,
    TextHandler,
    TextMessage,
    UaIdentity,
    UserAgent,
    set_product,
)
from gateway.sip.workers import LoadCounters, Slots, WorkerPool
from gateway.store import Store, open_store
from gateway.store.models import utcnow
from gateway.store.status import (
    HEARTBEAT_SECONDS,
    LOAD_FILE,
    LOAD_WRITE_SECONDS,
    LoadReport,
    write_load,
)
from gateway.store.writer import CallWriter

log = logging.getLogger(__name__)


class ListenError(OSError):
    """A SIP listener could not bind: the message names the address, the cause and the fix."""


def default_media_factory(settings: Settings) -> MediaFactory:
    """Media sessions from `gateway.media.rtp` on the configured RTP port range."""
    low, high = (int(p) for p in settings.gateway.rtp_ports.split("-"))

    def make(offer: str, announced_ip: str, bind_ip: str) -> Media:
        # Imported on the first answered call: pyVoIP (and audioop) stay out of a gateway that
        # only rejects and rings, and signalling tests run without it.
        from gateway.media.rtp import MediaSession

        session: Media = MediaSession(parse_sdp(offer), local_ip=announced_ip,
                                      port_range=(low, high), bind_ip=bind_ip)
        return session

    return make


def default_prompts(settings: Settings) -> PromptResolver:
    """Prompt files in the configured language (the owner's own first)."""

    def resolve(name: str) -> Path:
        return prompt_path(name, settings.language, settings)

    return resolve


def signature_checker(settings: Settings) -> CheckSignature | None:
    """What checks PASSporT signatures: None unless `[stir]` names where certificates come
    from, so that `cryptography` (~14 MB on a Pi) loads only for an owner who asked for it."""
    if not settings.stir.checks_signatures:
        return None
    from gateway.call.certificates import Certificates

    return Certificates(settings.stir)


class Gateway:
    """Every UA and registration of one gateway process."""

    def __init__(
        self,
        settings: Settings,
        screener: Screens,
        book: Records,
        *,
        line_states: ReportsLines | None = None,
        media_factory: MediaFactory | None = None,
        prompts: PromptResolver | None = None,
        backoff_start: float = 2.0,
        t1: float = T1,
        text_screener: ScreensTexts | None = None,
        texts: KeepsTexts | None = None,
    ) -> None:
        self.settings = settings
        self.screener = screener
        self.book = book
        # Texts (SIP MESSAGE) are taken when both are given; without them MESSAGE gets 405.
        self.text_screener = text_screener
        self.texts = texts
        self.on_text: Callable[[], None] | None = None  # after an accepted text is stored
        self.line_states = line_states
        self.media_factory = media_factory or default_media_factory(settings)
        self.prompts = prompts or default_prompts(settings)
        self.backoff_start = backoff_start
        self.t1 = t1  # RFC 3261 T1; every SIP timer scales with it (tests shrink it)
        set_product(settings.gateway.user_agent)
        self.timers = Timers()
        # Shared by every line: the workers that screen, the media slots (`max_calls`: calls
        # answered at once), the ring count and the counters `load` reports.
        self.work = WorkerPool(later=self.timers.call_later)
        self.capacity = Capacity(self.work, self.timers, Slots(settings.gateway.max_calls))
        load = self.capacity.counters
        load.gauge("queued", self.work.queued)
        load.gauge("workers_busy", self.work.busy)
        load.gauge("media_calls", lambda: self.capacity.media.active)
        load.gauge("media_slots", lambda: self.capacity.media.limit)
        load.gauge("ringing", lambda: self.capacity.ringing.active)
        self.uas: list[UserAgent] = []
        self.registrations: list[Registration] = []
        self.check_signature = signature_checker(settings)
        self.repeats: list[RepeatRefusals] = []  # one per line (tests read their counts)

    @property
    def load(self) -> LoadCounters:
        """Counters and gauges of calls under load (shed, refused, queued, slots in use)."""
        return self.capacity.counters

    def _environment(self, line: LineConfig | None) -> CallEnvironment:
        if line is None:
            gw = self.settings.gateway
            return CallEnvironment(
                self.settings, self.screener, self.book, self.media_factory, self.prompts,
                self.capacity, line=None,
                pass_behaviour=gw.pass_behaviour, redirect_to=gw.redirect_to, kind=gw.kind,
                check_signature=self.check_signature,
            )
        return CallEnvironment(
            self.settings, self.screener, self.book, self.media_factory, self.prompts,
            self.capacity, line=line.name,
            pass_behaviour=line.pass_behaviour, redirect_to=line.redirect_to,
            refer_to=line.refer_to, kind=line.kind, check_signature=self.check_signature,
        )

    def _handler(self, line: LineConfig | None) -> tuple[CallHandler, QuickRefusal]:
        """The call flow of one line, and its repeats of refusals for the receive thread."""
        env = self._environment(line)
        repeats = RepeatRefusals(env, log_call=log_decision)
        env.repeats = repeats
        self.repeats.append(repeats)

        def handle(call: Call) -> None:
            handle_call(call, env)

        def quick_refusal(invite: SipRequest, source: Source) -> Refusal | None:
            return repeats.answer(invite, source, from_home_network(source.host))

        return handle, quick_refusal

    def _text_handler(self, line: LineConfig | None) -> TextHandler | None:
        if self.text_screener is None or self.texts is None:
            return None
        env = TextEnvironment(self.settings, self.text_screener, self.texts,
                              line=line.name if line is not None else None,
                              on_accepted=self._text_accepted)

        def handle(text: TextMessage) -> None:
            handle_text(text, env)

        return handle

    def _text_accepted(self) -> None:
        if self.on_text is not None:
            self.on_text()

    def start(self) -> None:
        """Bind every listener and start registering; OSError if an address is taken."""
        self.work.start()
        work, counters = self.work, self.capacity.counters
        try:
            if not self.settings.lines:
                gw = self.settings.gateway
                handle, quick_refusal = self._handler(None)
                ua = UserAgent(
                    gw.listen.host, gw.listen.port, call_handler=handle, work=work,
                    quick_refusal=quick_refusal,
                    counters=counters, timers=self.timers, name="direct", t1=self.t1,
                    identity=UaIdentity("ringfence", gw.public_address),
                    text_handler=self._text_handler(None),
                )
                self._start_ua(ua, gw.listen, "[gateway] listen")
                return
            for line in self.settings.lines:
                handle, quick_refusal = self._handler(line)
                ua = UserAgent(
                    line.listen.host, line.listen.port, call_handler=handle, work=work,
                    quick_refusal=quick_refusal,
                    counters=counters, timers=self.timers, name=f"line {line.name}",
                    t1=self.t1,
                    identity=UaIdentity(line.username, self.settings.gateway.public_address),
                    text_handler=self._text_handler(line),
                )
                self._start_ua(ua, line.listen, f"listen of line {line.name!r}")
                registration = Registration(ua, line, self._line_state,
                                            backoff_start=self.backoff_start)
                registration.start()
                self.registrations.append(registration)
        except Exception:
            self.stop()
            raise

    def _start_ua(self, ua: UserAgent, address: HostPort, setting: str) -> None:
        try:
            ua.start()
        except OSError as exc:
            raise ListenError(cannot_listen("SIP", address, exc, setting)) from exc
        self.uas.append(ua)

    def _line_state(self, name: str, state: str, error: str | None) -> None:
        if self.line_states is not None:
            self.line_states.set_line_state(name, state, error)

    def stop(self, grace: float = 5.0) -> None:
        """Unregister, end calls, let their work finish (logged outcomes), close sockets."""
        for registration in self.registrations:
            try:
                registration.stop()
            except Exception:
                log.exception("line %s: error while unregistering", registration.line.name)
        for ua in self.uas:
            ua.end_calls()
        self.work.stop(grace)  # media threads hear the hang-up; rings log their end
        for ua in self.uas:
            ua.close()
        self.timers.stop()
        self.registrations.clear()
        self.uas.clear()


def _start_scheduler(settings: Settings, store: Store) -> RingfenceScheduler | None:
    """Start digests, alerts, subscriptions and retention; calls go on if that fails."""
    try:
        return start_scheduler(settings, store)
    except Exception:
        log.exception("the scheduler did not start: no digests or alerts, calls still screened")
        return None


def run_gateway(settings: Settings) -> int:
    """Run the gateway until SIGTERM/SIGINT; return the process exit code."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    if settings.gateway.pin_cpu:
        pin_to_one_cpu()  # before any thread starts: they inherit it
    enable_stack_dumps()
    try:
        store = open_store(settings)
    except Exception:
        log.exception("cannot open the database")
        return 1
    # Handlers first: once the UA answers, a SIGTERM must mean a clean stop, not a kill.
    stop = StopSignals()
    stop.install()
    # Before the first call: the journal of an earlier run is written first (if the database
    # takes it), and calls that run left without an outcome are closed as interrupted.
    writer = CallWriter.open(store.db, settings.data_dir)
    writer.start(close_before=utcnow())
    book = CallBook(store, settings, writer)
    if writer.journal is not None:
        # Messages a crash cut short are saved (as interrupted) before any new call. Without
        # the journal another gateway owns this data folder, and its recordings in progress.
        book.recover_voicemails()
    screener = Screener(store, settings, writer)
    screener.warm()
    gateway = Gateway(settings, screener, book, line_states=book, text_screener=screener,
                      texts=store.messages)
    try:
        gateway.start()
    except OSError as exc:
        # ListenError already says which address and why; anything else still names the cause.
        log.error("%s", exc if isinstance(exc, ListenError) else f"cannot listen for SIP: {exc}")
        stop.restore()
        writer.stop()
        return 1
    scheduler = _start_scheduler(settings, store)
    if scheduler is not None:
        book.on_voicemail = scheduler.poke
        gateway.on_text = scheduler.poke
    log.info("Ringfence gateway started (%d line(s))", len(settings.lines))
    settle_heap()
    heartbeat = Heartbeat(store, settings, load=gateway.load.snapshot)
    try:
        while not stop.wait(1.0):
            heartbeat.tick()
            log_held_calls()
        log.info("received %s; stopping", stop.name)
    finally:
        stop.restore()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        gateway.stop()
        writer.stop()  # after the calls: their last rows are written or journaled
        heartbeat.stopped()
        log.info("Ringfence gateway stopped")
    return 0


def enable_stack_dumps() -> None:
    """Print every thread's stack to stderr (the journal) on a crash, and on SIGUSR1.

    A gateway that hangs can then say where: `systemctl kill -s USR1 ringfence-gateway` and
    read `journalctl`. The dump is written by C code, so it works even when the Python
    threads are stuck, and the gateway goes on running after it.
    """
    faulthandler.enable(all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def pin_to_one_cpu() -> int | None:
    """Keep this process's threads on the last CPU it may use; that CPU, or None if there is
    nothing to choose (one CPU) or the system refuses.

    Under the GIL the threads never run at once, and a thread woken on the other core than
    the one holding the GIL made every hand-off cross cores: pinned, CPU per refused INVITE
    went from 0.57 to 0.38 ms at 1,000/s and from 1.14 to 0.87 ms at 100/s.
    """
    try:
        allowed = os.sched_getaffinity(0)
        if len(allowed) < 2:
            return None
        cpu = max(allowed)
        for thread in threading.enumerate():  # this one too; threads started later inherit it
            if thread.native_id is not None:
                os.sched_setaffinity(thread.native_id, {cpu})
    except (AttributeError, OSError) as exc:
        log.warning("[gateway] pin_cpu: cannot keep the gateway on one CPU (%s)", exc)
        return None
    log.info("gateway threads kept on CPU %d ([gateway] pin_cpu)", cpu)
    return cpu


def settle_heap() -> None:
    """Take what start-up built out of the garbage collector's sight.

    The modules, SQLAlchemy's metadata, phonenumbers' tables and the caches are ~80,000
    objects that live as long as the process; every full collection walked them all, and in
    a flood those walks were the longest pauses (76 ms at 1,000 INVITE/s, the whole p99).
    `gc.freeze()` moves them to a generation that is never collected; what a call allocates
    is collected as before.
    """
    gc.collect()
    gc.freeze()


def listening_addresses(settings: Settings) -> list[str]:
    """Where the gateway takes calls, as the UI shows it: "127.0.0.1:5060" or per line."""
    if not settings.lines:
        return [str(settings.gateway.listen)]
    return [f"{line.name} {line.listen}" for line in settings.lines]


class Heartbeat:
    """The gateway's row in `gateway_status`: written at start, every few minutes, at stop;
    and its load counters in `<data_dir>/load.json` whenever they moved (at most every
    LOAD_WRITE_SECONDS).

    A failed write is logged and never stops the gateway: the UI would only say it is unsure.
    """

    def __init__(self, store: Store, settings: Settings,
                 clock: Callable[[], float] = time.monotonic,
                 load: Callable[[], dict[str, int]] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.instance: str | None = None
        self.last = clock()
        self.data_dir = settings.data_dir
        self.load = load
        self.report = LoadReport(pid=os.getpid(), started_at=utcnow().isoformat())
        self.load_written_at = -float(LOAD_WRITE_SECONDS)
        self._write_load(force=True)
        try:
            self.instance = store.status.started(
                mode="lines" if settings.lines else "direct",
                listening=listening_addresses(settings), version=__version__, at=utcnow())
        except Exception:
            log.exception("could not write the gateway's heartbeat")

    def _write_load(self, *, force: bool = False) -> None:
        if self.load is None:
            return
        snapshot = self.load()
        counts = {name: int(snapshot.get(name, 0)) for name in LoadCounters.NAMES}
        if not force and (counts == self.report.counts
                          or self.clock() - self.load_written_at < LOAD_WRITE_SECONDS):
            return
        self.report.counts, self.report.updated_at = counts, utcnow().isoformat()
        self.load_written_at = self.clock()
        try:
            write_load(self.data_dir, self.report)
        except OSError as exc:
            log.warning("could not write %s: %s", LOAD_FILE, exc)

    def tick(self) -> None:
        """Write a beat when HEARTBEAT_SECONDS have passed since the last one, and the load
        counters when they moved."""
        self._write_load()
        if self.instance is None or self.clock() - self.last < HEARTBEAT_SECONDS:
            return
        self.last = self.clock()
        try:
            self.store.status.beat(self.instance, utcnow())
        except Exception:
            log.exception("could not write the gateway's heartbeat")

    def stopped(self) -> None:
        """Record a clean stop."""
        self.report.stopped = True
        self._write_load(force=True)
        if self.instance is None:
            return
        try:
            self.store.status.stopped(self.instance, utcnow())
        except Exception:
            log.exception("could not record the gateway's stop")
