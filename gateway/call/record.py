"""What a call leaves behind: its row in the log, the hit counters, a voicemail, a learnt caller.

`CallBook` is the writing side of the call flow (the `Records` port): it turns each write into
an event (`gateway.store.events`) for a writer. In the gateway that is the batched call writer
with its journal (`gateway.store.writer.CallWriter`), so a call thread never waits on the
database; the CLI and tests use a `DirectWriter`, which commits at once. `CallRecord` writes
one call's row at the right moment, after the caller has had our first answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from gateway.call.mailbox import Mailbox, Slot, recordings_dir
from gateway.call.ports import Records
from gateway.config import Settings
from gateway.numbers import parse_caller
from gateway.screening.caller import Caller
from gateway.screening.decide import Decision
from gateway.screening.rules import ListName
from gateway.store import Store
from gateway.store.events import (
    CallerAllowed,
    CallFinished,
    Event,
    VoicemailSaved,
    call_logged,
    inert,
)
from gateway.store.models import utcnow
from gateway.store.settings import DEFAULT_SETTINGS
from gateway.store.writer import CallWrites, DirectWriter

log = logging.getLogger(__name__)

AUTO_ALLOW_LABEL = "passed challenge"
KNOWN_CALLER_LABEL = "answered by owner"


class CallBook:
    """Writes of the call flow, through one writer, to one store."""

    def __init__(self, store: Store, settings: Settings,
                 writer: CallWrites | None = None) -> None:
        self.store = store
        self.settings = settings
        self.writer: CallWrites = writer or DirectWriter(store.db)
        # Called with no argument once a voicemail's row is committed; the gateway process
        # points it at the scheduler so the owner's alert goes out now, not at the next minute.
        self.on_voicemail: Callable[[], None] | None = None
        self._digit = str(DEFAULT_SETTINGS["challenge_digit"])
        self.mailbox = Mailbox(store.voicemails, self.writer,
                               cap_bytes=settings.voicemail.max_total_mb * 1024 * 1024,
                               spool=recordings_dir(settings.data_dir))
        self.writer.add_listener(self._committed)

    def _committed(self, events: Sequence[Event]) -> None:
        if self.on_voicemail is not None and any(isinstance(e, VoicemailSaved) for e in events):
            try:
                self.on_voicemail()
            except Exception:  # an alert a minute late is better than a failed call
                log.exception("could not bring the voicemail alert forward")

    def record_call(self, caller: Caller, decision: Decision, *, at: datetime,
                    sip_call_id: str | None = None, line: str | None = None) -> str:
        """Log a call and count the hit of the entry or rule that decided it; return its uid.

        Counting here rather than while screening keeps writes off the path between the INVITE
        and our answer. A "permit next call" entry is used up by the screener, when it decides.
        """
        uid = self.writer.new_uid()
        self.writer.submit(call_logged(caller, decision, uid=uid, at=at,
                                       sip_call_id=sip_call_id, line=line))
        return uid

    @property
    def queues_writes(self) -> bool:
        """Whether `finish_call` only queues (the gateway's batched writer)."""
        return self.writer.queues

    def finish_call(self, call_ref: str, *, duration_s: float, outcome: str) -> None:
        """Store how a call ended."""
        self.writer.submit(CallFinished(call_ref, duration_s, outcome))

    def save_voicemail(self, call_ref: str | None, path: Path, duration_s: float,
                       size_bytes: int, *, caller: Caller | None = None) -> str:
        """Log a recording saved under the voicemail folder; the alerts wake once it is stored."""
        uid = self.writer.new_uid()
        self.writer.submit(VoicemailSaved(
            uid, at=utcnow(), path=self.store.voicemails.relative(path), duration_s=duration_s,
            size_bytes=size_bytes, call_uid=call_ref, number=caller.number if caller else None,
            display_name=inert(caller.display_name) if caller else "",
        ))
        return uid

    def voicemail_space_left(self) -> int:
        """Bytes that may still be recorded under the configured cap (now, by this process)."""
        left = self.mailbox.space_left()
        if left is None:
            raise RuntimeError("the database cannot say how much voicemail is stored")
        return left

    def start_voicemail(self, call_ref: str | None, caller: Caller, path: Path,
                        at: datetime) -> Slot | None:
        """Room for a message (`gateway.call.mailbox`): None when the cap or the disk is full."""
        return self.mailbox.open(path, at=at, call_ref=call_ref, number=caller.number,
                                 display_name=caller.display_name)

    def recover_voicemails(self) -> int:
        """Save the messages a crash interrupted (before the first call); return how many."""
        return self.mailbox.recover()

    def auto_allow(self, number: str, *, label: str = AUTO_ALLOW_LABEL) -> None:
        """Allow a number that passed the challenge, so its next call rings."""
        self.writer.submit(CallerAllowed(number, label, "auto"))

    def mark_known(self, number: str) -> None:
        """Remember a caller the owner answered (CANCEL with cause=200) as a known caller.

        Nothing is added when an allow entry in force already lets the number through (the
        number, a prefix, a pattern); if that cannot be checked now, the writer adds it unless
        an entry in force has the number itself.
        """
        caller = parse_caller(number, self.settings.home_region)
        now = utcnow()
        try:
            candidates = self.store.screening.candidate_entries(caller)
        except Exception as exc:
            log.warning("could not check the allow list for %s (%s); adding it unless it is "
                        "listed as is", number, type(exc).__name__)
        else:
            if any(e.list is ListName.ALLOW and e.active(now) and e.matches(caller)
                   for e in candidates):
                return
        self.writer.submit(CallerAllowed(number, KNOWN_CALLER_LABEL, "known",
                                         only_if_absent=True))

    def challenge_digit(self) -> str:
        """The key a challenged caller must press (the last one read if the database is down)."""
        try:
            self._digit = str(self.store.runtime.get("challenge_digit"))
        except Exception as exc:  # fail open for media too: the caller is answered already
            log.warning("cannot read the challenge key (%s); asking for %r", type(exc).__name__,
                        self._digit)
        return self._digit

    def set_line_state(self, line_name: str, state: str, error: str | None) -> None:
        """Record a line's registration state for the UI and `ringfence status`."""
        try:
            self.store.lines.set(line_name, state, error)
        except Exception:
            log.exception("could not store the state of line %s", line_name)


class CallRecord:
    """One call's row in the log, written only once the caller has had our first answer.

    The row is handed to the writer after the reject, the 200 OK or the decision to ring, so
    even the hand-over stays off the path between the INVITE and what the caller hears.
    """

    def __init__(self, book: Records, caller: Caller, decision: Decision, *, at: datetime,
                 sip_call_id: str, line: str | None) -> None:
        self.book = book
        self.caller = caller
        self.decision = decision
        self.at = at
        self.sip_call_id = sip_call_id
        self.line = line
        self.ref: str | None = None
        self.written = False

    def ensure(self) -> str | None:
        """Write the row once (a failure is logged, never raised); return its reference."""
        if not self.written:
            self.written = True
            try:
                self.ref = self.book.record_call(
                    self.caller, self.decision, at=self.at, sip_call_id=self.sip_call_id,
                    line=self.line,
                )
            except Exception:
                log.exception("call %s: could not log the call; carrying on", self.sip_call_id)
        return self.ref

    def finish(self, *, duration_s: float, outcome: str) -> None:
        """Write the row if it is not yet, then how the call ended (failures are logged)."""
        ref = self.ensure()
        if ref is None:
            return
        try:
            self.book.finish_call(ref, duration_s=duration_s, outcome=outcome)
        except Exception:
            log.exception("call %s: could not complete the call log", self.sip_call_id)
