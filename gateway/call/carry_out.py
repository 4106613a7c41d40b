"""Carry out a screening decision on one call: ring through, reject, announce, voicemail, challenge.

A reject or a busy/unavailable/redirect pass runs on a worker and is over at once. A silent ring
runs nowhere: `ring_through` parks the call and its `done` callback gets the outcome when the
call ends (CANCEL, timeout, shutdown). Announce, voicemail and challenge run on the call's own
thread while it holds a media slot. Any exception fails open (`gateway.call.handle` lets the
call ring), because a broken screener must never cost the owner a real call.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from gateway.call.ports import CallEnvironment, Media, VoicemailSlot
from gateway.call.record import AUTO_ALLOW_LABEL, CallRecord
from gateway.media.sdp import parse_sdp
from gateway.prompts import KEYED_PROMPTS, keyed_prompt_name
from gateway.screening.caller import Caller
from gateway.screening.rules import REJECT_CODES, Action, ActionKind
from gateway.sip.ua import Call, reason_causes
from gateway.sip.workers import Occasional

log = logging.getLogger(__name__)
_ringing_full = Occasional()

RING_LIMIT_SECONDS = 300.0  # a pass that nobody cancels still ends (480) after this
DIGIT_TIMEOUT_SECONDS = 10.0
TRANSFER_WAIT_SECONDS = 30.0
MEDIA_ACTIONS = frozenset({ActionKind.ANNOUNCE, ActionKind.VOICEMAIL, ActionKind.CHALLENGE})
ACK_GRACE_SECONDS = 1.0  # past 64*T1: the call's own timer hangs up first

Done = Callable[[str], None]
"""Receives a call's outcome in a few words, once, when nothing more will happen to it."""


ANALOGUE_BLOCK = Action(ActionKind.ANNOUNCE, prompt="not_in_service")
"""What a refusal becomes on an analogue line: answered, the SIT tones and "not in service",
then hung up. The FXO adapter's INVITE is one leg of a line that rings every phone on it; a
SIP reject ends only that leg, while answering takes the line off-hook and stops them all."""
ANALOGUE_OUTCOME = "analogue line: "
"""What a refusal's outcome starts with on an analogue line ("analogue line: announced")."""


def on_analogue_line(action: Action) -> Action:
    """`action` as it is carried out on an analogue line: a reject is answered instead."""
    return ANALOGUE_BLOCK if action.kind is ActionKind.REJECT else action


def needs_media(action: Action) -> bool:
    """Whether carrying out `action` answers the call (and so takes a media slot)."""
    return action.kind in MEDIA_ACTIONS


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
    if action.kind is ActionKind.PASS:  # pragma: no cover - the flow parks passes itself
        raise ValueError("a pass is carried out by ring_through")
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


DECLINED = frozenset({486, 600, 603, 604, 607})  # SIP causes: another phone said no
NOT_ANSWERED = frozenset({408, 480})  # SIP causes: a proxy gave up on every phone
Q850_DECLINED = frozenset({17, 21})  # user busy, call rejected
Q850_NOT_ANSWERED = frozenset({18, 19})  # no user responding, no answer


def cancel_words(reason: str | None) -> str | None:
    """What a CANCEL's Reason says happened elsewhere, in a few words; None for a plain
    cancel (no Reason, or Q.850 cause 16, normal clearing: the caller hung up).

    The owner declining on their own phone reaches us this way from a proxy that cancels the
    other branches on a 6xx; a 486 from the phone usually ends nothing (docs/actions.md).
    """
    causes = reason_causes(reason)
    for protocol, cause in causes:  # a SIP cause says more than a Q.850 one
        if protocol != "SIP":
            continue
        if cause == 200:
            return "answered elsewhere"
        if cause in DECLINED:
            return f"declined elsewhere (SIP {cause})"
        if cause in NOT_ANSWERED:
            return f"not answered elsewhere (SIP {cause})"
        return f"cancelled by the network (SIP {cause})"
    for protocol, cause in causes:
        if protocol != "Q.850" or cause == 16:
            continue
        if cause in Q850_DECLINED:
            return f"declined elsewhere (Q.850 {cause})"
        if cause in Q850_NOT_ANSWERED:
            return f"not answered elsewhere (Q.850 {cause})"
        return f"cancelled by the network (Q.850 {cause})"
    return None


