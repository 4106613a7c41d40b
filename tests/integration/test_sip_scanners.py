"""SIP scanners get no service: sipvicious (from PyPI) against a running gateway on 127.0.0.1.

svwar's INVITE scan used to be answered like real calls (voicemail, a call row each, RTP sent
to the scanner). Now every scanner request is dropped before a transaction exists: no
response, no call row, no RTP, and the gateway counts it. A bounded scan: 11 extensions and
a few seconds at most.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.call.process import Gateway
from gateway.config import Settings
from gateway.screening.rules import Action, ActionKind
from gateway.sip.message import SipResponse
from gateway.sip.ua import USER_AGENT, set_product
from tests.helpers import Services
from tests.peers import free_port, wait_until
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import RawPeer
from tests.peers.require import missing_peer

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def sipvicious(tool: str) -> str:
    path = shutil.which(f"sipvicious_{tool}", path=str(BIN)) or shutil.which(
        f"sipvicious_{tool}")
    if path is None:
        missing_peer(f"sipvicious_{tool} is not installed (pip install sipvicious)")
    return path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", database=f"sqlite:///{tmp_path}/rf.db")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = Services.open(settings)
    service.store.runtime.set("default_mode", "voicemail")  # every unknown caller is answered
    yield service
    service.store.close()


def free_pair() -> tuple[int, int]:
    """A local port for the scanner and its RTP port (local + 1000, as svwar announces)."""
    for _ in range(50):
        port = free_port()
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind(("127.0.0.1", port + 1000))
        except OSError:
            rtp.close()
            continue
        rtp.close()
        return port, port + 1000
    raise AssertionError("no free port pair")


def scanned(gateway: Gateway) -> int:
    return sum(sum(ua.scanners.values()) for ua in gateway.uas)


def test_svwar_invite_scan_gets_no_call_no_rtp_and_is_counted(
        make_gateway: GatewayFactory, service: Services) -> None:
    gateway = make_gateway(service=service, real_media=True)
    port = gateway.uas[0].port
    local, media = free_pair()
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", media))
    rtp.settimeout(0.2)
    try:
        scan = subprocess.run(
            [sipvicious("svwar"), "-m", "INVITE", "-e", "100-110", "-p", str(port),
             "-P", str(local), "-x", "127.0.0.1", "-b", "127.0.0.1", "--maximumtime", "3",
             "-t", "0.02", "--force", "127.0.0.1"],  # --force: scan on although unanswered
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        received = 0
        try:
            while True:
                rtp.recv(2048)
                received += 1
        except TimeoutError:
            pass
    finally:
        rtp.close()
    assert service.store.calls.recent() == [], scan.stdout
    assert received == 0
    assert scanned(gateway) >= 1, (scan.stdout, scan.stderr)
    # Not one answer: svwar cannot even tell that something listens here, and gives up.
    assert "found nothing" in scan.stderr or "No server response" in scan.stderr


def test_an_extension_sweep_in_svwars_shape_is_dropped_call_by_call(
        make_gateway: GatewayFactory, service: Services) -> None:
    """Without svwar's User-Agent, its From = To probe shape still gives it away."""
    gateway = make_gateway(service=service)
    peer = RawPeer(gateway.uas[0].port)
    try:
        for extension in range(100, 111):
            peer.send((
                f"INVITE sip:{extension}@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK-{extension};rport\r\n"
                f'From: "{extension}"<sip:{extension}@127.0.0.1>;tag=x{extension}\r\n'
                f'To: "{extension}"<sip:{extension}@127.0.0.1>\r\n'
                f"Call-ID: sweep{extension}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:{extension}@127.0.0.1:{peer.port}>\r\nContent-Length: 0\r\n\r\n"
            ).encode())
        # A real caller right after the sweep is answered: the gateway is alive and screening.
        invite = peer.invite(user="+33612345678")
        peer.send(invite)
        first = peer.expect(lambda m: isinstance(m, SipResponse))
        assert isinstance(first, SipResponse) and first.call_id == invite.call_id
        wait_until(lambda: bool(service.store.calls.recent()), 10, "the real call's row")
    finally:
        peer.close()
    assert scanned(gateway) == 11
    assert gateway.load.snapshot()["scanners_dropped"] == 11  # what load.json and /metrics show
    assert [r.number for r in service.store.calls.recent()] == ["+33612345678"]


def test_svmap_options_sweep_is_dropped_and_counted(make_gateway: GatewayFactory,
                                                    service: Services) -> None:
    gateway = make_gateway(service=service)
    port = gateway.uas[0].port
    scan = subprocess.run(
        [sipvicious("svmap"), "-p", str(port), "-t", "0.02", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=False)
    assert "Ringfence" not in scan.stdout  # not even identified
    assert scanned(gateway) >= 1, (scan.stdout, scan.stderr)


def options_server_header(port: int) -> str | None:
    """The Server header of the gateway's answer to an OPTIONS (no call, no call thread)."""
    peer = RawPeer(port)
    try:
        peer.send((
            f"OPTIONS sip:ringfence@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bKopt{peer.port};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=o{peer.port}\r\n"
            f"To: <sip:ringfence@127.0.0.1>\r\nCall-ID: opt{peer.port}@test\r\n"
            f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
        answer = peer.expect_status(200)
        return answer.get("Server")
    finally:
        peer.close()


def test_the_server_header_names_no_version(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    assert options_server_header(gateway.uas[0].port) == "Ringfence"


def test_a_refer_from_the_caller_is_refused(make_gateway: GatewayFactory,
                                            fake_service: FakeService) -> None:
    fake_service.action = Action(ActionKind.VOICEMAIL)  # an answered call, with a dialog
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    try:
        invite = peer.invite()
        peer.send(invite)
        ok = peer.expect_status(200)
        peer.send(RawPeer.follow_up(invite, "ACK", to=ok.get("To")))
        peer.send(RawPeer.follow_up(invite, "REFER", to=ok.get("To"), new_branch=True,
                                    extra="Refer-To: <sip:+33899000000@127.0.0.1>\r\n"))
        refused = peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq()[1] == "REFER")
        assert isinstance(refused, SipResponse)
        assert refused.status == 405 and "REFER" not in (refused.get("Allow") or "")
        peer.send(RawPeer.follow_up(invite, "BYE", to=ok.get("To"), new_branch=True))
        peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq()[1] == "BYE")
    finally:
        peer.close()


def test_the_server_header_can_be_changed_or_left_out(make_gateway: GatewayFactory) -> None:
    try:
        for configured, expected in (("PBX", "PBX"), ("", None)):
            gateway = make_gateway(user_agent=configured)
            assert options_server_header(gateway.uas[0].port) == expected
            gateway.stop()
    finally:
        set_product(USER_AGENT)  # the header is process-wide: leave the default behind
