"""SQLAlchemy 2 models. The schema itself is created and upgraded by Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no time zone; storing naive UTC and re-attaching UTC on read means the
    screening core always compares aware times, whatever the database.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store as naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base for every table."""

    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class ListEntryRow(Base):
    """An allow or block list entry. Exact and prefix patterns are looked up by index; globs
    and regexes are read by kind into the screener's cache."""

    __tablename__ = "list_entries"
    __table_args__ = (Index("ix_list_entries_pattern", "pattern", "list", unique=True),
                      # The screener's glob/regex reload (migration 0007).
                      Index("ix_list_entries_kind_list", "kind", "list"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list: Mapped[str] = mapped_column(String(8))  # allow | block
    kind: Mapped[str] = mapped_column(String(8))  # exact | prefix | glob | regex
    pattern: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str | None] = mapped_column(String(40), default=None)
    source: Mapped[str] = mapped_column(String(40), default="manual", index=True)
    once: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    last_hit_at: Mapped[datetime | None] = mapped_column(default=None)


class RuleRow(Base):
    """A step-4 rule (withheld, number type, country, telemarketing, quiet hours…)."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    label: Mapped[str] = mapped_column(String(200), default="")
    hits: Mapped[int] = mapped_column(Integer, default=0)


# The number index leaves out calls a list or a rule refused (migration 0007): in a flood of
# random numbers each such row dirtied its own leaf page of the index (6-12 KB written per
# refused call on a large log). A query that wants the index must carry this very text.
NOT_REFUSED_BY_LIST_OR_RULE = "step NOT IN ('block', 'rule')"


class CallRow(Base):
    """One incoming call and what Ringfence did with it."""

    __tablename__ = "calls"
    __table_args__ = (Index("ix_calls_number_at", "number", "at",
                            sqlite_where=text(NOT_REFUSED_BY_LIST_OR_RULE),
                            postgresql_where=text(NOT_REFUSED_BY_LIST_OR_RULE)),
                      Index("ix_calls_uid", "uid", unique=True))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The gateway's own identifier of the call (gateway/store/events.py, `new_uid`): the call
    # flow refers to the row by it before the writer has committed it; NULL on older rows.
    uid: Mapped[str | None] = mapped_column(String(32), default=None)
    at: Mapped[datetime] = mapped_column(index=True)
    line: Mapped[str | None] = mapped_column(String(60), default=None)
    sip_call_id: Mapped[str | None] = mapped_column(String(200), default=None)
    number: Mapped[str | None] = mapped_column(String(20), default=None)  # E.164
    caller_kind: Mapped[str] = mapped_column(String(10))  # number | withheld | invalid | internal
    display_name: Mapped[str] = mapped_column(String(256), default="")
    raw_from: Mapped[str] = mapped_column(String(256), default="")
    verstat: Mapped[str | None] = mapped_column(String(30), default=None)
    action: Mapped[str] = mapped_column(String(40), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # English; rows before 0004 only this
    # The reason as a code and parameters (gateway/screening/words.py), rendered in the
    # reader's language; None on rows written before migration 0004.
    reason_code: Mapped[str | None] = mapped_column(String(40), default=None)
    reason_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    step: Mapped[str] = mapped_column(String(12), default="")
    rule: Mapped[str | None] = mapped_column(String(40), default=None)
    # An unknown caller no list or rule handled: what burst detection counts.
    unknown: Mapped[bool] = mapped_column(Boolean, default=True)
    burst: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    outcome: Mapped[str | None] = mapped_column(String(60), default=None)
    screen_ms: Mapped[float | None] = mapped_column(Float, default=None)  # load + decide time


class VoicemailRow(Base):
    """A recorded message; the WAV lives on disk under the voicemail folder."""

    __tablename__ = "voicemails"
    __table_args__ = (Index("ix_voicemails_uid", "uid", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str | None] = mapped_column(String(32), default=None)
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), default=None, index=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    number: Mapped[str | None] = mapped_column(String(20), default=None)
    display_name: Mapped[str] = mapped_column(String(256), default="")
    path: Mapped[str] = mapped_column(String(500))  # relative to the voicemail folder
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    heard: Mapped[bool] = mapped_column(Boolean, default=False)
    # Cut short by a crash (or an error) and recovered on start with what reached the disk.
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)


class MessageRow(Base):
    """One text message (SIP MESSAGE) and what Ringfence did with it (migration 0007)."""

    __tablename__ = "messages"
    # Two indexes only: each one is another page every commit writes (one commit per text).
    # The uid is unique by construction (time + random) and looked up only for one text.
    __table_args__ = (Index("ix_messages_number_at", "number", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(index=True)
    line: Mapped[str | None] = mapped_column(String(60), default=None)
    sip_call_id: Mapped[str | None] = mapped_column(String(200), default=None)
    number: Mapped[str | None] = mapped_column(String(20), default=None)  # E.164
    sender_kind: Mapped[str] = mapped_column(String(10))  # number | withheld | invalid
    display_name: Mapped[str] = mapped_column(String(256), default="")
    raw_from: Mapped[str] = mapped_column(String(256), default="")
    body: Mapped[str] = mapped_column(Text, default="")  # as decoded; NUL replaced
    charset: Mapped[str] = mapped_column(String(40), default="utf-8")
    verdict: Mapped[str] = mapped_column(String(10))  # accepted | held | refused
    status: Mapped[int] = mapped_column(Integer)  # the SIP answer: 202, 486, 603…
    action: Mapped[str] = mapped_column(String(40), default="pass")
    step: Mapped[str] = mapped_column(String(12), default="")
    rule: Mapped[str | None] = mapped_column(String(40), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    reason_code: Mapped[str | None] = mapped_column(String(40), default=None)
    reason_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    unknown: Mapped[bool] = mapped_column(Boolean, default=True)


class SettingRow(Base):
    """A key/value setting the owner changes at run time (thresholds, pause, default…)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class LineStateRow(Base):
    """The registration state of each SIP line, written by the gateway, read by the UI."""

    __tablename__ = "line_states"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class GatewayStatusRow(Base):
    """A gateway's heartbeat (migration 0006): started, still alive at `seen_at`, stopped."""

    __tablename__ = "gateway_status"

    instance: Mapped[str] = mapped_column(String(200), primary_key=True)  # host + addresses
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(10))  # direct | lines
    listening: Mapped[Any] = mapped_column(JSON)  # ["udp 127.0.0.1:5060", …]
    version: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column()
    seen_at: Mapped[datetime] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


