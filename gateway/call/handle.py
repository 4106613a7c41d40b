"""The flow of one call: identity → screen → carry out → record.

`handle_call` runs on a worker of the gateway's pool (the UA hands it each new INVITE) and
returns as soon as the call needs no worker: a reject is answered there, a silent ring is
parked until the call ends (no thread waits for it), and a call that needs media (announce,
voicemail, challenge) moves to a thread of its own while it holds one of `max_calls` media
slots. Every step fails open: an error anywhere lets the call ring as if Ringfence were not
there, and the call is still logged with what happened.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import threading
import time

from gateway.call.carry_out import (
    ANALOGUE_OUTCOME,
    Done,
    cancelled_outcome,
    carry_out,
    needs_media,
    on_analogue_line,
    ring_through,
)
from gateway.call.identity import caller_of
from gateway.call.ports import CallEnvironment
from gateway.call.record import CallRecord
from gateway.config import PassBehaviour
from gateway.screening.caller import Caller, InternalNumbers
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import PASS, REJECT_CODES, Action, ActionKind
from gateway.sip.ua import Call
from gateway.sip.workers import LineBudget, Occasional

log = logging.getLogger(__name__)
_full_house = Occasional()  # a spoof storm would log this once per call
call_lines = LineBudget()
"""The budget of the two INFO lines each call writes (decision, outcome): every call of a
home line is logged, a flood's are counted beyond 5 a second; each is in the call log."""

SILENT_RING: PassBehaviour = "ring"
"""How an internal call passes on any line: silence in the fork, never a 486 or a 302."""
NO_MEDIA_SLOT = (600, "Busy Everywhere")
"""What a call gets that would be answered (announce, voicemail, challenge) when every media
slot is taken: a 6xx, so a forking proxy cancels the owner's branch as the owner's rules want;
600 rather than 603 because it is true (busy, try later) and plays a busy tone to a person."""
NEEDS_EXTENSION = (603, "Decline")
"""What a call gets that would be answered but requires an option tag we lack (Require): we
cannot answer it, and a 420 (4xx) would let the owner's phone ring for a caller the rules keep
away."""


def handle_call(call: Call, env: CallEnvironment) -> None:
    """Screen one incoming call, then carry out the decision or hand it on; never raises."""
    started = time.monotonic()
    caller: Caller | None = None
    try:
        now = env.clock()
        caller = caller_of(call.invite, env.settings.home_region, env.line,
                           internal=internal_numbers(call, env), now=now,
                           check=env.check_signature)
        decision = env.screener.screen(caller, now)
        if decision.step is Step.INTERNAL:
            # The intercom rings every phone: stay silent in it whatever the line's pass
            # behaviour (a busy or a redirect would break the family's internal call).
            env = dataclasses.replace(env, pass_behaviour=SILENT_RING)
        lines = log_call(call, caller, decision)
        record = CallRecord(env.book, caller, decision, at=now, sip_call_id=call.call_id,
                            line=env.line)
    except Exception as exc:
        log.exception("call %s: error while screening the call; failing open", call.call_id)
        failed_record = None
        if caller is not None:
            # Screening itself failed: the call is still logged, with what happened to it.
            failed = Decision(PASS, f"screening failed ({type(exc).__name__}); call let through",
                              Step.ERROR, unknown=True)
            failed_record = CallRecord(env.book, caller, failed, at=env.clock(),
                                       sip_call_id=call.call_id, line=env.line)
        fail_open(call, caller, env, failed_record, finisher(call, failed_record, started))
        return
    done = finisher(call, record, started, logged=lines)
    action, carried = decision.action, done
    if env.kind == "analogue" and action.kind is ActionKind.REJECT:
        # The phones on an analogue line keep ringing after a SIP reject: answer instead.
        action, carried = on_analogue_line(action), analogue_outcome(done)
    try:
        dispatch(call, action, caller, env, record, carried)
    except Exception:
        log.exception("call %s: error while handling the call; failing open", call.call_id)
        fail_open(call, caller, env, record, done)
        return
    if (env.repeats is not None and decision.step is Step.BLOCK
            and action.kind is ActionKind.REJECT and call.ended_by == "final"):
        # Only block-list refusals are repeated (`RepeatRefusals.learn` says why): the caller's
        # key is built for those alone, not for every rule's refusal.
        code = action.code or 603
        env.repeats.learn(env.repeats.key(call.invite, from_home_network(call.tx.source.host)),
                          caller, decision, code, REJECT_CODES.get(code, "Decline"))


