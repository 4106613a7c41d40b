"""Parser and serialiser: RFC 4475-style torture messages, compact forms, and a bounded fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip import message as sip_message
from gateway.sip.message import (
    MAX_MESSAGE_BYTES,
    SipParseError,
    SipRequest,
    SipResponse,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_commas,
)


def crlf(text: str) -> bytes:
    """Turn a readable multi-line literal into wire format."""
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


BASIC_INVITE = crlf("""
INVITE sip:home@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: <sip:home@127.0.0.1>
From: "Alice \\"A\\" Smith" <sip:+33612345678@example.org>;tag=1928301774
Call-ID: a84b4c76e66710@pc33
CSeq: 314159 INVITE
Contact: <sip:alice@10.0.0.1:5070>
Supported:
Content-Type: application/sdp
Content-Length: 5

v=0
""")


def test_basic_invite_fields() -> None:
    message = parse_message(BASIC_INVITE)
    assert isinstance(message, SipRequest)
    assert message.method == "INVITE"
    assert message.uri == "sip:home@127.0.0.1"
    assert message.call_id == "a84b4c76e66710@pc33"
    assert message.cseq() == (314159, "INVITE")
    assert message.from_().display_name == 'Alice "A" Smith'
    assert message.from_().tag == "1928301774"
    assert message.get("Supported") == ""  # an empty header is kept, not a reason to drop
    assert message.body == b"v=0\r\n"
    assert message.top_via().branch == "z9hG4bK776asdhds"
    assert "rport" in message.top_via().params


def test_compact_forms_case_and_folding() -> None:
    """RFC 4475 §3.1.1.1-style: compact names, odd case, folded values, spaces before ':'."""
    data = crlf("""
OPTIONS sip:home@127.0.0.1 SIP/2.0
v: SIP / 2.0 / UDP 192.0.2.2;branch=z9hG4bK390skdjuw
mAX-fORWARDS   : 70
t:
  <sip:home@127.0.0.1>
f: sip:caller@example.org;tag=AB
i: wsinv.ndaksdj@192.0.2.1
cSeQ: 8
   OPTIONS
l: 0
""")
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    assert message.get("to") == "<sip:home@127.0.0.1>"
    assert message.cseq() == (8, "OPTIONS")
    assert message.from_().tag == "AB"
    assert message.from_().uri == "sip:caller@example.org"
    assert message.top_via().transport == "UDP"
    assert message.get("Max-Forwards") == "70"


def test_repeated_and_comma_separated_headers() -> None:
    data = crlf("""
