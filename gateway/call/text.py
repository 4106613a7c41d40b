"""The flow of one text message (SIP MESSAGE): identity → screen → store → answer.

`handle_text` runs on a worker of the gateway's pool; the UA has already refused what it
cannot take (413 too large, 415 not text/plain). The sender's identity is read exactly as a
caller's (`caller_of`: P-Asserted-Identity, else Remote-Party-ID, else From), so the same
lists and rules apply. The text is stored before it is answered: 202 means it is in the
database; a database that does not take it gets the sender 500 with Retry-After, and the
sender tries again. Screening fails open: a text is accepted when screening fails.
"""

from __future__ import annotations

import logging

from gateway.call.identity import caller_of
from gateway.call.ports import TextEnvironment
from gateway.screening.rules import REJECT_CODES
from gateway.screening.texts import ACCEPTED_STATUS, RATE_LIMIT_STATUS, TextVerdict
from gateway.sip.ua import TextMessage
from gateway.sip.workers import Occasional

log = logging.getLogger(__name__)
_db_down = Occasional()

REASON_PHRASES = {ACCEPTED_STATUS: "Accepted", RATE_LIMIT_STATUS: "Busy Here", **REJECT_CODES}
RETRY_AFTER_S = 60  # when the database did not take a text: the sender tries again


def handle_text(text: TextMessage, env: TextEnvironment) -> None:
    """Screen, store and answer one text; never raises for a database error (500 instead)."""
    caller = caller_of(text.request, env.settings.home_region, env.line)
    now = env.clock()
    decision = env.screener.screen_text(caller, now)
    try:
        env.keeper.add(caller, decision, at=now, body=text.body.text,
                       charset=text.body.charset, sip_call_id=text.call_id, line=env.line)
    except Exception as exc:
        _db_down.warn(log, "text %s from %s: could not be stored (%s); answered 500, the "
                      "sender will retry", text.call_id, caller.describe(), type(exc).__name__)
        text.answer(500, "Server Internal Error", [("Retry-After", str(RETRY_AFTER_S))])
        return
    log.info("text %s from %s: %s %d (%s)", text.call_id, caller.describe(),
             decision.verdict.value, decision.status, decision.reason)
    text.answer(decision.status, REASON_PHRASES.get(decision.status, "Decline"))
    if decision.verdict is TextVerdict.ACCEPTED and env.on_accepted is not None:
        try:
            env.on_accepted()
        except Exception:  # a forward a minute late is better than a lost answer
            log.exception("could not bring the text forward")