@functools.lru_cache(maxsize=256)
def from_home_network(host: str) -> bool:
    """Whether a request came from a private or loopback address (the home router, a PBX).
    Cached: calls come from a few addresses (the router, the provider's proxies), and parsing
    one per INVITE was 3 % of a refused call's work."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_private or address.is_loopback


def internal_numbers(call: Call, env: CallEnvironment) -> InternalNumbers | None:
    """The router's own numbers, when the INVITE comes from the home network: a stranger
    calling a line at a provider from the Internet cannot pass as `**610`."""
    return env.settings.internal_numbers if from_home_network(call.tx.source.host) else None


def analogue_outcome(done: Done) -> Done:
    """A `Done` that says a refusal was answered because the line is analogue."""
    return lambda outcome: done(ANALOGUE_OUTCOME + outcome)


def dispatch(call: Call, action: Action, caller: Caller, env: CallEnvironment,
             record: CallRecord, done: Done) -> None:
    """Carry out `action` now (reject, a pass that leaves the fork), park it (a silent ring)
    or give it a media slot and a thread; `done` gets the outcome once it is known."""
    if call.unsupported and action.kind is not ActionKind.REJECT:
        refuse_extension(call, action, env, done)
        return
    if needs_media(action):
        capacity = env.capacity
        if not capacity.media.try_acquire():
            # A full house never turns a decision that keeps the caller away into a ring.
            capacity.counters.add("refused_no_media_slot")
            status, reason = NO_MEDIA_SLOT
            _full_house.warn(log, "call %s: all %d media slots busy; %s -> %d", call.call_id,
                             capacity.media.limit, action, status)
            sent = call.reject(status, reason)
            done(f"refused {status}: all {capacity.media.limit} media slots busy ({action})"
                 if sent else cancelled_outcome(call))
            return
        capacity.work.spawn(f"call-{call.call_id[:12]}",
                            lambda: with_media(call, action, caller, env, record, done))
        return
    if action.kind is ActionKind.PASS:
        ring_through(call, caller, env, record, done)
        return
    done(carry_out(call, action, caller, env, record))


def with_media(call: Call, action: Action, caller: Caller, env: CallEnvironment,
               record: CallRecord, done: Done) -> None:
    """On the call's own thread, holding a media slot: answer, play, record, hang up."""
    try:
        outcome = carry_out(call, action, caller, env, record)
    except Exception:
        log.exception("call %s: error while handling the call; failing open", call.call_id)
        env.capacity.media.release()
        fail_open(call, caller, env, record, done)
        return
    env.capacity.media.release()
    done(outcome)


def refuse_extension(call: Call, action: Action, env: CallEnvironment, done: Done) -> None:
    """The INVITE requires option tags we lack (RFC 3261 §8.2.2.3): a pass gets 420 Bad
    Extension (the owner's phone still rings), an answer we cannot give a 603."""
    tags = ", ".join(call.unsupported)
    if needs_media(action):
        status, reason = NEEDS_EXTENSION
        sent = call.reject(status, reason, [("Warning", f'399 ringfence "requires {tags}"')])
        done(f"refused {status}: requires {tags} ({action})" if sent else cancelled_outcome(call))
        return
    sent = call.reject(420, "Bad Extension", [("Unsupported", tags)])
    done(f"passed: 420, requires {tags}" if sent else cancelled_outcome(call))


def fail_open(call: Call, caller: Caller | None, env: CallEnvironment,
              record: CallRecord | None, done: Done) -> None:
    """After an error: let the call ring (the line's pass behaviour), or hang up if answered."""

    def failed(outcome: str) -> None:
        done("failed open: " + outcome)

    try:
        if call.answered:
            call.hangup()
            failed("hung up")
        else:
            ring_through(call, caller, env, record, failed)
    except Exception:
        log.exception("call %s: error while failing open", call.call_id)
        if not call.final_sent and not call.cancelled.is_set():
            call.reject(480, "Temporarily Unavailable", why="failed")
        failed("left the fork (480)")


def log_call(call: Call, caller: Caller, decision: Decision) -> bool:
    """The call's decision as an INFO line, within `call_lines`; whether it was written."""
    return log_decision(call.call_id, caller, decision)


def log_decision(call_id: str, caller: Caller, decision: Decision) -> bool:
    """A call's decision as an INFO line, within `call_lines`; whether it was written."""
    if not log.isEnabledFor(logging.INFO):
        return False
    held = call_lines.take()
    if held is None:
        return False
    _say_held(held)
    log.info("call %s from %s: %s (%s)", call_id, caller.describe(), decision.action,
             decision.reason)
    return True


def log_held_calls() -> None:
    """Say how many calls were not logged line by line, once the flood that held them back is
    over (the gateway's main loop asks every second)."""
    _say_held(call_lines.overdue())


def _say_held(held: int) -> None:
    if held:
        log.info("%d call(s) not logged line by line (a flood: more than %g a second); each "
                 "is in the call log", held, call_lines.rate)


def finisher(call: Call, record: CallRecord | None, started: float, *,
             logged: bool = True) -> Done:
    """A `Done` that completes the call's log row and logs the outcome (if `logged`: its
    decision was), the first time only."""
    lock = threading.Lock()
    finished = False

    def done(outcome: str) -> None:
        nonlocal finished
        with lock:
            if finished:
                return
            finished = True
        elapsed = time.monotonic() - started
        if record is not None:
            record.finish(duration_s=round(elapsed, 3), outcome=outcome)
        if logged:
            log.info("call %s: %s after %.1f s", call.call_id, outcome, elapsed)

    return done