def cancelled_outcome(call: Call) -> str:
    """How a call that was cancelled before our answer is logged."""
    return cancel_words(call.cancel_reason) or "cancelled by caller"


def ring_through(
    call: Call, caller: Caller | None, env: CallEnvironment, record: CallRecord | None,
    done: Done,
) -> None:
    """A pass, per the line's behaviour: 486, 480 or 302 at once, or ring silently.

    A silent ring returns at once and holds no thread: the call stays in the fork until the
    owner's phone answers (CANCEL with cause=200), the caller gives up (CANCEL), nobody does
    for RING_LIMIT_SECONDS (480 from the timer thread) or the gateway stops; then `done` gets
    the outcome on a worker.
    """
    behaviour = env.pass_behaviour
    if behaviour == "busy":
        done("passed: busy" if call.reject(486, "Busy Here") else cancelled_outcome(call))
        return
    if behaviour == "unavailable":
        sent = call.reject(480, "Temporarily Unavailable")
        done("passed: unavailable" if sent else cancelled_outcome(call))
        return
    if behaviour == "redirect" and env.redirect_to:
        sent = call.redirect(env.redirect_to)
        done("passed: redirected" if sent else cancelled_outcome(call))
        return
    capacity = env.capacity
    if record is not None:
        record.ensure()  # the call shows in the log while it rings
    if not capacity.ringing.try_acquire():
        # Memory is the only thing a ring holds, but it must stay bounded: leave the fork
        # (a 4xx keeps the owner's phone ringing, which is what a pass means).
        capacity.counters.add("left_fork_ringing_full")
        _ringing_full.warn(log, "call %s: %d calls ringing already -> 480", call.call_id,
                           capacity.ringing.limit)
        sent = call.reject(480, "Temporarily Unavailable")
        done(f"passed: 480, {capacity.ringing.limit} calls ringing already" if sent
             else cancelled_outcome(call))
        return
    def nobody_answered() -> None:  # on the timer thread: one response, nothing slow
        call.reject(480, "Temporarily Unavailable", why="timeout")

    timer = capacity.timers.call_later(RING_LIMIT_SECONDS, nobody_answered)

    def ended() -> None:  # on the thread that ended the call: keep it short
        capacity.ringing.release()
        capacity.timers.cancel(timer)
        def finish() -> None:
            done(rang(call, caller, env))

        if env.book.queues_writes and not call.cancelled_by_answer_elsewhere():
            # The outcome only goes to the writer's queue (and a line within the budget):
            # done here, a worker's wake-up per call was a tenth of a ring + CANCEL's CPU.
            finish()
        else:  # learning the caller, or a writer that commits at once: the database's pace
            capacity.work.follow_up(finish)

    call.when_ended(ended)


def rang(call: Call, caller: Caller | None, env: CallEnvironment) -> str:
    """How a silent ring ended; learns the caller when the owner answered elsewhere."""
    if call.ended_by == "timeout":
        return "passed: nobody answered"
    if not call.cancelled.is_set():
        return "passed: ended by the gateway"
    if call.cancelled_by_answer_elsewhere():
        if caller is not None and caller.number:
            try:
                env.book.mark_known(caller.number)
            except Exception:
                log.exception("call %s: could not mark %s as known", call.call_id, caller.number)
        return "answered elsewhere"
    elsewhere = cancel_words(call.cancel_reason)
    return f"passed: {elsewhere}" if elsewhere else "passed: cancelled by caller"


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
        record.ensure()  # the caller has had our 200 OK: the call shows in the log from now
        # No RTP before the ACK: the SDP of an INVITE nobody confirms may name anybody (a
        # reflection attack). Without an ACK within 64*T1 the call hangs itself up.
        if not call.wait_confirmed(64 * call.ua.layer.t1 + ACK_GRACE_SECONDS):
            media.close()
            if call.remote_hangup.is_set():
                raise NotAnswered("caller hung up before the ACK")
            call.hangup(wait=False)
            raise NotAnswered("not answered: no ACK for our 200 OK")
        media.start()
    except Exception:
        media.close()
        raise
    return media


