"""Screening with storage around the pure core: load what `decide()` needs, and decide.

Used by the gateway for every call, and by the CLI and the web UI for "what would happen".
It fails open: if anything goes wrong while screening, the call passes and the error is logged,
so a broken rule or a locked database never stops the owner's phone from ringing.

Two things tie it to the call writer (`gateway.store.writer`): the history includes the calls
the writer holds but has not committed yet, and a "permit next call" is used up here, when the
decision is taken, by a conditional delete: the one write on the way to the caller's answer,
and a rare one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta

from gateway.config import Settings
from gateway.numbers import parse_caller
from gateway.screening.caller import Caller
from gateway.screening.decide import (
    Decision,
    Rules,
    Step,
    because,
    decide_rate_limits,
    decide_without_history,
)
from gateway.screening.rules import PASS
from gateway.store import Store
from gateway.store.events import PermitUsed
from gateway.store.models import utcnow
from gateway.store.writer import CallWrites

log = logging.getLogger(__name__)


class Screener:
    """Decisions for callers, read from one store."""

    def __init__(self, store: Store, settings: Settings,
                 writer: CallWrites | None = None) -> None:
        self.store = store
        self.settings = settings
        self.writer = writer

    def caller(self, text: str, display_name: str = "") -> Caller:
        """Parse a number the way the gateway does (for CLI and web)."""
        return parse_caller(text, self.settings.home_region, display_name=display_name,
                            internal=self.settings.internal_numbers)

    def evaluate(self, caller: Caller, now: datetime, *,
                 without: frozenset[int] = frozenset()) -> Decision:
        """Load rules, entries and history, and decide. Raises on failure; nothing is written.

        `without`: ids of entries to leave out (permits a simultaneous call used first).
        """
        reads = self.store.screening
        # Before any database read: see `ScreeningReads.recent_history`.
        pending = self.writer.pending_calls() if self.writer is not None else []
        version, policy, entries = reads.rules_for(caller)
        if without:
            entries = [e for e in entries if e.id not in without]
        rules = Rules(policy, entries)
        # Allowed, blocked and rule-matched callers never need the history: skip loading it.
        early = decide_without_history(caller, rules, now)
        if early is not None:
            return early
        window = timedelta(minutes=policy.history_window_minutes())
        history = reads.recent_history(caller, now, window, version, pending)
        return decide_rate_limits(caller, rules, history, now)

    def screen(self, caller: Caller, now: datetime | None = None) -> Decision:
        """Decide for a real call: never raises (fails open). Uses up a permit it relies on."""
        now = now or utcnow()
        started = time.perf_counter()
        try:
            decision = self._use_permit(caller, now, self.evaluate(caller, now))
            decision = replace(decision, elapsed_ms=(time.perf_counter() - started) * 1000)
        except Exception as exc:
            log.exception("screening failed for %s; letting the call ring", caller.describe())
            return Decision(PASS, step=Step.ERROR, unknown=True,
                            **because("screening_failed", error=type(exc).__name__))
        return decision

    def _use_permit(self, caller: Caller, now: datetime, decision: Decision) -> Decision:
        """Take the "permit next call" the decision relies on, or decide again without it."""
        lost: set[int] = set()
        while decision.consume_entry_id is not None:
            entry_id = decision.consume_entry_id
            try:
                if self.store.entries.use_permit(entry_id):
                    return decision
            except Exception as exc:
                # Fail open: the call rings on the permit, which is used up once the database
                # takes it (the writer retries). Only while it is unavailable could a second
                # simultaneous call pass on the same permit.
                log.warning("could not use up permit #%d for %s (%s); the call rings and the "
                            "permit is used up later", entry_id, caller.describe(),
                            type(exc).__name__)
                if self.writer is not None:
                    self.writer.submit(PermitUsed(entry_id))
                return decision
            log.info("permit #%d was used by a simultaneous call; deciding %s without it",
                     entry_id, caller.describe())
            lost.add(entry_id)
            decision = self.evaluate(caller, now, without=frozenset(lost))
        return decision
