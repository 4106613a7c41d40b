"""Repeat refusals: a block-listed caller that floods is refused again without a worker.

A flood of INVITEs from one block-listed number (a SIPp attack, a dialer retrying) costs the
full call flow per INVITE: a transaction, a call, a worker, the screening reads, timers. Once
screening has refused the same caller (same identity headers, same line) twice within
`FRESH_S`, further INVITEs from it are refused on the receive thread from what was decided,
statelessly (RFC 3261 §8.2.7: no 100 Trying, no retransmission, ACK and CANCEL ignored), and
logged in the call log exactly as the screened one was, hit counted.

What a repeat may not change: only block-list refusals are repeated (no rule, which may depend
on the hour; no rate limit, which depends on the history); never for a call with an Identity
header (its signature is checked per call) or on an analogue line (where a refusal is
answered). A rules change (an unblock) reaches a flooding caller within `FRESH_S`: past it
the next INVITE is screened again, and two screened refusals in a row are needed before
repeats resume, so a person calling twice does not meet a decision older than their call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.call.identity import identity_of
from gateway.call.ports import CallEnvironment
from gateway.call.record import CallRecord
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import ActionKind
from gateway.sip.message import SipRequest
from gateway.sip.transport import Source
from gateway.sip.ua import Refusal

log = logging.getLogger(__name__)

FRESH_S = 1.0
"""How long a screened refusal is repeated: the delay before a rules change reaches a caller
that floods (it is screened again after this)."""
CONFIRMATIONS = 2
"""Screened refusals in a row, each within FRESH_S of the last, before repeats begin."""
MAX_CALLERS = 1024
"""Callers remembered at once; beyond, the oldest is forgotten (it is screened again)."""

CallerKey = tuple[str, str, str, str, bool]


@dataclass
class _Settled:
    caller: Caller
    decision: Decision
    status: int
    reason: str
    at: float  # time.monotonic() of the last screened refusal
    confirmations: int


class RepeatRefusals:
    """Screened block-list refusals of one line, and their repeats for the same caller."""

    def __init__(self, env: CallEnvironment, *,
                 log_call: Callable[[str, Caller, Decision], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.env = env
        self.log_call = log_call
        self.clock = clock
        self._lock = threading.Lock()
        self._settled: dict[CallerKey, _Settled] = {}
        self.repeated = 0  # INVITEs refused as repeats (tests and the bench read it)

    @staticmethod
    def key(invite: SipRequest, internal: bool) -> CallerKey | None:
        """What screening read from the INVITE to know the caller; None: never repeated."""
        if invite.get("Identity") is not None:
            return None  # a PASSporT is verified per call, with the time of the call
        identity, display = identity_of(invite)
        from_header = invite.from_()
        privacy = ", ".join(invite.get_all("Privacy"))
        return (identity, display, privacy, from_header.uri, internal)

    def learn(self, key: CallerKey | None, caller: Caller, decision: Decision, status: int,
              reason: str) -> None:
        """Note a screened call's refusal (on a worker, after it was sent)."""
        if (key is None or decision.step is not Step.BLOCK
                or decision.action.kind is not ActionKind.REJECT or self.env.kind != "sip"):
            return
        now = self.clock()
        with self._lock:
            earlier = self._settled.pop(key, None)
            confirmations = 1
            if (earlier is not None and now - earlier.at < FRESH_S
                    and earlier.decision.ref == decision.ref and earlier.status == status):
                confirmations = earlier.confirmations + 1
            while len(self._settled) >= MAX_CALLERS:
                del self._settled[next(iter(self._settled))]
            # The row of a repeat says how long its own decision took: no screening at all.
            self._settled[key] = _Settled(caller, replace(decision, elapsed_ms=0.0), status,
                                          reason, now, confirmations)

    def forget(self) -> None:
        """Screen every caller again from the next call (tests; a restore)."""
        with self._lock:
            self._settled.clear()

    def answer(self, invite: SipRequest, source: Source, internal: bool) -> Refusal | None:
        """On the receive thread: the refusal to repeat for this INVITE, or None: screen it."""
        if not self._settled:
            return None
        key = self.key(invite, internal)
        if key is None:
            return None
        with self._lock:
            settled = self._settled.get(key)
            if (settled is None or settled.confirmations < CONFIRMATIONS
                    or self.clock() - settled.at >= FRESH_S):
                return None
            self.repeated += 1
        return Refusal(settled.status, settled.reason,
                       lambda: self._record(invite.call_id, settled))

    def _record(self, call_id: str, settled: _Settled) -> None:
        """After the refusal went out: the call's row and hit, as the screened call's."""
        env = self.env
        logged = self.log_call(call_id, settled.caller, settled.decision)
        record = CallRecord(env.book, settled.caller, settled.decision, at=env.clock(),
                            sip_call_id=call_id, line=env.line)
        outcome = f"rejected {settled.status}"
        record.finish(duration_s=0.0, outcome=outcome)
        if logged:
            log.info("call %s: %s after 0.0 s (a repeat)", call_id, outcome)
