"""Issue 14 item 6: an analogue line (an FXO adapter on a French box's phone socket).

A SIP reject ends only the adapter's leg while every phone on the line keeps ringing, so a
line of `kind = "analogue"` answers a blocked call (SIT tones and "not in service", then hangs
up: the line goes off-hook and the phones stop) and lets a passed call ring in silence.

Before: the same blocked call got a 603 and the phones on the line rang on.
"""

from __future__ import annotations

import pytest

from gateway.config import VoicemailConfig
from gateway.screening.rules import Action
from gateway.screening.words import outcome_words
from gateway.sip.message import SipResponse
from tests.peers import wait_until
from tests.peers.baresip import Baresip, wav_rms
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio
from tests.peers.raw import RawPeer

AUDIBLE_RMS = 500  # a 1 kHz prompt at -9 dBFS is ~8000; G.711 silence is < 50


@pytest.mark.slow
def test_an_analogue_line_answers_a_blocked_call_with_sit_and_a_message(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action.parse("reject:603")
    make_gateway(lines=(line_for(kamailio, kind="analogue"),), real_media=True,
                 voicemail=VoicemailConfig(max_seconds=3, silence_seconds=2))
    wait_until(lambda: bool(fake_service.line_states)
               and fake_service.line_states[-1][1] == "registered", 10, "the line to register")
    baresip.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    baresip.wait_event("CALL_ESTABLISHED")  # answered: the adapter takes the line off-hook
    baresip.wait_event("CALL_CLOSED")  # and we hang up after the message
    finished = fake_service.wait_finished()[0]
    assert finished.decision.action == Action.parse("reject:603")  # the log keeps the intent
    assert finished.outcome == "analogue line: announced"
    assert outcome_words(finished.outcome, 3.0) == (
        "answered to stop the analogue line ringing: heard the message")
    wait_until(lambda: bool(baresip.recordings()), 5, "baresip's recording")
    heard = baresip.recordings()[-1]
    assert wav_rms(heard) > AUDIBLE_RMS, f"the caller heard silence in {heard}"


@pytest.mark.parametrize(("kind", "final"), [("analogue", 200), ("sip", 603)])
def test_a_direct_analogue_line_answers_what_a_sip_line_rejects(
    make_gateway: GatewayFactory, fake_service: FakeService, kind: str, final: int,
) -> None:
    """The FXO adapter's route: calls sent straight to `[gateway] listen` (no registration)."""
    fake_service.action = Action.parse("reject:603")
    gateway = make_gateway(kind=kind)
    peer = RawPeer(gateway.uas[0].port)
    try:
        invite = peer.invite()
        peer.send(invite)
        response = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200,
                               timeout=15, what="the final response")
        assert isinstance(response, SipResponse)
        assert response.status == final
        if final == 200:
            peer.send(RawPeer.follow_up(invite, "ACK", to=response.get("To"), new_branch=True))
        outcome = fake_service.wait_finished()[0].outcome
        assert outcome == ("analogue line: announced" if kind == "analogue" else "rejected 603")
    finally:
        peer.close()


def test_an_analogue_line_passes_a_call_in_silence(
    make_gateway: GatewayFactory, fake_service: FakeService,
) -> None:
    """A pass neither answers nor refuses: the phones on the line ring until one answers."""
    gateway = make_gateway(kind="analogue")
    peer = RawPeer(gateway.uas[0].port)
    try:
        invite = peer.invite()
        peer.send(invite)
        wait_until(lambda: bool(fake_service.calls), 10, "the call to be screened")
        peer.send(RawPeer.follow_up(invite, "CANCEL"))
        final = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200
                            and m.cseq()[1] == "INVITE", timeout=15,
                            what="the INVITE's final")
        assert isinstance(final, SipResponse)
        assert final.status == 487  # nothing before the adapter's CANCEL
        assert fake_service.wait_finished()[0].outcome == "passed: cancelled by caller"
    finally:
        peer.close()
