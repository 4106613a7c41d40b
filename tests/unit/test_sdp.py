"""SDP parsing and answer building against real and malformed offers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.media.sdp import (
    Codec,
    SdpError,
    answer_direction,
    build_answer,
    build_offer,
    parse_sdp,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sdp"


def fixture(name: str) -> str:
    # newline="" keeps the CRLF line ends exactly as they came off the wire
    return (FIXTURES / name).read_bytes().decode("utf-8")


def test_baresip_offer_captured_on_loopback() -> None:
    body = fixture("baresip_offer.sdp")
    assert "\r\n" in body
    offer = parse_sdp(body)
    assert offer.remote_ip == "127.0.0.1"
    assert offer.remote_port == 30040
    assert offer.codecs == (
        Codec(8, "PCMA", 8000),
        Codec(0, "PCMU", 8000),
        Codec(101, "telephone-event", 8000),
    )
    assert offer.telephone_event_pt == 101
    assert offer.direction == "sendrecv"


def test_fritzbox_offer_picks_pcma_after_unsupported_g722() -> None:
    offer = parse_sdp(fixture("fritzbox_offer.sdp"))
    assert offer.remote_ip == "192.168.178.1"
    assert offer.remote_port == 7078
    assert [c.payload_type for c in offer.codecs] == [9, 8, 0, 18, 2, 101]
    answer = build_answer(offer, "192.168.178.20", 10000, 7)
    assert "m=audio 10000 RTP/AVP 8 101\r\n" in answer
    assert "a=rtpmap:8 PCMA/8000\r\n" in answer
    assert "G722" not in answer


def test_answer_follows_offer_order_pcmu_first() -> None:
    body = "v=0\nc=IN IP4 10.0.0.2\nm=audio 4000 RTP/AVP 0 8 96\na=rtpmap:96 telephone-event/8000\n"
    offer = parse_sdp(body)
    answer = build_answer(offer, "10.0.0.1", 10002, 99)
    lines = answer.split("\r\n")
    assert "m=audio 10002 RTP/AVP 0 96" in lines
    assert "a=rtpmap:0 PCMU/8000" in lines
    assert "a=rtpmap:96 telephone-event/8000" in lines
    assert "c=IN IP4 10.0.0.1" in lines
    assert "o=ringfence 99 99 IN IP4 10.0.0.1" in lines
    assert answer.endswith("\r\n")
    # The answer parses back as what we promised.
    again = parse_sdp(answer)
    assert again.codecs[0] == Codec(0, "PCMU", 8000)
    assert again.telephone_event_pt == 96


def test_static_payload_types_without_rtpmap_and_no_dtmf() -> None:
    offer = parse_sdp("v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 4000 RTP/AVP 8\r\n")
    assert offer.codecs == (Codec(8, "PCMA", 8000),)
    assert offer.telephone_event_pt is None
    answer = build_answer(offer, "10.0.0.1", 10000, 1)
    assert "telephone-event" not in answer


def test_media_level_connection_and_direction_win() -> None:
    body = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n"
        "a=sendrecv\r\n"
        "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.3\r\na=sendonly\r\n"
    )
    offer = parse_sdp(body)
    assert offer.remote_ip == "10.0.0.3"
    assert offer.direction == "sendonly"
    assert "a=recvonly" in build_answer(offer, "10.0.0.1", 10000, 1)


def test_extra_attributes_and_blank_lines_are_tolerated() -> None:
    body = (
        "v=0\n\no=- 1 1 IN IP4 10.0.0.2\ns=-\nb=AS:64\nc=IN IP4 10.0.0.2\nt=0 0\n"
        "m=audio 4000/2 RTP/AVP 0\na=x-unknown:whatever\na=rtcp:4001\na=ssrc:1 cname:x\n"
    )
    assert parse_sdp(body).remote_port == 4000


def test_ipv6_connection() -> None:
    offer = parse_sdp("v=0\nc=IN IP6 ::1\nm=audio 4000 RTP/AVP 0\n")
    assert offer.remote_ip == "::1"
    assert "c=IN IP6 ::1" in build_answer(offer, "::1", 10000, 1)


def test_offer_round_trip() -> None:
    offer = parse_sdp(build_offer("127.0.0.1", 10000, 5))
    assert [c.name for c in offer.codecs] == ["PCMA", "PCMU", "telephone-event"]
    assert offer.telephone_event_pt == 101
    assert offer.remote_port == 10000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "empty SDP body"),
        ("   \r\n", "empty SDP body"),
        ("hello world", "line 1 'hello world': not of the form"),
        ("c=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0\n", "missing 'v=0'"),
        ("v=1\n", "line 1 'v=1': unsupported SDP version"),
        ("v=0\nc=IN IP4 not-an-ip\nm=audio 1 RTP/AVP 0\n", "line 2 'c=IN IP4 not-an-ip'"),
        ("v=0\nc=IN\n", "line 2 'c=IN': expected 'c=IN IP4 <address>'"),
        ("v=0\nc=IN IP4 1.2.3.4\nm=audio\n", "line 3 'm=audio': expected"),
        (
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 99999 RTP/AVP 0\n",
            "line 3 'm=audio 99999 RTP/AVP 0': bad port",
        ),
        ("v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP x\n", "bad payload type 'x'"),
        (
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 96\na=rtpmap:96 opus\n",
            "line 4 'a=rtpmap:96 opus': expected 'a=rtpmap:<pt> <name>/<rate>'",
        ),
        ("v=0\nc=IN IP4 1.2.3.4\n", "no m=audio line"),
        ("v=0\nm=audio 4000 RTP/AVP 0\n", "line 2 'm=audio 4000 RTP/AVP 0': no c= line"),
        (
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 9 18\n",
            "no PCMA or PCMU offered (offered: G722/8000, G729/8000)",
        ),
        (
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/SAVP 0\n",
            "profile RTP/SAVP is not plain RTP/AVP",
        ),
        ("v=0\nc=IN IP4 1.2.3.4\nm=audio 0 RTP/AVP 0\n", "port 0 (stream rejected)"),
        (
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 96\na=rtpmap:96 PCMA/16000\n",
            "no PCMA or PCMU offered (offered: PCMA/16000)",
        ),
    ],
)
def test_malformed_or_unusable_offers_raise_precise_errors(body: str, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(body)
    assert message in str(caught.value)


def test_sdp_error_is_a_value_error() -> None:
    assert issubclass(SdpError, ValueError)


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_answer_direction(offered: str, answered: str) -> None:
    assert answer_direction(offered) == answered


def test_build_answer_rejects_bad_port() -> None:
    offer = parse_sdp(build_offer("127.0.0.1", 10000, 5))
    with pytest.raises(ValueError, match="local_port 0"):
        build_answer(offer, "127.0.0.1", 0, 1)


def test_answer_can_keep_a_codec_and_bump_the_version() -> None:
    reoffer = parse_sdp("v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 4000 RTP/AVP 0 8\r\n")
    answer = build_answer(reoffer, "10.0.0.1", 10000, 42, version=43, codec=Codec(8, "PCMA", 8000))
    assert "m=audio 10000 RTP/AVP 8\r\n" in answer
    assert "o=ringfence 42 43 IN IP4 10.0.0.1\r\n" in answer
    with pytest.raises(SdpError, match="no PCMA/8000 at payload type 8"):
        build_answer(
            parse_sdp("v=0\nc=IN IP4 10.0.0.2\nm=audio 4000 RTP/AVP 0\n"),
            "10.0.0.1",
            10000,
            42,
            codec=Codec(8, "PCMA", 8000),
        )


def test_malformed_lines_around_a_usable_stream_are_skipped() -> None:
    body = (
        "v=0\r\nc=IN IP4 10.0.0.2\r\nthis is junk\r\nc=IN IP9 nowhere\r\n"
        "m=video x RTP/AVP\r\na=sendonly\r\n"  # broken m=: its attributes must not leak
        "m=audio 4000 RTP/AVP 96 8 zz\r\na=rtpmap:96 opus\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    offer = parse_sdp(body)
    assert offer.remote_port == 4000
    assert [c.payload_type for c in offer.codecs] == [96, 8]
    assert offer.direction == "sendrecv"


def test_error_lists_what_was_ignored() -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp("v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 96\na=rtpmap:96 PCMA\n")
    assert str(caught.value) == (
        "no usable audio stream: line 3 'm=audio 4000 RTP/AVP 96': no PCMA or PCMU offered "
        "(offered: pt96/0) (ignored: line 4 'a=rtpmap:96 PCMA': "
        "expected 'a=rtpmap:<pt> <name>/<rate>')"
    )
