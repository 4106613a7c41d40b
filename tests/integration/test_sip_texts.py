"""Text messages (SIP MESSAGE, RFC 3428) from a real SIP client (SIPp) through a real proxy
(Kamailio, the owner's registrar) to the gateway registered as the home line, screened by the
real screener on a real database: accepted ones 202 and kept, blocked ones refused with the
entry's code, a flood from one sender rate-limited, and malformed ones refused precisely."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import MessagesConfig, Settings
from gateway.screening.rules import ListName
from gateway.sip.message import SipRequest, SipResponse, parse_message
from tests.helpers import Services
from tests.peers import require_binary, wait_until
from tests.peers.fakes import FakeService
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio
from tests.peers.raw import RawPeer

pytestmark = pytest.mark.slow

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="one text">
  <send retrans="500"><![CDATA[
      MESSAGE sip:home@127.0.0.1:{proxy_port} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{sender}@127.0.0.1>;tag=[pid]T[call_number]
      To: <sip:home@127.0.0.1:{proxy_port}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: {content_type}
      Content-Length: [len]

{body}
  ]]></send>
  <recv response="{expect}"/>
</scenario>
"""


@pytest.fixture
def peers() -> Iterator[list[RawPeer]]:
    made: list[RawPeer] = []
    yield made
    for peer in made:
        peer.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", database=f"sqlite:///{tmp_path}/rf.db",
                        messages=MessagesConfig(per_sender=2, window_minutes=10))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services = Services.open(settings)
    try:
        yield services
    finally:
        services.db.dispose()


def send_text(tmp_path: Path, kamailio: Kamailio, *, sender: str, body: str, expect: int,
              name: str = "Someone", content_type: str = "text/plain;charset=UTF-8") -> None:
    """One MESSAGE from SIPp to the home line via Kamailio; fails unless `expect` comes."""
    sipp = require_binary("sipp")
    scenario = tmp_path / f"text-{sender}-{expect}.xml"
    scenario.write_text(SCENARIO.format(proxy_port=kamailio.port, sender=sender, name=name,
                                        body=body, expect=expect, content_type=content_type),
                        encoding="utf-8")
    result = subprocess.run(
        [sipp, f"127.0.0.1:{kamailio.port}", "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1",
         "-p", "0", "-timeout", "20", "-timeout_error", "-nostdin", "-trace_err",
         "-error_file", str(tmp_path / f"sipp-{sender}-{expect}.err")],
        capture_output=True, timeout=40, cwd=tmp_path, check=False,
    )
    errors = tmp_path / f"sipp-{sender}-{expect}.err"
    detail = errors.read_text(errors="replace")[-1500:] if errors.exists() else ""
    assert result.returncode == 0, (result.returncode, detail, kamailio.log_tail())


def start_home(make_gateway: GatewayFactory, kamailio: Kamailio, service: Services) -> None:
    make_gateway(lines=(line_for(kamailio),), service=service)
    wait_until(lambda: any(s.state == "registered" for s in service.store.lines.all()), 10,
               "the gateway to register")


def test_texts_through_kamailio_are_screened_stored_and_answered(
    kamailio: Kamailio, make_gateway: GatewayFactory, service: Services, tmp_path: Path,
) -> None:
    service.store.entries.add(ListName.BLOCK, "+33162000001", kind="exact", label="pest")
    start_home(make_gateway, kamailio, service)

    send_text(tmp_path, kamailio, sender="0612345678", body="Rendez-vous à 18 h, ça va ?",
              expect=202)
    send_text(tmp_path, kamailio, sender="0162000001", body="Offre spéciale", expect=603)

    rows = service.store.messages.recent()
    assert [(r.number, r.verdict, r.status) for r in rows] == [
        ("+33162000001", "refused", 603), ("+33612345678", "accepted", 202)]
    accepted = rows[1]
    assert accepted.body.rstrip("\r\n") == "Rendez-vous à 18 h, ça va ?"  # SIPp adds CRLF
    assert accepted.display_name == "Someone" and accepted.line == "home"
    assert rows[0].reason_code == "block" and rows[0].rule is not None


def test_one_sender_flooding_texts_is_rate_limited(
    kamailio: Kamailio, make_gateway: GatewayFactory, service: Services, tmp_path: Path,
) -> None:
    start_home(make_gateway, kamailio, service)
    for n in range(2):
        send_text(tmp_path, kamailio, sender="0699000001", body=f"text {n}", expect=202)
    send_text(tmp_path, kamailio, sender="0699000001", body="text 2", expect=486)
    refused = service.store.messages.recent(limit=1)[0]
    assert (refused.verdict, refused.step, refused.reason_code) == ("refused", "text_rate",
                                                                   "text_rate")
    # Another sender is not held back by the first one's limit.
    send_text(tmp_path, kamailio, sender="0699000002", body="hello", expect=202)


def message(peer: RawPeer, *, body: bytes, content_type: str | None) -> SipRequest:
    """A MESSAGE straight to the gateway (the proxy would refuse none of these)."""
    parsed = parse_message(peer.follow_up(peer.invite(user="+33612345678"), "MESSAGE",
                                          new_branch=True))
    assert isinstance(parsed, SipRequest)
    request = parsed
    if content_type is not None:
        request.add("Content-Type", content_type)
    request.body = body
    return request


@pytest.mark.parametrize(
    ("body", "content_type", "status", "warning"),
    [
        (b"x" * 5000, "text/plain", 413, "body of 5000 bytes; at most 4096"),
        (b"<b>hi</b>", "text/html", 415, "text/html is not taken"),
        (b"hi", None, 415, "no Content-Type is not taken"),
        (b"hi", "text/plain;charset=klingon", 415, "charset 'klingon' is not known"),
    ],
    ids=["too-large", "html", "no-type", "unknown-charset"],
)
def test_malformed_texts_get_a_precise_refusal_and_nothing_is_stored(
    make_gateway: GatewayFactory, service: Services, peers: list[RawPeer], body: bytes,
    content_type: str | None, status: int, warning: str,
) -> None:
    gateway = make_gateway(service=service)
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    peer.send(message(peer, body=body, content_type=content_type))
    response = peer.expect_status(status)
    assert isinstance(response, SipResponse)
    assert warning in (response.get("Warning") or "")
    assert service.store.messages.count() == 0


def test_a_text_in_latin1_is_decoded_by_its_charset(
    make_gateway: GatewayFactory, service: Services, peers: list[RawPeer],
) -> None:
    gateway = make_gateway(service=service)
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    peer.send(message(peer, body="Numéro\x1b[31m reçu".encode("latin-1"),
                      content_type="text/plain; charset=ISO-8859-1"))
    peer.expect_status(202)
    row = service.store.messages.recent()[0]
    assert row.body == "Numéro\x1b[31m reçu"  # kept as sent; made inert where it is shown
    assert row.charset == "iso8859-1"


def test_without_a_text_keeper_message_is_still_405(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    peer.send(message(peer, body=b"hi", content_type="text/plain"))
    assert peer.expect_status(405).get("Allow")