# --------------------------------------------------------------------------- notifications
# Tables below belong to gateway/notify, gateway/subscriptions and the scheduler (migration 0002).


class NotificationRow(Base):
    """One message on one channel: a digest for a period, or an alert for an event.

    The unique (kind, period, channel) key is the claim: a sender inserts the row with status
    "sending" before it sends, so a second process, a second trigger or a restart that tries the
    same message loses the insert and skips. That is what makes a digest impossible to send twice.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("kind", "period", "channel", name="uq_notifications_kind_period_channel"),
        Index("ix_notifications_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # digest | voicemail | burst_start | ...
    period: Mapped[str] = mapped_column(String(80))  # "2026-11-23" or an event key
    channel: Mapped[str] = mapped_column(String(60))  # "email" or "<scheme>:<url hash>"
    status: Mapped[str] = mapped_column(String(10))  # sending | sent | retry | failed
    # While "sending": claimed | connecting | data (the server may have the message: never
    # resent). NULL on rows before migration 0005, read as "data".
    phase: Mapped[str | None] = mapped_column(String(12), default=None)
    sender: Mapped[str | None] = mapped_column(String(80), default=None)  # host:pid sending it
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    subject: Mapped[str] = mapped_column(String(200), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what to (re)send
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class DigestSnapshotRow(Base):
    """The rules and run-time settings as they were when a digest was built.

    The rules table has no history; diffing against the previous digest's snapshot is the
    honest way to say "what changed in the rules" without touching the screening code.
    """

    __tablename__ = "digest_snapshots"

    period: Mapped[str] = mapped_column(String(20), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    rules: Mapped[Any] = mapped_column(JSON)
    settings: Mapped[Any] = mapped_column(JSON)


class SubscriptionRow(Base):
    """An allow or block list kept in step with a URL, a local file or a CardDAV address book."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list: Mapped[str] = mapped_column(String(8))  # allow | block
    url: Mapped[str] = mapped_column(String(1000))  # http(s)://… or an absolute file path
    label: Mapped[str] = mapped_column(String(200), default="")
    refresh_hours: Mapped[int] = mapped_column(Integer, default=24)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    entry_count: Mapped[int] = mapped_column(Integer, default=0)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0)
    # The owner says the list lives on the home network: its address may then be private,
    # loopback or link-local (otherwise refused, so a list URL cannot reach internal services).
    lan: Mapped[bool] = mapped_column(Boolean, default=False)
    # "list" (number_or_pattern[,label] lines) or "carddav" (an address book); migration 0010.
    kind: Mapped[str] = mapped_column(String(10), default="list", server_default="list")
    # The CardDAV account: the user name, and the path of a file holding its password (read
    # at each refresh; the password itself is never stored).
    username: Mapped[str] = mapped_column(String(200), default="", server_default="")
    password_file: Mapped[str | None] = mapped_column(String(1000), default=None)


class WebSessionRow(Base):
    """A logged-in web UI session; logging out deletes it, so an old cookie opens nothing.

    Only a SHA-256 of the session id is stored: reading the database gives no usable cookie.
    """

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Written at most once an hour per session, so browsing costs the SD card almost nothing.
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
