"""The user agent: dispatches requests and responses, owns calls and their dialogs.

One `UserAgent` per listening address (one per line, or the direct listener). It answers at the
SIP level itself (100 Trying at once, CANCEL, BYE, OPTIONS, ACK, 481, retransmissions) on the
receive thread, and hands each new call to `call_handler` on a thread of its own, because what
follows (screening, prompts, recording) may take minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from gateway.sip.dialog import Dialog
from gateway.sip.message import (
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    header_params_text,
    parse_name_addr,
)
from gateway.sip.scanners import SCANNED_METHODS, scanner_signature
from gateway.sip.transaction import (
    T1,
    T2,
    ServerTransaction,
    Timers,
    TransactionLayer,
    new_branch,
    new_tag,
    wait_for_final,
)
from gateway.sip.transport import SipTransport, Source, Target

log = logging.getLogger(__name__)

# The product token in Server and User-Agent: no version, which would only tell a scanner
# which bugs to try. `[gateway] user_agent` replaces it (empty: no such header at all).
USER_AGENT = "Ringfence"
_product = [USER_AGENT]


def set_product(name: str) -> None:
    """Use `name` in the Server and User-Agent headers from now on ("" sends neither)."""
    _product[0] = name


def product() -> str:
    """The current Server / User-Agent value ("" when none is sent)."""
    return _product[0]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, INFO, UPDATE"
REQUEST_TIMEOUT = 40.0  # longer than timer F (32 s): the transaction reports first
BYE_WAIT = 4.0  # a caller that never answers our BYE must not hold a call slot for 32 s


class CallLimiter:
    """A counter of calls in progress shared by every UA, bounded by `max_calls`."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.active = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take a slot, or return False when all are busy."""
        with self._lock:
            if self.active >= self.max_calls:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.active = max(0, self.active - 1)


