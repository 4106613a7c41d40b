"""Transaction and dialog behaviour on the wire, driven by a raw UDP/TCP peer (no Kamailio)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.screening.caller import CallerKind
from gateway.screening.rules import Action, ActionKind
from gateway.sip.message import SipRequest, SipResponse
from tests.peers.fakes import FakeService, SilentMedia
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import RawPeer


class HeldMedia(SilentMedia):
    """Plays 'forever' (until closed), so a call stays answered while the test works."""

    def play(self, path: Path) -> None:
        self.played.append(path)
        self.closed.wait(20)


@pytest.fixture
def peer_factory() -> Iterator[object]:
    peers: list[RawPeer] = []

    def make(port: int, transport: str = "udp") -> RawPeer:
        peer = RawPeer(port, transport)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def start(make_gateway: GatewayFactory, peer_factory: object, transport: str = "udp",
          **options: object) -> RawPeer:
    gateway = make_gateway(**options)
    return peer_factory(gateway.uas[0].port, transport)  # type: ignore[operator, no-any-return]


def ok_for(request: SipRequest) -> bytes:
    """A 200 OK answering `request`."""
    from gateway.sip.ua import make_response

    return make_response(request, 200, "OK").to_bytes()


def is_invite_response(status: int) -> object:
    return lambda m: isinstance(m, SipResponse) and m.status == status and m.cseq()[1] == "INVITE"


def test_trying_at_once_retransmission_absorbed_cancel_487(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    peer = start(make_gateway, peer_factory)
    invite = peer.invite()
    peer.send(invite)
    peer.expect_status(100)
    peer.send(invite)  # retransmission: the last response again, no second call
    peer.expect_status(100)
    peer.send(RawPeer.follow_up(invite, "CANCEL"))
    ok = peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq()[1] == "CANCEL")
    assert isinstance(ok, SipResponse) and ok.status == 200
    terminated = peer.expect(is_invite_response(487))
    assert isinstance(terminated, SipResponse)
    peer.send(RawPeer.follow_up(invite, "ACK", to=terminated.get("To")))
    log = fake_service.wait_finished()
    assert len(log) == 1 and log[0].outcome == "passed: cancelled by caller"


def test_cancel_answered_elsewhere_marks_the_number_known(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    peer = start(make_gateway, peer_factory)
    invite = peer.invite()
    peer.send(invite)
    peer.expect_status(100)
    peer.send(RawPeer.follow_up(
        invite, "CANCEL", extra='Reason: SIP;cause=200;text="Call completed elsewhere"\r\n'))
    peer.expect(is_invite_response(487))
    assert fake_service.wait_finished()[0].outcome == "answered elsewhere"
    assert fake_service.known == ["+33612345678"]


def test_forked_invite_on_a_second_branch_gets_482(
    make_gateway: GatewayFactory, peer_factory: object,
) -> None:
    peer = start(make_gateway, peer_factory)
    invite = peer.invite(call_id="fork-1")
    peer.send(invite)
    peer.expect_status(100)
    fork = peer.invite(call_id="fork-1")  # same Call-ID, From tag and CSeq; new branch
    peer.send(fork)
    loop = peer.expect_status(482)
    assert loop.top_via().branch == fork.top_via().branch


def test_unknown_cancel_gets_481(make_gateway: GatewayFactory, peer_factory: object) -> None:
    peer = start(make_gateway, peer_factory)
    peer.send(RawPeer.follow_up(peer.invite(), "CANCEL"))
    peer.expect_status(481)


def test_ok_is_retransmitted_until_ack_then_caller_bye(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.ANNOUNCE, prompt="not_in_service")
    peer = start(make_gateway, peer_factory, media_factory=HeldMedia)
    invite = peer.invite()
    peer.send(invite)
    first = peer.expect(is_invite_response(200))
    assert first.body and first.get("Contact")
    again = peer.expect(is_invite_response(200))  # no ACK yet: T1 retransmission
    assert again.get("To") == first.get("To")
    peer.send(RawPeer.follow_up(invite, "ACK", to=first.get("To"), new_branch=True))
    peer.send(RawPeer.follow_up(invite, "BYE", to=first.get("To"), new_branch=True))
    bye_ok = peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq()[1] == "BYE")
    assert isinstance(bye_ok, SipResponse) and bye_ok.status == 200
    log = fake_service.wait_finished()
    assert log[0].outcome == "caller hung up during the announcement"


def test_gateway_bye_and_response_along_via_rport(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    """Via names an unreachable host: the answer must follow received/rport to our socket."""
    fake_service.action = Action(ActionKind.ANNOUNCE, prompt="sit")
    peer = start(make_gateway, peer_factory)
    invite = peer.invite()
    invite.set("Via", f"SIP/2.0/UDP 192.0.2.7:1;branch=z9hG4bKnatted{peer.port};rport")
    peer.send(invite)
    ok = peer.expect(is_invite_response(200))
    assert f"rport={peer.port}" in (ok.get("Via") or "")
    peer.send(RawPeer.follow_up(invite, "ACK", to=ok.get("To"), new_branch=True))
    bye = peer.expect(lambda m: isinstance(m, SipRequest) and m.method == "BYE")
    assert isinstance(bye, SipRequest)
    assert bye.uri == f"sip:caller@127.0.0.1:{peer.port}"  # the Contact of our INVITE
    peer.send(ok_for(bye))
    assert fake_service.wait_finished()[0].outcome == "announced"


@pytest.mark.parametrize(
    ("behaviour", "status"), [("busy", 486), ("unavailable", 480), ("redirect", 302)]
)
def test_pass_behaviours(
    make_gateway: GatewayFactory, peer_factory: object, behaviour: str, status: int,
) -> None:
    peer = start(make_gateway, peer_factory, pass_behaviour=behaviour,
                 redirect_to="sip:owner@192.0.2.10")
    peer.send(peer.invite())
    response = peer.expect(is_invite_response(status))
    if status == 302:
        assert response.get("Contact") == "<sip:owner@192.0.2.10>"


@pytest.mark.parametrize("code", [603, 486, 404, 410, 433, 480, 600, 604, 607])
def test_reject_codes_and_reason_phrases(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService, code: int,
) -> None:
    from gateway.screening.rules import REJECT_CODES

    fake_service.action = Action(ActionKind.REJECT, code=code)
    peer = start(make_gateway, peer_factory)
    invite = peer.invite()
    peer.send(invite)
    response = peer.expect(is_invite_response(code))
    assert isinstance(response, SipResponse) and response.reason == REJECT_CODES[code]
    peer.send(RawPeer.follow_up(invite, "ACK", to=response.get("To")))


def test_screening_failure_fails_open(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    fake_service.raise_in_screen = True
    peer = start(make_gateway, peer_factory, pass_behaviour="busy")
    peer.send(peer.invite())
    peer.expect(is_invite_response(486))  # the line's pass behaviour, as if not screened
    peer.send(peer.invite())  # and the gateway still takes calls
    peer.expect(is_invite_response(486))


def test_identity_from_pai_and_privacy(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.REJECT, code=603)
    peer = start(make_gateway, peer_factory)
    peer.send(peer.invite(user="anything", extra=(
        'P-Asserted-Identity: "Jean" <sip:+33162000000;verstat=TN-Validation-Failed'
        '@carrier.example;user=phone>\r\n')))
    peer.expect(is_invite_response(603))
    peer.send(peer.invite(extra="Privacy: id\r\n"))
    peer.expect(is_invite_response(603))
    # Each call logs itself on its own thread after its 603: the order of the rows is not
    # the order of the INVITEs.
    calls = fake_service.wait_finished(2)
    [first] = [c for c in calls if c.caller.kind is not CallerKind.WITHHELD]
    [second] = [c for c in calls if c.caller.kind is CallerKind.WITHHELD]
    assert first.caller.number == "+33162000000"
    assert first.caller.display_name == "Jean"
    assert first.caller.verstat is not None and first.caller.verstat.value.endswith("Failed")
    assert second.caller.kind is CallerKind.WITHHELD


def test_invite_over_tcp(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.REJECT, code=603)
    peer = start(make_gateway, peer_factory, transport="tcp")
    peer.send(peer.invite())
    peer.expect_status(100)
    peer.expect(is_invite_response(603))


def test_many_concurrent_senders_do_not_break_dispatch(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.REJECT, code=603)
    port = make_gateway(max_calls=8).uas[0].port
    errors: list[BaseException] = []

    def caller() -> None:
        peer = RawPeer(port)
        try:
            for _ in range(10):
                invite = peer.invite()
                peer.send(invite)
                response = peer.expect(is_invite_response(603))
                peer.send(RawPeer.follow_up(invite, "ACK", to=response.get("To")))
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)
        finally:
            peer.close()

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(fake_service.wait_finished(40)) == 40


def test_invite_with_unusable_contact_gets_400(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    peer = start(make_gateway, peer_factory)
    invite = peer.invite()
    invite.set("Contact", "garbage <")
    peer.send(invite)
    peer.expect_status(400)
    assert fake_service.calls == []


def test_public_address_is_announced_while_media_binds_locally(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.ANNOUNCE, prompt="sit")
    peer = start(make_gateway, peer_factory, real_media=True, public_address="192.0.2.50")
    invite = peer.invite()
    peer.send(invite)
    ok = peer.expect(is_invite_response(200))
    assert "c=IN IP4 192.0.2.50" in ok.body_text()  # what the far end behind NAT must reach
    assert "@192.0.2.50:" in (ok.get("Contact") or "")
    peer.send(RawPeer.follow_up(invite, "ACK", to=ok.get("To"), new_branch=True))
    bye = peer.expect(lambda m: isinstance(m, SipRequest) and m.method == "BYE", timeout=10)
    assert isinstance(bye, SipRequest)
    peer.send(ok_for(bye))
    assert fake_service.wait_finished()[0].outcome == "announced"


def reinvite(invite: SipRequest, to: str | None, sdp: str, cseq: int) -> bytes:
    """An in-dialog INVITE carrying `sdp`."""
    head = RawPeer.follow_up(invite, "INVITE", to=to, new_branch=True).decode()
    head = head.replace(f"CSeq: {invite.cseq()[0]} INVITE", f"CSeq: {cseq} INVITE")
    head = head.replace("Content-Length: 0\r\n\r\n", "")
    return (head + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
            + sdp).encode()


def test_reinvite_hold_is_followed_and_a_codec_change_refused(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    from tests.peers.raw import SDP_OFFER

    fake_service.action = Action(ActionKind.VOICEMAIL, prompt="greeting")
    peer = start(make_gateway, peer_factory, real_media=True)
    invite = peer.invite()
    peer.send(invite)
    ok = peer.expect(is_invite_response(200))
    to = ok.get("To")
    peer.send(RawPeer.follow_up(invite, "ACK", to=to, new_branch=True))
    hold = SDP_OFFER.replace("a=sendrecv", "a=sendonly").replace("o=caller 1 1", "o=caller 1 2")
    peer.send(reinvite(invite, to, hold, 2))
    held = peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq() == (2, "INVITE"))
    assert isinstance(held, SipResponse) and held.status == 200
    assert "a=recvonly" in held.body_text()
    g722_only = SDP_OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 9").replace(
        "o=caller 1 1", "o=caller 1 3")
    peer.send(reinvite(invite, to, g722_only, 3))
    refused = peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq() == (3, "INVITE"))
    assert isinstance(refused, SipResponse) and refused.status == 488
    peer.send(RawPeer.follow_up(invite, "BYE", to=to, new_branch=True))
    assert fake_service.wait_finished()[0].outcome.startswith(("caller hung up", "voicemail"))


def test_challenge_prompt_names_the_owners_key(
    make_gateway: GatewayFactory, peer_factory: object, fake_service: FakeService,
) -> None:
    sessions: list[SilentMedia] = []

    def media(offer: str, announced: str, bind: str) -> SilentMedia:
        sessions.append(SilentMedia(offer, announced, bind))
        return sessions[-1]

    fake_service.action = Action(ActionKind.CHALLENGE, prompt="challenge")
    fake_service.digit = "7"
    peer = start(make_gateway, peer_factory, media_factory=media)
    invite = peer.invite()
    peer.send(invite)
    ok = peer.expect(is_invite_response(200))
    peer.send(RawPeer.follow_up(invite, "ACK", to=ok.get("To"), new_branch=True))
    peer.send(RawPeer.follow_up(invite, "BYE", to=ok.get("To"), new_branch=True))
    assert fake_service.wait_finished()[0].outcome == "challenge failed"
    assert str(sessions[0].played[0]).endswith("challenge_7.wav")
