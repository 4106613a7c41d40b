"""Which requests give a SIP scanner away, and which real callers never do."""

from __future__ import annotations

import pytest

from gateway.sip.message import SipRequest, parse_message
from gateway.sip.scanners import _signature_cached, scanner_signature


def request(method: str = "INVITE", *, ua: str = "", sender: str = '"Alice" <sip:+33612345678@'
            'provider.example>', to: str = "<sip:home@provider.example>",
            contact: str = "<sip:alice@192.0.2.10:5060>") -> SipRequest:
    text = (f"{method} sip:home@192.0.2.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n"
            f"From: {sender};tag=1\r\nTo: {to}\r\nCall-ID: a@b\r\nCSeq: 1 {method}\r\n"
            f"Contact: {contact}\r\n" + (f"User-Agent: {ua}\r\n" if ua else "")
            + "Content-Length: 0\r\n\r\n")
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


@pytest.mark.parametrize(("built", "signature"), [
    (request(ua="friendly-scanner"), "User-Agent friendly-scanner"),
    (request("OPTIONS", ua="sipvicious 0.3.8"), "User-Agent sipvicious"),
    (request("REGISTER", ua="sipcli/v1.8"), "User-Agent sipcli"),
    (request(ua="VaxSIPUserAgent/3.1"), "User-Agent vaxsipuseragent"),
    (request(ua="sundayddr"), "User-Agent sundayddr"),
    (request(ua="smap 0.6.0"), "User-Agent smap"),
    (request("OPTIONS", sender='"sipvicious"<sip:100@1.1.1.1>'), "From sipvicious"),
    (request(sender="<sip:100@1.1.1.1>"), "From sip:100@1.1.1.1"),
    (request(contact="<sip:123@1.1.1.1>"), "Contact sip:123@1.1.1.1"),
    (request(sender='"1000"<sip:1000@192.0.2.1>', to='"1000"<sip:1000@192.0.2.1>'),
     "From = To (extension probe)"),
])
def test_scanners_are_recognised(built: SipRequest, signature: str) -> None:
    assert scanner_signature(built) == signature


@pytest.mark.parametrize("built", [
    request(),
    request(ua="baresip v3.0.0 (x86_64/linux)"),
    request(ua="AVM FRITZ!Box 7590 154.07.57"),
    request(ua="Asterisk PBX 20.5.0"),
    request(ua="Linphone Desktop/5.2 (smapper)"),  # a word that merely contains a tool's name
    # A REGISTER has From = To by design; so does a caller spoofing the owner's own number
    # to the owner, when the display names are not the bare user.
    request("REGISTER", sender="<sip:home@provider.example>", to="<sip:home@provider.example>"),
    request(sender='"+33612345678" <sip:+33612345678@p.example>',
            to="<sip:+33612345678@p.example>"),
    request("BYE", ua="friendly-scanner"),  # only INVITE, OPTIONS and REGISTER are screened
])
def test_real_callers_are_never_taken_for_scanners(built: SipRequest) -> None:
    assert scanner_signature(built) is None


def test_the_check_of_a_flood_is_remembered_not_repeated() -> None:
    """A flood's requests differ only in tags, branches and Call-IDs, which the check does not
    read: the second is answered from what the first left (its URIs are not parsed again)."""
    first = request(sender='"Flood" <sip:+33612000666@192.0.2.99>')
    again = parse_message(first.to_bytes().replace(b"tag=1", b"tag=2").replace(
        b"Call-ID: a@b", b"Call-ID: c@d"))
    assert isinstance(again, SipRequest)
    assert scanner_signature(first) is None
    hits = _signature_cached.cache_info().hits
    assert scanner_signature(again) is None
    assert _signature_cached.cache_info().hits == hits + 1
    # Anything it reads is in what it remembers by: a scanner's User-Agent is not missed.
    scanner = parse_message(again.to_bytes().replace(
        b"Content-Length", b"User-Agent: friendly-scanner\r\nContent-Length"))
    assert isinstance(scanner, SipRequest)
    assert scanner_signature(scanner) == "User-Agent friendly-scanner"
