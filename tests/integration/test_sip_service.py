"""The gateway with the real screening service on SQLite: rules in the database drive the wire."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.screening.rules import ListName
from gateway.sip.message import SipResponse
from tests.helpers import Services
from tests.peers import wait_until
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import RawPeer


@pytest.fixture
def real_service(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", database=f"sqlite:///{tmp_path}/rf.db")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = Services.open(settings)
    yield service
    service.db.dispose()


def final_for(peer: RawPeer) -> SipResponse:
    message = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200)
    assert isinstance(message, SipResponse)
    return message


def test_block_entry_rejects_and_the_call_is_logged(
    make_gateway: GatewayFactory, real_service: Services,
) -> None:
    real_service.store.entries.add(ListName.BLOCK, "+33612345678", kind="exact",
                                action="reject:404", label="test")
    gateway = make_gateway(service=real_service, pass_behaviour="busy")
    peer = RawPeer(gateway.uas[0].port)
    try:
        invite = peer.invite(user="0612345678")
        peer.send(invite)
        response = final_for(peer)
        assert (response.status, response.reason) == (404, "Not Found")
        peer.send(RawPeer.follow_up(invite, "ACK", to=response.get("To")))
        # an unknown number passes (default policy) with the line's pass behaviour
        peer.send(peer.invite(user="+33198765432"))
        assert final_for(peer).status == 486

        def both_logged() -> bool:
            rows = real_service.store.calls.recent()
            return len(rows) == 2 and all(r.outcome for r in rows)

        wait_until(both_logged, 10, "both calls to be logged")
        rows = {r.number: r for r in real_service.store.calls.recent()}
        assert rows["+33612345678"].outcome == "rejected 404"
        assert rows["+33612345678"].sip_call_id == invite.call_id
        assert rows["+33198765432"].outcome == "passed: busy"
    finally:
        peer.close()


@pytest.mark.slow
def test_story_challenge_passed_then_next_call_rings(
    tmp_path: Path, make_gateway: GatewayFactory, real_service: Services,
) -> None:
    """Unknown mobile caller: challenged, presses 5, leaves a message; the next call rings."""
    from tests.peers.baresip import Baresip
    from tests.peers.fixtures import line_for
    from tests.peers.kamailio import Kamailio

    real_service.store.runtime.set("default_mode", "challenge")
    kamailio = Kamailio(tmp_path / "kam")
    caller = Baresip(tmp_path / "mobile", registrar_port=kamailio.port, user="0612345678",
                     password="mobilepw")
    try:
        kamailio.start()
        caller.start()
        from gateway.config import VoicemailConfig

        make_gateway(service=real_service, real_media=True, lines=(line_for(kamailio),),
                     voicemail=VoicemailConfig(max_seconds=2, silence_seconds=2))
        wait_until(lambda: any(r.state == "registered" for r in real_service.store.lines.all()),
                   10, "registration")
        caller.dial(f"sip:home@127.0.0.1:{kamailio.port}")
        caller.wait_event("CALL_ESTABLISHED")
        caller.press("5")
        caller.wait_event("CALL_CLOSED", timeout=20)
        wait_until(lambda: bool(real_service.store.calls.recent()) and
                   bool(real_service.store.calls.recent()[0].outcome), 10,
                   "the first call's outcome")
        first = real_service.store.calls.recent()[0]
        assert first.outcome is not None and first.outcome.startswith("challenge passed")
        assert len(real_service.store.voicemails.recent()) == 1
        # second call: the number is now allowed, so the gateway stays silent (ring)
        caller.dial(f"sip:home@127.0.0.1:{kamailio.port}")
        wait_until(lambda: len(real_service.store.calls.recent()) == 2, 10, "the second call")
        caller.hangup()
        caller.wait_event("CALL_CLOSED")
        wait_until(lambda: bool(real_service.store.calls.recent()[0].outcome), 10, "second outcome")
        second = real_service.store.calls.recent()[0]
        assert second.outcome == "passed: cancelled by caller", second.outcome
        assert second.action == "pass"
    finally:
        caller.stop()
        kamailio.stop()
