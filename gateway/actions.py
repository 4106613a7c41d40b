"""Carry out a screening decision on one call: ring through, reject, announce, voicemail, challenge.

Everything here runs on the call's own thread. Any exception fails open: the call is treated as
a pass (DESIGN.md §6), because a broken screener must never cost the owner a real call.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.config import PassBehaviour, Settings
from gateway.numbers import parse_caller
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision
from gateway.screening.rules import REJECT_CODES, Action, ActionKind
from gateway.sip.message import SipParseError, SipRequest, parse_name_addr
from gateway.sip.ua import Call

log = logging.getLogger(__name__)

RING_LIMIT_SECONDS = 300.0  # a pass that nobody cancels still ends (480) after this
DIGIT_TIMEOUT_SECONDS = 10.0
TRANSFER_WAIT_SECONDS = 30.0


class Recording(Protocol):
    """What the media side reports about a recording."""

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""


class Media(Protocol):
    """The media session API of `gateway.sip.media.MediaSession` that actions use."""

    def answer_sdp(self) -> str:
        """Our SDP answer."""

    def start(self) -> None:
        """Start RTP."""

    def play(self, path: Path) -> None:
        """Play a WAV file; returns early when closed."""

    def play_sit(self) -> None:
        """Play the SIT intercept tones."""

    def play_beep(self) -> None:
        """Play the "speak now" beep."""

    def record(
        self, path: Path, *, max_seconds: float, silence_seconds: float
    ) -> Recording | None:
        """Record the caller to `path`."""

    def wait_for_digit(self, timeout: float) -> str | None:
        """Wait for one RFC 2833 digit."""

    def close(self) -> None:
        """Stop everything."""

    def update(self, offer: Any) -> None:
        """Apply a re-INVITE's offer (a parsed SessionDescription)."""


class Service(Protocol):
    """The parts of `gateway.service.ScreeningService` the SIP layer calls."""

    def screen(self, caller: Caller, now: datetime) -> Decision:
        """Decide what to do with `caller`."""

    def record_call(
        self, caller: Caller, decision: Decision, *, at: datetime, sip_call_id: str,
        line: str | None,
    ) -> int:
        """Log the call; return its row id."""

    def finish_call(self, call_row_id: int, *, duration_s: float, outcome: str) -> None:
        """Complete the call's log row."""

    def save_voicemail(
        self, call_row_id: int | None, path: Path, duration_s: float, size_bytes: int, *,
        caller: Caller | None = None,
    ) -> int:
        """Register a recording."""

    def voicemail_space_left(self) -> int:
        """Bytes left under the voicemail cap."""

    def auto_allow(self, number_e164: str, *, label: str = "passed challenge") -> None:
        """Allow a number that passed the challenge."""

    def mark_known(self, number_e164: str) -> None:
        """Remember a number the owner answered."""

    def challenge_digit(self) -> str:
        """The digit callers must press."""


# (SDP offer text, address announced in our SDP, local address to bind) -> session
MediaFactory = Callable[[str, str, str], Media]
PromptResolver = Callable[[str], Path]


@dataclass
class CallEnvironment:
    """What a call needs besides itself: settings, service, media and the line's choices."""

    settings: Settings
    service: Service
    media_factory: MediaFactory
    prompt: PromptResolver
    line: str | None = None
    pass_behaviour: PassBehaviour = "ring"
    redirect_to: str = ""
    refer_to: str = ""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def identity_of(invite: SipRequest) -> tuple[str, str]:
    """The caller's identity header value and display name: PAI, else Remote-Party-ID, else
    From (DESIGN.md §3)."""
    for name in ("P-Asserted-Identity", "Remote-Party-ID", "From"):
        values = invite.get_all(name)
        if not values:
            continue
        # Several PAI values may come (a sip: and a tel: URI); prefer the one that is a number.
        for value in values:
            try:
                address = parse_name_addr(value)
            except SipParseError:
                continue
            return address.uri, address.display_name
    return "", ""


