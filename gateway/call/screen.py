"""Screening with storage around the pure core: load what `decide()` needs, and decide.

Used by the gateway for every call, and by the CLI and the web UI for "what would happen".
It fails open: if anything goes wrong while screening, the call passes and the error is logged,
so a broken rule or a locked database never stops the owner's phone from ringing.
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
from gateway.store.models import utcnow

log = logging.getLogger(__name__)


class Screener:
    """Decisions for callers, read from one store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def caller(self, text: str, display_name: str = "") -> Caller:
        """Parse a number the way the gateway does (for CLI and web)."""
        return parse_caller(text, self.settings.home_region, display_name=display_name)

    def evaluate(self, caller: Caller, now: datetime) -> Decision:
        """Load rules, entries and history, and decide. Raises on failure; nothing is written."""
        reads = self.store.screening
        version, policy, entries = reads.rules_for(caller)
        rules = Rules(policy, entries)
        # Allowed, blocked and rule-matched callers never need the history: skip loading it.
        early = decide_without_history(caller, rules, now)
        if early is not None:
            return early
        window = timedelta(minutes=policy.history_window_minutes())
        history = reads.recent_history(caller, now, window, version)
        return decide_rate_limits(caller, rules, history, now)

    def screen(self, caller: Caller, now: datetime | None = None) -> Decision:
        """Decide for a real call: never raises (fails open). Writes nothing."""
        now = now or utcnow()
        started = time.perf_counter()
        try:
            decision = self.evaluate(caller, now)
            decision = replace(decision, elapsed_ms=(time.perf_counter() - started) * 1000)
        except Exception as exc:
            log.exception("screening failed for %s; letting the call ring", caller.describe())
            return Decision(PASS, step=Step.ERROR, unknown=True,
                            **because("screening_failed", error=type(exc).__name__))
        return decision
