"""The call flow without SIP or RTP: `handle_call` and `carry_out` on a `FakeCall`, with
`FakeService` as screener and call book and `ScriptedMedia` as the media session; then who the
caller is (`identity`) and what the voicemail file is called (`voicemail_path`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.call.carry_out import (
    DIGIT_TIMEOUT_SECONDS,
    RING_LIMIT_SECONDS,
    carry_out,
    voicemail_path,
)
from gateway.call.handle import handle_call
from gateway.call.identity import caller_of, identity_of
from gateway.call.ports import CallEnvironment, Capacity
from gateway.call.record import CallRecord
from gateway.config import Settings
from gateway.media.sdp import parse_sdp
from gateway.screening.caller import Caller, CallerKind, Verstat
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import PASS, REJECT_CODES, Action, ActionKind
from gateway.sip.message import SipRequest
from gateway.sip.workers import Slots
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import caller
from tests.peers.fakes import (
    INVITE_SDP,
    CallLog,
    FakeCall,
    FakeService,
    InlineWork,
    ScriptedMedia,
    SentResponse,
    TimersByHand,
    parsed_invite,
)

CALLER = "+33612345678"  # the From user of `parsed_invite`
ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
PROMPTS = Path("/nonexistent/prompts")  # never opened: ScriptedMedia only notes the names


def prompt(name: str) -> Path:
    return PROMPTS / f"{name}.wav"


@dataclass
class Rig:
    """One call on fakes: the call, the service, and the media sessions it was given."""

    settings: Settings
    service: FakeService = field(default_factory=FakeService)
    call: FakeCall = field(default_factory=FakeCall)
    sessions: list[ScriptedMedia] = field(default_factory=list)
    media_options: dict[str, Any] = field(default_factory=dict)
    work: InlineWork = field(default_factory=InlineWork)
    timers: TimersByHand = field(default_factory=TimersByHand)

    def media(self, offer: str, announced: str, bind: str) -> ScriptedMedia:
        session = ScriptedMedia(offer, announced, bind, **self.media_options)
        self.sessions.append(session)
        return session

    def env(self, **options: Any) -> CallEnvironment:
        options.setdefault("media_factory", self.media)
        options.setdefault("prompt", prompt)
        options.setdefault("capacity", Capacity(self.work, self.timers, Slots(4)))
        return CallEnvironment(self.settings, self.service, self.service, clock=lambda: NOW,
                               **options)

    def run(self, action: str | Action = "pass", **options: Any) -> CallLog:
        """Screen the call with `action` and run the whole flow; the call's single row."""
        self.service.action = Action.parse(action) if isinstance(action, str) else action
        handle_call(self.call, self.env(**options))  # type: ignore[arg-type]
        assert len(self.service.calls) == 1, "exactly one row per call"
        return self.service.calls[0]

    @property
    def session(self) -> ScriptedMedia:
        assert len(self.sessions) == 1
        return self.sessions[0]

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.call.responses]


@pytest.fixture
def rig(settings: Settings) -> Rig:
    return Rig(settings)


# --------------------------------------------------------------------------- pass


def test_a_pass_rings_silently_and_is_logged_while_it_rings(rig: Rig) -> None:
    seen: list[str | None] = []

    def ringing() -> None:
        seen.extend(c.outcome for c in rig.service.calls)  # the row exists, not finished
        rig.call.cancel()

    rig.call.while_ringing = ringing
    row = rig.run("pass")
    assert seen == [None]
    assert rig.timers.delays == [RING_LIMIT_SECONDS] and rig.timers.pending() == 0
    assert rig.statuses == [487]  # only the CANCEL's 487: no answer of our own
    assert rig.work.spawned == []  # nothing waited on a thread while it rang
    assert row.outcome == "passed: cancelled by caller"
    assert rig.sessions == [] and rig.service.known == []


def test_a_ring_cancelled_with_cause_200_was_answered_elsewhere_and_the_caller_is_known(
    rig: Rig,
) -> None:
    rig.call.while_ringing = lambda: rig.call.cancel(ELSEWHERE)
    row = rig.run("pass")
    assert row.outcome == "answered elsewhere"
    assert rig.service.known == [CALLER]