def reoffer(media: Media, offer: str) -> str | None:
    """Follow a re-INVITE (hold, resume, new address): our new answer, or None for 488."""
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
    """Answer (unless already), see that a message fits, greet, beep, record, hang up, save.

    The message goes to disk as it arrives under a name reserved for this call; when there is
    no room (the cap, the disk) the caller hears that the mailbox is full, never a beep that
    leads nowhere. An error while recording keeps what was recorded (marked interrupted).
    """
    if media is None:
        media = answer(call, env, record)
    slot: VoicemailSlot | None = None
    try:
        slot = _room_for_message(call, caller, env, record)
        if slot is None:
            play(media, "voicemail_full", env)
            return "voicemail full"
        if prompt:
            play(media, prompt, env)
        if call.remote_hangup.is_set():
            return "caller hung up during the greeting"
        if not slot.has_room():  # the disk filled up during the greeting
            log.warning("call %s: the disk filled up during the greeting", call.call_id)
            play(media, "voicemail_full", env)
            return "voicemail full"
        media.play_beep()
        try:
            result = media.record(
                slot.path, max_seconds=env.settings.voicemail.max_seconds,
                silence_seconds=env.settings.voicemail.silence_seconds, claim=slot.claim,
            )
        except OSError as exc:  # the file could not even be started: nothing was recorded
            log.error("call %s: cannot record to %s: %s", call.call_id, slot.path, exc)
            play(media, "voicemail_full", env)
            return "voicemail full"
        if result is None or not slot.path.exists():
            return "voicemail: nothing recorded"
        slot.save(float(result.duration_s), slot.path.stat().st_size)
        outcome = f"voicemail {result.duration_s:.0f} s"
        # Why it stopped before the caller did, when the mailbox or the disk ended it.
        if result.stopped == "cap":
            return outcome + ", mailbox now full"
        if result.stopped == "disk":
            return outcome + ", disk full"
        return outcome
    finally:
        if slot is not None:
            slot.close()  # nothing if saved; otherwise keeps what the file holds, or drops it
        call.hangup()


def _room_for_message(
    call: Call, caller: Caller, env: CallEnvironment, record: CallRecord
) -> VoicemailSlot | None:
    """A reserved file and room for a message, or None (logged) when there is none."""
    folder = env.settings.voicemail_dir
    try:
        path = voicemail_path(folder, caller, env.clock())
    except OSError as exc:  # a full disk or a broken folder: no message can be kept
        log.error("call %s: cannot create a recording in %s: %s", call.call_id, folder, exc)
        return None
    slot = env.book.start_voicemail(record.ensure(), caller, path, env.clock())
    if slot is None:
        log.warning("call %s: no room for a message; telling the caller", call.call_id)
        path.unlink(missing_ok=True)
    return slot


def challenge(
    call: Call, caller: Caller, prompt: str, env: CallEnvironment, record: CallRecord
) -> str:
    """Answer, ask for a digit; right digit: allow and transfer or take a message."""
    media = answer(call, env, record)
    handed_over = False
    try:
        expected = env.book.challenge_digit()
        play(media, challenge_prompt(prompt, expected), env)
        digit = media.wait_for_digit(timeout=DIGIT_TIMEOUT_SECONDS)
        if digit is None or digit != expected:
            log.info("call %s: challenge failed (pressed %r, expected %r)", call.call_id,
                     digit, expected)
            if not call.remote_hangup.is_set():
                play(media, "goodbye", env)
            return "challenge failed"
        if caller.number:
            env.book.auto_allow(caller.number, label=AUTO_ALLOW_LABEL)
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
    """A prompt that asks for a key ("press 5", "our number was published… press 5") names the
    owner's key; any other chosen prompt stays as is."""
    if prompt not in KEYED_PROMPTS:
        return prompt
    try:
        return keyed_prompt_name(prompt, key)
    except ValueError:
        return prompt


def voicemail_path(folder: Path, caller: Caller, at: datetime) -> Path:
    """Reserve a file name that sorts by time and says who called, safe from what strangers
    send: the file is created empty here (O_EXCL), so two messages at once never share it."""
    who = re.sub(r"[^0-9+]", "", caller.number or "") or caller.kind.value
    stamp = at.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    counter = 1
    while True:
        suffix = "" if counter == 1 else f"-{counter}"
        path = folder / f"{stamp}-{who}{suffix}.wav"
        try:
            # 0600: a caller's voice is the owner's only, whatever the umask.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            counter += 1
            continue
        return path
