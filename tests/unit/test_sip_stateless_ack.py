"""`stateless_ack_tag` reads the To tag of an ACK to one of our stateless answers from its
raw bytes, and nothing that merely looks like one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.message import SipParseError, parse_message
from gateway.sip.ua import STATELESS_TAG, stateless_ack_tag

TAG = STATELESS_TAG + "0123456789ab"


def ack(to: str, *, method: str = "ACK", name: str = "To") -> bytes:
    """An ACK (or another method) with `to` as its To value."""
    return (f"{method} sip:home@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
            "From: <sip:+33612345678@127.0.0.1>;tag=caller1\r\n"
            f"{name}: {to}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            ).encode()


@pytest.mark.parametrize("to", [
    f"<sip:home@127.0.0.1>;tag={TAG}",
    f"<sip:home@127.0.0.1>;tag={TAG} ",
    f'"Home ;tag=x" <sip:home@127.0.0.1;tag=y>;tag={TAG};other=1',
    f"sip:home@127.0.0.1;tag={TAG}",
])
def test_the_tag_of_our_stateless_answer_is_read_from_the_raw_ack(to: str) -> None:
    assert stateless_ack_tag(ack(to)) == TAG
    assert stateless_ack_tag(ack(to, name="t")) == TAG  # the compact form


@pytest.mark.parametrize("data", [
    ack(f"<sip:home@127.0.0.1>;tag={TAG}", method="INVITE"),
    ack(f"<sip:home@127.0.0.1>;tag={TAG}", method="ack"),  # not the method ACK: the parser's
    ack("<sip:home@127.0.0.1>;tag=8f3a2b1c"),  # our stateful answers' hex tags
    ack(f"<sip:home@127.0.0.1;tag={TAG}>"),  # a URI parameter, not the header's tag
    ack(f'"A;tag={TAG}" <sip:home@127.0.0.1>;tag=8f3a2b1c'),  # in the display name
    ack(f"<sip:home@127.0.0.1>;tag={TAG}0"),  # longer than a stateless tag
    ack(f"<sip:home@127.0.0.1>;xtag={TAG}"),
    ack(f"<sip:home@127.0.0.1>;tag={TAG};tag=8f3a2b1c"),  # two tags: the parser picks
    ack(f"<sip:home@127.0.0.1> ; tag = {TAG}"),  # other spellings: the parser reads them
    ack(f"<sip:home@127.0.0.1>;TAG={TAG}"),
    ack(f'"A" sip:home@127.0.0.1;tag={TAG}'),  # a quoted name without <>: malformed
    ack("<sip:home@127.0.0.1>").replace(b"CSeq", f"X-To: x;tag={TAG}\r\nCSeq".encode()),
])
def test_anything_else_is_left_to_the_parser(data: bytes) -> None:
    assert stateless_ack_tag(data) is None


display_names = st.one_of(st.just(""), st.lists(st.sampled_from(
    ["a", " ", ";", "tag", "=", TAG, "<", ">", '\\"', ","]), max_size=6).map(
    lambda pieces: '"' + "".join(pieces) + '" '))
uri_params = st.lists(st.sampled_from([";lr", f";tag={TAG}", ";tag=x", ";user=phone"]),
                      max_size=2).map("".join)
header_params = st.lists(st.sampled_from(
    [f";tag={TAG}", ";tag=8f3a2b1c", f"; tag = {TAG}", f";TAG={TAG}", ";lr", f";x={TAG}",
     f";tag={TAG}x", ";tag="]), max_size=3).map("".join)


@settings(max_examples=400, deadline=None)
@given(display=display_names, uri_params=uri_params, params=header_params,
       bracketed=st.booleans(), name=st.sampled_from(["To", "t", "TO", "to "]))
def test_a_raw_tag_is_always_the_tag_the_parser_reads(
    display: str, uri_params: str, params: str, bracketed: bool, name: str,
) -> None:
    """Dropping unparsed is safe only if the full parse would have read that same tag."""
    to = (f"{display}<sip:home@127.0.0.1{uri_params}>{params}" if bracketed or display
          else f"sip:home@127.0.0.1{params}")
    data = ack(to, name=name)
    found = stateless_ack_tag(data)
    if found is None:
        return
    try:
        parsed = parse_message(data)
    except SipParseError:
        return  # dropped either way: an ACK is never answered
    assert parsed.to().tag == found
