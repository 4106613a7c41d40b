"""Dialogs, stream framing, timers, responses and registration helpers, without sockets."""

from __future__ import annotations

import threading

import pytest

from gateway.sip.dialog import Dialog, target_for_uri
from gateway.sip.message import SipRequest, parse_message
from gateway.sip.register import Registration
from gateway.sip.transaction import Timers, server_key
from gateway.sip.transport import Source, Target, split_stream_frame, stamp_received
from gateway.sip.ua import Call, make_response


def invite(record_routes: list[str], contact: str = "<sip:alice@192.0.2.5:5070>") -> SipRequest:
    lines = [
        "INVITE sip:home@192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKproxy",
        "Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bKcaller;rport",
        *(f"Record-Route: {rr}" for rr in record_routes),
        'From: "Alice" <sip:alice@example.org>;tag=ft',
        "To: <sip:home@example.org>",
        "Call-ID: dlg-1",
        "CSeq: 7 INVITE",
        f"Contact: {contact}",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def test_loose_route_set_keeps_the_remote_target_in_the_request_uri() -> None:
    dialog = Dialog.from_invite(
        invite(["<sip:p2.example.org;lr>", "<sip:192.0.2.9:5080;lr>"]), "lt")
    bye, target = dialog.request("BYE", "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKx", "<sip:r@h>")
    assert bye.uri == "sip:alice@192.0.2.5:5070"
    assert bye.get_all("Route") == ["<sip:p2.example.org;lr>", "<sip:192.0.2.9:5080;lr>"]
    assert target == Target("udp", "p2.example.org", 5060)  # the first route, not the caller
    assert bye.from_().tag == "lt" and bye.to().tag == "ft"
    assert bye.cseq() == (dialog.local_cseq, "BYE")
    assert bye.from_().uri == "sip:home@example.org"


def test_strict_router_goes_into_the_request_uri() -> None:
    dialog = Dialog.from_invite(invite(["<sip:strict.example.org:5070>"]), "lt")
    bye, target = dialog.request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKx", "<sip:r@h>")
    assert bye.uri == "sip:strict.example.org:5070"
    assert bye.get_all("Route") == ["<sip:alice@192.0.2.5:5070>"]
    assert target == Target("udp", "strict.example.org", 5070)


def test_no_route_set_goes_to_the_contact_and_cseq_grows() -> None:
    dialog = Dialog.from_invite(invite([], "<sip:alice@192.0.2.5:5070;transport=tcp>"), "lt")
    first, target = dialog.request("REFER", "SIP/2.0/TCP h;branch=z9hG4bKa", "<sip:r@h>")
    second, _ = dialog.request("BYE", "SIP/2.0/TCP h;branch=z9hG4bKb", "<sip:r@h>")
    assert target == Target("tcp", "192.0.2.5", 5070)
    assert not first.get_all("Route")
    assert second.cseq()[0] == first.cseq()[0] + 1
    assert target_for_uri("sips:a@b") == Target("udp", "b", 5061)


def test_response_copies_vias_and_record_route_and_adds_a_tag() -> None:
    request = invite(["<sip:p1;lr>"])
    ok = make_response(request, 200, "OK", to_tag="abc")
    assert ok.get_all("Via") == request.get_all("Via")
    assert ok.to().tag == "abc"
    assert ok.get_all("Record-Route") == ["<sip:p1;lr>"]
    trying = make_response(request, 100, "Trying", to_tag="abc")
    assert trying.to().tag is None  # no tag on 100 (RFC 3261 §8.2.6.2)
    assert not make_response(request, 486, "Busy Here").get_all("Record-Route")


def test_received_and_rport_are_stamped_on_the_top_via_only() -> None:
    request = invite([])
    request.set("Via", "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKnat;rport")
    request.add("Via", "SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKb")
    stamp_received(request, Source("udp", "203.0.113.7", 40000))
    top, second = request.vias()
    assert top.params["received"] == "203.0.113.7"
    assert top.params["rport"] == "40000"
    assert "received" not in second.params


def test_cancel_and_ack_match_the_invite_transaction_key() -> None:
    request = invite([])
    text = request.to_bytes().decode()
    ack = parse_message(text.replace("INVITE sip", "ACK sip", 1).replace("7 INVITE", "7 ACK")
                        .encode())
    cancel = parse_message(text.replace("INVITE sip", "CANCEL sip", 1)
                           .replace("7 INVITE", "7 CANCEL").encode())
    assert isinstance(ack, SipRequest) and isinstance(cancel, SipRequest)
    assert server_key(ack) == server_key(request)
    assert server_key(cancel)[:2] == server_key(request)[:2]
    assert server_key(cancel)[2] == "CANCEL"


def test_stream_framing_by_content_length() -> None:
    one = b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc"
    frame, rest, error = split_stream_frame(one + one[:10])
    assert (frame, rest, error) == (one, one[:10], None)
    assert split_stream_frame(one[:20]) == (None, one[:20], None)
    assert split_stream_frame(b"X\r\nContent-Length: x\r\n\r\n")[2] is not None
    assert split_stream_frame(b"X\r\nContent-Length: 999999\r\n\r\n")[2] is not None


def test_timers_run_in_order_cancel_and_do_not_leak() -> None:
    timers = Timers()
    try:
        ran: list[int] = []
        done = threading.Event()
        timers.call_later(0.02, lambda: ran.append(2))
        timers.call_later(0.01, lambda: ran.append(1))
        cancelled = timers.call_later(0.01, lambda: ran.append(99))
        timers.cancel(cancelled)
        timers.call_later(0.03, done.set)
        assert done.wait(5)
        assert ran == [1, 2]
        timers.cancel(cancelled)  # cancelling twice or after running is harmless
        assert timers.pending() == 0
    finally:
        timers.stop()


@pytest.mark.parametrize(("expires", "refresh"), [(4, 2.0), (60, 51.0), (600, 540.0),
                                                  (3600, 3540.0), (1, 1.0)])
def test_refresh_well_before_expiry(expires: int, refresh: float) -> None:
    assert Registration.refresh_delay(expires) == pytest.approx(refresh)


def test_answered_elsewhere_reason_is_recognised() -> None:
    call = Call.__new__(Call)
    call.cancel_reason = 'SIP;cause=200;text="Call completed elsewhere"'
    assert call.cancelled_by_answer_elsewhere()
    call.cancel_reason = "Q.850;cause=16, SIP ;cause=200"
    assert call.cancelled_by_answer_elsewhere()
    call.cancel_reason = "Q.850;cause=200"
    assert not call.cancelled_by_answer_elsewhere()
    call.cancel_reason = None
    assert not call.cancelled_by_answer_elsewhere()
