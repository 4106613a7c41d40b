"""The screening service: load what `decide()` needs, decide, and log. Used by SIP, CLI and web.

It fails open: if anything goes wrong while screening, the call passes and the error is logged,
so a broken rule or a locked database never stops the owner's phone from ringing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from gateway.config import Settings
from gateway.numbers import parse_caller
from gateway.screening.caller import Caller
from gateway.screening.decide import (
    Decision,
    Rules,
    decide_rate_limits,
    decide_without_history,
)
from gateway.screening.rules import PASS, ListName
from gateway.store.db import Database, check_schema
from gateway.store.models import utcnow
from gateway.store.repository import Repository

log = logging.getLogger(__name__)


class ScreeningService:
    """Screening with storage around the pure core."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = Repository(db, settings.home_region, settings.timezone)

    def caller(self, text: str, display_name: str = "") -> Caller:
        """Parse a number the way the gateway does (for CLI and web)."""
        return parse_caller(text, self.settings.home_region, display_name=display_name)

    def evaluate(self, caller: Caller, now: datetime) -> Decision:
        """Load rules, entries and history, and decide. Raises on failure; nothing is written."""
        version, policy, entries = self.repo.screening_rules(caller)
        rules = Rules(policy, entries)
        # Allowed, blocked and rule-matched callers never need the history: skip loading it.
        early = decide_without_history(caller, rules, now)
        if early is not None:
            return early
        window = timedelta(minutes=policy.history_window_minutes())
        history = self.repo.recent_history(caller, now, window, version)
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
            return Decision(PASS, f"screening failed ({type(exc).__name__}); call let through",
                            "error", unknown=True)
        return decision

    def _note_use(self, decision: Decision, now: datetime) -> None:
        kind, _, ident = (decision.rule_id or "").partition(":")
        if kind in ("allow", "block") and ident.isdigit():
            self.repo.note_entry_used(int(ident), consume=decision.consume_entry_id is not None,
                                      at=now)
        elif kind == "rule" and ident.isdigit():
            self.repo.note_rule_used(int(ident))

    def record_call(self, caller: Caller, decision: Decision, *, at: datetime,
                    sip_call_id: str | None = None, line: str | None = None) -> int:
        """Log a call, count the hit of the entry or rule that decided it; return the row id.

        Counting here rather than in `screen()` keeps writes off the path between the INVITE
        and our answer; a "permit next call" entry is used up here too.
        """
        row_id = self.repo.record_call(caller, decision, at=at, sip_call_id=sip_call_id,
                                       line=line)
        try:
            self._note_use(decision, at)
        except Exception:
            log.exception("could not count the hit of %s", decision.rule_id)
        return row_id

    def finish_call(self, call_row_id: int, *, duration_s: float, outcome: str) -> None:
        """Store how a call ended."""
        self.repo.finish_call(call_row_id, duration_s=duration_s, outcome=outcome)

    def save_voicemail(self, call_row_id: int | None, path: Path, duration_s: float,
                       size_bytes: int, *, caller: Caller | None = None) -> int:
        """Log a recording saved under the voicemail folder."""
        folder = self.settings.voicemail_dir.resolve()
        resolved = path.resolve()
        relative = str(resolved.relative_to(folder)) if folder in resolved.parents else str(path)
        voicemail_id = self.repo.save_voicemail(
            call_row_id, at=utcnow(), path=relative, duration_s=duration_s, size_bytes=size_bytes,
            number=caller.number if caller else None,
            display_name=caller.display_name if caller else "",
        )
        # Wake the alert job now rather than at its next minute (a no-op without a scheduler).
        from gateway.notify.alerts import on_voicemail

        on_voicemail(voicemail_id)
        return voicemail_id

    def voicemail_space_left(self) -> int:
        """Bytes that may still be recorded under the configured cap."""
        cap = self.settings.voicemail.max_total_mb * 1024 * 1024
        return cap - self.repo.voicemail_bytes()

    def auto_allow(self, number: str, *, label: str = "passed challenge") -> None:
        """Allow a number that passed the challenge, so its next call rings."""
        self.repo.add_entry(ListName.ALLOW, number, kind="exact", label=label, source="auto")

    def mark_known(self, number: str) -> None:
        """Remember a caller the owner answered (CANCEL with cause=200) as a known caller."""
        existing = [e for e in self.repo.candidate_entries(self.caller(number))
                    if e.list is ListName.ALLOW]
        if not existing:
            self.repo.add_entry(ListName.ALLOW, number, kind="exact", label="answered by owner",
                                source="known")

    def challenge_digit(self) -> str:
        """The key a challenged caller must press."""
        return str(self.repo.get_setting("challenge_digit"))

    def set_line_state(self, line_name: str, state: str, error: str | None) -> None:
        """Record a line's registration state for the UI and `ringfence status`."""
        try:
            self.repo.set_line_state(line_name, state, error)
        except Exception:
            log.exception("could not store the state of line %s", line_name)


def open_database(settings: Settings, *, upgrade: bool = False) -> Database:
    """Open the configured database, optionally creating or upgrading its schema."""
    db = Database(settings.database_url)
    if upgrade:
        db.upgrade()
    else:
        check_schema(db.engine)
    return db


def open_service(settings: Settings, *, upgrade: bool = True) -> ScreeningService:
    """Open the database (migrating it by default), seed defaults and return the service."""
    service = ScreeningService(open_database(settings, upgrade=upgrade), settings)
    service.repo.ensure_defaults()
    return service
