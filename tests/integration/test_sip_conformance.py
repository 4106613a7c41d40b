"""SIP conformance on the wire (issue 10, item 6), with raw UDP/TCP peers: timer H, Content-Length,
Require/420, 505/416/501, the RFC 4475 torture messages, no RTP before the ACK, TCP limits."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.call.process import Gateway
from gateway.config import HostPort
from gateway.screening.rules import Action, ActionKind
from gateway.sip import transaction, transport
from gateway.sip.message import SipRequest, SipResponse
from tests.peers import free_port, wait_until
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import SDP_OFFER, RawPeer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rfc4475"
SMALL_T1 = 0.05  # every SIP timer scales with T1: timer H = 64*T1 = 3.2 s


@pytest.fixture
def peers() -> Iterator[list[RawPeer]]:
    made: list[RawPeer] = []
    yield made
    for peer in made:
        peer.close()


def peer_of(gateway: Gateway, peers: list[RawPeer], transport_name: str = "udp",
            **options: object) -> RawPeer:
    peer = RawPeer(gateway.uas[0].port, transport_name, **options)  # type: ignore[arg-type]
    peers.append(peer)
    return peer


def options_request(peer: RawPeer, extra: str = "") -> bytes:
    """An OPTIONS from `peer` (extra header lines before Content-Length)."""
    return RawPeer.follow_up(peer.invite(), "OPTIONS", extra=extra)


def answers_options(peer: RawPeer) -> bool:
    """Whether the gateway still answers this peer (UDP: retried, as any UAC would)."""
    request = options_request(peer)
    for _ in range(3 if peer.transport == "udp" else 1):
        peer.send(request)
        reply = peer.receive(2.0)
        if isinstance(reply, SipResponse):
            return reply.status == 200
    return False


def is_final_for(invite: SipRequest) -> object:
    return lambda m: (isinstance(m, SipResponse) and m.status >= 200
                      and m.call_id == invite.call_id)


# --------------------------------------------------------------------------- timer H


def test_timer_h_ends_a_final_response_nobody_acks(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    """A 486 never ACKed is resent with timer G (T1 doubling to T2) only until timer H: then
    the transaction and its retransmission timer are gone. The Via names a third address (the
    'victim'), as a spoofed INVITE would: it gets a bounded number of packets, not a stream."""
    fake_service.action = Action(ActionKind.REJECT, code=486)
    gateway = make_gateway(t1=SMALL_T1)
    sender = peer_of(gateway, peers)
    victim = RawPeer(gateway.uas[0].port)
    peers.append(victim)
    invite = sender.invite()
    invite.set("Via", f"SIP/2.0/UDP 127.0.0.1:{victim.port};branch=z9hG4bKtimerh")
    sender.send(invite)
    layer = gateway.uas[0].layer
    victim.expect(is_final_for(invite), 10, "the 486")
    wait_until(lambda: not layer.server, 20, "timer H to end the INVITE transaction")
    finals = 1
    while (message := victim.receive(0.2)) is not None:  # whatever was already in flight
        finals += isinstance(message, SipResponse) and message.status == 486
    # Timer G fires at T1, 3T1, 7T1, 15T1, 31T1 and 63T1 within 64*T1: at most 6 resends.
    assert 2 <= finals <= 7, finals
    assert layer.retransmitting == 0
    assert gateway.timers.pending() == 0  # nothing left to fire: no resend for ever
    assert fake_service.wait_finished()[0].outcome == "rejected 486"


def test_past_the_retransmission_cap_a_final_goes_out_once(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of spoofed INVITEs cannot make us a steady source: past the cap, no timer G."""
    monkeypatch.setattr(transaction, "MAX_RETRANSMITTING", 1)
    fake_service.action = Action(ActionKind.REJECT, code=603)
    gateway = make_gateway(t1=SMALL_T1)
    peer = peer_of(gateway, peers)
    first, second = peer.invite(from_tag="a"), peer.invite(from_tag="b")
    peer.send(first)
    peer.expect(is_final_for(first))
    peer.send(second)
    peer.expect(is_final_for(second))
    layer = gateway.uas[0].layer
    wait_until(lambda: not layer.server, 20, "timer H for both")
    counts = {first.call_id: 1, second.call_id: 1}
    while (message := peer.receive(0.2)) is not None:
        if isinstance(message, SipResponse) and message.status == 603:
            counts[message.call_id] += 1
    assert counts[first.call_id] >= 2 and counts[second.call_id] == 1, counts


