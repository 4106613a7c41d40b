"""Issue 14 item 5: a Fritz!Box's internal calls (intercom `**9`, DECT `**610`, extension 620)
ring silently and are never screened, whatever the line's pass behaviour.

Before: `**610` is no phone number, so the default rule "invalid numbers leave a message"
answered the intercom with the voicemail greeting (a 200 OK).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.sip.message import SipRequest, SipResponse, parse_message
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


@pytest.mark.parametrize("user", ["**610", "**9", "620"])
def test_an_internal_call_rings_silently_and_is_no_stranger(
    make_gateway: GatewayFactory, real_service: Services, user: str,
) -> None:
    gateway = make_gateway(service=real_service, pass_behaviour="busy")
    peer = RawPeer(gateway.uas[0].port)
    try:
        # As a Fritz!Box sends it to a registered IP phone: its own address, the device's name.
        invite = parse_message(peer.invite(user=user).to_bytes().replace(
            b'"Test Caller" <sip:', b'"DECT 1" <sip:').replace(
            b"@127.0.0.1>;tag=", b"@192.168.178.1>;tag="))
        assert isinstance(invite, SipRequest)
        peer.send(invite)
        wait_until(lambda: any(r.sip_call_id == invite.call_id
                               for r in real_service.store.calls.recent()),
                   10, "the internal call to be logged while it rings")
        row = real_service.store.calls.recent()[0]
        assert (row.step, row.caller_kind, row.action, row.unknown) == (
            "internal", "internal", "pass", False)
        assert row.reason_code == "internal"
        peer.send(RawPeer.follow_up(invite, "CANCEL"))
        finals: list[SipResponse] = []
        while not finals or finals[-1].status != 487:
            message = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200
                                  and m.cseq()[1] == "INVITE", what="a final to the INVITE")
            assert isinstance(message, SipResponse)
            finals.append(message)
        assert [f.status for f in finals] == [487]  # no 200 (voicemail), no 486 (busy)
        wait_until(lambda: real_service.store.calls.recent()[0].outcome is not None, 10,
                   "the outcome")
        assert real_service.store.calls.recent()[0].outcome == "passed: cancelled by caller"
    finally:
        peer.close()
