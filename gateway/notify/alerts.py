"""Instant alerts: new voicemail, burst mode on/off, a line unregistered for too long.

Alerts come from polling the database once a minute (the scheduler's tick) rather than from
hooks in the call path: the call threads stay free of network I/O, an alert survives a crash
between "voicemail saved" and "alert sent", and the notifications table's claim keeps every
alert to one per channel even across restarts. After saving a voicemail the gateway brings the
tick forward (`RingfenceScheduler.poke`) so the owner does not wait up to a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.config import Settings
from gateway.notify.collect import (
    BurstEpisode,
    burst_parameters,
    burst_settings,
    burst_triggers,
    load_calls_for_bursts,
    merge_triggers,
    shielded_calls,
)
from gateway.notify.digest import Words, format_duration, gsm7, inert, sms_length, words
from gateway.notify.message import Message
from gateway.notify.outbox import Outbox
from gateway.numbers import national_format
from gateway.screening.texts import TextVerdict
from gateway.screening.words import N_
from gateway.store.db import Database
from gateway.store.models import LineStateRow, MessageRow, NotificationRow, VoicemailRow
from gateway.store.voicemail import resolve_voicemail_path

log = logging.getLogger(__name__)

VOICEMAIL_LOOKBACK = timedelta(minutes=30)  # older ones are in the digest, not worth a ping
BURST_LOOKBACK = timedelta(hours=6)
LINE_UP_STATE = "registered"
LINE_DOWN_STATES = frozenset({"failed", "registering", "unreachable"})

# English message ids; French in gateway/translations.
_TEXT = {
    "vm_subject": N_("New voicemail from {who} ({length})"),
    "vm_body": N_("{who} left a {length} message at {time}."),
    "burst_subject": N_("Burst mode on: {callers} unknown callers"),
    "burst_body": N_("Since {time}, {callers} different unknown numbers called within {window} "
                     "min. Unknown callers now hear the spoof-shield message; allowed callers "
                     "still ring through."),
    "burst_end_subject": N_("Burst mode over after {duration}"),
    "burst_end_body": N_("The burst that started at {time} is over after {duration}; {calls} "
                         "calls met the shield."),
    "down_subject": N_("Line {line} not registered for {minutes} min"),
    "down_body": N_("Line {line} has not been registered since {time}. Last error: {error}. "
                    "Calls on this line ring without screening, or not at all."),
    "up_subject": N_("Line {line} registered again"),
    "up_body": N_("Line {line} is registered again after {duration}."),
    "none": N_("none"),
    "text_subject": N_("Text from {who}"),
    "text_body": N_("{who} sent this text at {time}:"),
}
TEXT_LIMIT = 1000  # characters of a forwarded text (an SMS of 6-7 parts); the rest is cut


class _Text:
    """The alerts' phrases in one language."""

    def __init__(self, w: Words) -> None:
        self.w = w

    def __getitem__(self, key: str) -> str:
        return self.w.text(_TEXT[key])


def alert_message(kind: str, subject: str, body: str, attachments: tuple[str, ...] = ()
                  ) -> Message:
    """An alert: the subject doubles as the SMS (cut to 160 GSM-7 characters)."""
    sms = gsm7(subject if len(subject) >= len(body) or sms_length(gsm7(body)) > 160 else body)
    if sms_length(sms) > 160:
        sms = sms[:157] + "..."
    return Message(kind=kind, subject=subject, text=body + "\n", sms=(sms,),
                   attachments=attachments)


