"""Screening with storage around the pure core: load what `decide()` needs, and decide.

Used by the gateway for every call, and by the CLI and the web UI for "what would happen".
It fails open: if anything goes wrong while screening, the call passes and the error is logged,
so a broken rule or a locked database never stops the owner's phone from ringing.

Two things tie it to the call writer (`gateway.store.writer`): the rate-limit counters count
each call as the writer is handed it (before it is committed), and a "permit next call" is
used up here, when the decision is taken, by a conditional delete: the one write on the way to
the caller's answer, and a rare one.

When the database does not answer, the caller is decided from what this process has cached
(policy, glob/regex entries, allow entries, rate counters), so a 0162 telemarketer is still
refused during a PostgreSQL outage; only exact and prefix block entries cannot be read then.
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
    rate_windows,
)
from gateway.screening.rules import PASS
from gateway.screening.texts import (
    ACCEPTED_STATUS,
    TextDecision,
    TextLimits,
    TextVerdict,
    decide_text,
)
from gateway.store import Store
from gateway.store.events import PermitUsed
from gateway.store.models import utcnow
from gateway.store.screening import UNAVAILABLE, CallRules
from gateway.store.writer import CallWrites

log = logging.getLogger(__name__)


class Screener:
    """Decisions for callers, read from one store."""

    def __init__(self, store: Store, settings: Settings,
                 writer: CallWrites | None = None) -> None:
        self.store = store
        self.settings = settings
        self.writer = writer
        if writer is not None:
            store.screening.attach(writer)
        self._outage_logged = 0.0

    def warm(self, now: datetime | None = None) -> None:
        """Load every cache (policy, patterns, allow list, rate counters) before the first call:
        the first stranger of the day should not wait for them. Failures are only logged."""
        now = now or utcnow()
        reads = self.store.screening
        who = self.caller("anonymous")
        try:
            found = reads.rules_for(who)
            reads.rates(who, now, rate_windows(found.policy, who), found.versions)
        except Exception as exc:
            log.warning("could not load the screening caches yet (%s); the first call will",
                        type(exc).__name__)

    def caller(self, text: str, display_name: str = "") -> Caller:
        """Parse a number the way the gateway does (for CLI and web)."""
        return parse_caller(text, self.settings.home_region, display_name=display_name,
                            internal=self.settings.internal_numbers)

    def evaluate(self, caller: Caller, now: datetime, *,
                 without: frozenset[int] = frozenset()) -> Decision:
        """Load rules, entries and counts, and decide. Raises on failure; nothing is written.

        `without`: ids of entries to leave out (permits a simultaneous call used first).
        """
        reads = self.store.screening
        found = self._rules_for(caller)
        entries = found.entries
        if without:
            entries = [e for e in entries if e.id not in without]
        rules = Rules(found.policy, entries)
        # Allowed, blocked and rule-matched callers never need the counts: skip them.
        early = decide_without_history(caller, rules, now)
        if early is not None:
            return early
        rates = reads.rates(caller, now, rate_windows(found.policy, caller), found.versions)
        return decide_rate_limits(caller, rules, rates, now)

    def _rules_for(self, caller: Caller) -> CallRules:
        reads = self.store.screening
        try:
            return reads.rules_for(caller)
        except UNAVAILABLE as exc:
            cached = reads.cached_rules_for(caller)
            if cached is None:
                raise
            if time.monotonic() - self._outage_logged > 10.0:
                self._outage_logged = time.monotonic()
                log.warning("the database does not answer (%s): screening from the cached "
                            "policy, patterns and allow list; block entries by number cannot "
                            "be read until it does", type(exc).__name__)
            return cached

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

    def text_limits(self) -> TextLimits:
        """The rate limits of texts, from `[messages]`."""
        cfg = self.settings.messages
        return TextLimits(per_sender=cfg.per_sender, window_minutes=cfg.window_minutes,
                          burst_senders=cfg.burst_senders, burst_minutes=cfg.burst_minutes)

    def evaluate_text(self, caller: Caller, now: datetime) -> TextDecision:
        """Load rules, entries and earlier texts, and decide for a text. Raises on failure."""
        found = self._rules_for(caller)
        limits = self.text_limits()
        window = timedelta(minutes=max(limits.window_minutes, 2 * limits.burst_minutes))
        history = self.store.messages.history(now, window)
        return decide_text(caller, Rules(found.policy, found.entries), history, now, limits)

    def screen_text(self, caller: Caller, now: datetime | None = None) -> TextDecision:
        """Decide for a real text: never raises (fails open: the text is accepted)."""
        now = now or utcnow()
        try:
            return self.evaluate_text(caller, now)
        except Exception as exc:
            log.exception("screening failed for a text from %s; accepting it",
                          caller.describe())
            return TextDecision(TextVerdict.ACCEPTED, ACCEPTED_STATUS, step=Step.ERROR.value,
                                **because("text_screening_failed", error=type(exc).__name__))