def caller_of(invite: SipRequest, env: CallEnvironment) -> Caller:
    """Build the Caller for `invite` with `gateway.numbers.parse_caller`."""
    identity, display = identity_of(invite)
    privacy = ", ".join(invite.get_all("Privacy"))
    verstat = " ".join([*invite.get_all("P-Asserted-Identity"), invite.get("From") or ""])
    return parse_caller(
        identity, env.settings.home_region, display_name=display, privacy=privacy,
        verstat=verstat, line=env.line,
    )


class CallRecord:
    """The call's row in the log, written only once the caller has had our first answer.

    Writing costs a database commit; doing it after the reject, the 200 OK or the decision to
    ring keeps it off the path between the INVITE and what the caller hears.
    """

    def __init__(self, call: Call, caller: Caller, decision: Decision, env: CallEnvironment,
                 at: datetime) -> None:
        self.call = call
        self.caller = caller
        self.decision = decision
        self.env = env
        self.at = at
        self.row_id: int | None = None
        self.written = False

    def ensure(self) -> int | None:
        """Write the row once (a failure is logged, never raised); return its id."""
        if not self.written:
            self.written = True
            try:
                self.row_id = self.env.service.record_call(
                    self.caller, self.decision, at=self.at, sip_call_id=self.call.call_id,
                    line=self.env.line,
                )
            except Exception:
                log.exception("call %s: could not log the call; carrying on", self.call.call_id)
        return self.row_id


def handle_call(call: Call, env: CallEnvironment) -> None:
    """Screen one incoming call, carry out the decision and log the outcome."""
    started = time.monotonic()
    record: CallRecord | None = None
    outcome = "failed open"
    caller: Caller | None = None
    try:
        caller = caller_of(call.invite, env)
        now = env.clock()
        decision = env.service.screen(caller, now)
        log.info("call %s from %s: %s (%s)", call.call_id, caller.describe(),
                 decision.action, decision.reason)
        record = CallRecord(call, caller, decision, env, now)
        outcome = carry_out(call, decision.action, caller, env, record)
    except Exception:
        log.exception("call %s: error while handling the call; failing open", call.call_id)
        try:
            outcome = "failed open: " + (
                ring_through(call, caller, env, record) if not call.answered else "hung up"
            )
        except Exception:
            log.exception("call %s: error while failing open", call.call_id)
        if call.answered:
            call.hangup()
    finally:
        row_id = record.ensure() if record is not None else None
        if row_id is not None:
            try:
                env.service.finish_call(
                    row_id, duration_s=round(time.monotonic() - started, 3), outcome=outcome
                )
            except Exception:
                log.exception("call %s: could not complete the call log", call.call_id)
        log.info("call %s: %s after %.1f s", call.call_id, outcome, time.monotonic() - started)


def carry_out(
    call: Call, action: Action, caller: Caller, env: CallEnvironment, record: CallRecord
) -> str:
    """Do what `action` says; return the outcome in a few words."""
    try:
        return _carry_out(call, action, caller, env, record)
    except NotAnswered as outcome:
        return str(outcome)


def _carry_out(
    call: Call, action: Action, caller: Caller, env: CallEnvironment, record: CallRecord
) -> str:
    if action.kind is ActionKind.PASS:
        return ring_through(call, caller, env, record)
    if action.kind is ActionKind.REJECT:
        code = action.code or 603
        reason = REJECT_CODES.get(code, "Decline")
        return f"rejected {code}" if call.reject(code, reason) else cancelled_outcome(call)
    if action.kind is ActionKind.ANNOUNCE:
        return announce(call, action.prompt or "not_in_service", env, record)
    if action.kind is ActionKind.VOICEMAIL:
        return voicemail(call, caller, action.prompt or "greeting", env, record)
    if action.kind is ActionKind.CHALLENGE:
        return challenge(call, caller, action.prompt or "challenge", env, record)
    raise ValueError(f"unknown action {action}")  # pragma: no cover - enum is closed


