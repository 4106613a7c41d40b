"""Answered calls with real RTP: announce, voicemail and challenge, heard and spoken by baresip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import VoicemailConfig
from gateway.screening.rules import Action, ActionKind
from tests.peers import wait_until
from tests.peers.baresip import Baresip, dominant_frequency, wav_rms
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.slow

AUDIBLE_RMS = 500  # a 1 kHz prompt at -9 dBFS is ~8000; G.711 silence is < 50


@pytest.fixture
def mobile_caller(tmp_path: Path, kamailio: Kamailio) -> Iterator[Baresip]:
    """baresip calling as 0612345678, so the caller has a real number (+33612345678)."""
    peer = Baresip(tmp_path / "mobile", registrar_port=kamailio.port, user="0612345678",
                   password="mobilepw")
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


def start_gateway(make_gateway: GatewayFactory, kamailio: Kamailio, service: FakeService,
                  **options: object) -> None:
    make_gateway(
        lines=(line_for(kamailio),), real_media=True,
        voicemail=VoicemailConfig(max_seconds=3, silence_seconds=2), **options,
    )
    wait_until(lambda: bool(service.line_states) and service.line_states[-1][1] == "registered",
               10, "the gateway to register")


def test_announce_is_audible_to_the_caller(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.ANNOUNCE, prompt="not_in_service")
    start_gateway(make_gateway, kamailio, fake_service)
    baresip.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    baresip.wait_event("CALL_ESTABLISHED")
    baresip.wait_event("CALL_CLOSED")  # we hang up after the prompt
    assert fake_service.wait_finished()[0].outcome == "announced"
    wait_until(lambda: bool(baresip.recordings()), 5, "baresip's recording")
    heard = baresip.recordings()[-1]
    assert wav_rms(heard) > AUDIBLE_RMS, f"the caller heard silence in {heard}"


def test_voicemail_records_the_callers_voice(
    kamailio: Kamailio, mobile_caller: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.VOICEMAIL, prompt="greeting")
    start_gateway(make_gateway, kamailio, fake_service)
    mobile_caller.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    mobile_caller.wait_event("CALL_ESTABLISHED")
    mobile_caller.wait_event("CALL_CLOSED", timeout=20)  # max_seconds=3, then we hang up
    log = fake_service.wait_finished()[0]
    assert log.caller.number == "+33612345678"
    assert log.voicemail is not None, log
    path, duration, size = log.voicemail
    assert path.exists() and size == path.stat().st_size and duration > 1
    assert wav_rms(path) > AUDIBLE_RMS
    assert 380 < dominant_frequency(path) < 500  # baresip's 440 Hz tone, not our prompt


def test_voicemail_refused_when_full(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.VOICEMAIL, prompt="greeting")
    fake_service.space_left = 0
    start_gateway(make_gateway, kamailio, fake_service)
    baresip.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    baresip.wait_event("CALL_CLOSED")
    log = fake_service.wait_finished()[0]
    assert log.outcome == "voicemail full" and log.voicemail is None


def test_challenge_passed_with_the_right_digit(
    kamailio: Kamailio, mobile_caller: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.CHALLENGE, prompt="challenge")
    start_gateway(make_gateway, kamailio, fake_service)
    mobile_caller.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    mobile_caller.wait_event("CALL_ESTABLISHED")
    mobile_caller.press("5")
    mobile_caller.wait_event("CALL_CLOSED", timeout=20)
    log = fake_service.wait_finished()[0]
    assert log.outcome is not None and log.outcome.startswith("challenge passed"), log
    assert fake_service.allowed == ["+33612345678"]
    assert log.voicemail is not None  # thanked, then a message was taken


def test_challenge_failed_with_a_wrong_digit(
    kamailio: Kamailio, mobile_caller: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.CHALLENGE, prompt="challenge")
    start_gateway(make_gateway, kamailio, fake_service)
    mobile_caller.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    mobile_caller.wait_event("CALL_ESTABLISHED")
    mobile_caller.press("1")
    mobile_caller.wait_event("CALL_CLOSED", timeout=20)
    log = fake_service.wait_finished()[0]
    assert log.outcome == "challenge failed"
    assert fake_service.allowed == []
