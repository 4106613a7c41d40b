"""Keep one line registered: REGISTER with digest auth, refresh before expiry, retry forever.

Each REGISTER is its own client transaction (matched by branch and CSeq method), so an OPTIONS
flood or an INVITE arriving during a refresh can never be mistaken for the registrar's answer.

Between refreshes the registrar is asked OPTIONS every `keepalive_seconds` (which also keeps a
NAT binding open). When it does not answer one (retransmitted for PROBE_WAIT seconds), the
line is "unreachable" at once, not at the next refresh, which may be ten minutes away: within
KEEPALIVE_SECONDS + PROBE_WAIT (18 s) of the outage. It is then asked again every
UNREACHABLE_PROBE_SECONDS, and registered again as soon as it answers (its bindings may have
gone with it). Any answer counts, even a 4xx: the registrar is there.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import LineConfig
from gateway.sip.digest import Challenge, DigestError, authorization, best_challenge
from gateway.sip.message import SipParseError, SipRequest, SipResponse, parse_name_addr
from gateway.sip.transaction import new_tag, wait_for_final
from gateway.sip.transport import Target
from gateway.sip.ua import UserAgent, product

log = logging.getLogger(__name__)

StateCallback = Callable[[str, str, str | None], None]  # line name, state, error

BACKOFF_START = 2.0
BACKOFF_MAX = 300.0
KEEPALIVE_SECONDS = 10.0  # OPTIONS to the registrar; also under any router's UDP timeout
PROBE_WAIT = 8.0  # one probe: sent, retransmitted at 0.5, 1, 2 and 4 s (timer E), then lost
UNREACHABLE_PROBE_SECONDS = 2.0  # how often an unreachable registrar is asked again
UNREACHABLE = "unreachable"
NO_ANSWER = "no answer from the registrar"
MAX_AUTH_ROUNDS = 3
REGISTER_WAIT = 40.0  # longer than timer F: the transaction reports a timeout first
UNREGISTER_WAIT = 2.0
REFRESH_JOIN_WAIT = 5.0  # stop() waits this long for a REGISTER in flight to end


@dataclass
class RegistrationResult:
    """What one registration attempt gave."""

    ok: bool
    expires: int = 0
    error: str | None = None


class Registration:
    """Registers `line` through `ua` and keeps it registered until `stop()`."""

    def __init__(
        self,
        ua: UserAgent,
        line: LineConfig,
        on_state: StateCallback | None = None,
        *,
        backoff_start: float = BACKOFF_START,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        unreachable_probe_seconds: float = UNREACHABLE_PROBE_SECONDS,
    ) -> None:
        self.ua = ua
        self.line = line
        self.on_state = on_state
        self.backoff_start = backoff_start
        self.keepalive_seconds = keepalive_seconds
        self.unreachable_probe_seconds = unreachable_probe_seconds
        self.domain = line.domain or line.registrar.host
        self.target = Target(line.transport, line.registrar.host, line.registrar.port)
        self.call_id = f"{secrets.token_hex(12)}@ringfence"  # random per run (RFC 3261 §10.2)
        self.from_tag = new_tag()
        self.cseq = secrets.randbelow(1000) + 1
        self.state = "unregistered"
        self.last_error: str | None = None
        self.expires = 0
        self.registrations = 0  # successful REGISTERs, for tests
        self.probes = 0  # OPTIONS sent to the registrar, for tests
        self._challenge: Challenge | None = None
        self._challenge_header = "Authorization"
        self._nonce_count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> None:
        """Start registering in the background."""
        self._thread = threading.Thread(target=self._run, name=f"register-{self.line.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, unregister: bool = True) -> None:
        """Stop refreshing; remove our binding (Expires: 0) when registered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REFRESH_JOIN_WAIT)
        if unregister and self.state == "registered":
            # Bounded: a registrar that is gone must not hold up the shutdown for timer F.
            result = self.register_once(expires=0, timeout=UNREGISTER_WAIT)
            log.info("line %s: unregistered (%s)", self.line.name,
                     "ok" if result.ok else result.error)
            self._set_state("unregistered", None)

    def _set_state(self, state: str, error: str | None) -> None:
        if state != self.state or error != self.last_error:
            if error:
                log.warning("line %s: %s -> %s (%s)", self.line.name, self.state, state, error)
            else:
                log.info("line %s: %s -> %s", self.line.name, self.state, state)
        self.state = state
        self.last_error = error
        if self.on_state is not None:
            try:
                self.on_state(self.line.name, state, error)
            except Exception:
                log.exception("line %s: could not record the line state", self.line.name)

    def _run(self) -> None:
        backoff = self.backoff_start
        while not self._stop.is_set():
            if self.state != "registered":
                self._set_state("registering", self.last_error)
            result = self.register_once(expires=self.line.expires)
            if self._stop.is_set():
                return
            if result.ok:
                backoff = self.backoff_start
                self.registrations += 1
                self.expires = result.expires
                self._set_state("registered", None)
                if self._keep_alive_until(self.refresh_delay(result.expires)):
                    continue  # refresh now
                self._wait_for_registrar()
            elif result.error == NO_ANSWER:
                self._wait_for_registrar()
            else:
                self._set_state("failed", result.error)
                # Exponential backoff with jitter, never giving up: the line matters more than
                # the log, and a registrar that was down will come back.
                delay = backoff * random.uniform(0.8, 1.2)
                backoff = min(backoff * 2, BACKOFF_MAX)
                self._stop.wait(delay)

    @staticmethod
    def refresh_delay(expires: int) -> float:
        """When to refresh a binding that lasts `expires` seconds: well before it ends."""
        margin = min(max(expires * 0.15, 2.0), 60.0)
        return max(1.0, expires - margin)

    def _keep_alive_until(self, delay: float) -> bool:
        """Probe the registrar until the refresh is due (True) or it stops answering (False)."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._stop.wait(min(self.keepalive_seconds, remaining)):
                return True
            if deadline - time.monotonic() <= 0:
                return True
            if not self.probe():
                return False
        return True

    def _wait_for_registrar(self) -> None:
        """Mark the line unreachable and ask the registrar until it answers (or we stop)."""
        self._set_state(UNREACHABLE, "the registrar does not answer OPTIONS")
        while not self._stop.wait(self.unreachable_probe_seconds):
            if self.probe():
                log.info("line %s: the registrar answers again; registering", self.line.name)
                return

    def probe(self, timeout: float = PROBE_WAIT) -> bool:
        """Ask the registrar OPTIONS; True if it answered anything at all."""
        self.probes += 1
        aor = f"sip:{self.line.username}@{self.domain}"
        request = SipRequest("OPTIONS", f"sip:{self.domain}")
        request.add("Via", self.ua.via_for(self.target))
        request.add("Max-Forwards", "70")
        request.add("From", f"<{aor}>;tag={new_tag()}")
        request.add("To", f"<sip:{self.domain}>")
        request.add("Call-ID", f"{secrets.token_hex(12)}@ringfence")
        request.add("CSeq", "1 OPTIONS")
        request.add("Contact", self.ua.contact_for_target(self.target))
        if product():
            request.add("User-Agent", product())
        try:
            response = wait_for_final(self.ua.layer, request, self.target, timeout=timeout)
        except OSError as exc:  # no route, connection refused (TCP): not there
            log.debug("line %s: OPTIONS to the registrar failed: %s", self.line.name, exc)
            return False
        return response is not None

    # --- one REGISTER exchange
    def _build(self, expires: int) -> SipRequest:
        self.cseq += 1
        aor = f"sip:{self.line.username}@{self.domain}"
        request = SipRequest("REGISTER", f"sip:{self.domain}")
        request.add("Via", self.ua.via_for(self.target))
        request.add("Max-Forwards", "70")
        request.add("From", f"<{aor}>;tag={self.from_tag}")
        request.add("To", f"<{aor}>")
        request.add("Call-ID", self.call_id)
        request.add("CSeq", f"{self.cseq} REGISTER")
        request.add("Contact", self.ua.contact_for_target(self.target))
        request.add("Expires", str(expires))
        request.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, INFO, UPDATE")
        if product():
            request.add("User-Agent", product())
        if self._challenge is not None:
            self._nonce_count += 1
            request.add(self._challenge_header, authorization(
                self._challenge, method="REGISTER", uri=request.uri,
                username=self.line.auth_username or self.line.username,
                password=self.line.password, nonce_count=self._nonce_count,
            ))
        return request

    def register_once(self, expires: int, timeout: float = REGISTER_WAIT) -> RegistrationResult:
        """One REGISTER, answering challenges (a fresh nonce once, stale ones always)."""
        requested = expires
        refused = 0  # challenges that answered our credentials without saying "stale"
        rounds = 0
        while rounds < MAX_AUTH_ROUNDS + 3:
            rounds += 1
            request = self._build(requested)
            sent_credentials = self._challenge is not None
            response = wait_for_final(self.ua.layer, request, self.target, timeout=timeout)
            if response is None:
                return RegistrationResult(False, error=NO_ANSWER)
            if 200 <= response.status < 300:
                return RegistrationResult(True, self._granted_expires(response, requested))
            if response.status in (401, 407):
                header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
                try:
                    challenge = best_challenge(response.get_all(header))
                except DigestError as exc:
                    self._challenge = None
                    return RegistrationResult(False, error=f"{response.status}: {exc}")
                if sent_credentials and not challenge.stale:
                    # One more try with the new nonce covers a registrar that restarted (its
                    # old nonces are unknown, not stale); twice means the password is wrong.
                    refused += 1
                    if refused >= 2:
                        self._challenge = None
                        return RegistrationResult(
                            False, error=f"{response.status} {response.reason}: "
                                         "credentials refused"
                        )
                self._challenge = challenge
                self._challenge_header = (
                    "Authorization" if response.status == 401 else "Proxy-Authorization"
                )
                self._nonce_count = 0
                continue
            if response.status == 423:
                minimum = (response.get("Min-Expires") or "").strip()
                if minimum.isdigit() and int(minimum) > requested:
                    requested = int(minimum)
                    continue
            return RegistrationResult(False, error=f"{response.status} {response.reason}")
        return RegistrationResult(False, error="too many authentication rounds")

    def _granted_expires(self, response: SipResponse, requested: int) -> int:
        """The lifetime the registrar granted: our Contact's expires, else Expires (RFC 3261
        §10.2.4)."""
        ours = self.ua.contact_for_target(self.target)
        try:
            our_uri = parse_name_addr(ours).parsed_uri()
            for value in response.get_all("Contact"):
                contact = parse_name_addr(value)
                uri = contact.parsed_uri()
                if (uri.host, uri.port, uri.user) == (our_uri.host, our_uri.port, our_uri.user):
                    granted = contact.params.get("expires")
                    if granted and granted.isdigit():
                        return int(granted)
        except SipParseError as exc:
            log.info("line %s: unreadable Contact in 200 OK: %s", self.line.name, exc)
        header = (response.get("Expires") or "").strip()
        if header.isdigit():
            return int(header)
        return requested
