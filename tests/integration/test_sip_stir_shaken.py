"""Issue 14 item 4: INVITEs carrying real-shaped STIR/SHAKEN Identity headers (signed by a key
the test makes), and malformed ones, through the real gateway, store and default rules.

Before: the Identity header was not read, so a PASSporT with `attest: "C"` rang like any call.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import Settings, StirConfig
from gateway.screening.caller import Signature
from gateway.sip.message import SipResponse
from tests.helpers import Services
from tests.peers import wait_until
from tests.peers.fixtures import GatewayFactory
from tests.peers.raw import RawPeer
from tests.stir import Signer, tamper


class CertificateRepository:
    """An HTTP server on loopback serving one certificate (an STI-CR stand-in)."""

    def __init__(self, pem: bytes) -> None:
        self.requests: list[str] = []
        repository = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                repository.requests.append(self.path)
                if self.path != "/sp-1234.pem":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pem-certificate-chain")
                self.send_header("Content-Length", str(len(pem)))
                self.end_headers()
                self.wfile.write(pem)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> CertificateRepository:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def real_service(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", database=f"sqlite:///{tmp_path}/rf.db")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = Services.open(settings)
    service.store.rules.seed_defaults()
    # Many unknown callers in a row: burst mode would answer them all and hide the rule.
    service.store.runtime.set("burst", {"enabled": False})
    yield service
    service.db.dispose()


_numbers = iter(range(10, 99))


def call(port: int, identity: str | None, service: Services,
         number: str = "") -> tuple[int, str]:
    """Place one call (from `number`, else a new one each time, so that no repeat limit
    applies); the first final status and the logged reason."""
    peer = RawPeer(port)
    try:
        number = number or f"+336123456{next(_numbers)}"
        invite = peer.invite(user=number,
                             extra=f"Identity: {identity}\r\n" if identity else "")
        peer.send(invite)
        wait_until(lambda: any(r.sip_call_id == invite.call_id
                               for r in service.store.calls.recent()), 15, "the call's row")
        row = next(r for r in service.store.calls.recent() if r.sip_call_id == invite.call_id)
        if row.action == "pass":
            peer.send(RawPeer.follow_up(invite, "CANCEL"))
        final = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200
                            and m.cseq()[1] == "INVITE", timeout=15, what="the final")
        assert isinstance(final, SipResponse)
        if final.status == 200:  # answered (the challenge): the caller hangs up at once
            peer.send(RawPeer.follow_up(invite, "ACK", to=final.get("To"), new_branch=True))
            peer.send(RawPeer.follow_up(invite, "BYE", to=final.get("To"), new_branch=True))
            peer.expect(lambda m: isinstance(m, SipResponse) and m.cseq()[1] == "BYE",
                        timeout=15, what="the answer to our BYE")
        return final.status, row.reason
    finally:
        peer.close()


def test_identity_headers_decide_through_the_default_rule(
    tmp_path: Path, make_gateway: GatewayFactory, real_service: Services,
) -> None:
    signer = Signer(now=datetime.now(UTC))
    with CertificateRepository(signer.pem()) as repository:
        signer.x5u = repository.base + "sp-1234.pem"
        gateway = make_gateway(service=real_service, stir=StirConfig(
            certificate_urls=(repository.base,), wait_ms=1000))
        port = gateway.uas[0].port
        check = gateway.check_signature
        assert check is not None

        # Attestation C from an unknown caller: challenged. The certificate is fetched in the
        # background; whether this first call saw it depends on the machine's speed.
        status, reason = call(port, signer.passport(attest="C"), real_service, "+33612345678")
        assert status == 200  # answered: the challenge
        assert reason.startswith("STIR/SHAKEN attestation C: the caller's network does not "
                                 "vouch for the number (signature ")
        token = signer.passport().split(";")[0]
        head, claims, sig = token.split(".")
        wait_until(lambda: check(signer.x5u, b"x", b"", datetime.now(UTC))
                   is not Signature.PENDING, 30, "the certificate download")
        status, reason = call(port, signer.passport("33612345601", attest="C"), real_service,
                              "+33612345601")
        assert (status, reason) == (200, "STIR/SHAKEN attestation C: the caller's network "
                                         "does not vouch for the number (signature verified) "
                                         "[doubtful STIR/SHAKEN]")
        assert repository.requests == ["/sp-1234.pem"]  # fetched once

        # Full attestation, verified: nothing doubtful, the call rings.
        status, reason = call(port, signer.passport("33612345602", attest="A"), real_service,
                              "+33612345602")
        assert status == 487 and "STIR" not in reason

        # Signed for another number (a spoofer replaying a real token): challenged.
        status, reason = call(port, signer.passport(attest="A", orig="33699999999"),
                              real_service)
        assert status == 200
        assert reason.startswith("the STIR/SHAKEN token was signed for 33699999999, not for "
                                 "this number (signature verified)")

        # An attestation changed after signing: forged.
        status, reason = call(port, tamper(signer.passport("33612345603", attest="C")),
                              real_service, "+33612345603")
        assert status == 200
        assert reason.startswith("the STIR/SHAKEN signature for 33612345603 does not verify")

        # Malformed headers change nothing: the call rings as without one.
        for garbage in ("nonsense", f"{head}..{sig}", f"{head}.{claims}.{sig}!;info=<x>",
                        "e30.e30.;ppt=shaken"):
            status, reason = call(port, garbage, real_service)
            assert status == 487 and "STIR" not in reason, (garbage, reason)

        # A certificate from a URL the owner did not allow is never fetched.
        stranger = Signer(x5u="http://127.0.0.1:9/sp-1234.pem", key=signer.key, now=signer.now)
        status, reason = call(port, stranger.passport("33612345604", attest="C"), real_service,
                              "+33612345604")
        assert status == 200
        assert "(signature not verified: no certificate for it)" in reason
        assert repository.requests == ["/sp-1234.pem"]
