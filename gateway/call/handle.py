"""The flow of one call: identity → screen → carry out → record.

`handle_call` runs on the call's own thread (the UA starts it for each new INVITE). Every step
fails open: an error anywhere lets the call ring as if Ringfence were not there, and the call
is still logged with what happened.
"""

from __future__ import annotations

import logging
import time

from gateway.call.carry_out import carry_out, ring_through
from gateway.call.identity import caller_of
from gateway.call.ports import CallEnvironment
from gateway.call.record import CallRecord
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import PASS
from gateway.sip.ua import Call

log = logging.getLogger(__name__)


def handle_call(call: Call, env: CallEnvironment) -> None:
    """Screen one incoming call, carry out the decision and log the outcome."""
    started = time.monotonic()
    record: CallRecord | None = None
    outcome = "failed open"
    caller: Caller | None = None
    try:
        caller = caller_of(call.invite, env.settings.home_region, env.line)
        now = env.clock()
        decision = env.screener.screen(caller, now)
        log.info("call %s from %s: %s (%s)", call.call_id, caller.describe(),
                 decision.action, decision.reason)
        record = CallRecord(env.book, caller, decision, at=now, sip_call_id=call.call_id,
                            line=env.line)
        outcome = carry_out(call, decision.action, caller, env, record)
    except Exception as exc:
        log.exception("call %s: error while handling the call; failing open", call.call_id)
        if record is None and caller is not None:
            # Screening itself failed: the call is still logged, with what happened to it.
            failed = Decision(PASS, f"screening failed ({type(exc).__name__}); call let through",
                              Step.ERROR, unknown=True)
            record = CallRecord(env.book, caller, failed, at=env.clock(),
                                sip_call_id=call.call_id, line=env.line)
        try:
            outcome = "failed open: " + (
                ring_through(call, caller, env, record) if not call.answered else "hung up"
            )
        except Exception:
            log.exception("call %s: error while failing open", call.call_id)
        if call.answered:
            call.hangup()
    finally:
        if record is not None:
            record.finish(duration_s=round(time.monotonic() - started, 3), outcome=outcome)
        log.info("call %s: %s after %.1f s", call.call_id, outcome, time.monotonic() - started)
