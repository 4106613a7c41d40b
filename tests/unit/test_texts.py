"""Texts: decide_text() on the owner's lists and rules, its rate limits, and read_text()
on the bodies a MESSAGE may carry (size, media type, charset)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.screening import (
    Action,
    DefaultMode,
    History,
    ListEntry,
    PastCall,
    Policy,
    Rules,
)
from gateway.screening.texts import TextDecision, TextLimits, TextVerdict, decide_text
from gateway.sip.message import SipRequest
from gateway.sip.text import MAX_TEXT_BYTES, TextRefused, read_text
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import caller, entry, rule

pytestmark = pytest.mark.clock

LIMITS = TextLimits(per_sender=3, window_minutes=10, burst_senders=4, burst_minutes=10)


def run(text: str, *, policy: Policy | None = None, entries: tuple[ListEntry, ...] = (),
        history: History | None = None, now: datetime = NOW) -> TextDecision:
    return decide_text(caller(text), Rules(policy or Policy(), entries),
                       history or History(), now, LIMITS)


def texts_from(*numbers: str, ago: timedelta = timedelta(minutes=1),
               unknown: bool = True) -> History:
    return History.of(PastCall(at=NOW - ago, key=n, unknown=unknown) for n in numbers)


def test_a_stranger_is_accepted_by_default() -> None:
    decision = run("0612345678")
    assert (decision.verdict, decision.status, decision.reason_code) == (
        TextVerdict.ACCEPTED, 202, "default_pass")


def test_a_block_entry_refuses_with_its_code_and_says_why() -> None:
    pest = entry("block", "exact", "+33612345678", label="pest",
                 action=Action.parse("reject:404"))
    decision = run("06 12 34 56 78", entries=(pest,))
    assert (decision.verdict, decision.status, decision.step) == (TextVerdict.REFUSED, 404,
                                                                  "block")
    assert decision.rule_id == f"block:{pest.id}" and "pest" in decision.reason


def test_a_rule_refuses_and_an_announcement_becomes_603() -> None:
    telemarketing = rule("telemarketing", "announce:sit", country="FR")
    decision = run("0162000000", policy=Policy(rules=(telemarketing,)))
    assert (decision.verdict, decision.status, decision.reason_code) == (
        TextVerdict.REFUSED, 603, "telemarketing")


def test_voicemail_or_challenge_actions_hold_the_text() -> None:
    to_voicemail = entry("block", "prefix", "+33699", action=Action.parse("voicemail"))
    assert run("0699000000", entries=(to_voicemail,)).verdict is TextVerdict.HELD
    for default in (DefaultMode.CHALLENGE, DefaultMode.VOICEMAIL, DefaultMode.GREYLIST):
        decision = run("0612345678", policy=Policy(default=default))
        assert (decision.verdict, decision.status, decision.reason_code) == (
            TextVerdict.HELD, 202, "text_held")


def test_the_allow_list_is_never_rate_limited_and_a_permit_is_not_used_up() -> None:
    mum = entry("allow", "exact", "+33612345678", once=True)
    flood = texts_from(*["+33612345678"] * 20)
    decision = run("0612345678", entries=(mum,), history=flood)
    assert decision.verdict is TextVerdict.ACCEPTED and decision.step == "allow"
    assert not decision.unknown


def test_one_sender_past_the_limit_gets_486() -> None:
    decision = run("0612345678", history=texts_from(*["+33612345678"] * 3))
    assert (decision.verdict, decision.status, decision.step) == (TextVerdict.REFUSED, 486,
                                                                  "text_rate")
    assert decision.reason == "+33612345678 already sent 3 texts in 10 min (limit 3)"
    # Older texts have left the window.
    old = texts_from(*["+33612345678"] * 3, ago=timedelta(minutes=11))
    assert run("0612345678", history=old).verdict is TextVerdict.ACCEPTED


def test_a_burst_of_strangers_holds_their_texts_but_the_allow_list_gets_through() -> None:
    burst = texts_from("+33600000001", "+33600000002", "+33600000003")
    decision = run("0612345678", history=burst)
    assert (decision.verdict, decision.status, decision.reason_code) == (
        TextVerdict.HELD, 202, "text_burst")
    mum = entry("allow", "exact", "+33612345678")
    assert run("0612345678", entries=(mum,), history=burst).verdict is TextVerdict.ACCEPTED
    # Senders a list or rule already settled do not make a burst.
    settled = texts_from("+33600000001", "+33600000002", "+33600000003", unknown=False)
    assert run("0612345678", history=settled).verdict is TextVerdict.ACCEPTED


@given(st.lists(st.integers(min_value=0, max_value=30), max_size=30))
def test_a_blocked_sender_is_refused_whatever_the_history(minutes: list[int]) -> None:
    pest = entry("block", "exact", "+33612345678")
    history = History.of(PastCall(at=NOW - timedelta(minutes=m), key=f"+336000000{m:02d}",
                                  unknown=True) for m in minutes)
    assert run("0612345678", entries=(pest,), history=history).verdict is TextVerdict.REFUSED


# --------------------------------------------------------------------------- read_text


def message(body: bytes, content_type: str | None = "text/plain") -> SipRequest:
    headers = [("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx"), ("CSeq", "1 MESSAGE")]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return SipRequest("MESSAGE", "sip:home@127.0.0.1", headers, body)


def test_utf8_is_the_default_and_a_charset_is_followed() -> None:
    assert read_text(message("ça va".encode())).text == "ça va"
    latin = read_text(message("ça va".encode("latin-1"), 'text/plain; charset="ISO-8859-1"'))
    assert (latin.text, latin.charset) == ("ça va", "iso8859-1")
    assert read_text(message(b"caf\xe9")).text == "caf\ufffd"  # broken UTF-8: marked, kept
    assert read_text(message(b"a\x00b")).text == "a\ufffdb"  # PostgreSQL refuses NUL


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail"),
    [
        (b"x" * (MAX_TEXT_BYTES + 1), "text/plain", 413, f"at most {MAX_TEXT_BYTES}"),
        (b"x", "application/vnd.3gpp.sms", 415, "application/vnd.3gpp.sms is not taken"),
        (b"x", None, 415, "no Content-Type"),
        (b"x", "text/plain;charset=base64", 415, "not a text encoding"),
        (b"x", 'text/plain;charset="\u00e9vil"', 415, "is not known"),
    ],
)
def test_refusals_name_what_was_wrong(body: bytes, content_type: str | None, status: int,
                                      detail: str) -> None:
    with pytest.raises(TextRefused) as refused:
        read_text(message(body, content_type))
    assert refused.value.status == status and detail in str(refused.value)
    warning = dict(refused.value.headers)["Warning"]
    assert warning.isascii() and warning.count('"') == 2


def test_the_largest_body_taken_is_exactly_the_limit() -> None:
    assert read_text(message(b"x" * MAX_TEXT_BYTES)).size == MAX_TEXT_BYTES
