"""The user agent: dispatches requests and responses, owns calls and their dialogs.

One `UserAgent` per listening address (one per line, or the direct listener). It answers at the
SIP level itself (100 Trying at once, CANCEL, BYE, OPTIONS, ACK, 481, retransmissions, 4xx/5xx
for what it cannot take) on the receive thread, and hands each new call to `call_handler` on the
shared `WorkerPool`. The receive thread never waits for a worker: when the pool's queue is full
the call is shed at once (503, counted). A call's end (CANCEL, BYE, a final response, our
hang-up) is an event: `Call.when_ended` callbacks run then, so a ringing call holds no thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections import Counter, OrderedDict
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
from gateway.sip.text import IncomingText, TextRefused, read_text
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
from gateway.sip.transport import SipTransport, Source, Target, TcpConnection
from gateway.sip.workers import Flag, LoadCounters, Occasional, WorkerPool

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

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, INFO, UPDATE, MESSAGE"
# Methods registered with IANA: one of these we do not take gets 405, anything else 501
# (RFC 3261 §8.2.1).
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})
SUPPORTED_OPTIONS: frozenset[str] = frozenset()  # option tags we implement (Require/Supported)
REQUEST_TIMEOUT = 40.0  # longer than timer F (32 s): the transaction reports first
BYE_WAIT = 4.0  # a caller that never answers our BYE must not hold a call slot for 32 s
SHED_RETRY_AFTER = 5  # seconds, in the 503 of a call shed by a full work queue
REASONS = {400: "Bad Request", 416: "Unsupported URI Scheme", 505: "Version Not Supported"}


def _warning_text(text: str) -> str:
    """A parse error as a Warning header's quoted text: printable ASCII, no quotes, short."""
    return re.sub(r'[^ -~]|["\\]', "?", text)[:120]


def reason_causes(text: str | None) -> list[tuple[str, int]]:
    """(protocol, cause) of each value of Reason headers (RFC 3326), e.g. ("SIP", 603) or
    ("Q.850", 16); values without a numeric cause are left out."""
    causes: list[tuple[str, int]] = []
    for value in (text or "").split(","):
        protocol = value.split(";")[0].strip().upper()
        cause = header_params_text(value).get("cause") or ""
        if protocol and cause.isdigit() and len(cause) <= 4:
            causes.append((protocol, int(cause)))
    return causes


