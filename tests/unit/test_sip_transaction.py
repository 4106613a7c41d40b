"""RFC 3261 §17 transactions (`gateway.sip.transaction`) on a recording transport and a manual
clock: what is sent, when it is resent, when the transaction gives up and is forgotten.

`ManualTimers` replaces the timer thread: `advance(seconds)` runs what falls due, in order, at
its own time, so timer G/E doubling and timer H/F expiry are checked to the half second with
no sleeping. Two tests at the end use the real transport and timer thread on loopback.
"""

from __future__ import annotations

import gc
import itertools
import re
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from gateway.sip.transaction import (
    MAGIC_COOKIE,
    T1,
    T2,
    T4,
    ServerTransaction,
    Timers,
    TransactionLayer,
    new_branch,
    new_tag,
    server_key,
    wait_for_final,
)
from gateway.sip.transport import SipTransport, Source, Target
from gateway.sip.ua import make_response
from tests.peers.fakes import ManualTimers

UDP_PEER = Source("udp", "192.0.2.9", 5060)
TCP_PEER = Source("tcp", "192.0.2.9", 5060)
REGISTRAR = Target("udp", "192.0.2.20", 5060)

# Timer G and E: T1, then doubling, capped at T2 — resent at these offsets within 64*T1.
RESEND_OFFSETS = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


@dataclass
class Sent:
    at: float
    data: bytes
    route: Any

    @property
    def message(self) -> SipMessage:
        return parse_message(self.data)

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()


class RecordingTransport:
    """Routes responses back to their source and records every send with the clock's time."""

    def __init__(self, timers: ManualTimers) -> None:
        self.timers = timers
        self.sent: list[Sent] = []
        self.routable = True
        self.on_send: Callable[[bytes, Target], None] | None = None

    def response_route(self, response: SipResponse, source: Source | None = None) -> Any:
        if not self.routable or source is None:
            return None
        return Target(source.transport, source.host, source.port)

    def send_routed(self, data: bytes, route: Any) -> None:
        self.sent.append(Sent(self.timers.now, data, route))

    def send(self, data: bytes, target: Target) -> None:
        self.sent.append(Sent(self.timers.now, data, target))
        if self.on_send is not None:
            self.on_send(data, target)

    @property
    def times(self) -> list[float]:
        return [s.at for s in self.sent]

    @property
    def first_lines(self) -> list[str]:
        return [s.first_line for s in self.sent]


@dataclass
class Layer:
    timers: ManualTimers
    transport: RecordingTransport
    layer: TransactionLayer


@pytest.fixture
def sip() -> Layer:
    timers = ManualTimers()
    transport = RecordingTransport(timers)
    return Layer(timers, transport, TransactionLayer(transport, timers))  # type: ignore[arg-type]


