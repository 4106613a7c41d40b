"""Registration against a real Kamailio: digest variants, refresh, failure, registrar restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.sip.register import KEEPALIVE_SECONDS, PROBE_WAIT
from tests.peers import wait_until
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.slow


def registered(service: FakeService, name: str = "home") -> bool:
    return bool(service.line_states) and service.line_states[-1][:2] == (name, "registered")


def test_registers_and_refreshes_before_server_expiry(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    kamailio = make_kamailio(max_expires=4)  # the server grants less than the 60 s we ask for
    gateway = make_gateway(lines=(line_for(kamailio, expires=60),))
    registration = gateway.registrations[0]
    wait_until(lambda: registered(fake_service), 10, "the line to register")
    assert registration.expires == 4
    wait_until(lambda: registration.registrations >= 3, 15, "two refreshes")
    assert ("home", "registering", None) in fake_service.line_states
    # every REGISTER in one run shares a random Call-ID (RFC 3261 §10.2)
    assert kamailio.count_in_log(f"ci={registration.call_id}") >= 3


@pytest.mark.parametrize(
    "options",
    [
        {"qop": True, "algorithm": "SHA-256"},
        {"qop": True, "proxy_auth": True},
        {"qop": False},
    ],
    ids=["401-qop-sha256", "407-qop-md5", "401-no-qop-md5"],
)
def test_digest_variants(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService, options: dict[str, object],
) -> None:
    kamailio = make_kamailio(**options)
    make_gateway(lines=(line_for(kamailio),))
    wait_until(lambda: registered(fake_service), 10, "the line to register")


def test_wrong_password_fails_and_keeps_retrying(
    kamailio: Kamailio, make_gateway: GatewayFactory, fake_service: FakeService,
) -> None:
    gateway = make_gateway(lines=(line_for(kamailio, password="wrong"),))
    wait_until(lambda: any(s[1] == "failed" for s in fake_service.line_states), 10,
               "a failed state")
    failed = next(s for s in fake_service.line_states if s[1] == "failed")
    assert failed[2] is not None and "credentials refused" in failed[2]
    first = kamailio.count_in_log("REQ REGISTER")
    wait_until(lambda: kamailio.count_in_log("REQ REGISTER") > first + 1, 10, "a retry")
    assert gateway.registrations[0].state in ("failed", "registering")


def test_reregisters_after_kamailio_restart(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    kamailio = make_kamailio(max_expires=4)
    gateway = make_gateway(lines=(line_for(kamailio),))
    registration = gateway.registrations[0]
    wait_until(lambda: registered(fake_service), 10, "the first registration")
    kamailio.restart()  # usrloc is in memory: the binding is gone
    before = registration.registrations
    wait_until(lambda: registration.registrations > before, 15, "registration after restart")
    assert "REQ REGISTER" in kamailio.log_text().split("signal 15")[-1]


def test_a_registrar_outage_is_seen_between_refreshes_and_ends_with_a_new_registration(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    kamailio = make_kamailio()
    # A 10-minute binding: before issue 11 the outage showed only at the refresh, 9 min away.
    gateway = make_gateway(lines=(line_for(kamailio, expires=600),))
    registration = gateway.registrations[0]
    wait_until(lambda: registered(fake_service), 10, "the first registration")
    assert registration.expires == 600
    wait_until(lambda: kamailio.count_in_log("REQ OPTIONS") >= 1, 30, "a keep-alive OPTIONS")
    kamailio.stop()
    # Bounded by design at KEEPALIVE_SECONDS + PROBE_WAIT (18 s); the wait here is generous.
    wait_until(lambda: registration.state == "unreachable", 60, "the line to be unreachable")
    assert fake_service.line_states[-1] == (
        "home", "unreachable", "the registrar does not answer OPTIONS")
    before = registration.registrations
    kamailio.start()  # same port; its bindings are gone with the old process
    wait_until(lambda: registered(fake_service), 30, "the line registered again")
    assert registration.registrations == before + 1
    assert "REQ REGISTER" in kamailio.log_text().split("signal 15")[-1]
    states = [state for _, state, _ in fake_service.line_states]
    assert states[-3:] == ["unreachable", "registering", "registered"]


def test_the_keep_alive_finds_the_outage_well_within_30_seconds() -> None:
    assert KEEPALIVE_SECONDS + PROBE_WAIT <= 20  # the slowest a lost registrar is noticed
    assert PROBE_WAIT > 7.5  # a probe outlives four retransmissions (0.5+1+2+4 s): no flap


def test_options_flood_during_refreshes_does_not_break_registration(
    make_kamailio: Callable[..., Kamailio], make_gateway: GatewayFactory,
    fake_service: FakeService,
) -> None:
    """pyVoIP took an OPTIONS answer for the REGISTER answer; our transactions cannot."""
    import socket
    import threading
    import uuid

    kamailio = make_kamailio(max_expires=3)
    gateway = make_gateway(lines=(line_for(kamailio),))
    registration = gateway.registrations[0]
    wait_until(lambda: registered(fake_service), 10, "the line to register")
    port = gateway.uas[0].port
    stop = threading.Event()
    answered = [0]

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            udp.settimeout(0.05)
            local = udp.getsockname()[1]
            for _ in range(5000):  # bounded; stops earlier when the test is done
                if stop.is_set():
                    return
                branch = "z9hG4bK" + uuid.uuid4().hex[:10]
                udp.sendto((
                    f"OPTIONS sip:home@127.0.0.1:{port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
                    f"From: <sip:k@127.0.0.1>;tag=1\r\nTo: <sip:home@127.0.0.1>\r\n"
                    f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode(), ("127.0.0.1", port))
                try:
                    if udp.recv(4096).startswith(b"SIP/2.0 200"):
                        answered[0] += 1
                except TimeoutError:
                    pass

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        before = registration.registrations
        wait_until(lambda: registration.registrations >= before + 3, 20, "refreshes in a flood")
    finally:
        stop.set()
        flooder.join(10)
    assert registered(fake_service)
    assert answered[0] > 10
    assert all(state != "failed" for _, state, _ in fake_service.line_states)