BYE sip:home@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa, SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb
Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKc
Route: <sip:p1.example.org;lr>, "Comma, Inside" <sip:p2.example.org;lr>
Route: <sip:p3.example.org;lr>
From: <sip:a@x>;tag=1
To: <sip:b@y>;tag=2
Call-ID: c
CSeq: 2 BYE
Content-Length: 0
""")
    message = parse_message(data)
    assert [v.host for v in message.vias()] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    routes = message.get_all("Route")
    assert len(routes) == 3
    assert parse_name_addr(routes[1]).display_name == "Comma, Inside"


def test_leading_crlf_lf_only_and_trailing_bytes() -> None:
    data = (b"\r\n\r\nSIP/2.0 200 OK\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\nCall-ID: x\n"
            b"CSeq: 1 REGISTER\nContent-Length: 2\n\nokEXTRA")
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    assert message.status == 200
    assert message.body == b"ok"  # bytes past Content-Length are dropped (RFC 3261 §18.3)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (b"INVITE sip:x SIP/7.0\r\n\r\n", "unsupported version"),
        (b"INVITE sip:x\r\n\r\n", "expected 'METHOD URI SIP/2.0'"),
        (b"SIP/2.0 099 Tiny\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\nCSeq: 1 A\r\n\r\n",
         "outside 100-699"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
         b"\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", "does not match"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
         b"\r\nTo: <sip:c@d>\r\nCSeq: 1 OPTIONS\r\n\r\n", "missing Call-ID"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
         b"\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 99\r\n\r\nab",
         "truncated body"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
         b"\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: 0\r\nl: 3\r\n\r\n",
         "conflicting Content-Length"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
         b"\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: -5\r\n\r\n",
         "is not a number"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1"
         b"\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 99999999999 OPTIONS\r\n\r\n", "below 2**31"),
        (b"OPTIONS sip:x SIP/2.0\r\nBroken header line\r\n\r\n", "header without ':'"),
        (b"OPTIONS sip:x SIP/2.0\r\n continuation\r\n\r\n", "continuation line before"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
         b"Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", "Via 'nonsense'"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: \"unterminated "
         b"<sip:a@b>\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", "unterminated"),
        (b"X" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia\x00: x\r\n\r\n", "NUL byte"),
    ],
)
def test_rejections_say_what_is_wrong(data: bytes, fragment: str) -> None:
    with pytest.raises(SipParseError, match=None) as info:
        parse_message(data)
    assert fragment in str(info.value)


def test_stream_needs_content_length_when_there_is_a_body() -> None:
    data = BASIC_INVITE.replace(b"Content-Length: 5\r\n", b"")
    assert parse_message(data).body == b"v=0\r\n"
    with pytest.raises(SipParseError, match="required on a stream"):
        parse_message(data, stream=True)


def test_round_trip_serialisation() -> None:
    message = parse_message(BASIC_INVITE)
    again = parse_message(message.to_bytes())
    assert isinstance(again, SipRequest)
    assert again.get_all("Via") == message.get_all("Via")
    assert again.from_().display_name == message.from_().display_name
    assert again.body == message.body
    assert b"Content-Length: 5\r\n" in message.to_bytes()


def test_uri_and_addresses() -> None:
    uri = parse_uri("sip:+33612345678;verstat=TN-Validation-Passed@[2001:db8::1]:5062;lr;"
                    "transport=TCP?subject=x")
    assert uri.user == "+33612345678;verstat=TN-Validation-Passed"
    assert uri.host == "2001:db8::1"
    assert uri.port == 5062
    assert uri.loose_routing
    assert uri.transport == "tcp"
    assert str(parse_uri("sip:a@h:5060;lr")) == "sip:a@h:5060;lr"
    assert parse_uri("tel:+33612345678;verstat=No-TN-Validation").user == "+33612345678"
    with pytest.raises(SipParseError, match="unsupported URI"):
        parse_uri("http://example.org")
    with pytest.raises(SipParseError, match="port"):
        parse_uri("sip:a@h:99999")
    bare = parse_name_addr("sip:a@b;tag=x")  # addr-spec: the parameter belongs to the header
    assert (bare.uri, bare.tag) == ("sip:a@b", "x")
    unquoted = parse_name_addr("Anonymous <sip:anonymous@anonymous.invalid>;tag=9")
    assert unquoted.display_name == "Anonymous"
    assert parse_via("SIP/2.0/TCP [::1]:5070;branch=z9hG4bKq;received=::1").port == 5070
    assert split_commas('"a,b" <sip:x>, <sip:y;p=1,2>') == ['"a,b" <sip:x>', "<sip:y;p=1,2>"]


SAFE_ERRORS = SipParseError


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(SAFE_ERRORS):
        parse_message(data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_invites_never_crash(data: st.DataObject) -> None:
    """Flip, cut and splice a real INVITE: the parser raises SipParseError or succeeds."""
    raw = bytearray(BASIC_INVITE)
    for _ in range(data.draw(st.integers(0, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 40))]
        else:
            raw[pos:pos] = data.draw(st.sampled_from(
                [b"\r\n", b":", b";", b",", b"<", b">", b'"', b"\\", b" ", b"\x00", b"\xff"]))
    try:
        message = parse_message(bytes(raw))
    except SAFE_ERRORS:
        return
    message.to_bytes()  # whatever we accept, we can also write back


def test_validation_parses_each_header_once_and_the_accessors_reuse_it() -> None:
    """The receive thread reads top_via, from_, to and cseq several times per INVITE: what
    validation parsed is handed out again, and a set/add/remove drops it (issue 10)."""
    message = parse_message(BASIC_INVITE)
    assert message.top_via() is message.vias()[0] is message.top_via()
    assert message.from_() is message.from_()
    assert message.to() is message.to()
    assert message.from_().parsed_uri() is message.from_().parsed_uri()
    top = message.top_via()
    message.add("Via", "SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKnew", first=True)
    assert message.top_via().host == "192.0.2.9"
    assert [v.host for v in message.vias()] == ["192.0.2.9", "10.0.0.1"]
    message.remove("Via")
    message.add("Via", str(top))
    assert message.top_via() == top and message.top_via() is not top
    message.set("f", '"Bob" <sip:bob@example.org>;tag=77')
    assert (message.from_().display_name, message.from_().tag) == ("Bob", "77")
    message.set("CSeq", "315000 INVITE")
    assert message.cseq() == (315000, "INVITE")
    message.remove("To")
    with pytest.raises(SipParseError, match="empty address"):
        message.to()


def test_long_header_names_are_not_kept_in_the_name_cache() -> None:
    """The cache of header spellings holds short names only: 512 messages with a 60 KB name
    each must not pin 30 MB."""
    long_name = "X-" + "a" * 1000
    data = BASIC_INVITE.replace(b"Supported:", f"{long_name}: 1\r\nSupported:".encode())
    sip_message._header_spelling.cache_clear()
    parse_message(BASIC_INVITE)
    names_cached = sip_message._header_spelling.cache_info().currsize
    sip_message._header_spelling.cache_clear()
    assert parse_message(data).get(long_name) == "1"
    assert sip_message._header_spelling.cache_info().currsize == names_cached
    caches = (sip_message._canonical_cached, sip_message._lookup_key_cached)
    for cache in caches:
        cache.cache_clear()
    parse_message(BASIC_INVITE).set("Supported", "x")
    short_only = [cache.cache_info().currsize for cache in caches]
    for cache in caches:
        cache.cache_clear()
    message = parse_message(data)
    message.set(long_name, "2")
    message.set("Supported", "x")
    assert message.get(long_name) == "2" and sip_message.canonical_name(long_name) == long_name
    assert [cache.cache_info().currsize for cache in caches] == short_only