def unsupported_options(request: SipRequest) -> list[str]:
    """Option tags in Require that we do not implement (RFC 3261 §8.2.2.3)."""
    tags = [tag.strip() for tag in request.get_all("Require") if tag.strip()]
    return [tag for tag in dict.fromkeys(tags) if tag.lower() not in SUPPORTED_OPTIONS]


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
        self.cancelled = Flag()
        self.cancel_reason: str | None = None
        self.remote_hangup = Flag()
        self.acked = Flag()
        self.ended = Flag()
        # What ended the call: "final" (our non-2xx), "cancel", "bye", "hangup" or the `why`
        # given to reject() (e.g. "timeout"); "" while it goes on.
        self.ended_by = ""
        self.media: MediaCloser | None = None
        # Set once answered: turns a re-INVITE's offer into our answer (None: refuse, 488).
        self.on_reoffer: Callable[[str], str | None] | None = None
        self.local_sdp: bytes = b""
        # Option tags the INVITE requires and we lack: the call flow decides what to answer.
        self.unsupported: list[str] = unsupported_options(invite)
        self._lock = threading.Lock()
        self._retransmit_timer: int | None = None
        self._settled = Flag()  # the ACK came or the call ended
        self._on_end: list[Callable[[], None]] = []

    # --- the end of a call, as an event
    def when_ended(self, callback: Callable[[], None]) -> None:
        """Run `callback` once when the call ends (at once if it has); keep it short: it runs
        on whatever thread ends the call (receive, timers, shutdown)."""
        with self._lock:
            if not self.ended.is_set():
                self._on_end.append(callback)
                return
        callback()

    def _end(self, by: str) -> bool:
        """Mark the call ended and run the callbacks once; False if it had ended already."""
        with self._lock:
            if self.ended.is_set():
                return False
            self.ended_by = by
            self.ended.set()
            callbacks, self._on_end = self._on_end, []
        self._settled.set()
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("call %s: error in an end-of-call callback", self.call_id)
        return True

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
        return ("SIP", 200) in reason_causes(self.cancel_reason)

    # --- final responses
    def reject(
        self, status: int, reason: str, headers: Iterable[tuple[str, str]] = (), *,
        why: str = "final",
    ) -> bool:
        """Send a final non-2xx; False if the INVITE already had one (e.g. it was cancelled).

        `why` is what `ended_by` says afterwards, for whoever logs the call.
        """
        with self._lock:
            if self.final_sent:
                return False
            response = make_response(
                self.invite, status, reason, to_tag=self.local_tag, headers=headers
            )
            self.tx.respond(response)
        self._end(why)
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
        t1 = self.ua.layer.t1
        if self.tx.source.transport == "udp":
            self._retransmit_ok(response, t1, 0.0)
        else:  # reliable: nothing to resend, but an ACK that never comes still ends the call
            self._retransmit_timer = self.ua.timers.call_later(64 * t1, self._no_ack)
        return True

    def _retransmit_ok(self, response: SipResponse, interval: float, waited: float) -> None:
        # RFC 3261 §13.3.1.4: the UAS core resends the 2xx until the ACK, for 64*T1.
        def resend() -> None:
            if self.acked.is_set() or self.ended.is_set():
                return
            if waited + interval >= 64 * self.ua.layer.t1:
                self._no_ack()
                return
            self.ua.transport.send_response(response, self.tx.source)
            self._retransmit_ok(response, min(interval * 2, self.ua.layer.t2), waited + interval)

        self._retransmit_timer = self.ua.timers.call_later(interval, resend)

    def _no_ack(self) -> None:
        if self.acked.is_set() or self.ended.is_set():
            return
        # The dialog never got confirmed: nobody may have asked for this call, so no media
        # went out (see wait_confirmed); end it and free its media slot.
        log.warning("call %s: no ACK for our 200 OK within 64*T1; hanging up", self.call_id)
        self.hangup(wait=False)

    def wait_confirmed(self, timeout: float) -> bool:
        """Block until the ACK for our 200 OK (True) or the call's end / `timeout` (False).

        Media waits for this: a 200 OK to a forged INVITE must not make us stream RTP to
        whatever address its SDP names (a reflection attack), and the ACK is the caller's
        proof that it asked for the call.
        """
        self._settled.wait(timeout)
        return self.acked.is_set()  # an ACK followed at once by a BYE still confirmed it

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
        if self.dialog is None:
            with self._lock:
                if self.ended.is_set():
                    return
                if not self.final_sent:  # the 480 first: end-of-call callbacks may log it
                    self.tx.respond(make_response(self.invite, 480, "Temporarily Unavailable",
                                                  to_tag=self.local_tag))
        if not self._end("hangup"):
            return
        if not wait:
            self._close_media_soon()  # from the timer thread or shutdown: do not block there
        elif self.media is not None:
            self.media.close()
        if self.dialog is None or self.remote_hangup.is_set():
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
        self._end("cancel")
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
        self._settled.set()
        self.ua.timers.cancel(self._retransmit_timer)

    def on_bye(self) -> None:
        """The caller hung up."""
        self.remote_hangup.set()
        self.ua.timers.cancel(self._retransmit_timer)
        self._end("bye")
        self._close_media_soon()


class MediaCloser(Protocol):
    """What a Call needs from a media session: a way to stop it when the call ends."""

    def close(self) -> None:
        """Stop media; blocked play/record/wait calls return."""


CallHandler = Callable[[Call], None]


