"""What the call flow asks the call writer to store, as events, and their journal form.

Each event is one change of the call flow: a call logged, how it ended, a voicemail, a caller
allowed, a "permit next call" used, the rows a crash left open. The writer
(`gateway.store.writer`) applies them in batches (`gateway.store.batch`); while the database
cannot take them they wait in memory and in the journal (`gateway.store.journal`), one JSON line
per event in the versioned form below. Applying an event twice changes nothing, which is what
makes a replay after a crash safe: calls and voicemails carry the `uid` the gateway gave them.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Step
from gateway.screening.ratelimit import PastCall

# Version of one journal line. A line of another version is set aside, never guessed at.
JOURNAL_VERSION = 1
UID_LENGTH = 24
INTERRUPTED_OUTCOME = "interrupted: gateway restarted"


class EventError(ValueError):
    """A journal line that is not an event this code can apply."""


def new_uid() -> str:
    """A call's or voicemail's identifier: time-ordered, then random (24 hex digits).

    The time comes first so that new rows land at the end of the unique index: random keys
    would dirty a different index page per row, which is most of what a batch writes.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


@dataclass(slots=True)
class CallLogged:
    """A screened call: its row in the log, and the entry or rule whose hit it counts."""

    uid: str
    at: datetime
    caller_kind: str
    action: str
    line: str | None = None
    sip_call_id: str | None = None
    number: str | None = None
    display_name: str = ""
    raw_from: str = ""
    verstat: str | None = None
    reason: str = ""  # in English; the code and its parameters render it in other languages
    reason_code: str | None = None
    reason_params: dict[str, Any] | None = None
    step: str = ""
    rule: str | None = None
    unknown: bool = True
    burst: bool = False
    screen_ms: float | None = None
    entry_id: int | None = None  # the allow/block entry that decided: its hits count this call
    rule_id: int | None = None  # the rule that decided
    duration_s: float | None = None  # set when the end is known before the row is written
    outcome: str | None = None
    seq: int = field(default=0, compare=False)  # order of submission, never journaled

    KIND = "call"

    def past_call(self) -> PastCall:
        """The rate limits' view of this call (as `store.calls.past_call` reads a row)."""
        return PastCall(at=self.at, key=self.number or self.caller_kind, unknown=self.unknown,
                        action=self.action)


@dataclass(slots=True)
class CallFinished:
    """How a logged call ended."""

    uid: str
    duration_s: float
    outcome: str
    seq: int = field(default=0, compare=False)

    KIND = "finish"


@dataclass(slots=True)
class VoicemailSaved:
    """A recording kept under the voicemail folder (path relative to it when inside)."""

    uid: str
    at: datetime
    path: str
    duration_s: float
    size_bytes: int
    call_uid: str | None = None
    number: str | None = None
    display_name: str = ""
    interrupted: bool = False  # cut short by a crash or an error, recovered with its real length
    seq: int = field(default=0, compare=False)

    KIND = "voicemail"


@dataclass(slots=True)
class CallerAllowed:
    """A number to allow: it passed the challenge, or the owner answered it elsewhere."""

    number: str
    label: str
    source: str  # "auto" (passed challenge) or "known" (answered by the owner)
    only_if_absent: bool = False  # known callers never overwrite an entry the owner made
    seq: int = field(default=0, compare=False)

    KIND = "allow"


@dataclass(slots=True)
class PermitUsed:
    """A "permit next call" entry to delete: used while the database could not take it."""

    entry_id: int
    seq: int = field(default=0, compare=False)

    KIND = "permit"


@dataclass(slots=True)
class RestartClosed:
    """Calls logged before `before` that never got an outcome: a crash left them open."""

    before: datetime
    outcome: str = INTERRUPTED_OUTCOME
    seq: int = field(default=0, compare=False)

    KIND = "close"


Event = CallLogged | CallFinished | VoicemailSaved | CallerAllowed | PermitUsed | RestartClosed
EVENT_TYPES: dict[str, type[Event]] = {
    t.KIND: t for t in (CallLogged, CallFinished, VoicemailSaved, CallerAllowed, PermitUsed,
                        RestartClosed)
}
_DATETIMES = {"at", "before"}
_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                       "bool": (bool,), "dict": (dict,)}


def _type_ok(annotation: str, value: Any) -> bool:
    """Whether a JSON value fits a field annotated `annotation` ("str | None", "float", …)."""
    allowed: tuple[type, ...] = ()
    for part in annotation.split("|"):
        name = part.strip().split("[")[0]  # dict[str, Any] -> dict
        if name == "None" and value is None:
            return True
        allowed += _TYPES.get(name, ())
    # bool is an int to Python; a count or an id must not be true/false.
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def inert(text: str) -> str:
    """A stranger's text as it may be stored: PostgreSQL refuses NUL in text columns."""
    return text.replace("\x00", "\ufffd")


def call_logged(caller: Caller, decision: Decision, *, uid: str, at: datetime,
                sip_call_id: str | None, line: str | None) -> CallLogged:
    """The event of a screened call, its text cut to the column sizes."""
    entry_id = decision.ref if decision.step in (Step.ALLOW, Step.BLOCK) else None
    rule_id = decision.ref if decision.step is Step.RULE else None
    return CallLogged(
        uid=uid, at=at, line=line or caller.line, sip_call_id=(sip_call_id or "")[:200] or None,
        number=caller.number, caller_kind=caller.kind.value,
        display_name=inert(caller.display_name[:256]), raw_from=inert(caller.raw[:256]),
        verstat=caller.verstat.value if caller.verstat else None,
        action=str(decision.action), reason=inert(decision.reason),
        reason_code=decision.reason_code, reason_params=decision.reason_params or None,
        step=decision.step.value,
        rule=decision.rule_id, unknown=decision.counts_towards_burst,
        burst=decision.burst.active, screen_ms=decision.elapsed_ms,
        entry_id=entry_id, rule_id=rule_id,
    )


def to_line(event: Event) -> bytes:
    """One journal line (UTF-8 JSON, newline-terminated); strangers' text stays JSON text."""
    data: dict[str, Any] = {"v": JOURNAL_VERSION, "t": event.KIND}
    for f in fields(event):
        if f.name == "seq":
            continue
        value = getattr(event, f.name)
        data[f.name] = value.isoformat() if isinstance(value, datetime) else value
    # ensure_ascii: a display name cannot smuggle a raw newline or invalid UTF-8 into the file.
    return (json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def from_line(line: bytes) -> Event:
    """The event of a journal line; EventError for anything this version cannot apply."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventError("not a JSON object")
    if data.get("v") != JOURNAL_VERSION:
        raise EventError(f"journal format {data.get('v')!r}, this Ringfence reads "
                         f"{JOURNAL_VERSION}")
    kind = EVENT_TYPES.get(str(data.get("t")))
    if kind is None:
        raise EventError(f"unknown event {data.get('t')!r}")
    values: dict[str, Any] = {}
    for f in fields(kind):
        if f.name == "seq" or f.name not in data:
            continue
        value = data[f.name]
        if f.name in _DATETIMES:
            try:
                value = datetime.fromisoformat(str(value))
            except ValueError:
                raise EventError(f"{f.name} = {str(value)[:40]!r} is not a time") from None
            if value.tzinfo is None:
                raise EventError(f"{f.name} has no time zone")
        elif not _type_ok(str(f.type), value):
            raise EventError(f"{kind.KIND}: {f.name} = {str(value)[:40]!r} is not {f.type}")
        values[f.name] = value
    try:
        return kind(**values)
    except TypeError as exc:  # a required field is missing
        raise EventError(f"{kind.KIND}: {exc}") from None
