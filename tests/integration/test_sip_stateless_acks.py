"""The ACK of a stateless answer is dropped before it is parsed, and still ends what that answer
left to remember; other ACKs, and ACKs that only look like one, are parsed as before. Real UDP
between a raw peer and the user agent on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.sip.message import SipMessage, SipRequest, SipResponse
from gateway.sip.transport import Source
from gateway.sip.ua import STATELESS_TAG, Call, Refusal, UserAgent
from gateway.sip.workers import WorkerPool
from tests.peers.raw import RawPeer


class Refuser:
    """A `quick_refusal` that declines every INVITE, counting them; the handler the UA's
    transport hands parsed messages to is wrapped so the test sees what was parsed."""

    def __init__(self, ua: UserAgent) -> None:
        self.refused = 0
        self.parsed: list[str] = []
        handler = ua.transport.handler

        def seen(message: SipMessage, source: Source) -> None:
            if isinstance(message, SipRequest):
                self.parsed.append(message.method)
            handler(message, source)

        ua.transport.handler = seen

    def __call__(self, invite: SipRequest, source: Source) -> Refusal:
        self.refused += 1
        return Refusal(603, "Decline", lambda: None)


@pytest.fixture
def refusing_ua() -> Iterator[tuple[UserAgent, Refuser, RawPeer]]:
    def handler(call: Call) -> None:
        call.reject(480, "Temporarily Unavailable")

    work = WorkerPool(workers=1)
    ua = UserAgent("127.0.0.1", 0, call_handler=handler, work=work)
    refuser = Refuser(ua)
    ua.quick_refusal = refuser
    work.start()
    ua.start()
    peer = RawPeer(ua.port)
    try:
        yield ua, refuser, peer
    finally:
        peer.close()
        ua.end_calls()
        work.stop(2)
        ua.close()


def answer(peer: RawPeer, invite: SipRequest) -> SipResponse:
    """Send `invite`, return its final response."""
    peer.send(invite)
    message = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200
                          and m.call_id == invite.call_id, 5, "a final response")
    assert isinstance(message, SipResponse)
    return message


def settle(peer: RawPeer) -> None:
    """Wait until the UA has read everything sent before: one receive thread, in order."""
    options = (f"OPTIONS sip:home@127.0.0.1:{peer.gateway_port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-settle-{id(peer)}\r\n"
               "From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:home@127.0.0.1>\r\n"
               "Call-ID: settle\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
    peer.send(options)
    peer.expect(lambda m: isinstance(m, SipResponse) and m.call_id == "settle", 5, "the 200")


def test_the_ack_of_a_stateless_answer_is_dropped_unparsed_and_forgets_it(
    refusing_ua: tuple[UserAgent, Refuser, RawPeer],
) -> None:
    _, refuser, peer = refusing_ua
    invite = peer.invite(sdp="")
    refused = answer(peer, invite)
    tag = refused.to().tag or ""
    assert refused.status == 603 and tag.startswith(STATELESS_TAG)
    assert answer(peer, invite).to().tag == tag  # a retransmission: the same answer, not anew
    assert refuser.refused == 1
    peer.send(RawPeer.follow_up(invite, "ACK", to=refused.get("To")))
    settle(peer)
    assert "ACK" not in refuser.parsed
    # Forgotten: the same INVITE again is a new attempt, refused (and counted) anew.
    assert answer(peer, invite).status == 603
    assert refuser.refused == 2


def test_an_ack_that_only_looks_stateless_is_parsed(
    refusing_ua: tuple[UserAgent, Refuser, RawPeer],
) -> None:
    _, refuser, peer = refusing_ua
    invite = peer.invite(sdp="")
    refused = answer(peer, invite)
    tag = refused.to().tag or ""
    # The stateless tag inside the display name, a hex tag after it: not ours to drop.
    fake_to = f'"{";tag=" + tag}" <sip:home@127.0.0.1>;tag=8f3a2b1c'
    peer.send(RawPeer.follow_up(invite, "ACK", to=fake_to))
    settle(peer)
    assert refuser.parsed.count("ACK") == 1
    assert answer(peer, invite).to().tag == tag  # still remembered: the same answer again
    assert refuser.refused == 1