class TextMessage:
    """One MESSAGE outside a dialog (RFC 3428), its decoded body, and how to answer it once."""

    def __init__(self, request: SipRequest, tx: ServerTransaction, body: IncomingText) -> None:
        self.request = request
        self.tx = tx
        self.body = body
        self.call_id = request.call_id
        self._lock = threading.Lock()
        self.status: int | None = None  # what it was answered, once it is

    def answer(self, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> bool:
        """Send the final response (202 Accepted, a refusal); False if it had one already."""
        with self._lock:
            if self.status is not None:
                return False
            self.status = status
            self.tx.respond(make_response(self.request, status, reason, to_tag=new_tag(),
                                          headers=headers))
        return True


TextHandler = Callable[[TextMessage], None]


@dataclass(frozen=True)
class Refusal:
    """A final answer the call layer gives a new INVITE on the receive thread, with no call,
    transaction or worker (a repeat of a refusal it just decided); `sent` runs once it is out."""

    status: int
    reason: str
    sent: Callable[[], None]


QuickRefusal = Callable[[SipRequest, Source], "Refusal | None"]
STATELESS_TAG = "sl"
"""The To tag of a stateless answer starts so (never in a random hex tag): its ACK is dropped
unread."""
STATELESS_REMEMBERED = 8192
"""Stateless answers remembered, so that an INVITE retransmitted before our answer reached its
sender gets the same answer without being logged twice (seconds of a flood at 1,000/s)."""
STATELESS_DIGEST_BYTES = 6
_STATELESS_TAG_BYTES = b"tag=" + STATELESS_TAG.encode()
# The first To line of a message (or its compact form t:); ASCII case-insensitive, as header
# names are (RFC 3261 §7.3.1).
_TO_LINE = re.compile(rb"\r?\n(?:to|t)[ \t]*:([^\r\n]*)", re.IGNORECASE)
# Our own spelling only (what we sent, echoed): any other is left to the parser.
_STATELESS_TO_TAG = re.compile(
    _STATELESS_TAG_BYTES.replace(b"tag=", b";tag=(") + rb"[0-9a-f]{%d})[ \t]*(?:;|$)"
    % (2 * STATELESS_DIGEST_BYTES))


def stateless_ack_tag(data: bytes) -> str | None:
    """The To tag of an ACK to one of our stateless answers, read from its raw bytes; None
    for anything else, which is parsed as usual.

    A flood of refused calls is half ACKs of our 603s, and parsing each was a sixth of the
    receive thread's work for what is dropped anyway. Only the exact shape counts: the
    method "ACK", and a To line with one tag parameter, spelt as we send it, after the
    name-addr's '>' (where a display name or URI parameter cannot pose as one), that is a
    stateless tag: only our stateless answers give such tags (hex tags never start "sl").
    """
    if not data.startswith(b"ACK ") or _STATELESS_TAG_BYTES not in data:
        return None
    line = _TO_LINE.search(data)
    if line is None:
        return None
    value = line.group(1)
    if b"<" in value:
        value = value.rpartition(b">")[2]
    elif b'"' in value:
        return None  # a quoted name without <...> is malformed: let the parser say so
    if value.lower().count(b"tag") != 1:
        return None  # two tags, or "tag" in another parameter: which one counts is the parser's
    tag = _STATELESS_TO_TAG.search(value)
    return tag.group(1).decode("ascii") if tag is not None else None


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
        work: WorkerPool,
        counters: LoadCounters | None = None,
        identity: UaIdentity | None = None,
        timers: Timers | None = None,
        name: str = "direct",
        t1: float = T1,
        text_handler: TextHandler | None = None,
        quick_refusal: QuickRefusal | None = None,
    ) -> None:
        self.name = name
        self.quick_refusal = quick_refusal
        self.identity = identity or UaIdentity()
        self.call_handler = call_handler
        self.text_handler = text_handler
        self.work = work
        self.counters = counters or LoadCounters()
        self.transport = SipTransport(host, port, self._on_message)
        self.transport.on_bad_request = self._on_bad_request
        self._own_timers = timers is None
        self.timers = timers or Timers()
        self.layer = TransactionLayer(self.transport, self.timers, t1=t1, t2=max(T2, t1))
        self.calls: dict[tuple[str, str], Call] = {}  # (Call-ID, From tag) of INVITEs
        self.dialogs: dict[tuple[str, str, str], Call] = {}  # (Call-ID, our tag, their tag)
        self.lock = threading.Lock()
        self.stopping = False
        self._shed_warning = Occasional()
        # Scanner requests dropped, by signature; the first from each address is logged.
        self.scanners: Counter[str] = Counter()
        self._scanner_sources: set[str] = set()
        # (Call-ID, From tag) of INVITEs answered statelessly -> (branch, status, reason,
        # To tag), and each To tag's (Call-ID, From tag): the ACK is matched by its tag alone.
        self._stateless: OrderedDict[tuple[str, str], tuple[str, int, str, str]] = OrderedDict()
        self._stateless_tags: dict[str, tuple[str, str]] = {}
        self._stateless_secret = os.urandom(16)

    # --- lifecycle
    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return self.transport.port

    def start(self) -> None:
        """Bind and start receiving (OSError if the address is taken)."""
        self.transport.idle_listener = self.work
        self.transport.drop_unread = self._stateless_acked
        self.transport.start()
        if self.transport.udp_thread is not None:
            self.work.defer_wakes_on(self.transport.udp_thread)
        log.info("SIP %s listening on %s:%d (udp, tcp)", self.name, self.transport.host, self.port)

    def end_calls(self) -> None:
        """Refuse new calls (503) and end every call in progress (BYE / 480)."""
        self.stopping = True
        with self.lock:
            calls = list({id(c): c for c in [*self.calls.values(), *self.dialogs.values()]}
                         .values())
        for call in calls:
            try:
                call.hangup(wait=False)
            except Exception:
                log.exception("call %s: error while hanging up at shutdown", call.call_id)

    def close(self) -> None:
        """Stop client transactions, close sockets and stop our own timers."""
        self.layer.abandon_all()
        self.transport.stop()
        if self._own_timers:
            self.timers.stop()

    def stop(self) -> None:
        """End every call and close (whoever owns the worker pool stops it in between)."""
        self.end_calls()
        self.close()

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

    def _on_bad_request(self, error: SipParseError, source: Source) -> None:
        """Answer a request the parser refused (400, 416, 505) along its Via, or to where it
        came from when even the Via is unreadable; statelessly: one answer per copy."""
        request = error.request
        if request is None or request.method.upper() == "ACK" or not request.get_all("Via"):
            return  # an ACK is never answered (RFC 3261 §17.2.1); without Via none can match
        reason = REASONS.get(error.status, "Bad Request")
        headers = [("Warning", f'399 ringfence "{_warning_text(str(error))}"')]
        if error.status == 505:
            headers = []
        response = make_response(request, error.status, reason, to_tag=new_tag(),
                                 headers=headers)
        route: TcpConnection | Target | None = None
        with contextlib.suppress(SipParseError):
            request.top_via()
            route = self.transport.response_route(response, source)
        if route is None and source.connection is None:
            route = Target("udp", source.host, source.port)
        elif route is None:
            route = source.connection
        if route is not None:
            self.transport.send_routed(response.to_bytes(), route)

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
        if method not in KNOWN_METHODS:
            self._reply(request, source, 501, "Not Implemented", [("Allow", ALLOW)])
            return
        unsupported = unsupported_options(request)
        if unsupported and (method != "INVITE" or request.to().tag):
            # RFC 3261 §8.2.2.3. An INVITE is screened first: a stranger must not be able to
            # turn a rejection into a ring by requiring an extension (see the call flow).
            self._reply(request, source, 420, "Bad Extension",
                        [("Unsupported", ", ".join(unsupported))])
            return
        if request.to().tag:
            self._on_in_dialog(request, source)
            return
        if method == "INVITE":
            self._on_invite(request, source)
        elif method == "OPTIONS":
            self._reply(request, source, 200, "OK", [
                ("Allow", ALLOW), ("Accept", "application/sdp"),
                ("Supported", ", ".join(sorted(SUPPORTED_OPTIONS))),
            ])
        elif method in ("BYE", "NOTIFY", "INFO", "UPDATE", "PRACK"):
            self._reply(request, source, 481, "Call/Transaction Does Not Exist")
        elif method == "MESSAGE" and self.text_handler is not None:
            self._on_text(request, source)
        else:
            self._reply(request, source, 405, "Method Not Allowed", [("Allow", ALLOW)])

    def _on_text(self, request: SipRequest, source: Source) -> None:
        """A MESSAGE outside a dialog: refuse what we cannot take at once (size, media type),
        hand the rest to a worker (screening reads the database), shed with 503 if none."""
        try:
            body = read_text(request)
        except TextRefused as refused:
            log.info("text %s from %s:%s refused %d: %s", request.call_id, source.host,
                     source.port, refused.status, refused)
            self._reply(request, source, refused.status, refused.reason, refused.headers)
            return
        if self.stopping:
            self._reply(request, source, 503, "Service Unavailable",
                        [("Retry-After", str(SHED_RETRY_AFTER))])
            return
        self.counters.add("texts")
        text = TextMessage(request, self.layer.new_server(request, source), body)
        handler = self.text_handler
        assert handler is not None

        def run() -> None:
            try:
                handler(text)
            except Exception:
                log.exception("text %s: handler failed", text.call_id)
                # 500 with Retry-After: the sender keeps the text and tries again (RFC 3428
                # §7), so nothing is lost to a bug here.
                text.answer(500, "Server Internal Error", [("Retry-After", "60")])

        if not self.work.offer(run):
            self.counters.add("shed")
            self._shed_warning.warn(log, "text %s: work queue full; shed with 503",
                                    request.call_id)
            text.answer(503, "Service Unavailable", [("Retry-After", str(SHED_RETRY_AFTER))])

    def _drop_scanner(self, signature: str, source: Source) -> None:
        # No response at all: a scanner learns nothing, not even that a device is here, and
        # no transaction, call, row or RTP is ever made for it.
        self.scanners[signature] += 1
        self.counters.add("scanners_dropped")
        if source.host not in self._scanner_sources and len(self._scanner_sources) < 1000:
            self._scanner_sources.add(source.host)
            log.warning("SIP scanner at %s:%s (%s): dropping its requests", source.host,
                        source.port, signature)
        else:
            log.debug("SIP scanner request from %s:%s dropped (%s)", source.host, source.port,
                      signature)

    def _refuse_statelessly(self, invite: SipRequest, source: Source) -> bool:
        """Answer a repeat (or its retransmission) from `quick_refusal`, statelessly (RFC 3261
        §8.2.7); False: the INVITE goes the usual way."""
        try:
            key = (invite.call_id, invite.from_().tag or "", invite.top_via().branch or "")
        except SipParseError:
            return False
        with self.lock:
            answered = self._stateless.get(key[:2])
        if answered is not None:
            branch, status, reason, tag = answered
            if branch != key[2]:  # the same call on a second branch of a fork (see below)
                status, reason, tag = 482, "Loop Detected", self._stateless_tag(key)
            # Else its sender has not had our answer yet: the same answer again, unlogged.
            self._send_stateless(invite, source, tag, status, reason)
            return True
        if self.quick_refusal is None or self.stopping:
            return False
        refusal = self.quick_refusal(invite, source)
        if refusal is None:
            return False
        tag = self._stateless_tag(key)
        with self.lock:
            self._stateless[key[:2]] = (key[2], refusal.status, refusal.reason, tag)
            self._stateless_tags[tag] = key[:2]
            if len(self._stateless) > STATELESS_REMEMBERED:
                self._stateless_tags.pop(self._stateless.popitem(last=False)[1][3], None)
        self.counters.add("invites")
        self._send_stateless(invite, source, tag, refusal.status, refusal.reason)
        try:
            refusal.sent()
        except Exception:
            log.exception("call %s: error after a repeated refusal", invite.call_id)
        return True

    def _stateless_tag(self, key: tuple[str, str, str]) -> str:
        """The To tag of a stateless answer to the INVITE with `key` (Call-ID, From tag,
        branch)."""
        # The same tag for the same request, from the request alone (§8.2.7), so that a
        # retransmission answered after we forgot it still gets an answer its sender matches.
        digest = hashlib.blake2s("\x00".join(key).encode(errors="surrogateescape"),
                                 key=self._stateless_secret,
                                 digest_size=STATELESS_DIGEST_BYTES).hexdigest()
        return STATELESS_TAG + digest

    def _send_stateless(self, invite: SipRequest, source: Source, tag: str,
                        status: int, reason: str) -> None:
        response = make_response(invite, status, reason, to_tag=tag)
        route = self.transport.response_route(response, source)
        if route is not None:
            self.transport.send_routed(response.to_bytes(), route)

    def _stateless_acked(self, data: bytes) -> bool:
        """Whether `data` is the ACK of a stateless answer (`stateless_ack_tag`): forget the
        answer and drop the ACK unparsed; False: parse it as usual."""
        tag = stateless_ack_tag(data)
        if tag is None:
            return False
        self._forget_stateless_tag(tag)
        return True

    def _forget_stateless_tag(self, tag: str) -> None:
        with self.lock:
            key = self._stateless_tags.pop(tag, None)
            if key is not None:
                self._stateless.pop(key, None)

    def _on_invite(self, invite: SipRequest, source: Source) -> None:
        if (self._stateless or self.quick_refusal is not None) and self._refuse_statelessly(
                invite, source):
            return
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
        if self.stopping:
            tx.respond(make_response(invite, 503, "Service Unavailable", to_tag=new_tag(),
                                     headers=[("Retry-After", str(SHED_RETRY_AFTER))]))
            return
        self.counters.add("invites")
        call = Call(self, invite, tx)
        tx.on_ack = None
        with self.lock:
            self.calls[key] = call
        call.when_ended(lambda: self._call_ended(call, key))
        if not self.work.offer(lambda: self._run_call(call)):
            # Every worker busy and the queue full: this caller cannot be screened now. A 503
            # says "not now" without ending the owner's branch in a fork (a 6xx would let a
            # flood block every call); counted, and logged now and then, never per call.
            self.counters.add("shed")
            self._shed_warning.warn(log, "call %s: work queue full; shed with 503, not screened "
                                    "(%d shed in all)", invite.call_id, self.counters.get("shed"))
            call.reject(503, "Service Unavailable",
                        [("Retry-After", str(SHED_RETRY_AFTER))], why="shed")

    def _run_call(self, call: Call) -> None:
        """On a worker: the call flow; it returns once the call needs no worker any more."""
        try:
            self.call_handler(call)
        except Exception:
            log.exception("call %s: handler failed; failing open", call.call_id)
            if not call.final_sent and not call.cancelled.is_set():
                # Never leave the INVITE hanging: a 4xx leaves the fork, the owner's phone rings.
                call.reject(480, "Temporarily Unavailable", why="failed")

    def _call_ended(self, call: Call, key: tuple[str, str]) -> None:
        """The call is over (any thread): stop matching CANCELs to it, drop its dialog later."""
        with self.lock:
            if self.calls.get(key) is call:
                del self.calls[key]
        if call.dialog is not None:
            # Kept a little longer so late BYE/ACK retransmissions still match.
            self.timers.call_later(64 * self.layer.t1, lambda: self.forget_dialog(call))

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
        # A proxy's CANCEL says why in Reason (RFC 3326): another phone answered (cause=200)
        # or declined (a 6xx); none means the caller hung up, or a proxy gave up waiting.
        # DEBUG: the call's outcome line says it in words, within the per-call line budget
        # (an INFO line here was a third line per call of a ring + CANCEL flood).
        log.debug("call %s: cancelled (%s)", call.call_id,
                 ", ".join(cancel.get_all("Reason"))
                 or "no Reason: the caller hung up, or a proxy gave up")
        call.on_cancel(cancel)

    def _on_ack(self, ack: SipRequest) -> None:
        to_tag = ack.to().tag or ""
        if to_tag.startswith(STATELESS_TAG):  # the ACK of a stateless answer: nothing to do
            # (One the raw check let through, e.g. with a folded To line.)
            self._forget_stateless_tag(to_tag)
            return
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
        if request.method.upper() not in ("BYE", "INVITE", "UPDATE", "INFO", "NOTIFY",
                                          "OPTIONS", "REFER"):
            tx.respond(make_response(request, 405, "Method Not Allowed", to_tag=call.local_tag,
                                     headers=[("Allow", ALLOW)]))
            return
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