# --------------------------------------------------------------------------- Content-Length


BAD_LENGTHS = ["²", "٠", "9" * 5000, "-1", "1e3"]


@pytest.mark.parametrize("length", BAD_LENGTHS, ids=["superscript", "arabic", "5000", "-1", "1e3"])
def test_a_bad_content_length_over_udp_gets_400(
    make_gateway: GatewayFactory, peers: list[RawPeer], caplog: pytest.LogCaptureFixture,
    length: str,
) -> None:
    gateway = make_gateway()
    peer = peer_of(gateway, peers)
    raw = options_request(peer).replace(b"Content-Length: 0", f"Content-Length: {length}".encode())
    with caplog.at_level(logging.ERROR, logger="gateway"):
        peer.send(raw)
        refused = peer.expect_status(400)
        assert "Content-Length" in (refused.get("Warning") or "")
        assert answers_options(peer)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback


@pytest.mark.parametrize("length", BAD_LENGTHS, ids=["superscript", "arabic", "5000", "-1", "1e3"])
def test_a_bad_content_length_over_tcp_is_answered_and_closed_the_reader_survives(
    make_gateway: GatewayFactory, peers: list[RawPeer], caplog: pytest.LogCaptureFixture,
    length: str,
) -> None:
    gateway = make_gateway()
    peer = peer_of(gateway, peers, "tcp")
    raw = options_request(peer).replace(b"Content-Length: 0", f"Content-Length: {length}".encode())
    with caplog.at_level(logging.ERROR, logger="gateway"):
        peer.send(raw)
        assert peer.expect_status(400).status == 400  # told why, then the stream is closed
        peer.sock.settimeout(5)
        assert peer.sock.recv(1) == b""  # closed by the gateway: the stream cannot be framed
        assert answers_options(peer_of(gateway, peers, "tcp"))  # the next connection is served
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --------------------------------------------------------------------------- what we refuse


def test_require_with_an_unsupported_option_gets_420_listing_it(
    make_gateway: GatewayFactory, peers: list[RawPeer],
) -> None:
    gateway = make_gateway()
    peer = peer_of(gateway, peers)
    peer.send(options_request(peer, "Require: 100rel, foo\r\n"))
    bad = peer.expect_status(420)
    assert bad.reason == "Bad Extension" and bad.get("Unsupported") == "100rel, foo"


@pytest.mark.parametrize(
    ("action", "status"),
    [("reject:603", 603), ("pass", 420), ("announce", 603)],
)
def test_an_invite_requiring_an_extension_is_screened_first(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
    action: str, status: int,
) -> None:
    """A stranger must not turn a rejection into a ring by adding `Require`."""
    fake_service.action = Action.parse(action)
    gateway = make_gateway()
    peer = peer_of(gateway, peers)
    invite = peer.invite(extra="Require: 100rel\r\n")
    peer.send(invite)
    response = peer.expect(is_final_for(invite))
    assert isinstance(response, SipResponse) and response.status == status
    if status == 420:
        assert response.get("Unsupported") == "100rel"


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ((b"SIP/2.0\r\nVia: SIP/2.0", b"SIP/7.0\r\nVia: SIP/7.0"), 505, "Version Not Supported"),
        ((b"OPTIONS sip:", b"OPTIONS nobodyKnowsThisScheme:"), 416, "Unsupported URI Scheme"),
        ((b"OPTIONS", b"FOOBAR"), 501, "Not Implemented"),
        ((b"OPTIONS", b"MESSAGE"), 405, "Method Not Allowed"),
    ],
    ids=["SIP/7.0", "scheme", "unknown-method", "known-method"],
)
def test_version_scheme_and_method(
    make_gateway: GatewayFactory, peers: list[RawPeer], change: tuple[bytes, bytes],
    status: int, reason: str,
) -> None:
    gateway = make_gateway()
    peer = peer_of(gateway, peers)
    peer.send(options_request(peer).replace(*change))
    response = peer.expect_status(status)
    assert response.reason == reason


# --------------------------------------------------------------------------- RFC 4475