def cancelled_outcome(call: Call) -> str:
    """How a call that the caller cancelled is logged."""
    if call.cancelled_by_answer_elsewhere():
        return "answered elsewhere"
    return "cancelled by caller"


def ring_through(
    call: Call, caller: Caller | None, env: CallEnvironment, record: CallRecord | None
) -> str:
    """A pass, per the line's behaviour: ring silently, 486, 480 or 302."""
    behaviour = env.pass_behaviour
    if behaviour == "busy":
        return "passed: busy" if call.reject(486, "Busy Here") else cancelled_outcome(call)
    if behaviour == "unavailable":
        sent = call.reject(480, "Temporarily Unavailable")
        return "passed: unavailable" if sent else cancelled_outcome(call)
    if behaviour == "redirect" and env.redirect_to:
        return "passed: redirected" if call.redirect(env.redirect_to) else cancelled_outcome(call)
    # ring: stay silent in the fork until the owner's phone answers or the caller gives up.
    if record is not None:
        record.ensure()  # the call shows in the log while it rings
    if not call.wait_ended(RING_LIMIT_SECONDS):
        call.reject(480, "Temporarily Unavailable")
        return "passed: nobody answered"
    if not call.cancelled.is_set():
        return "passed: ended by the gateway"
    if call.cancelled_by_answer_elsewhere():
        if caller is not None and caller.number:
            try:
                env.service.mark_known(caller.number)
            except Exception:
                log.exception("call %s: could not mark %s as known", call.call_id, caller.number)
        return "answered elsewhere"
    return "passed: cancelled by caller"


class NotAnswered(Exception):
    """The call could not be answered; the message is the outcome to log."""


def answer(call: Call, env: CallEnvironment, record: CallRecord) -> Media:
    """Answer with media; raise NotAnswered when cancelled first or the offer is unusable."""
    offer = call.invite.body_text() if call.invite.content_type == "application/sdp" else ""
    if not offer.strip():
        # A late offer (no SDP in the INVITE) would need our offer in the 200 and the answer
        # in the ACK; we leave the fork instead (488 is 4xx: the owner's phone keeps ringing).
        call.reject(488, "Not Acceptable Here")
        raise NotAnswered("not answered: INVITE without SDP (488)")
    # Behind NAT the SDP names the public address while the socket binds the local one.
    announced = call.ua.local_host_for(call.tx.source.host)
    bind = call.ua.transport.local_address_towards(call.tx.source.host)
    try:
        media = env.media_factory(offer, announced, bind)
    except ValueError as exc:  # SdpError: nothing we can answer (no audio, no common codec)
        log.warning("call %s: unusable SDP offer: %s", call.call_id, exc)
        call.reject(488, "Not Acceptable Here")
        raise NotAnswered("not answered: unusable SDP offer (488)") from None
    try:
        # Hooked up before the 200 OK goes out: the caller may ACK and re-INVITE at once.
        call.media = media
        call.on_reoffer = lambda offer: reoffer(media, offer)
        if not call.answer(media.answer_sdp()):
            media.close()
            raise NotAnswered(cancelled_outcome(call))
        media.start()
    except Exception:
        media.close()
        raise
    record.ensure()
    return media


def reoffer(media: Media, offer: str) -> str | None:
    """Follow a re-INVITE (hold, resume, new address): our new answer, or None for 488."""
    from gateway.sip.sdp import parse_sdp

    try:
        media.update(parse_sdp(offer))
    except ValueError as exc:  # SdpError: the re-offer drops our codec or is unreadable
        log.info("re-offer refused: %s", exc)
        return None
    return media.answer_sdp()


