"""What a call leaves behind: its row in the log, the hit counters, a voicemail, a learnt caller.

`CallBook` is the writing side of the call flow (the `Records` port); `CallRecord` writes one
call's row at the right moment, after the caller has had our first answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from gateway.call.ports import Records
from gateway.config import Settings
from gateway.numbers import parse_caller
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import ListName
from gateway.store import Store
from gateway.store.models import utcnow

log = logging.getLogger(__name__)

AUTO_ALLOW_LABEL = "passed challenge"
KNOWN_CALLER_LABEL = "answered by owner"


class CallBook:
    """Writes of the call flow to one store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        # Called with no argument after a voicemail is saved; the gateway process points it at
        # the scheduler so the owner's alert goes out now rather than at the next minute.
        self.on_voicemail: Callable[[], None] | None = None

    def _note_use(self, decision: Decision, now: datetime) -> None:
        if decision.ref is None:
            return
        if decision.step in (Step.ALLOW, Step.BLOCK):
            self.store.entries.note_used(
                decision.ref, consume=decision.consume_entry_id is not None, at=now)
        elif decision.step is Step.RULE:
            self.store.rules.note_used(decision.ref)

    def record_call(self, caller: Caller, decision: Decision, *, at: datetime,
                    sip_call_id: str | None = None, line: str | None = None) -> int:
        """Log a call, count the hit of the entry or rule that decided it; return the row id.

        Counting here rather than while screening keeps writes off the path between the INVITE
        and our answer; a "permit next call" entry is used up here too.
        """
        row_id = self.store.calls.record(caller, decision, at=at, sip_call_id=sip_call_id,
                                         line=line)
        try:
            self._note_use(decision, at)
        except Exception:
            log.exception("could not count the hit of %s", decision.rule_id)
        return row_id

    def finish_call(self, call_row_id: int, *, duration_s: float, outcome: str) -> None:
        """Store how a call ended."""
        self.store.calls.finish(call_row_id, duration_s=duration_s, outcome=outcome)

    def save_voicemail(self, call_row_id: int | None, path: Path, duration_s: float,
                       size_bytes: int, *, caller: Caller | None = None) -> int:
        """Log a recording saved under the voicemail folder, and wake the alerts."""
        voicemails = self.store.voicemails
        voicemail_id = voicemails.save(
            call_row_id, at=utcnow(), path=voicemails.relative(path), duration_s=duration_s,
            size_bytes=size_bytes, number=caller.number if caller else None,
            display_name=caller.display_name if caller else "",
        )
        if self.on_voicemail is not None:
            try:
                self.on_voicemail()
            except Exception:  # an alert a minute late is better than a failed call
                log.exception("could not bring the voicemail alert forward")
        return voicemail_id

    def voicemail_space_left(self) -> int:
        """Bytes that may still be recorded under the configured cap."""
        cap = self.settings.voicemail.max_total_mb * 1024 * 1024
        return cap - self.store.voicemails.bytes_used()

    def auto_allow(self, number: str, *, label: str = AUTO_ALLOW_LABEL) -> None:
        """Allow a number that passed the challenge, so its next call rings."""
        self.store.entries.add(ListName.ALLOW, number, kind="exact", label=label, source="auto")

    def mark_known(self, number: str) -> None:
        """Remember a caller the owner answered (CANCEL with cause=200) as a known caller."""
        caller = parse_caller(number, self.settings.home_region)
        now = utcnow()
        allowed = [e for e in self.store.screening.candidate_entries(caller)
                   if e.list is ListName.ALLOW and e.active(now) and e.matches(caller)]
        if not allowed:
            self.store.entries.add(ListName.ALLOW, number, kind="exact",
                                   label=KNOWN_CALLER_LABEL, source="known")

    def challenge_digit(self) -> str:
        """The key a challenged caller must press."""
        return str(self.store.runtime.get("challenge_digit"))

    def set_line_state(self, line_name: str, state: str, error: str | None) -> None:
        """Record a line's registration state for the UI and `ringfence status`."""
        try:
            self.store.lines.set(line_name, state, error)
        except Exception:
            log.exception("could not store the state of line %s", line_name)


class CallRecord:
    """One call's row in the log, written only once the caller has had our first answer.

    Writing costs a database commit; doing it after the reject, the 200 OK or the decision to
    ring keeps it off the path between the INVITE and what the caller hears.
    """

    def __init__(self, book: Records, caller: Caller, decision: Decision, *, at: datetime,
                 sip_call_id: str, line: str | None) -> None:
        self.book = book
        self.caller = caller
        self.decision = decision
        self.at = at
        self.sip_call_id = sip_call_id
        self.line = line
        self.row_id: int | None = None
        self.written = False

    def ensure(self) -> int | None:
        """Write the row once (a failure is logged, never raised); return its id."""
        if not self.written:
            self.written = True
            try:
                self.row_id = self.book.record_call(
                    self.caller, self.decision, at=self.at, sip_call_id=self.sip_call_id,
                    line=self.line,
                )
            except Exception:
                log.exception("call %s: could not log the call; carrying on", self.sip_call_id)
        return self.row_id

    def finish(self, *, duration_s: float, outcome: str) -> None:
        """Write the row if it is not yet, then how the call ended (failures are logged)."""
        row_id = self.ensure()
        if row_id is None:
            return
        try:
            self.book.finish_call(row_id, duration_s=duration_s, outcome=outcome)
        except Exception:
            log.exception("call %s: could not complete the call log", self.sip_call_id)