def make_response(
    request: SipRequest,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response to `request` (RFC 3261 §8.2.6): Via, From, To, Call-ID, CSeq copied."""
    response = SipResponse(status, reason)
    for value in request.get_all("Via"):
        response.add("Via", value)
    response.add("From", request.get("From") or "")
    to = request.get("To") or ""
    if to_tag and status > 100 and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    response.add("To", to)
    response.add("Call-ID", request.call_id)
    response.add("CSeq", request.get("CSeq") or "")
    if request.method == "INVITE" and 100 < status < 300:
        for value in request.get_all("Record-Route"):
            response.add("Record-Route", value)
    if _product[0]:
        response.add("Server", _product[0])
    for name, value in headers:
        response.add(name, value)
    response.body = body
    return response


class Call:
    """One incoming INVITE and, once answered, its dialog; methods are thread-safe."""

    def __init__(self, ua: UserAgent, invite: SipRequest, tx: ServerTransaction) -> None:
        self.ua = ua
        self.invite = invite
        self.tx = tx
        self.call_id = invite.call_id
        self.local_tag = new_tag()
        self.dialog: Dialog | None = None
        self.cancelled = threading.Event()
        self.cancel_reason: str | None = None
        self.remote_hangup = threading.Event()
        self.acked = threading.Event()
        self.ended = threading.Event()
        self.media: MediaCloser | None = None
        # Set once answered: turns a re-INVITE's offer into our answer (None: refuse, 488).
        self.on_reoffer: Callable[[str], str | None] | None = None
        self.local_sdp: bytes = b""
        self._lock = threading.Lock()
        self._retransmit_timer: int | None = None

    # --- state
    @property
    def final_sent(self) -> bool:
        """Whether the INVITE has its final response."""
        return self.tx.final_sent

    @property
    def answered(self) -> bool:
        """Whether we answered with 200 OK."""
        return self.dialog is not None

    def cancelled_by_answer_elsewhere(self) -> bool:
        """Whether the CANCEL said another device took the call (RFC 3326, cause=200)."""
        if not self.cancel_reason:
            return False
        for value in self.cancel_reason.split(","):
            protocol = value.split(";")[0].strip().upper()
            if protocol == "SIP" and header_params_text(value).get("cause") == "200":
                return True
        return False

    # --- final responses
    def reject(
        self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()
    ) -> bool:
        """Send a final non-2xx; False if the INVITE already had one (e.g. it was cancelled)."""
        with self._lock:
            if self.final_sent:
                return False
            response = make_response(
                self.invite, status, reason, to_tag=self.local_tag, headers=headers
            )
            self.tx.respond(response)
        self.ended.set()
        return True

    def redirect(self, contact: str) -> bool:
        """302 Moved Temporarily to `contact`."""
        target = contact if contact.startswith("<") else f"<{contact}>"
        return self.reject(302, "Moved Temporarily", [("Contact", target)])

    def answer(self, sdp: str) -> bool:
        """200 OK with our SDP; retransmitted until the ACK. False if too late (cancelled)."""
        with self._lock:
            if self.final_sent or self.cancelled.is_set():
                return False
            self.dialog = Dialog.from_invite(self.invite, self.local_tag)
            self.local_sdp = sdp.encode("utf-8")
            response = make_response(
                self.invite, 200, "OK", to_tag=self.local_tag,
                headers=[("Contact", self.ua.contact_for(self.tx.source)),
                         ("Allow", ALLOW), ("Content-Type", "application/sdp")],
                body=self.local_sdp,
            )
            self.ua.register_dialog(self)
            self.tx.respond(response)
        if self.tx.source.transport == "udp":
            self._retransmit_ok(response, T1, 0.0)
        return True

    def _retransmit_ok(self, response: SipResponse, interval: float, waited: float) -> None:
        # RFC 3261 §13.3.1.4: the UAS core resends the 2xx until the ACK, for 64*T1.
        def resend() -> None:
            if self.acked.is_set() or self.ended.is_set():
                return
            if waited + interval >= 64 * T1:
                log.warning("call %s: no ACK for our 200 OK; hanging up", self.call_id)
                self.hangup(wait=False)
                return
            self.ua.transport.send_response(response, self.tx.source)
            self._retransmit_ok(response, min(interval * 2, T2), waited + interval)

        self._retransmit_timer = self.ua.timers.call_later(interval, resend)

    # --- in-dialog requests we send
    def _dialog_request(self, method: str) -> tuple[SipRequest, Target]:
        assert self.dialog is not None
        placeholder = "SIP/2.0/UDP 0.0.0.0"
        request, target = self.dialog.request(method, placeholder, self.ua.contact_for(None))
        request.set("Via", self.ua.via_for(target))
        request.set("Contact", self.ua.contact_for_target(target))
        if _product[0]:
            request.add("User-Agent", _product[0])
        return request, target

    def hangup(self, *, wait: bool = True) -> None:
        """Send BYE (answered) or 480 (not yet answered); idempotent."""
        with self._lock:
            if self.ended.is_set():
                return
            self.ended.set()
        if not wait:
            self._close_media_soon()  # from the timer thread or shutdown: do not block there
        elif self.media is not None:
            self.media.close()
        if self.dialog is None:
            self.reject(480, "Temporarily Unavailable")
            return
        if self.remote_hangup.is_set():
            return
        request, target = self._dialog_request("BYE")
        log.info("call %s: sending BYE to %s:%s", self.call_id, target.host, target.port)
        if wait:
            # The transaction keeps retransmitting in the background if this wait gives up.
            answered = threading.Event()
            self.ua.layer.send_request(request, target, lambda _r: answered.set())
            if not answered.wait(BYE_WAIT):
                log.info("call %s: no answer to our BYE yet; moving on", self.call_id)
        else:
            self.ua.layer.send_request(request, target, lambda _r: None)

    def refer(self, refer_to: str) -> bool:
        """Ask the caller to transfer to `refer_to` (RFC 3515); True on 2xx."""
        if self.dialog is None or self.remote_hangup.is_set():
            return False
        request, target = self._dialog_request("REFER")
        target_uri = refer_to if refer_to.startswith("<") else f"<{refer_to}>"
        request.add("Refer-To", target_uri)
        request.add("Referred-By", f"<{parse_name_addr(self.dialog.local_uri).uri}>")
        response = wait_for_final(self.ua.layer, request, target, REQUEST_TIMEOUT)
        accepted = response is not None and 200 <= response.status < 300
        log.info("call %s: REFER to %s -> %s", self.call_id, refer_to,
                 response.status if response else "no answer")
        return accepted

    def wait_ended(self, timeout: float) -> bool:
        """Block until the call ends (CANCEL, BYE, shutdown): True, or False after `timeout`."""
        return self.ended.wait(timeout)

    # --- events from the receive thread
    def on_cancel(self, cancel: SipRequest) -> None:
        """A CANCEL matched our INVITE: 487 it if still open."""
        with self._lock:
            if self.final_sent:
                return  # too late: a CANCEL after the final response changes nothing (§9.2)
            self.cancel_reason = ", ".join(cancel.get_all("Reason")) or None
            self.cancelled.set()
            self.tx.respond(
                make_response(self.invite, 487, "Request Terminated", to_tag=self.local_tag)
            )
        self.ended.set()
        self._close_media_soon()

    def _close_media_soon(self) -> None:
        # Called from the receive thread: closing media joins RTP threads (tens of ms), which
        # would hold up every other SIP message; the call's own thread is woken either way.
        media = self.media
        if media is not None:
            threading.Thread(target=media.close, name="media-close", daemon=True).start()

    def on_ack(self) -> None:
        """The ACK for our 200 OK arrived."""
        self.acked.set()
        self.ua.timers.cancel(self._retransmit_timer)

    def on_bye(self) -> None:
        """The caller hung up."""
        self.remote_hangup.set()
        self.ended.set()
        self.ua.timers.cancel(self._retransmit_timer)
        self._close_media_soon()


class MediaCloser(Protocol):
    """What a Call needs from a media session: a way to stop it when the call ends."""

    def close(self) -> None:
        """Stop media; blocked play/record/wait calls return."""


CallHandler = Callable[[Call], None]


@dataclass
class UaIdentity:
    """How the UA names itself in Contact headers."""

    user: str = "ringfence"
    public_address: str = ""  # overrides the detected local address (NAT)


class UserAgent:
    """SIP on one listening address: transactions, dialogs, calls and outgoing requests."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        call_handler: CallHandler,
        limiter: CallLimiter,
        identity: UaIdentity | None = None,
        timers: Timers | None = None,
        name: str = "direct",
    ) -> None:
        self.name = name
        self.identity = identity or UaIdentity()
        self.call_handler = call_handler
        self.limiter = limiter
        self.transport = SipTransport(host, port, self._on_message)
        self._own_timers = timers is None
        self.timers = timers or Timers()
        self.layer = TransactionLayer(self.transport, self.timers)
        self.calls: dict[tuple[str, str], Call] = {}  # (Call-ID, From tag) of INVITEs
        self.dialogs: dict[tuple[str, str, str], Call] = {}  # (Call-ID, our tag, their tag)
        self.lock = threading.Lock()
        self.threads: set[threading.Thread] = set()
        self.stopping = False
        # Scanner requests dropped, by signature; the first from each address is logged.
        self.scanners: Counter[str] = Counter()
        self._scanner_sources: set[str] = set()

    # --- lifecycle
    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return self.transport.port

    def start(self) -> None:
        """Bind and start receiving (OSError if the address is taken)."""
        self.transport.start()
        log.info("SIP %s listening on %s:%d (udp, tcp)", self.name, self.transport.host, self.port)

    def stop(self, grace: float = 5.0) -> None:
        """End every call (BYE / 480), then close sockets and stop timers."""
        self.stopping = True
        with self.lock:
            calls = list({id(c): c for c in [*self.calls.values(), *self.dialogs.values()]}
                         .values())
        for call in calls:
            try:
                call.hangup(wait=False)
            except Exception:
                log.exception("call %s: error while hanging up at shutdown", call.call_id)
        deadline = time.monotonic() + grace
        for thread in list(self.threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.layer.abandon_all()
        self.transport.stop()
        if self._own_timers:
            self.timers.stop()

    # --- addresses
    def local_host_for(self, host: str) -> str:
        """The address the peer at `host` can reach us on."""
        return self.identity.public_address or self.transport.local_address_towards(host)

    def via_for(self, target: Target) -> str:
        """A Via value for a new request to `target`, with a fresh branch and rport."""
        host = self.local_host_for(target.host)
        shown = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{target.transport.upper()} {shown}:{self.port};branch={new_branch()};rport"

    def contact_for_target(self, target: Target) -> str:
        """Our Contact for requests to `target`."""
        host = self.local_host_for(target.host)
        shown = f"[{host}]" if ":" in host else host
        suffix = ";transport=tcp" if target.transport == "tcp" else ""
        return f"<sip:{self.identity.user}@{shown}:{self.port}{suffix}>"

    def contact_for(self, source: Source | None) -> str:
        """Our Contact in a response to a request from `source`."""
        if source is None:
            return self.contact_for_target(Target("udp", "127.0.0.1", 5060))
        return self.contact_for_target(Target(source.transport, source.host, source.port))

    # --- dispatch
    def _on_message(self, message: SipMessage, source: Source) -> None:
        if isinstance(message, SipResponse):
            self._on_response(message)
        elif isinstance(message, SipRequest):
            self._on_request(message, source)

    def _on_response(self, response: SipResponse) -> None:
        tx = self.layer.match_response(response)
        if tx is not None:
            tx.received(response)
            return
        log.debug("stray response %r", response)

    def _reply(
        self, request: SipRequest, source: Source, status: int, reason: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        tx = self.layer.new_server(request, source)
        tx.respond(make_response(request, status, reason, to_tag=new_tag(), headers=headers))

    def _on_request(self, request: SipRequest, source: Source) -> None:
        method = request.method.upper()
        if method == "ACK":
            self._on_ack(request)
            return
        if method in SCANNED_METHODS:
            signature = scanner_signature(request)
            if signature is not None:
                self._drop_scanner(signature, source)
                return
        existing = self.layer.find_server(request)
        if existing is not None:
            existing.retransmitted()  # a retransmission: the last response again, nothing more
            return
        if method == "CANCEL":
            self._on_cancel(request, source)
            return
        if request.to().tag:
            self._on_in_dialog(request, source)
            return
        if method == "INVITE":
            self._on_invite(request, source)
        elif method == "OPTIONS":
            self._reply(request, source, 200, "OK", [
                ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", ""),
            ])
        elif method in ("BYE", "NOTIFY", "INFO", "UPDATE", "PRACK"):
            self._reply(request, source, 481, "Call/Transaction Does Not Exist")
        else:
            self._reply(request, source, 405, "Method Not Allowed", [("Allow", ALLOW)])

    def _drop_scanner(self, signature: str, source: Source) -> None:
        # No response at all: a scanner learns nothing, not even that a device is here, and
        # no transaction, call, row or RTP is ever made for it.
        self.scanners[signature] += 1
        if source.host not in self._scanner_sources and len(self._scanner_sources) < 1000:
            self._scanner_sources.add(source.host)
            log.warning("SIP scanner at %s:%s (%s): dropping its requests", source.host,
                        source.port, signature)
        else:
            log.debug("SIP scanner request from %s:%s dropped (%s)", source.host, source.port,
                      signature)

    def _on_invite(self, invite: SipRequest, source: Source) -> None:
        from_tag = invite.from_().tag or ""
        key = (invite.call_id, from_tag)
        tx = self.layer.new_server(invite, source)
        with self.lock:
            earlier = self.calls.get(key)
        if earlier is not None and not earlier.ended.is_set():
            # Same Call-ID and From tag on a new branch: the same call reached us twice through
            # a forking proxy (RFC 3261 §8.2.2.2). The first copy is being handled; this one
            # gets 482 so the proxy stops waiting for it.
            log.info("call %s: forked INVITE on a second branch -> 482", invite.call_id)
            tx.respond(make_response(invite, 482, "Loop Detected", to_tag=new_tag()))
            return
        try:
            Dialog.from_invite(invite, "check")  # Contact and Record-Route must be usable
        except SipParseError as exc:
            log.info("call %s: refusing INVITE from %s:%s: %s", invite.call_id, source.host,
                     source.port, exc)
            tx.respond(make_response(invite, 400, "Bad Request", to_tag=new_tag(),
                                     headers=[("Warning", '399 ringfence "unusable address"')]))
            return
        tx.respond(make_response(invite, 100, "Trying"))
        if self.stopping or not self.limiter.try_acquire():
            log.warning("call %s: %d calls already in progress -> 486", invite.call_id,
                        self.limiter.max_calls)
            tx.respond(make_response(invite, 486, "Busy Here", to_tag=new_tag()))
            return
        call = Call(self, invite, tx)
        tx.on_ack = None
        with self.lock:
            self.calls[key] = call
        thread = threading.Thread(
            target=self._run_call, args=(call, key), name=f"call-{invite.call_id[:12]}",
            daemon=True,
        )
        self.threads.add(thread)
        thread.start()

    def _run_call(self, call: Call, key: tuple[str, str]) -> None:
        try:
            self.call_handler(call)
        except Exception:
            log.exception("call %s: handler failed; failing open", call.call_id)
        finally:
            if not call.final_sent and not call.cancelled.is_set():
                # Whatever happened, never leave the caller's INVITE hanging.
                call.reject(480, "Temporarily Unavailable")
            self.limiter.release()
            with self.lock:
                if self.calls.get(key) is call:
                    del self.calls[key]
            self.threads.discard(threading.current_thread())
            # Keep the dialog a little longer so late BYE/ACK retransmissions still match.
            if call.dialog is not None:
                self.timers.call_later(64 * T1, lambda: self.forget_dialog(call))

    def _on_cancel(self, cancel: SipRequest, source: Source) -> None:
        invite_key = (cancel.call_id, cancel.from_().tag or "")
        with self.lock:
            call = self.calls.get(invite_key)
        tx = self.layer.new_server(cancel, source)
        try:
            same_branch = call is not None and call.tx.key[0] == cancel.top_via().branch
        except SipParseError:
            same_branch = False
        if call is None or not same_branch:
            tx.respond(make_response(cancel, 481, "Call/Transaction Does Not Exist",
                                     to_tag=new_tag()))
            return
        # RFC 3261 §9.2: 200 to the CANCEL, then 487 to the INVITE if it is still open.
        tx.respond(make_response(cancel, 200, "OK", to_tag=call.local_tag))
        log.info("call %s: cancelled by the caller (%s)", call.call_id,
                 cancel.get("Reason") or "no reason")
        call.on_cancel(cancel)

    def _on_ack(self, ack: SipRequest) -> None:
        to_tag = ack.to().tag or ""
        with self.lock:
            call = self.dialogs.get((ack.call_id, to_tag, ack.from_().tag or ""))
        if call is not None:
            call.on_ack()
            return
        tx = self.layer.find_server(ack)
        if tx is not None:
            tx.acked()

    def _on_in_dialog(self, request: SipRequest, source: Source) -> None:
        key = (request.call_id, request.to().tag or "", request.from_().tag or "")
        with self.lock:
            call = self.dialogs.get(key)
        if call is None:
            self._reply(request, source, 481, "Call/Transaction Does Not Exist")
            return
        tx = self.layer.new_server(request, source)
        method = request.method.upper()
        ok = make_response(request, 200, "OK", to_tag=call.local_tag)
        if method == "BYE":
            tx.respond(ok)
            log.info("call %s: caller hung up", call.call_id)
            call.on_bye()
        elif method == "REFER":
            # Ringfence never transfers on the caller's say-so: a 200 would promise to call
            # any number the caller names (toll fraud); it only sends REFER itself.
            log.info("call %s: refusing a REFER from the caller", call.call_id)
            tx.respond(make_response(request, 405, "Method Not Allowed", to_tag=call.local_tag,
                                     headers=[("Allow", ALLOW)]))
        elif method in ("INVITE", "UPDATE") and request.body:
            # A re-offer (hold, resume, a new address): let the media follow it if it can.
            answer = call.local_sdp
            if call.on_reoffer is not None:
                try:
                    text = call.on_reoffer(request.body_text())
                except Exception:
                    log.exception("call %s: error applying a re-offer", call.call_id)
                    text = None
                if text is None:
                    tx.respond(make_response(request, 488, "Not Acceptable Here",
                                             to_tag=call.local_tag))
                    return
                answer = text.encode("utf-8")
                call.local_sdp = answer
            ok.add("Contact", self.contact_for(source))
            ok.add("Content-Type", "application/sdp")
            ok.body = answer
            tx.respond(ok)
        else:
            if method == "INVITE":
                ok.add("Contact", self.contact_for(source))
            tx.respond(ok)

    # --- dialogs
    def register_dialog(self, call: Call) -> None:
        """Make in-dialog requests (ACK, BYE) find `call`."""
        assert call.dialog is not None
        with self.lock:
            self.dialogs[(call.call_id, call.dialog.local_tag, call.dialog.remote_tag)] = call

    def forget_dialog(self, call: Call) -> None:
        """Stop matching in-dialog requests to `call`."""
        if call.dialog is None:
            return
        with self.lock:
            self.dialogs.pop((call.call_id, call.dialog.local_tag, call.dialog.remote_tag), None)

