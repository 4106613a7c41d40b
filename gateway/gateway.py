"""The gateway process: one SIP user agent per line (or one direct listener), until a signal."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from gateway.actions import CallEnvironment, Media, MediaFactory, PromptResolver, Service
from gateway.actions import handle_call as run_actions
from gateway.config import LineConfig, Settings
from gateway.sip.register import Registration
from gateway.sip.transaction import Timers
from gateway.sip.ua import Call, CallHandler, CallLimiter, UaIdentity, UserAgent

if TYPE_CHECKING:
    from gateway.scheduler import RingfenceScheduler
    from gateway.service import ScreeningService

log = logging.getLogger(__name__)


def default_media_factory(settings: Settings) -> MediaFactory:
    """Media sessions from `gateway.sip.media` on the configured RTP port range."""
    low, high = (int(p) for p in settings.gateway.rtp_ports.split("-"))

    def make(offer: str, announced_ip: str, bind_ip: str) -> Media:
        # Imported here so the signalling can start (and be tested) without pyVoIP loaded.
        from gateway.sip.media import MediaSession
        from gateway.sip.sdp import parse_sdp

        session: Media = MediaSession(parse_sdp(offer), local_ip=announced_ip,
                                      port_range=(low, high), bind_ip=bind_ip)
        return session

    return make


def default_prompts(settings: Settings) -> PromptResolver:
    """Prompt files in the configured language (the owner's own first)."""

    def resolve(name: str) -> Path:
        from gateway.sip.media import prompt_path

        return Path(prompt_path(name, settings.language, settings))

    return resolve


class Gateway:
    """Every UA and registration of one gateway process."""

    def __init__(
        self,
        settings: Settings,
        service: Service,
        *,
        media_factory: MediaFactory | None = None,
        prompts: PromptResolver | None = None,
        backoff_start: float = 2.0,
    ) -> None:
        self.settings = settings
        self.service = service
        self.media_factory = media_factory or default_media_factory(settings)
        self.prompts = prompts or default_prompts(settings)
        self.backoff_start = backoff_start
        self.limiter = CallLimiter(settings.gateway.max_calls)
        self.timers = Timers()
        self.uas: list[UserAgent] = []
        self.registrations: list[Registration] = []

    def _environment(self, line: LineConfig | None) -> CallEnvironment:
        if line is None:
            gw = self.settings.gateway
            return CallEnvironment(
                self.settings, self.service, self.media_factory, self.prompts, line=None,
                pass_behaviour=gw.pass_behaviour, redirect_to=gw.redirect_to,
            )
        return CallEnvironment(
            self.settings, self.service, self.media_factory, self.prompts, line=line.name,
            pass_behaviour=line.pass_behaviour, redirect_to=line.redirect_to,
            refer_to=line.refer_to,
        )

    def _handler(self, line: LineConfig | None) -> CallHandler:
        env = self._environment(line)

        def handle(call: Call) -> None:
            run_actions(call, env)

        return handle

    def start(self) -> None:
        """Bind every listener and start registering; OSError if an address is taken."""
        try:
            if not self.settings.lines:
                gw = self.settings.gateway
                handle = self._handler(None)
                ua = UserAgent(
                    gw.listen.host, gw.listen.port, call_handler=handle,
                    limiter=self.limiter, timers=self.timers, name="direct",
                    identity=UaIdentity("ringfence", gw.public_address),
                )
                ua.start()
                self.uas.append(ua)
                return
            for line in self.settings.lines:
                handle = self._handler(line)
                ua = UserAgent(
                    line.listen.host, line.listen.port, call_handler=handle,
                    limiter=self.limiter, timers=self.timers, name=f"line {line.name}",
                    identity=UaIdentity(line.username, self.settings.gateway.public_address),
                )
                ua.start()
                self.uas.append(ua)
                registration = Registration(ua, line, self._line_state,
                                            backoff_start=self.backoff_start)
                registration.start()
                self.registrations.append(registration)
        except Exception:
            self.stop()
            raise

    def _line_state(self, name: str, state: str, error: str | None) -> None:
        setter = getattr(self.service, "set_line_state", None)
        if setter is not None:
            setter(name, state, error)

    def stop(self) -> None:
        """Unregister, end calls, close sockets."""
        for registration in self.registrations:
            try:
                registration.stop()
            except Exception:
                log.exception("line %s: error while unregistering", registration.line.name)
        for ua in self.uas:
            ua.stop()
        self.timers.stop()
        self.registrations.clear()
        self.uas.clear()


def _start_scheduler(settings: Settings, service: ScreeningService) -> RingfenceScheduler | None:
    """Start digests, alerts, subscriptions and retention; calls go on if that fails."""
    from gateway.scheduler import start_scheduler

    try:
        return start_scheduler(settings, service)
    except Exception:
        log.exception("the scheduler did not start: no digests or alerts, calls still screened")
        return None


def run_gateway(settings: Settings) -> int:
    """Run the gateway until SIGTERM/SIGINT; return the process exit code."""
    from gateway.service import open_service

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        service = open_service(settings)
    except Exception:
        log.exception("cannot open the screening service")
        return 1
    # Handlers first: once the UA answers, a SIGTERM must mean a clean stop, not a kill.
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    gateway = Gateway(settings, service)
    try:
        gateway.start()
    except OSError as exc:
        log.error("cannot listen for SIP: %s", exc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return 1
    scheduler = _start_scheduler(settings, service)
    log.info("Ringfence gateway started (%d line(s))", len(settings.lines))
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        gateway.stop()
        log.info("Ringfence gateway stopped")
    return 0