def request(method: str = "INVITE", *, branch: str = "z9hG4bKtest1", cseq: int = 1,
            transport: str = "UDP", call_id: str = "tx-1@192.0.2.9",
            cseq_method: str | None = None) -> SipRequest:
    text = (
        f"{method} sip:ringfence@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.9:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+33612345678@192.0.2.9>;tag=from1\r\n"
        "To: <sip:ringfence@192.0.2.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:caller@192.0.2.9:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def respond(tx: ServerTransaction, status: int, reason: str = "Reason") -> SipResponse:
    assert tx.request is not None
    response = make_response(tx.request, status, reason, to_tag="totag")
    tx.respond(response)
    return response


def response_to(req: SipRequest, status: int, **headers: str) -> SipResponse:
    response = make_response(req, status, "Reason", to_tag="totag")
    for name, value in headers.items():
        response.set(name.replace("_", "-"), value)
    return response


# --------------------------------------------------------------------------- ids


def test_branches_carry_the_magic_cookie_and_are_unique() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(re.fullmatch(MAGIC_COOKIE + "[0-9a-f]{16}", b) for b in branches)
    assert MAGIC_COOKIE == "z9hG4bK"


def test_tags_are_unique_hex_tokens() -> None:
    tags = {new_tag() for _ in range(1000)}
    assert len(tags) == 1000
    assert all(re.fullmatch("[0-9a-f]{12}", t) for t in tags)


def test_an_rfc_2543_request_is_keyed_on_its_dialog_identifiers() -> None:
    old = request("INVITE", branch="1234", cseq=7)
    assert server_key(old) == ("tx-1@192.0.2.9|from1|7", "192.0.2.9:5060", "INVITE")
    assert server_key(request("INVITE", branch="z9hG4bKnew")) == (
        "z9hG4bKnew", "192.0.2.9:5060", "INVITE")


# --------------------------------------------------------------------------- server transactions


def test_a_retransmitted_request_gets_the_last_response_again(sip: Layer) -> None:
    invite = request()
    tx = sip.layer.new_server(invite, UDP_PEER)
    respond(tx, 100, "Trying")
    assert sip.layer.find_server(request()) is tx  # the same request again
    tx.retransmitted()
    assert sip.transport.first_lines == ["SIP/2.0 100 Trying"] * 2
    respond(tx, 180, "Ringing")
    tx.retransmitted()
    assert sip.transport.first_lines[-1] == "SIP/2.0 180 Ringing"
    assert sip.transport.sent[-1].data == sip.transport.sent[-2].data


def test_a_retransmission_before_any_response_sends_nothing(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    tx.retransmitted()
    assert sip.transport.sent == []


def test_responses_go_back_along_the_route_of_the_request(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 100, "Trying")
    assert sip.transport.sent[0].route == Target("udp", "192.0.2.9", 5060)


def test_nothing_is_sent_after_the_final_response(sip: Layer) -> None:
    options = request("OPTIONS")
    tx = sip.layer.new_server(options, UDP_PEER)
    respond(tx, 200, "OK")
    tx.respond(make_response(options, 500, "Late"))
    tx.respond(make_response(options, 180, "Late"))
    assert sip.transport.first_lines == ["SIP/2.0 200 OK"]
    assert tx.last_status == 200


def test_the_parsed_request_is_dropped_once_the_final_response_is_out(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 100, "Trying")
    assert tx.request is not None and not tx.final_sent
    respond(tx, 486, "Busy Here")
    assert tx.request is None and tx.final_sent and tx.response_bytes


def test_ack_and_cancel_find_the_invite_transaction_by_branch(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    assert sip.layer.find_server(request("ACK")) is tx
    assert sip.layer.find_server(request("CANCEL")) is None  # a transaction of its own
    assert sip.layer.find_server(request("ACK", branch="z9hG4bKother")) is None


def test_a_non_2xx_final_to_an_invite_is_resent_doubling_up_to_t2(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 486, "Busy Here")
    sip.timers.advance(64 * T1 - 0.1)
    assert sip.transport.times == [0.0, *RESEND_OFFSETS]
    assert {s.data for s in sip.transport.sent} == {sip.transport.sent[0].data}
    gaps = [b - a for a, b in itertools.pairwise(sip.transport.times)]
    assert gaps[:4] == [T1, 2 * T1, 4 * T1, T2] and max(gaps) == T2


def test_the_ack_stops_the_resending_and_is_reported(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    acks: list[str] = []
    tx.on_ack = lambda: acks.append("ack")
    respond(tx, 603, "Decline")
    sip.timers.advance(1.0)
    found = sip.layer.find_server(request("ACK"))
    assert found is tx
    found.acked()
    sent = len(sip.transport.sent)
    sip.timers.advance(30.0)
    assert len(sip.transport.sent) == sent == 2  # at 0 and 0.5 s only
    assert acks == ["ack"] and tx.confirmed


def test_an_unacked_invite_transaction_is_forgotten_after_64_t1(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 486, "Busy Here")
    sip.timers.advance(64 * T1 - 0.1)
    assert sip.layer.find_server(request()) is tx
    sip.timers.advance(0.2)
    assert sip.layer.find_server(request()) is None


def test_resending_stops_when_timer_h_fires_without_an_ack(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 486, "Busy Here")
    sip.timers.advance(64 * T1 + 0.1)
    sent = len(sip.transport.sent)
    sip.timers.advance(600.0)
    assert len(sip.transport.sent) == sent
    assert sip.timers.pending() == 0


def test_after_the_ack_the_transaction_is_kept_t4_over_udp_then_forgotten(sip: Layer) -> None:
    # Timer I (RFC 3261 §17.2.1): long enough to absorb the ACK's retransmissions, not the
    # 32 s of timer H: a flood of refused calls must not keep every transaction that long.
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 603, "Decline")
    sip.timers.advance(1.0)
    tx.acked()
    sip.timers.advance(T4 - 0.1)
    assert sip.layer.find_server(request("ACK")) is tx
    tx.acked()  # a retransmitted ACK is absorbed and does not restart timer I
    sip.timers.advance(0.2)
    assert sip.layer.find_server(request("ACK")) is None
    assert sip.timers.pending() == 0


def test_over_tcp_an_acked_transaction_is_forgotten_at_once(sip: Layer) -> None:
    tx = sip.layer.new_server(request(transport="TCP"), TCP_PEER)
    respond(tx, 603, "Decline")
    tx.acked()
    assert sip.layer.find_server(request("ACK", transport="TCP")) is None
    assert sip.timers.pending() == 0


def test_over_tcp_a_non_invite_transaction_is_forgotten_at_its_final(sip: Layer) -> None:
    tx = sip.layer.new_server(request("OPTIONS", transport="TCP"), TCP_PEER)
    respond(tx, 200, "OK")  # timer J is zero on a reliable transport
    assert sip.layer.find_server(request("OPTIONS", transport="TCP")) is None
    assert sip.timers.pending() == 0


def test_timer_i_scales_with_t1() -> None:
    timers = ManualTimers()
    layer = TransactionLayer(RecordingTransport(timers), timers, t1=0.05)  # type: ignore[arg-type]
    assert layer.t4 == pytest.approx(T4 * 0.05 / T1)


def test_a_2xx_to_an_invite_is_left_to_the_ua_core(sip: Layer) -> None:
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 200, "OK")
    sip.timers.advance(64 * T1 - 0.1)
    assert sip.transport.times == [0.0]  # the UA core, not the transaction, resends a 200
    tx.retransmitted()  # an INVITE retransmission still gets the 200 again
    assert len(sip.transport.sent) == 2
    sip.timers.advance(0.2)
    assert sip.layer.find_server(request()) is None
    assert sip.timers.pending() == 0


def test_over_tcp_a_final_response_is_not_resent(sip: Layer) -> None:
    tx = sip.layer.new_server(request(transport="TCP"), TCP_PEER)
    respond(tx, 486, "Busy Here")
    sip.timers.advance(64 * T1 - 0.1)
    assert sip.transport.times == [0.0]
    assert sip.transport.sent[0].route == Target("tcp", "192.0.2.9", 5060)
    sip.timers.advance(0.2)
    assert sip.layer.find_server(request(transport="TCP")) is None
    assert sip.timers.pending() == 0


def test_a_non_invite_final_is_resent_only_for_a_retransmission(sip: Layer) -> None:
    tx = sip.layer.new_server(request("OPTIONS"), UDP_PEER)
    respond(tx, 200, "OK")
    sip.timers.advance(10.0)
    assert sip.transport.times == [0.0]
    tx.retransmitted()
    assert sip.transport.times == [0.0, 10.0]
    sip.timers.advance(64 * T1)
    assert sip.layer.find_server(request("OPTIONS")) is None  # timer J
    assert sip.timers.pending() == 0


def test_a_response_that_cannot_be_routed_is_kept_but_not_sent(sip: Layer) -> None:
    sip.transport.routable = False
    tx = sip.layer.new_server(request(), UDP_PEER)
    respond(tx, 486, "Busy Here")
    tx.retransmitted()
    sip.timers.advance(64 * T1 + 1)
    assert sip.transport.sent == []
    assert tx.final_sent


def test_a_newer_transaction_under_the_same_key_is_not_forgotten_by_the_old_ones_timer(
    sip: Layer,
) -> None:
    old = sip.layer.new_server(request("OPTIONS"), UDP_PEER)
    respond(old, 200, "OK")
    new = sip.layer.new_server(request("OPTIONS"), UDP_PEER)
    sip.timers.advance(64 * T1 + 0.1)
    assert sip.layer.find_server(request("OPTIONS")) is new


# --------------------------------------------------------------------------- client transactions


def test_a_request_over_udp_is_resent_doubling_up_to_t2(sip: Layer) -> None:
    finals: list[SipResponse | None] = []
    sip.layer.send_request(request("REGISTER"), REGISTRAR, finals.append)
    sip.timers.advance(64 * T1 - 0.1)
    assert sip.transport.times == [0.0, *RESEND_OFFSETS]
    assert all(s.route == REGISTRAR for s in sip.transport.sent)
    assert finals == []


def test_no_answer_times_out_after_64_t1_and_cleans_up(sip: Layer) -> None:
    finals: list[SipResponse | None] = []
    sip.layer.send_request(request("REGISTER"), REGISTRAR, finals.append)
    sip.timers.advance(64 * T1 - 0.1)
    assert finals == []
    sip.timers.advance(0.1)
    assert finals == [None]  # timer F
    assert sip.layer.client == {} and sip.timers.pending() == 0
    sent = len(sip.transport.sent)
    sip.timers.advance(100.0)
    assert len(sip.transport.sent) == sent and finals == [None]


def test_a_final_response_is_reported_once_and_stops_every_timer(sip: Layer) -> None:
    finals: list[SipResponse | None] = []
    register = request("REGISTER")
    sip.layer.send_request(register, REGISTRAR, finals.append)
    sip.timers.advance(0.6)
    ok = response_to(register, 200)
    tx = sip.layer.match_response(ok)
    assert tx is not None
    tx.received(ok)
    tx.received(ok)  # a retransmitted 200
    assert finals == [ok]
    assert sip.layer.client == {} and sip.timers.pending() == 0
    assert sip.layer.match_response(ok) is None
    sip.timers.advance(100.0)
    assert len(sip.transport.sent) == 2  # at 0 and 0.5 s


def test_a_provisional_response_is_passed_on_and_the_request_still_times_out(
    sip: Layer,
) -> None:
    finals: list[SipResponse | None] = []
    provisionals: list[int] = []
    register = request("REGISTER")
    tx = sip.layer.send_request(register, REGISTRAR, finals.append,
                                lambda r: provisionals.append(r.status))
    tx.received(response_to(register, 100))
    assert provisionals == [100] and finals == []
    sip.timers.advance(64 * T1)
    assert finals == [None]


def test_after_a_provisional_response_the_request_is_resent_every_t2(sip: Layer) -> None:
    register = request("REGISTER")
    tx = sip.layer.send_request(register, REGISTRAR, lambda r: None)
    tx.received(response_to(register, 100))
    sip.timers.advance(3 * T2 + 0.1)
    assert len(sip.transport.sent) >= 1 + 3


def test_over_tcp_a_request_is_not_resent_but_still_times_out(sip: Layer) -> None:
    finals: list[SipResponse | None] = []
    sip.layer.send_request(request("BYE", transport="TCP"), Target("tcp", "192.0.2.9", 5060),
                           finals.append)
    sip.timers.advance(64 * T1)
    assert sip.transport.times == [0.0]
    assert finals == [None]


def test_responses_match_by_branch_and_method(sip: Layer) -> None:
    register = request("REGISTER", branch="z9hG4bKreg")
    tx = sip.layer.send_request(register, REGISTRAR, lambda r: None)
    assert sip.layer.match_response(response_to(register, 401)) is tx
    other_method = response_to(register, 200, CSeq="1 OPTIONS")
    assert sip.layer.match_response(other_method) is None
    other_branch = response_to(request("REGISTER", branch="z9hG4bKelse"), 200)
    assert sip.layer.match_response(other_branch) is None
    broken = response_to(register, 200, CSeq="one REGISTER")
    assert sip.layer.match_response(broken) is None
    no_via = response_to(register, 200)
    no_via.remove("Via")
    assert sip.layer.match_response(no_via) is None


def test_the_same_branch_with_two_methods_is_two_transactions(sip: Layer) -> None:
    invite_like = request("OPTIONS", branch="z9hG4bKsame")
    cancel_like = request("CANCEL", branch="z9hG4bKsame")
    first = sip.layer.send_request(invite_like, REGISTRAR, lambda r: None)
    second = sip.layer.send_request(cancel_like, REGISTRAR, lambda r: None)
    assert sip.layer.match_response(response_to(invite_like, 200)) is first
    assert sip.layer.match_response(response_to(cancel_like, 200)) is second


def test_abandoning_stops_without_calling_back(sip: Layer) -> None:
    finals: list[SipResponse | None] = []
    for n in range(3):
        sip.layer.send_request(request("BYE", branch=f"z9hG4bKbye{n}"), REGISTRAR,
                               finals.append)
    sip.layer.abandon_all()
    sip.timers.advance(100.0)
    assert finals == [] and sip.layer.client == {} and sip.timers.pending() == 0
    assert len(sip.transport.sent) == 3


def test_wait_for_final_returns_the_final_response(sip: Layer) -> None:
    def answer(data: bytes, target: Target) -> None:
        sent = parse_message(data)
        assert isinstance(sent, SipRequest)
        for status in (100, 202):
            response = response_to(sent, status)
            tx = sip.layer.match_response(response)
            assert tx is not None
            tx.received(response)

    sip.transport.on_send = answer
    response = wait_for_final(sip.layer, request("REFER"), REGISTRAR, timeout=5.0)
    assert response is not None and response.status == 202


def test_wait_for_final_gives_up_after_its_timeout(sip: Layer) -> None:
    assert wait_for_final(sip.layer, request("REFER"), REGISTRAR, timeout=0.0) is None
    assert sip.layer.client == {} and sip.timers.pending() == 0


# --------------------------------------------------------------------------- the timer thread


def test_a_failing_timer_callback_does_not_stop_the_timer_thread() -> None:
    timers = Timers()
    try:
        done = threading.Event()

        def boom() -> None:
            raise RuntimeError("callback failure (test)")

        timers.call_later(0.0, boom)
        timers.call_later(0.0, done.set)
        assert done.wait(5)
    finally:
        timers.stop()


def test_a_cancelled_callback_is_let_go_at_once() -> None:
    # The heap keeps a cancelled entry until its time; what the callback holds (a
    # transaction, its bytes) must not wait with it, or a flood piles them up for 32 s.
    class Holder:
        def __call__(self) -> None:
            pass

    timers = Timers()
    try:
        holder = Holder()
        alive = weakref.ref(holder)
        handle = timers.call_later(3600, holder)
        del holder
        assert alive() is not None
        timers.cancel(handle)
        gc.collect()
        assert alive() is None
        assert timers.pending() == 0
    finally:
        timers.stop()


def test_callbacks_pending_at_stop_never_run() -> None:
    timers = Timers()
    ran: list[str] = []
    timers.call_later(3600, lambda: ran.append("late"))
    timers.stop()
    assert ran == [] and timers.pending() == 1


# --------------------------------------------------------------------------- loopback UDP


@pytest.fixture
def loopback() -> Iterator[tuple[TransactionLayer, SipTransport, socket.socket, list[Any]]]:
    """The real transport and timer thread on 127.0.0.1, and a peer socket the test drives."""
    timers = Timers()
    opened: list[Any] = []  # server transactions the handler opened

    def handle(message: SipMessage, source: Source) -> None:
        if isinstance(message, SipResponse):
            client = layer.match_response(message)
            if client is not None:
                client.received(message)
            return
        assert isinstance(message, SipRequest)
        existing = layer.find_server(message)
        if existing is not None:
            existing.retransmitted()
            return
        tx = layer.new_server(message, source)
        opened.append(tx)
        tx.respond(make_response(message, 200, "OK", to_tag="srv"))

    transport = SipTransport("127.0.0.1", 0, handle, tcp=False)
    layer = TransactionLayer(transport, timers)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5.0)
    transport.start()
    try:
        yield layer, transport, peer, opened
    finally:
        peer.close()
        transport.stop()
        timers.stop()


def test_over_loopback_a_retransmitted_request_is_absorbed(
    loopback: tuple[TransactionLayer, SipTransport, socket.socket, list[Any]],
) -> None:
    _layer, transport, peer, opened = loopback
    port = peer.getsockname()[1]
    options = request("OPTIONS", branch="z9hG4bKloop1").to_bytes().replace(
        b"192.0.2.9:5060;branch", f"127.0.0.1:{port};branch".encode())
    replies = []
    for _ in range(2):
        peer.sendto(options, ("127.0.0.1", transport.port))
        replies.append(peer.recv(65536))
    assert replies[0] == replies[1]
    assert replies[0].startswith(b"SIP/2.0 200 OK")
    assert len(opened) == 1


def test_over_loopback_wait_for_final_gets_the_peers_answer(
    loopback: tuple[TransactionLayer, SipTransport, socket.socket, list[Any]],
) -> None:
    layer, transport, peer, _opened = loopback
    port = peer.getsockname()[1]

    def answer() -> None:
        data, addr = peer.recvfrom(65536)
        received = parse_message(data)
        assert isinstance(received, SipRequest)
        peer.sendto(make_response(received, 200, "OK", to_tag="peer").to_bytes(), addr)

    peer_thread = threading.Thread(target=answer)
    peer_thread.start()
    via_request = request("OPTIONS", branch=new_branch())
    via_request.set("Via", f"SIP/2.0/UDP 127.0.0.1:{transport.port};branch={new_branch()}")
    response = wait_for_final(layer, via_request, Target("udp", "127.0.0.1", port), 5.0)
    peer_thread.join(5)
    assert response is not None and response.status == 200
    assert layer.client == {}