def test_a_cancel_with_another_cause_is_a_plain_cancel(rig: Rig) -> None:
    rig.call.while_ringing = lambda: rig.call.cancel("Q.850;cause=16")
    assert rig.run("pass").outcome == "passed: cancelled by caller"
    assert rig.service.known == []


@pytest.mark.parametrize(("reason", "outcome"), [
    ('SIP;cause=603;text="Decline"', "passed: declined elsewhere (SIP 603)"),
    ("SIP;cause=486", "passed: declined elsewhere (SIP 486)"),
    ('SIP;cause=480;text="NO_ANSWER"', "passed: not answered elsewhere (SIP 480)"),
    ("Q.850;cause=21", "passed: declined elsewhere (Q.850 21)"),
    ("Q.850;cause=19, SIP;cause=408", "passed: not answered elsewhere (SIP 408)"),
    ("SIP;cause=500", "passed: cancelled by the network (SIP 500)"),
    ("Q.850;cause=41", "passed: cancelled by the network (Q.850 41)"),
    ("SIP;text=no-cause", "passed: cancelled by caller"),
])
def test_a_cancel_says_what_happened_on_the_other_phones(rig: Rig, reason: str,
                                                         outcome: str) -> None:
    """Issue 14 item 7: the owner declining on their phone is not "cancelled by caller"."""
    rig.call.while_ringing = lambda: rig.call.cancel(reason)
    assert rig.run("pass").outcome == outcome
    assert rig.service.known == []


def test_a_withheld_caller_answered_elsewhere_is_not_remembered(rig: Rig) -> None:
    rig.call = FakeCall(parsed_invite(headers="Privacy: id\r\n"))
    rig.call.while_ringing = lambda: rig.call.cancel(ELSEWHERE)
    assert rig.run("pass").outcome == "answered elsewhere"
    assert rig.service.known == []