# RFC 4475 §3: the first answer each message must get from a UAS; None: nothing (responses
# matching no transaction are dropped). Valid INVITEs get 100 Trying, then screening decides;
# wsinv has a To tag: a request in a dialog we do not have (481).
RFC4475 = {
    # 3.1.1 valid messages
    "wsinv": 481, "intmeth": 501, "esc01": 100, "escnull": 405, "esc02": 501, "lwsdisp": 200,
    "longreq": 100, "dblreq": 405, "semiuri": 200, "transports": 200, "unreason": None,
    "noreason": None,
    # 3.1.2 invalid messages
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "scalarlg": None,
    "quotbal": 400, "ltgtruri": 400, "lwsruri": 400, "lwsstart": 100, "trws": 200,
    "escruri": 100, "baddate": 100, "regbadct": 405, "badaspec": 200, "baddn": 200,
    "badvers": 505, "mismatch01": 400, "mismatch02": 400, "bigcode": None,
    # 3.2 transaction layer
    "badbranch": 200,
    # 3.3 application layer
    "insuf": 400, "unkscm": 416, "novelsc": 416, "unksm2": 405, "bext01": 420, "invut": 100,
    "regaut01": 405, "multi01": 400, "mcl01": 400, "bcast": None, "zeromf": 200,
    "cparam01": 405, "cparam02": 405, "regescrt": 405, "sdp01": 100,
    # 3.4 backward compatibility
    "inv2543": 100,
}
_UDP_SENT_BY = re.compile(rb"(SIP\s*/\s*[0-9]+\.[0-9]+\s*/\s*UDP\s+)([^\s;,]+)", re.IGNORECASE)
_TOP_VIA_TRANSPORT = re.compile(rb"(?im)^(?:via|v)\s*:\s*SIP\s*/\s*[0-9.]+\s*/\s*([A-Z]+)")


def test_every_rfc4475_message_has_a_fixture() -> None:
    assert {p.stem for p in FIXTURES.glob("*.sip")} == set(RFC4475)


@pytest.mark.parametrize(("name", "expected"), sorted(RFC4475.items()))
def test_rfc4475_torture_messages_get_the_expected_answer(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
    caplog: pytest.LogCaptureFixture, name: str, expected: int | None,
) -> None:
    """Each message as the RFC writes it, over the transport its top Via names (TCP for TLS).
    Over UDP the top Via's sent-by is pointed at the test's socket so an answer can reach it;
    nothing else is changed. Over TCP answers come back on the connection."""
    fake_service.action = Action(ActionKind.REJECT, code=603)
    gateway = make_gateway(t1=SMALL_T1)
    data = (FIXTURES / f"{name}.sip").read_bytes()
    via = _TOP_VIA_TRANSPORT.search(data)
    over_tcp = via is not None and via.group(1).upper() != b"UDP" and expected is not None
    peer = peer_of(gateway, peers, "tcp" if over_tcp else "udp")
    if not over_tcp:
        data = _UDP_SENT_BY.sub(lambda m: m.group(1) + f"127.0.0.1:{peer.port}".encode(),
                                data, count=1)
    with caplog.at_level(logging.ERROR, logger="gateway"):
        peer.send(data)
        if expected is None:
            # The receive thread handles one datagram after the other: the ping's 200 comes
            # first only if the message itself got no answer.
            peer.send(options_request(peer))
            answer = peer.receive_bytes(10) or b""
            assert answer.startswith(b"SIP/2.0 200 ") and b" OPTIONS\r\n" in answer, answer
        else:
            # Read as bytes: an answer copies the request's CSeq, which may be the very thing
            # that was wrong (scalar02's 36893488147419103232).
            answer = peer.receive_bytes(10) or b""
            assert answer.startswith(f"SIP/2.0 {expected} ".encode()), answer[:300]
            if name == "bext01":
                assert (b"\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n"
                        in answer)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --------------------------------------------------------------------------- RTP reflection


