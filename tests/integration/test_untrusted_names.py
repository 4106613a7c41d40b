"""Control and bidi characters in a real SIP display name never reach the page, in Chromium.

A raw INVITE whose display name carries ESC sequences, U+202E (RIGHT-TO-LEFT OVERRIDE), NUL
and a Hebrew word goes through the real gateway into the call log; `ringfence web` serves
/calls and headless Chromium renders it: the text is there, the controls are not, and the
name sits in a <bdi> so it cannot reorder the number beside it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.sip.message import SipResponse
from tests.helpers import Services
from tests.peers import wait_until
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import SDP_OFFER, RawPeer
from tests.peers.require import missing_peer
from tests.peers.web import make_config, ringfence, running_web

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a long enough password"
HOSTILE_NAME = "\u202eelbuod\x1b[2J\x1b]0;pwned\x07 Bob \u05e9\u05dc\u05d5\u05dd"
SHOWN = "elbuod[2J]0;pwned Bob \u05e9\u05dc\u05d5\u05dd"


def hostile_invite(peer: RawPeer, name: str, user: str) -> bytes:
    call_id = uuid.uuid4().hex
    return (
        f"INVITE sip:ringfence@127.0.0.1:{peer.gateway_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK{call_id[:12]};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f'From: "{name}" <sip:{user}@127.0.0.1>;tag=t{call_id[:6]}\r\n'
        f"To: <sip:ringfence@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{peer.port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP_OFFER)}\r\n\r\n{SDP_OFFER}"
    ).encode()


@pytest.fixture
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        missing_peer(f"{CHROMIUM} is not installed (apt-get install chromium)")
    if os.environ.get("RINGFENCE_REQUIRE_PEERS"):
        import playwright.sync_api as playwright_api  # CI: a missing package must fail
    else:
        playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_a_hostile_display_name_is_inert_in_the_call_log(
        make_gateway: GatewayFactory, browser: object, tmp_path: Path) -> None:
    config = make_config(tmp_path / "home")
    assert ringfence(config, "db", "upgrade").returncode == 0
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD, encoding="utf-8")
    assert ringfence(config, "set-password", "--password-file", str(secret)).returncode == 0
    service = Services.open(load_settings(config))
    gateway = make_gateway(service=service, pass_behaviour="busy")
    peer = RawPeer(gateway.uas[0].port)
    try:
        peer.send(hostile_invite(peer, HOSTILE_NAME, "+33612345678"))
        final = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200)
        assert isinstance(final, SipResponse) and final.status == 486
        wait_until(lambda: bool(service.store.calls.recent()), 10, "the call to be logged")
    finally:
        peer.close()
    assert "\u202e" in service.store.calls.recent()[0].display_name  # stored as it came

    with running_web(config) as server:
        context = browser.new_context()  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(server.url + "/login")
        page.fill("#f-password", PASSWORD)
        page.click("button.primary")
        page.wait_for_url(server.url + "/")
        response = page.goto(server.url + "/calls")
        assert response is not None and response.status == 200
        html = response.text()
        for bad in ("\u202e", "\x1b", "\x07", "\x00"):
            assert bad not in html
            assert bad not in page.content()
        name = page.locator(".row .name bdi").first
        assert name.inner_text() == SHOWN
        # Isolated, the name's Hebrew cannot carry the number beside it into its own order.
        assert name.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
        context.close()