def test_failing_to_remember_a_known_caller_still_logs_answered_elsewhere(
    rig: Rig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(number: str) -> None:
        raise RuntimeError("database is locked (test)")

    monkeypatch.setattr(rig.service, "mark_known", broken)
    rig.call.while_ringing = lambda: rig.call.cancel(ELSEWHERE)
    assert rig.run("pass").outcome == "answered elsewhere"


def test_a_ring_nobody_ends_is_given_up_with_480(rig: Rig) -> None:
    row = rig.run("pass")
    assert row.outcome is None and rig.call.responses == []  # parked: nothing waits for it
    rig.timers.fire()  # RING_LIMIT_SECONDS later, on the timer thread
    assert rig.call.responses == [SentResponse(480, "Temporarily Unavailable")]
    assert row.outcome == "passed: nobody answered"


def test_a_ring_ended_by_the_gateway_says_so(rig: Rig) -> None:
    rig.call.while_ringing = rig.call.hangup  # shutdown: the UA hangs every call up
    assert rig.run("pass").outcome == "passed: ended by the gateway"


@pytest.mark.parametrize(
    ("behaviour", "response", "outcome"),
    [
        ("busy", SentResponse(486, "Busy Here"), "passed: busy"),
        ("unavailable", SentResponse(480, "Temporarily Unavailable"), "passed: unavailable"),
        ("redirect", SentResponse(302, "Moved Temporarily",
                                  (("Contact", "<sip:owner@192.0.2.10>"),)), "passed: redirected"),
    ],
)
def test_pass_behaviours_answer_at_once(rig: Rig, behaviour: str, response: SentResponse,
                                        outcome: str) -> None:
    row = rig.run("pass", pass_behaviour=behaviour, redirect_to="sip:owner@192.0.2.10")
    assert rig.call.responses == [response]
    assert row.outcome == outcome
    assert rig.timers.delays == []


def test_a_redirect_without_a_target_rings_instead(rig: Rig) -> None:
    rig.call.while_ringing = rig.call.cancel
    assert rig.run("pass", pass_behaviour="redirect").outcome == "passed: cancelled by caller"
    assert rig.timers.delays == [RING_LIMIT_SECONDS]


@pytest.mark.parametrize("reason", [None, ELSEWHERE])
def test_a_pass_behaviour_after_the_caller_cancelled_logs_the_cancel(
    rig: Rig, reason: str | None,
) -> None:
    rig.call.cancel(reason)
    row = rig.run("pass", pass_behaviour="busy")
    assert rig.statuses == [487]
    assert row.outcome == ("answered elsewhere" if reason else "cancelled by caller")


def test_a_pass_with_too_many_calls_ringing_leaves_the_fork_with_480(rig: Rig) -> None:
    capacity = Capacity(rig.work, rig.timers, Slots(4), ringing=Slots(0))
    row = rig.run("pass", capacity=capacity)
    assert rig.call.responses == [SentResponse(480, "Temporarily Unavailable")]
    assert row.outcome == "passed: 480, 0 calls ringing already"
    assert capacity.counters.get("left_fork_ringing_full") == 1


# --------------------------------------------------------------------------- capacity, Require


@pytest.mark.parametrize("action", ["announce", "voicemail", "challenge"])
def test_a_full_house_keeps_the_caller_away_with_600_and_logs_it(rig: Rig, action: str) -> None:
    capacity = Capacity(rig.work, rig.timers, Slots(0))
    row = rig.run(action, capacity=capacity)
    assert rig.call.responses == [SentResponse(600, "Busy Everywhere")]  # a 6xx ends the fork
    assert row.outcome == f"refused 600: all 0 media slots busy ({action})"
    assert rig.sessions == [] and capacity.counters.get("refused_no_media_slot") == 1


def test_a_call_with_media_holds_its_slot_until_it_ends(rig: Rig) -> None:
    capacity = Capacity(rig.work, rig.timers, Slots(1))
    seen: list[int] = []
    rig.media_options["on_play"] = lambda _path: seen.append(capacity.media.active)
    assert rig.run("announce", capacity=capacity).outcome == "announced"
    assert seen == [1] and capacity.media.active == 0
    assert rig.work.spawned == [f"call-{rig.call.call_id[:12]}"]  # its own thread


def test_a_reject_keeps_its_code_when_the_invite_requires_an_unknown_extension(rig: Rig) -> None:
    rig.call.unsupported = ["100rel"]
    assert rig.run("reject:603").outcome == "rejected 603"  # not a 420: the fork must stop
    assert rig.statuses == [603]


def test_a_pass_requiring_an_unknown_extension_gets_420_listing_it(rig: Rig) -> None:
    rig.call.unsupported = ["100rel", "timer"]
    row = rig.run("pass")
    assert rig.call.responses == [SentResponse(420, "Bad Extension",
                                               (("Unsupported", "100rel, timer"),))]
    assert row.outcome == "passed: 420, requires 100rel, timer"


def test_an_answer_requiring_an_unknown_extension_is_declined_not_rung(rig: Rig) -> None:
    rig.call.unsupported = ["timer"]
    row = rig.run("voicemail")
    assert rig.statuses == [603] and rig.sessions == []
    assert row.outcome == "refused 603: requires timer (voicemail)"


def test_no_media_before_the_ack_and_no_call_without_one(rig: Rig) -> None:
    rig.call.acks = False
    row = rig.run("voicemail")
    assert row.outcome == "not answered: no ACK for our 200 OK"
    assert "start" not in rig.session.events and rig.session.closed >= 1  # no RTP ever sent
    assert rig.call.ended.is_set()  # hung up (BYE): the media slot is free again


# --------------------------------------------------------------------------- reject


@pytest.mark.parametrize(("code", "reason"), sorted(REJECT_CODES.items()))
def test_reject_sends_the_code_with_its_reason_phrase(rig: Rig, code: int, reason: str) -> None:
    row = rig.run(f"reject:{code}")
    assert rig.call.responses == [SentResponse(code, reason)]
    assert row.outcome == f"rejected {code}"
    assert rig.sessions == []


def test_a_reject_without_a_code_declines(rig: Rig) -> None:
    row = rig.run(Action(ActionKind.REJECT))
    assert rig.call.responses == [SentResponse(603, "Decline")]
    assert row.outcome == "rejected 603"


def test_a_reject_that_comes_after_the_cancel_logs_the_cancel(rig: Rig) -> None:
    rig.call.cancel()
    assert rig.run("reject:607").outcome == "cancelled by caller"
    assert rig.statuses == [487]


# --------------------------------------------------------------------------- announce


def test_announce_answers_plays_and_hangs_up(rig: Rig) -> None:
    row = rig.run("announce:not_in_service")
    session = rig.session
    assert row.outcome == "announced"
    assert rig.statuses == [200]
    assert rig.call.answer_sdp == session.answer_sdp()
    assert session.events == ["start", ("play", "not_in_service.wav")]
    assert rig.call.byes == 1 and session.closed >= 1
    assert rig.call.media is session


def test_media_is_offered_the_invites_sdp_and_both_addresses(rig: Rig) -> None:
    rig.run("announce")
    session = rig.session
    assert session.offer == INVITE_SDP
    assert session.announced == "203.0.113.1"  # what the caller must reach (public address)
    assert session.bind == "10.0.0.2"  # where the socket binds
    assert rig.call.ua.asked == ["192.0.2.9"] == rig.call.ua.transport.asked  # the INVITE's source


def test_announce_sit_plays_the_tones_not_a_file(rig: Rig) -> None:
    assert rig.run("announce:sit").outcome == "announced"
    assert rig.session.played == ["sit"]


def test_a_caller_hanging_up_during_the_announcement(rig: Rig) -> None:
    rig.media_options["on_play"] = lambda _path: rig.call.caller_hangs_up()
    row = rig.run("announce")
    assert row.outcome == "caller hung up during the announcement"
    assert rig.call.byes == 0  # they said BYE; we do not say it back


@pytest.mark.parametrize(("reason", "outcome"),
                         [(None, "cancelled by caller"), (ELSEWHERE, "answered elsewhere")])
def test_a_cancel_that_beats_our_200_ok(rig: Rig, reason: str | None, outcome: str) -> None:
    rig.call.cancel_before_answer = reason or ""
    row = rig.run("announce")
    assert row.outcome == outcome
    assert rig.session.played == [] and rig.session.closed >= 1
    assert rig.statuses == [487]


def test_a_re_offer_is_followed_by_the_media_and_a_bad_one_refused(rig: Rig) -> None:
    rig.run("announce")
    assert rig.call.on_reoffer is not None
    hold = INVITE_SDP.replace("a=sendrecv", "a=sendonly")
    assert rig.call.on_reoffer(hold) == rig.session.answer_sdp()
    assert rig.session.events[-1][0] == "update"
    g722 = INVITE_SDP.replace("RTP/AVP 8 0 101", "RTP/AVP 9")
    assert rig.call.on_reoffer(g722) is None  # 488 to the re-INVITE


# --------------------------------------------------------------------------- voicemail


def test_voicemail_greets_beeps_records_and_saves_under_the_calls_row(
    rig: Rig, settings: Settings,
) -> None:
    row = rig.run("voicemail")
    session = rig.session
    vm = settings.voicemail
    assert session.events == [
        "start", ("play", "greeting.wav"), "beep",
        ("record", vm.max_seconds, vm.silence_seconds),
    ]
    assert row.outcome == "voicemail 4 s"
    assert row.voicemail is not None  # save_voicemail(call_ref="1", ...) landed on this row
    path, duration, size = row.voicemail
    assert path.parent == settings.voicemail_dir
    assert path.name == f"{NOW:%Y%m%d-%H%M%S}-{CALLER}.wav"
    assert (duration, size) == (4.0, len(b"RIFF-test-audio"))
    assert path.read_bytes() == b"RIFF-test-audio"
    assert rig.call.byes == 1


def test_voicemail_with_another_prompt_plays_that_prompt(rig: Rig) -> None:
    rig.run("voicemail:spoof_shield")
    assert rig.session.played == ["spoof_shield.wav", "beep"]


@pytest.mark.parametrize("space_left", [0, -1])
def test_a_full_voicemail_records_nothing(rig: Rig, space_left: int) -> None:
    rig.service.space_left = space_left
    row = rig.run("voicemail")
    assert row.outcome == "voicemail full"
    assert rig.session.played == ["greeting.wav"]  # no beep, no recording
    assert row.voicemail is None
    assert rig.call.byes == 1


def test_a_caller_hanging_up_during_the_greeting(rig: Rig) -> None:
    rig.media_options["on_play"] = lambda _path: rig.call.caller_hangs_up()
    row = rig.run("voicemail")
    assert row.outcome == "caller hung up during the greeting"
    assert rig.session.played == ["greeting.wav"]
    assert row.voicemail is None and rig.call.byes == 0


def test_a_recording_that_produced_nothing_is_not_saved(rig: Rig) -> None:
    rig.media_options["recording_s"] = None
    row = rig.run("voicemail")
    assert row.outcome == "voicemail: nothing recorded"
    assert row.voicemail is None


def test_a_missing_prompt_does_not_cost_the_message(rig: Rig) -> None:
    def no_greeting(name: str) -> Path:
        raise FileNotFoundError(name)

    row = rig.run("voicemail", prompt=no_greeting)
    assert rig.session.played == ["beep"]
    assert row.outcome == "voicemail 4 s"


def test_two_messages_in_the_same_second_get_two_files(rig: Rig, settings: Settings) -> None:
    first = rig.run("voicemail")
    second_rig = Rig(settings)
    second = second_rig.run("voicemail")
    assert first.voicemail is not None and second.voicemail is not None
    assert first.voicemail[0] != second.voicemail[0]
    assert second.voicemail[0].name.endswith("-2.wav")


# --------------------------------------------------------------------------- challenge


def test_the_right_digit_allows_the_caller_and_takes_a_message(rig: Rig) -> None:
    rig.media_options["digits"] = ["5"]
    row = rig.run("challenge")
    session = rig.session
    assert session.played == ["challenge_5.wav", "challenge_passed.wav", "beep"]
    assert ("digit", DIGIT_TIMEOUT_SECONDS) in session.events
    assert rig.service.allowed == [CALLER]
    assert row.outcome == "challenge passed: voicemail 4 s"
    assert row.voicemail is not None
    assert rig.call.byes == 1


def test_the_right_digit_with_a_transfer_target_refers_the_caller(rig: Rig) -> None:
    rig.media_options["digits"] = ["5"]
    rig.call.refer_accepted = True
    row = rig.run("challenge", refer_to="sip:owner@192.0.2.10")
    assert rig.call.refers == ["sip:owner@192.0.2.10"]
    assert row.outcome == "challenge passed: transferred"
    assert rig.service.allowed == [CALLER]
    assert rig.session.played == ["challenge_5.wav"]  # no message taken
    assert rig.call.byes == 0  # the caller left with BYE after the transfer


def test_a_refused_transfer_falls_back_to_a_message(rig: Rig) -> None:
    rig.media_options["digits"] = ["5"]
    row = rig.run("challenge", refer_to="sip:owner@192.0.2.10")
    assert rig.call.refers == ["sip:owner@192.0.2.10"]
    assert row.outcome == "challenge passed: voicemail 4 s"


@pytest.mark.parametrize("digits", [["1"], []], ids=["wrong digit", "no digit"])
def test_a_failed_challenge_says_goodbye_and_hangs_up(rig: Rig, digits: list[str]) -> None:
    rig.media_options["digits"] = digits
    row = rig.run("challenge")
    assert row.outcome == "challenge failed"
    assert rig.session.played == ["challenge_5.wav", "goodbye.wav"]
    assert rig.service.allowed == [] and row.voicemail is None
    assert rig.call.byes == 1


def test_no_goodbye_to_a_caller_who_already_hung_up(rig: Rig) -> None:
    rig.media_options["on_play"] = lambda _path: rig.call.caller_hangs_up()
    assert rig.run("challenge").outcome == "challenge failed"
    assert rig.session.played == ["challenge_5.wav"]


def test_the_challenge_asks_for_the_owners_key(rig: Rig) -> None:
    rig.service.digit = "#"
    rig.media_options["digits"] = ["#"]
    row = rig.run("challenge")
    assert rig.session.played[0] == "challenge_hash.wav"
    assert (row.outcome or "").startswith("challenge passed")


def test_a_withheld_caller_passing_the_challenge_is_not_allowed_by_number(rig: Rig) -> None:
    rig.call = FakeCall(parsed_invite(headers="Privacy: id\r\n"))
    rig.media_options["digits"] = ["5"]
    row = rig.run("challenge")
    assert row.outcome == "challenge passed: voicemail 4 s"
    assert rig.service.allowed == []
    assert row.voicemail is not None and row.voicemail[0].name.endswith("-withheld.wav")


# --------------------------------------------------------------------------- unusable offers


@pytest.mark.parametrize("action", ["announce", "voicemail", "challenge"])
def test_an_invite_without_sdp_gets_488(rig: Rig, action: str) -> None:
    rig.call = FakeCall(parsed_invite(sdp=None))
    row = rig.run(action)
    assert rig.call.responses == [SentResponse(488, "Not Acceptable Here")]
    assert row.outcome == "not answered: INVITE without SDP (488)"
    assert rig.sessions == []


def test_an_sdp_body_of_another_content_type_is_no_offer(rig: Rig) -> None:
    invite = parsed_invite()
    invite.set("Content-Type", "text/plain")
    rig.call = FakeCall(invite)
    assert rig.run("announce").outcome == "not answered: INVITE without SDP (488)"


def test_an_unusable_offer_gets_488(rig: Rig) -> None:
    rig.call = FakeCall(parsed_invite(sdp=INVITE_SDP.replace("RTP/AVP 8 0 101", "RTP/AVP 9")))

    def real_parsing(offer: str, announced: str, bind: str) -> ScriptedMedia:
        parse_sdp(offer)  # raises SdpError (a ValueError), as MediaSession would
        return rig.media(offer, announced, bind)

    row = rig.run("voicemail", media_factory=real_parsing)
    assert rig.call.responses == [SentResponse(488, "Not Acceptable Here")]
    assert row.outcome == "not answered: unusable SDP offer (488)"


# --------------------------------------------------------------------------- failing open


def test_a_screener_that_raises_lets_the_call_ring_through(rig: Rig) -> None:
    rig.service.raise_in_screen = True
    rig.service.action = Action(ActionKind.REJECT, code=603)
    handle_call(rig.call, rig.env(pass_behaviour="busy"))  # type: ignore[arg-type]
    assert rig.call.responses == [SentResponse(486, "Busy Here")]  # the line's pass behaviour


def test_a_screener_that_raises_still_logs_the_call_as_failed_open(rig: Rig) -> None:
    rig.service.raise_in_screen = True
    handle_call(rig.call, rig.env(pass_behaviour="busy"))  # type: ignore[arg-type]
    assert len(rig.service.calls) == 1
    assert (rig.service.calls[0].outcome or "").startswith("failed open")


def test_an_error_while_answered_hangs_up_and_logs_failed_open(rig: Rig) -> None:
    rig.media_options["fail_on_play"] = RuntimeError("sound card on fire (test)")
    row = rig.run("announce")
    assert row.outcome == "failed open: hung up"
    assert rig.call.byes == 1 and rig.call.ended.is_set()


def test_an_error_before_answering_rings_through(rig: Rig) -> None:
    def broken(offer: str, announced: str, bind: str) -> ScriptedMedia:
        raise RuntimeError("no RTP port left (test)")

    row = rig.run("voicemail", media_factory=broken, pass_behaviour="busy")
    assert rig.call.responses == [SentResponse(486, "Busy Here")]
    assert row.outcome == "failed open: passed: busy"


@dataclass
class BrokenBook(FakeService):
    """A call book whose database is gone: every write raises."""

    saved: list[str | None] = field(default_factory=list)

    def record_call(self, *args: Any, **kwargs: Any) -> str:
        raise RuntimeError("database is locked (test)")

    def finish_call(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no row was written, so there is none to finish")

    def save_voicemail(self, call_ref: str | None, path: Path, duration_s: float,
                       size_bytes: int, *, caller: Caller | None = None) -> str:
        self.saved.append(call_ref)
        return "1"


def test_a_call_book_that_cannot_write_does_not_stop_a_reject(settings: Settings) -> None:
    rig = Rig(settings, service=BrokenBook())
    rig.service.action = Action(ActionKind.REJECT, code=607)
    handle_call(rig.call, rig.env())  # type: ignore[arg-type]
    assert rig.call.responses == [SentResponse(607, "Unwanted")]


def test_a_call_book_that_cannot_write_does_not_stop_a_message(settings: Settings) -> None:
    book = BrokenBook()
    rig = Rig(settings, service=book)
    rig.service.action = Action(ActionKind.VOICEMAIL, prompt="greeting")
    handle_call(rig.call, rig.env())  # type: ignore[arg-type]
    assert rig.session.played == ["greeting.wav", "beep"]
    assert book.saved == [None]  # the message is kept, with no call row to point at
    assert rig.call.byes == 1


def test_finishing_the_row_failing_is_only_logged(rig: Rig,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(call_ref: str, *, duration_s: float, outcome: str) -> None:
        raise RuntimeError("disk full (test)")

    monkeypatch.setattr(rig.service, "finish_call", broken)
    rig.service.action = Action(ActionKind.REJECT, code=603)
    handle_call(rig.call, rig.env())  # type: ignore[arg-type]
    assert rig.statuses == [603] and len(rig.service.calls) == 1


def test_the_row_carries_the_caller_decision_and_duration(rig: Rig) -> None:
    rig.call = FakeCall(parsed_invite(call_id="abc@proxy"))
    row = rig.run("reject:603", line="home")
    assert row.caller.number == CALLER and row.caller.line == "home"
    assert row.line == "home" and row.sip_call_id == "abc@proxy"
    assert row.decision.action == Action(ActionKind.REJECT, code=603)
    assert row.duration_s is not None and row.duration_s >= 0


# --------------------------------------------------------------------------- carry_out, CallRecord


def test_carry_out_returns_the_outcome_and_leaves_finishing_to_the_caller(rig: Rig) -> None:
    who = caller(CALLER)
    record = CallRecord(rig.service, who, Decision(PASS, "test", Step.DEFAULT), at=NOW,
                        sip_call_id="x", line=None)
    outcome = carry_out(rig.call, Action.parse("reject:486"), who,  # type: ignore[arg-type]
                        rig.env(), record)
    assert outcome == "rejected 486"
    assert rig.service.calls == []  # a reject writes no row until finish()
    record.finish(duration_s=0.5, outcome=outcome)
    assert [(c.outcome, c.duration_s) for c in rig.service.calls] == [("rejected 486", 0.5)]


def test_call_record_writes_its_row_once(rig: Rig) -> None:
    record = CallRecord(rig.service, caller(CALLER), Decision(PASS, "t", Step.DEFAULT), at=NOW,
                        sip_call_id="x", line="home")
    assert record.ensure() == "1"
    assert record.ensure() == "1"
    record.finish(duration_s=1.0, outcome="done")
    assert len(rig.service.calls) == 1 and rig.service.calls[0].outcome == "done"


def test_call_record_does_not_retry_a_failed_write() -> None:
    attempts: list[int] = []

    class Flaky(FakeService):
        def record_call(self, *args: Any, **kwargs: Any) -> str:
            attempts.append(1)
            raise RuntimeError("locked (test)")

    record = CallRecord(Flaky(), caller(CALLER), Decision(PASS, "t", Step.DEFAULT), at=NOW,
                        sip_call_id="x", line=None)
    assert record.ensure() is None
    assert record.ensure() is None
    record.finish(duration_s=1.0, outcome="done")
    assert attempts == [1]


# --------------------------------------------------------------------------- identity


def test_identity_prefers_p_asserted_identity() -> None:
    invite = parsed_invite(user="0999", headers=(
        'P-Asserted-Identity: "Asserted" <sip:+33162000000@carrier.example>\r\n'
        'Remote-Party-ID: "Party" <sip:+33163000000@carrier.example>;party=calling\r\n'))
    assert identity_of(invite) == ("sip:+33162000000@carrier.example", "Asserted")


def test_identity_falls_back_to_remote_party_id_then_from() -> None:
    rpid = parsed_invite(headers='Remote-Party-ID: "Party" <sip:+33163000000@c.example>\r\n')
    assert identity_of(rpid) == ("sip:+33163000000@c.example", "Party")
    assert identity_of(parsed_invite()) == (f"sip:{CALLER}@192.0.2.9", "Test Caller")


def test_an_unreadable_first_pai_value_is_skipped() -> None:
    invite = parsed_invite(headers=("P-Asserted-Identity: garbage <\r\n"
                                    "P-Asserted-Identity: <tel:+33162000000>\r\n"))
    assert identity_of(invite) == ("tel:+33162000000", "")


def test_a_pai_that_cannot_be_read_at_all_falls_back_to_from() -> None:
    invite = parsed_invite(headers="P-Asserted-Identity: garbage <\r\n")
    assert identity_of(invite)[0] == f"sip:{CALLER}@192.0.2.9"


def test_a_request_without_identity_headers_has_no_identity() -> None:
    assert identity_of(SipRequest("INVITE", "sip:ringfence@192.0.2.1")) == ("", "")


def test_caller_of_parses_the_asserted_number_in_the_home_region() -> None:
    invite = parsed_invite(user="anything",
                           headers='P-Asserted-Identity: "Jean" <tel:0162000000>\r\n')
    who = caller_of(invite, "FR", "home")
    assert (who.kind, who.number, who.display_name, who.line) == (
        CallerKind.NUMBER, "+33162000000", "Jean", "home")


def test_privacy_is_passed_through() -> None:
    who = caller_of(parsed_invite(headers="Privacy: id\r\n"), "FR", None)
    assert who.kind is CallerKind.WITHHELD and who.number is None


@pytest.mark.parametrize("headers", [
    "P-Asserted-Identity: <sip:+33162000000;verstat=TN-Validation-Failed@c.example;user=phone>\r\n",
    "P-Asserted-Identity: <sip:+33162000000@c.example;user=phone;verstat=TN-Validation-Failed>\r\n",
])
def test_verstat_is_read_from_the_asserted_identity(headers: str) -> None:
    assert caller_of(parsed_invite(headers=headers), "FR", None).verstat is Verstat.FAILED


def test_verstat_is_read_from_from_without_pai() -> None:
    invite = parsed_invite(user="+33612345678;verstat=TN-Validation-Passed")
    who = caller_of(invite, "FR", None)
    assert who.verstat is Verstat.PASSED and who.number == CALLER


# --------------------------------------------------------------------------- voicemail_path


def stranger(number: str | None, kind: CallerKind = CallerKind.NUMBER) -> Caller:
    return Caller(kind=kind, raw=number or "", number=number)


AT = datetime(2026, 11, 24, 14, 5, 9)


@pytest.mark.parametrize("number", [
    "../../etc/passwd+33612345678", "/+33612345678", "+33 6 12;rm -rf ~;34\x00",
    "..\\..\\+33612345678",
])
def test_voicemail_path_keeps_only_digits_and_plus(tmp_path: Path, number: str) -> None:
    path = voicemail_path(tmp_path, stranger(number), AT)
    assert path.parent == tmp_path
    assert path.name.startswith("20261124-140509-")
    who = path.name.removeprefix("20261124-140509-").removesuffix(".wav")
    assert who and set(who) <= set("0123456789+")


def test_voicemail_path_names_a_caller_without_number_by_kind(tmp_path: Path) -> None:
    assert voicemail_path(tmp_path, stranger(None, CallerKind.WITHHELD), AT).name == (
        "20261124-140509-withheld.wav")
    assert voicemail_path(tmp_path, stranger("abc", CallerKind.INVALID), AT).name == (
        "20261124-140509-invalid.wav")


def test_voicemail_path_never_overwrites(tmp_path: Path) -> None:
    first = voicemail_path(tmp_path, stranger(CALLER), AT)
    assert first.name == f"20261124-140509-{CALLER}.wav"
    first.write_bytes(b"one")
    second = voicemail_path(tmp_path, stranger(CALLER), AT)
    assert second.name == f"20261124-140509-{CALLER}-2.wav"
    second.write_bytes(b"two")
    assert voicemail_path(tmp_path, stranger(CALLER), AT).name.endswith("-3.wav")
    assert first.read_bytes() == b"one"


def test_control_characters_never_reach_the_callers_display_name() -> None:
    """RFC 4475 "intmeth" escapes NUL, BEL and DEL in a display name: valid SIP, but nothing
    the call log, a mail or PostgreSQL (which refuses NUL in text) should receive."""
    invite = parsed_invite()
    invite.set("From", '"Bad\\\x00 \\\x07Name\\\x7f" <sip:+33612345678@192.0.2.9>;tag=x')
    assert identity_of(invite) == ("sip:+33612345678@192.0.2.9", "Bad Name")
