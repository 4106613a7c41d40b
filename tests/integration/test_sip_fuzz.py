"""Strangers' messages that parse but make little sense must never break the user agent."""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.call.process import Gateway
from gateway.screening.rules import Action
from gateway.sip.message import SipResponse
from tests.peers import wait_until
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import RawPeer

HEADER_VALUES = {
    "To": ["<sip:x@y>;tag=nosuch", "<sip:x@y>", "x", '"" <sip:a@b>;tag='],
    "From": ["<sip:+33612345678@h>;tag=a", "sip:anonymous@anonymous.invalid;tag=b",
             '"\\"q\\"" <tel:0612345678>;tag=c', "<sip:h>;tag=d"],
    "Contact": ["<sip:c@127.0.0.1:9>", "*", "<sips:[::1]:5061;transport=tls>", "garbage <",
                ""],
    "Record-Route": ["<sip:127.0.0.1:9;lr>", "<sip:127.0.0.1:9>", "<<>>", ""],
    "Reason": ['SIP;cause=200;text="x"', "Q.850;cause=16", ";;;"],
    "P-Asserted-Identity": ["<tel:+33162000000>", "<sip:;@>", "\"x\" <sip:1@2>, <tel:3>"],
    "Privacy": ["id", "none", ""],
    "Content-Type": ["application/sdp", "text/plain", ""],
}


@st.composite
def messages(draw: st.DrawFn, port: int, peer_port: int) -> bytes:
    method = draw(st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "NOTIFY",
                                   "INFO", "UPDATE", "REGISTER", "SUBSCRIBE", "PRACK"]))
    call_id = draw(st.sampled_from(["c1", "c2", "c3"]))
    branch = draw(st.sampled_from(["z9hG4bK1", "z9hG4bK2", "nocookie"]))
    headers = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:{peer_port};branch={branch};rport",
        "Call-ID": call_id,
        "CSeq": f"{draw(st.integers(1, 3))} {method}",
        "To": draw(st.sampled_from(HEADER_VALUES["To"])),
        "From": draw(st.sampled_from(HEADER_VALUES["From"])),
    }
    for name in ("Contact", "Record-Route", "Reason", "P-Asserted-Identity", "Privacy",
                 "Content-Type"):
        if draw(st.booleans()):
            headers[name] = draw(st.sampled_from(HEADER_VALUES[name]))
    body = draw(st.sampled_from(["", "v=0\r\n", "v=0\r\nm=audio 0 RTP/AVP 0\r\n",
                                 "\x00\xff garbage"]))
    text = f"{method} sip:ringfence@127.0.0.1:{port} SIP/2.0\r\n"
    text += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    text += f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    return text.encode()


@pytest.mark.parametrize("action", ["pass", "announce:sit", "reject:603"])
def test_semantic_fuzz_keeps_the_agent_healthy(
    make_gateway: GatewayFactory, fake_service: FakeService, caplog: pytest.LogCaptureFixture,
    action: str,
) -> None:
    fake_service.action = Action.parse(action)
    # A small T1: an answered fuzz call is never ACKed and gives up after 64*T1.
    gateway: Gateway = make_gateway(pass_behaviour="busy", max_calls=50, t1=0.05)
    port = gateway.uas[0].port
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    peer_port = sender.getsockname()[1]
    sender.setblocking(False)

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(messages(port, peer_port))
    def send(data: bytes) -> None:
        sender.sendto(data, ("127.0.0.1", port))
        try:
            while sender.recv(65536):
                pass
        except BlockingIOError:
            pass

    with caplog.at_level(logging.ERROR, logger="gateway"):
        try:
            send()
        finally:
            sender.close()
    wait_until(lambda: not any(ua.calls for ua in gateway.uas)
               and gateway.capacity.media.active == 0, 30, "every fuzzed call to end")
    peer = RawPeer(port)
    try:
        # Like any UAC over UDP, retransmit: the fuzz burst may have overflowed the socket
        # buffer, and UDP loss is what SIP retransmissions are for.
        options = RawPeer.follow_up(peer.invite(), "OPTIONS")
        reply = None
        for _ in range(4):
            peer.send(options)
            reply = peer.receive(1.0)
            if isinstance(reply, SipResponse):
                break
        assert isinstance(reply, SipResponse) and reply.status == 200, reply
    finally:
        peer.close()
    handler_errors = [r.getMessage() for r in caplog.records
                      if r.name.startswith("gateway") and r.levelno >= logging.ERROR]
    assert not handler_errors, handler_errors[:5]