class AlertWatcher:
    """Looks at the database and sends the alerts that are due."""

    def __init__(self, db: Database, settings: Settings, outbox: Outbox) -> None:
        self.db = db
        self.settings = settings
        self.outbox = outbox
        self.zone = ZoneInfo(settings.timezone)
        self.words = words(settings.language)
        self.text = _Text(self.words)
        # When each line was first seen down. Kept in memory: the scheduler runs in the
        # gateway process, which is the one registering; a restart restarts the count.
        self._down_since: dict[str, datetime] = {}
        # Burst episodes found so far, and (burst parameters, time) of the last scan.
        self._bursts: list[BurstEpisode] = []
        self._burst_scan: tuple[tuple[int, timedelta, timedelta], datetime] | None = None

    def _local(self, moment: datetime) -> str:
        return f"{moment.astimezone(self.zone):%H:%M}"

    def _claimed(self, kind: str, periods: list[str]) -> set[str]:
        if not periods:
            return set()
        with self.db.session() as s:
            return set(s.scalars(select(NotificationRow.period).where(
                NotificationRow.kind == kind, NotificationRow.period.in_(periods))))

    def check(self, now: datetime) -> None:
        """Run every enabled check; one failing check does not stop the others."""
        notify = self.settings.notify
        checks: list[Callable[[datetime], None]] = []
        if notify.alert_voicemail:
            checks.append(self.check_voicemails)
        if notify.alert_burst:
            checks.append(self.check_bursts)
        if notify.alert_line_down_minutes:
            checks.append(self.check_lines)
        if self.settings.messages.forward:
            checks.append(self.check_texts)
        for check in checks:
            try:
                check(now)
            except Exception:
                log.exception("alert check %s failed", check.__name__)

    # ------------------------------------------------------------------ voicemail

    def check_voicemails(self, now: datetime) -> None:
        """Alert once for each voicemail recorded in the last half hour."""
        with self.db.session() as s:
            rows = list(s.scalars(select(VoicemailRow).where(
                VoicemailRow.at >= now - VOICEMAIL_LOOKBACK).order_by(VoicemailRow.at)))
        done = self._claimed("voicemail", [str(r.id) for r in rows])
        for row in rows:
            if str(row.id) not in done:
                self.outbox.deliver("voicemail", str(row.id), self.voicemail_message(row), now)

    def voicemail_message(self, row: VoicemailRow) -> Message:
        """The alert for one voicemail."""
        if row.number:
            try:
                who = national_format(row.number, self.settings.home_region)
            except Exception:
                who = row.number
        else:
            who = self.words("withheld")
        who = inert(who, 30)
        if row.display_name:
            who = f"{who} ({inert(row.display_name)})"
        length = format_duration(row.duration_s, self.settings.language)
        subject = self.text["vm_subject"].format(who=who, length=length)
        body = self.text["vm_body"].format(who=who, length=length, time=self._local(row.at))
        attachments: tuple[str, ...] = ()
        if self.settings.notify.alert_voicemail_attach:
            try:
                attachments = (str(resolve_voicemail_path(self.settings.voicemail_dir,
                                                          row.path)),)
            except ValueError:
                log.warning("voicemail %s has a path outside the voicemail folder", row.id)
        return alert_message("voicemail", subject, body, attachments)

    # ------------------------------------------------------------------ texts

    def check_texts(self, now: datetime) -> None:
        """Forward once each text accepted in the last half hour (`[messages] forward`).

        Held and refused texts are never pushed: the digest counts them. The claim in
        `notifications` (kind "text", the text's uid) keeps each to one send per channel.
        """
        with self.db.session() as s:
            rows = list(s.scalars(select(MessageRow).where(
                MessageRow.at >= now - VOICEMAIL_LOOKBACK,
                MessageRow.verdict == TextVerdict.ACCEPTED.value).order_by(MessageRow.at)))
        done = self._claimed("text", [r.uid for r in rows])
        for row in rows:
            if row.uid not in done:
                self.outbox.deliver("text", row.uid, self.text_message(row), now)

    def text_message(self, row: MessageRow) -> Message:
        """A forwarded text: who sent it, when, and the text itself, made inert."""
        who = self._who(row.number, row.display_name)
        subject = self.text["text_subject"].format(who=who)
        text = inert(row.body, TEXT_LIMIT)
        body = self.text["text_body"].format(who=who, time=self._local(row.at)) + "\n" + text
        # The SMS is the text itself after the sender: what the owner would have read.
        sms = gsm7(f"{who}: {text}")
        return Message(kind="text", subject=subject, text=body + "\n",
                       sms=(sms if sms_length(sms) <= 160 else sms[:157] + "...",))

    def _who(self, number: str | None, name: str) -> str:
        if number:
            try:
                who = national_format(number, self.settings.home_region)
            except Exception:
                who = number
        else:
            who = self.words("withheld")
        who = inert(who, 30)
        return f"{who} ({inert(name)})" if name else who

    # ------------------------------------------------------------------ bursts

    def current_bursts(self, now: datetime) -> list[BurstEpisode]:
        """Burst episodes of the last hours, updated from the calls since the previous check.

        Each minute only the new calls are examined (a full rescan of a flooded evening
        every minute would be too much for a Pi); a change of the burst setting, a long gap
        or the first check rescans the whole look-back.
        """
        parameters = burst_parameters(self.db)
        if parameters is None:
            self._bursts, self._burst_scan = [], None
            return []
        threshold, window, duration = parameters
        scan = self._burst_scan
        if scan is None or scan[0] != parameters or not now - BURST_LOOKBACK < scan[1] <= now:
            self._bursts, since = [], now - BURST_LOOKBACK
        else:
            since = scan[1]
        calls = load_calls_for_bursts(self.db, since - window, now + timedelta(microseconds=1))
        triggers = burst_triggers(calls, threshold=threshold, window=window, after=since)
        episodes = merge_triggers(self._bursts, triggers, duration)
        self._bursts = [e for e in episodes if e.ends_at > now - BURST_LOOKBACK]
        self._burst_scan = (parameters, now)
        return self._bursts

    def check_bursts(self, now: datetime) -> None:
        """Alert when a burst starts, and again when it ends."""
        episodes = self.current_bursts(now)
        keys = [e.started_at.isoformat() for e in episodes]
        started = self._claimed("burst_start", keys)
        ended = self._claimed("burst_end", keys)
        for episode, key in zip(episodes, keys, strict=True):
            if not episode.ended(now) and key not in started:
                subject = self.text["burst_subject"].format(callers=episode.callers)
                body = self.text["burst_body"].format(
                    time=self._local(episode.started_at), callers=episode.callers,
                    window=self._burst_window_minutes())
                self.outbox.deliver("burst_start", key,
                                    alert_message("burst_start", subject, body), now)
            elif episode.ended(now) and key in started and key not in ended:
                duration = format_duration(
                    (episode.ends_at - episode.started_at).total_seconds(),
                    self.settings.language)
                subject = self.text["burst_end_subject"].format(duration=duration)
                body = self.text["burst_end_body"].format(
                    time=self._local(episode.started_at), duration=duration,
                    calls=shielded_calls(self.db, episode.started_at, episode.ends_at))
                self.outbox.deliver("burst_end", key,
                                    alert_message("burst_end", subject, body), now)

    def _burst_window_minutes(self) -> int:
        return int(float(burst_settings(self.db)["window_minutes"]))

    # ------------------------------------------------------------------ lines

    def check_lines(self, now: datetime) -> None:
        """Alert when a line stays unregistered too long, and when it comes back."""
        limit = timedelta(minutes=self.settings.notify.alert_line_down_minutes)
        with self.db.session() as s:
            states = list(s.scalars(select(LineStateRow)))
        configured = {line.name for line in self.settings.lines}
        for state in states:
            if configured and state.name not in configured:
                continue  # a line removed from the config
            name = inert(state.name, 30)
            if state.state in LINE_DOWN_STATES:
                since = self._down_since.setdefault(state.name, min(state.changed_at, now))
                key = f"{state.name}:{since.isoformat()}"[:80]
                if now - since >= limit and not self._claimed("line_down", [key]):
                    minutes = int((now - since).total_seconds() // 60)
                    subject = self.text["down_subject"].format(line=name, minutes=minutes)
                    body = self.text["down_body"].format(
                        line=name, time=self._local(since),
                        error=inert(state.error or self.text["none"], 200))
                    self.outbox.deliver("line_down", key,
                                        alert_message("line_down", subject, body), now)
            elif state.state == LINE_UP_STATE and state.name in self._down_since:
                since = self._down_since.pop(state.name)
                key = f"{state.name}:{since.isoformat()}"[:80]
                if self._claimed("line_down", [key]):
                    duration = format_duration((now - since).total_seconds(),
                                               self.settings.language)
                    subject = self.text["up_subject"].format(line=name)
                    body = self.text["up_body"].format(line=name, duration=duration)
                    self.outbox.deliver("line_up", key, alert_message("line_up", subject, body),
                                        now)
            else:
                self._down_since.pop(state.name, None)
