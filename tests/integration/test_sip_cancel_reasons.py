"""Issue 14 item 7: the owner declines a call on their own phone while Ringfence rings silently.

Kamailio forks each call to the owner's phone and to Ringfence's line (both registered as
"home"). Before: the owner's reject left the caller hearing ringback until Kamailio's own
timeout (120 s, then 408), and a proxy's CANCEL that said why was logged as "cancelled by
caller". Now the log says what the CANCEL's Reason says, and `pass_behaviour = "busy"` is the
documented way to let the owner's reject end the call at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.screening.rules import Action, ActionKind
from tests.peers import wait_until
from tests.peers.baresip import Baresip
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.slow


def _registered(service: FakeService) -> bool:
    return bool(service.line_states) and service.line_states[-1][1] == "registered"


def test_a_decline_on_another_phone_is_logged_as_such(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    """The owner's "phone" here is a second user agent on the same account that declines
    with 603: Kamailio then cancels Ringfence's branch with `Reason: SIP;cause=603`."""
    phone = FakeService(action=Action(ActionKind.REJECT, code=603))
    fake_service.action = Action(ActionKind.PASS)
    make_gateway(lines=(line_for(kamailio),))
    wait_until(lambda: _registered(fake_service), 10, "Ringfence's line to register")
    make_gateway(lines=(line_for(kamailio, name="phone"),), service=phone)
    wait_until(lambda: _registered(phone), 10, "the owner's phone to register")
    baresip.dial(f"sip:home@127.0.0.1:{kamailio.port}")
    closed = baresip.wait_event("CALL_CLOSED")
    assert "603" in str(closed.get("param")), closed
    assert phone.wait_finished()[0].outcome == "rejected 603"
    assert fake_service.wait_finished()[0].outcome == "passed: declined elsewhere (SIP 603)"


def test_with_pass_behaviour_busy_the_owners_reject_ends_the_call(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService, tmp_path: Path,
) -> None:
    """baresip's reject is a 486, which ends no other branch: with `ring`, the caller would
    hear ringback for Kamailio's 120 s and then get 408 (measured in the report); with `busy`
    Ringfence has left the fork already, so the owner's 486 is the last answer."""
    kamailio = make_kamailio()  # Kamailio's default 120 s INVITE timer
    owner = Baresip(tmp_path / "owner", registrar_port=kamailio.port, user="home",
                    password="homepw", register=True)
    caller = Baresip(tmp_path / "caller", registrar_port=kamailio.port)
    try:
        owner.start()
        # The REGISTER_OK event may come before ctrl_tcp is up: read baresip's own line.
        wait_until(lambda: "200 OK" in owner.log_text(), 10, "the owner's phone to register")
        caller.start()
        fake_service.action = Action(ActionKind.PASS)
        make_gateway(lines=(line_for(kamailio, pass_behaviour="busy"),))
        wait_until(lambda: _registered(fake_service), 10, "Ringfence's line to register")
        caller.dial(f"sip:home@127.0.0.1:{kamailio.port}")
        owner.wait_event("CALL_INCOMING")
        assert fake_service.wait_finished()[0].outcome == "passed: busy"
        owner.hangup()  # the owner rejects: 486
        closed = caller.wait_event("CALL_CLOSED", timeout=30)  # far less than 120 s
        assert "486" in str(closed.get("param")), closed
    finally:
        caller.stop()
        owner.stop()