def play(media: Media, prompt: str, env: CallEnvironment) -> None:
    """Play a named prompt (``sit`` is the tone sequence, not a file)."""
    if prompt == "sit":
        media.play_sit()
        return
    try:
        path = env.prompt(prompt)
    except (OSError, ValueError) as exc:
        # A missing prompt must not cost the call: the rest of the action (recording, the
        # challenge digit) still works without it.
        log.error("prompt %r unavailable: %s", prompt, exc)
        return
    media.play(path)


def announce(call: Call, prompt: str, env: CallEnvironment, record: CallRecord) -> str:
    """Answer, play the prompt, hang up."""
    media = answer(call, env, record)
    try:
        play(media, prompt, env)
    finally:
        call.hangup()
    return "caller hung up during the announcement" if call.remote_hangup.is_set() else "announced"


def voicemail(
    call: Call, caller: Caller, prompt: str | None, env: CallEnvironment, record: CallRecord,
    media: Media | None = None,
) -> str:
    """Answer (unless already), play the greeting, beep, record, hang up, save."""
    if media is None:
        media = answer(call, env, record)
    try:
        if prompt:
            play(media, prompt, env)
        if call.remote_hangup.is_set():
            return "caller hung up during the greeting"
        if env.service.voicemail_space_left() <= 0:
            log.warning("call %s: voicemail is full; not recording", call.call_id)
            return "voicemail full"
        media.play_beep()
        path = voicemail_path(env.settings.voicemail_dir, caller, env.clock())
        path.parent.mkdir(parents=True, exist_ok=True)
        result = media.record(
            path, max_seconds=env.settings.voicemail.max_seconds,
            silence_seconds=env.settings.voicemail.silence_seconds,
        )
        if result is None or not path.exists():
            return "voicemail: nothing recorded"
        size = path.stat().st_size
        env.service.save_voicemail(record.ensure(), path, float(result.duration_s), size,
                                   caller=caller)
        return f"voicemail {result.duration_s:.0f} s"
    finally:
        call.hangup()


def challenge(
    call: Call, caller: Caller, prompt: str, env: CallEnvironment, record: CallRecord
) -> str:
    """Answer, ask for a digit; right digit: allow and transfer or take a message."""
    media = answer(call, env, record)
    handed_over = False
    try:
        expected = env.service.challenge_digit()
        play(media, challenge_prompt(prompt, expected), env)
        digit = media.wait_for_digit(timeout=DIGIT_TIMEOUT_SECONDS)
        if digit is None or digit != expected:
            log.info("call %s: challenge failed (pressed %r, expected %r)", call.call_id,
                     digit, expected)
            if not call.remote_hangup.is_set():
                play(media, "goodbye", env)
            return "challenge failed"
        if caller.number:
            env.service.auto_allow(caller.number, label="passed challenge")
        if env.refer_to and call.refer(env.refer_to):
            # The caller's UA now calls the extension and sends us BYE; give it time to.
            call.remote_hangup.wait(TRANSFER_WAIT_SECONDS)
            return "challenge passed: transferred"
        play(media, "challenge_passed", env)
        handed_over = True
        outcome = voicemail(call, caller, None, env, record, media=media)
        return f"challenge passed: {outcome}"
    finally:
        if not handed_over:
            call.hangup()


def challenge_prompt(prompt: str, key: str) -> str:
    """The default "press 5" prompt names the owner's key; a chosen prompt stays as is."""
    if prompt != "challenge":
        return prompt
    from gateway.prompts import challenge_prompt_name

    try:
        return challenge_prompt_name(key)
    except ValueError:
        return prompt


def voicemail_path(folder: Path, caller: Caller, at: datetime) -> Path:
    """A file name that sorts by time and says who called, safe from what strangers send."""
    who = re.sub(r"[^0-9+]", "", caller.number or "") or caller.kind.value
    stamp = at.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{who}.wav"
    counter = 1
    while path.exists():
        counter += 1
        path = folder / f"{stamp}-{who}-{counter}.wav"
    return path
