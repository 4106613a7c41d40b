"""Calls from a real caller (baresip) through a real proxy (Kamailio) to the gateway."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.call.process import Gateway
from gateway.screening.rules import Action, ActionKind
from tests.peers import wait_until
from tests.peers.baresip import Baresip
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.slow


def register_home(make_gateway: GatewayFactory, kamailio: Kamailio, service: FakeService,
                  **line_options: object) -> Gateway:
    gateway = make_gateway(lines=(line_for(kamailio, **line_options),))
    wait_until(lambda: bool(service.line_states) and service.line_states[-1][1] == "registered",
               10, "the gateway to register")
    return gateway


def home_uri(kamailio: Kamailio) -> str:
    return f"sip:home@127.0.0.1:{kamailio.port}"


def test_allowed_call_rings_silently_and_caller_cancel_gets_487(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.PASS)
    register_home(make_gateway, kamailio, fake_service)
    baresip.dial(home_uri(kamailio))
    wait_until(lambda: len(fake_service.calls) == 1, 10, "the gateway to screen the call")
    baresip.hangup()  # the caller gives up: CANCEL
    closed = baresip.wait_event("CALL_CLOSED")
    calls = fake_service.wait_finished()
    assert calls[0].outcome == "passed: cancelled by caller"
    # Kamailio logs the relayed 487 asynchronously: wait for the line rather than race it.
    if "487" not in str(closed):
        wait_until(lambda: "RPL(any) 487" in kamailio.log_text(), 10,
                   "Kamailio to relay our 487 to the caller")


@pytest.mark.parametrize("code", [603, 404])
def test_blocked_call_is_rejected_with_the_code(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService, code: int,
) -> None:
    fake_service.action = Action(ActionKind.REJECT, code=code)
    register_home(make_gateway, kamailio, fake_service)
    baresip.dial(home_uri(kamailio))
    closed = baresip.wait_event("CALL_CLOSED")
    assert str(code) in str(closed.get("param")), closed
    assert fake_service.wait_finished()[0].outcome == f"rejected {code}"


def test_gateway_hangs_up_through_record_routing_kamailio(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService, tmp_path: object,
) -> None:
    kamailio = make_kamailio(record_route=True)
    peer = Baresip(tmp_path / "rr-baresip", registrar_port=kamailio.port)  # type: ignore[operator]
    try:
        peer.start()
        fake_service.action = Action(ActionKind.ANNOUNCE, prompt="not_in_service")
        register_home(make_gateway, kamailio, fake_service)
        peer.dial(home_uri(kamailio))
        peer.wait_event("CALL_ESTABLISHED")
        closed = peer.wait_event("CALL_CLOSED")  # our BYE reached the caller via the proxy
        assert fake_service.wait_finished()[0].outcome == "announced"
        # the BYE went through Kamailio (loose_route), not straight to the caller
        assert "REQ BYE" in kamailio.log_text(), kamailio.log_tail()
        assert "Not here" not in kamailio.log_text()
        del closed
    finally:
        peer.stop()


def sip_request(method: str, port: int, local_port: int, extra: str = "") -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex[:10]
    return (
        f"{method} sip:ringfence@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag={branch[-6:]}\r\n"
        f"To: <sip:ringfence@127.0.0.1>\r\nCall-ID: {branch}@test\r\nCSeq: 1 {method}\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def test_options_answered_over_udp_and_tcp(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    port = gateway.uas[0].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        udp.sendto(sip_request("OPTIONS", port, udp.getsockname()[1]), ("127.0.0.1", port))
        reply = udp.recv(4096)
    assert reply.startswith(b"SIP/2.0 200 OK")
    assert b"Allow: INVITE" in reply
    with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
        tcp.sendall(sip_request("OPTIONS", port, tcp.getsockname()[1]).replace(b"UDP", b"TCP"))
        reply = tcp.recv(4096)
    assert reply.startswith(b"SIP/2.0 200 OK")


def test_unknown_dialog_gets_481(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    port = gateway.uas[0].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        bye = sip_request("BYE", port, udp.getsockname()[1]).replace(
            b"To: <sip:ringfence@127.0.0.1>", b"To: <sip:ringfence@127.0.0.1>;tag=nosuch")
        udp.sendto(bye, ("127.0.0.1", port))
        assert udp.recv(4096).startswith(b"SIP/2.0 481")


def test_malformed_flood_does_not_stop_the_next_call(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.REJECT, code=603)
    gateway_port = register_home(make_gateway, kamailio, fake_service).uas[0].port
    valid = sip_request("INVITE", gateway_port, 9)
    garbage = [
        b"", b"\x00" * 100, b"INVITE", b"SIP/2.0 200", valid[:50], valid[: len(valid) // 2],
        valid.replace(b"CSeq: 1 INVITE", b"CSeq: x"), valid.replace(b"Via:", b"Via;"),
        b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 300 + b"\r\n", bytes(range(256)) * 4,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for i in range(500):
            udp.sendto(garbage[i % len(garbage)] + str(i).encode() * (i % 3),
                       ("127.0.0.1", gateway_port))
    baresip.dial(home_uri(kamailio))
    closed = baresip.wait_event("CALL_CLOSED")
    assert "603" in str(closed.get("param")), closed
    assert fake_service.wait_finished()[0].outcome == "rejected 603"


def test_line_over_tcp_registers_and_takes_calls(
    kamailio: Kamailio, baresip: Baresip, make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    fake_service.action = Action(ActionKind.REJECT, code=603)
    register_home(make_gateway, kamailio, fake_service, transport="tcp")
    assert "REQ REGISTER" in kamailio.log_text()
    baresip.dial(home_uri(kamailio))  # baresip -> Kamailio over UDP, Kamailio -> us over TCP
    closed = baresip.wait_event("CALL_CLOSED")
    assert "603" in str(closed.get("param")), closed
    assert fake_service.wait_finished()[0].outcome == "rejected 603"


def test_challenge_passed_is_transferred_with_refer(
    kamailio: Kamailio, make_gateway: GatewayFactory, fake_service: FakeService,
    tmp_path: Path,
) -> None:
    """The caller presses 5; we REFER it to the line's refer_to and the caller's UA follows."""
    caller = Baresip(tmp_path / "mobile", registrar_port=kamailio.port, user="0612345678",
                     password="mobilepw")
    try:
        caller.start()
        fake_service.action = Action(ActionKind.CHALLENGE, prompt="challenge")
        owner = f"sip:owner@127.0.0.1:{kamailio.port}"
        make_gateway(lines=(line_for(kamailio, refer_to=owner),), real_media=True)
        wait_until(lambda: bool(fake_service.line_states)
                   and fake_service.line_states[-1][1] == "registered", 10, "registration")
        caller.dial(home_uri(kamailio))
        caller.wait_event("CALL_ESTABLISHED")
        caller.press("5")
        log = fake_service.wait_finished(timeout=45)[0]
        assert log.outcome == "challenge passed: transferred", log.outcome
        assert fake_service.allowed == ["+33612345678"]
        # REFER goes to the caller's Contact; the caller then dialled the transfer target
        assert "REQ INVITE sip:owner@" in kamailio.log_text(), kamailio.log_tail()
    finally:
        caller.stop()