def test_no_rtp_reaches_the_sdp_address_before_the_ack(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    """One INVITE, never ACKed, its SDP pointing at a third party: not one RTP packet goes
    there, and after 64*T1 we give the call up (BYE) and its media slot is free again."""
    fake_service.action = Action(ActionKind.VOICEMAIL, prompt="greeting")
    gateway = make_gateway(real_media=True, t1=SMALL_T1)
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        victim.bind(("127.0.0.1", 0))
        peer = peer_of(gateway, peers)
        sdp = SDP_OFFER.replace("m=audio 40000", f"m=audio {victim.getsockname()[1]}")
        invite = peer.invite(sdp=sdp)
        peer.send(invite)
        ok = peer.expect(is_final_for(invite))
        assert isinstance(ok, SipResponse) and ok.status == 200
        bye = peer.expect(lambda m: isinstance(m, SipRequest) and m.method == "BYE", 20,
                          "our BYE after 64*T1 without ACK")
        assert isinstance(bye, SipRequest)
        peer.send(ok_for(bye))
        assert fake_service.wait_finished()[0].outcome == "not answered: no ACK for our 200 OK"
        wait_until(lambda: gateway.capacity.media.active == 0, 10, "the media slot back")
        assert ours(victim, rtp_port_of(ok)) == 0  # not a single packet was sent there
    finally:
        victim.close()


def test_after_the_ack_the_media_flows(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    """The control for the test above: the same call, ACKed, gets its RTP."""
    fake_service.action = Action(ActionKind.VOICEMAIL, prompt="greeting")
    gateway = make_gateway(real_media=True, t1=SMALL_T1)
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        media.bind(("127.0.0.1", 0))
        peer = peer_of(gateway, peers)
        invite = peer.invite(sdp=SDP_OFFER.replace("m=audio 40000",
                                                   f"m=audio {media.getsockname()[1]}"))
        peer.send(invite)
        ok = peer.expect(is_final_for(invite))
        assert isinstance(ok, SipResponse) and ok.status == 200
        peer.send(RawPeer.follow_up(invite, "ACK", to=ok.get("To"), new_branch=True))
        wait_until(lambda: ours(media, rtp_port_of(ok)) > 0, 10, "our first RTP packet")
        peer.send(RawPeer.follow_up(invite, "BYE", to=ok.get("To"), new_branch=True))
        assert (fake_service.wait_finished()[0].outcome or "").startswith(
            ("caller hung up", "voicemail"))
    finally:
        media.close()


def rtp_port_of(answer: SipResponse) -> int:
    """Where our RTP comes from: the port in the SDP answer of our 200 OK."""
    match = re.search(r"^m=audio (\d+) ", answer.body_text(), re.MULTILINE)
    assert match, answer.body_text()
    return int(match.group(1))


def ours(sock: socket.socket, rtp_port: int) -> int:
    """RTP packets waiting on `sock` that came from our media socket (other processes on this
    machine may stream to a port that happens to be ours now; they do not count)."""
    sock.setblocking(False)
    count = 0
    while True:
        try:
            _data, source = sock.recvfrom(2048)
        except BlockingIOError:
            return count
        count += source[1] == rtp_port


def ok_for(request: SipRequest) -> bytes:
    """A 200 OK answering `request`."""
    lines = [f"{name}: {request.get(name)}" for name in ("Via", "From", "To", "Call-ID", "CSeq")]
    return ("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


# --------------------------------------------------------------------------- TCP limits


def test_one_source_cannot_take_every_tcp_connection(
    make_gateway: GatewayFactory, peers: list[RawPeer],
) -> None:
    """A dual-stack listener sees ::1 and ::ffff:127.0.0.1 as two sources: the first holds its
    maximum of (working, not idle) connections, the next one from there is refused, and the
    second source is still served."""
    gateway = make_gateway(listen=HostPort("::", free_port()))
    port = gateway.uas[0].port
    held = []
    for _ in range(transport.MAX_TCP_PER_SOURCE):
        peer = RawPeer(port, "tcp", host="::1")
        peers.append(peer)
        assert answers_options(peer)  # a complete message: only the idle timeout applies now
        held.append(peer)
    one_more = RawPeer(port, "tcp", host="::1")
    peers.append(one_more)
    one_more.sock.settimeout(5)
    try:
        closed = one_more.sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    assert closed  # refused: that source has its maximum
    other = RawPeer(port, "tcp", host="127.0.0.1")
    peers.append(other)
    assert answers_options(other)  # another source is served
    assert all(answers_options(peer) for peer in held)  # and the first keeps what it has


def test_a_tcp_connection_that_sends_no_complete_message_is_dropped(
    make_gateway: GatewayFactory, peers: list[RawPeer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "TCP_MESSAGE_SECONDS", 0.3)
    gateway = make_gateway()
    silent = peer_of(gateway, peers, "tcp")
    trickling = peer_of(gateway, peers, "tcp")
    trickling.send(options_request(trickling)[:40])  # a message that never completes
    for peer in (silent, trickling):
        peer.sock.settimeout(10)
        assert peer.sock.recv(1) == b""  # closed by the gateway
    assert answers_options(peer_of(gateway, peers, "tcp"))  # a working connection stays
