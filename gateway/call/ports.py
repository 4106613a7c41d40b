"""What the call flow needs from the rest of Ringfence, as protocols.

The flow in `gateway.call.handle` codes against these, never against the store or pyVoIP
directly, so that tests can hand it fakes (tests/peers/fakes.py) while the SIP side stays real.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.config import LineKind, PassBehaviour, Settings
from gateway.screening.caller import Caller, Signature
from gateway.screening.decide import Decision
from gateway.screening.texts import TextDecision
from gateway.sip.message import SipRequest
from gateway.sip.workers import LoadCounters, Slots

MAX_RINGING = 1000
"""Calls ringing silently at once. A ring holds no thread and no media, only memory (the INVITE
and its transaction: about 13 KiB measured); past this a pass leaves the fork with 480 (the
owner's phone still rings), so a flood of never-cancelled INVITEs cannot grow the gateway
without bound."""


class Recording(Protocol):
    """What the media side reports about a recording."""

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""

    @property
    def size_bytes(self) -> int:
        """Size of the WAV file."""

    @property
    def stopped(self) -> str:
        """What ended it: silence, max_seconds, hangup, cap (no more room) or disk."""


class VoicemailSlot(Protocol):
    """Room for one message (`gateway.call.mailbox.Slot`): its file, its share of the cap."""

    @property
    def path(self) -> Path:
        """The WAV to record to (reserved: nobody else writes there)."""

    def has_room(self) -> bool:
        """Whether the disk still has room for a short message (asked before the beep)."""

    def claim(self, count: int) -> int:
        """How many of `count` more bytes may be recorded (fewer: the cap or the disk)."""

    def save(self, duration_s: float, size_bytes: int) -> str:
        """Register the recorded message; return its reference."""

    def close(self) -> None:
        """End a message that was not saved: keep what it holds as interrupted, or drop it."""


class Media(Protocol):
    """The media session API of `gateway.media.rtp.MediaSession` that actions use."""

    def answer_sdp(self) -> str:
        """Our SDP answer."""

    def start(self) -> None:
        """Start RTP."""

    def play(self, path: Path) -> None:
        """Play a WAV file; returns early when closed."""

    def play_sit(self) -> None:
        """Play the SIT intercept tones."""

    def play_beep(self) -> None:
        """Play the "speak now" beep."""

    def record(
        self, path: Path, *, max_seconds: float, silence_seconds: float,
        claim: Callable[[int], int] | None = None,
    ) -> Recording | None:
        """Record the caller to `path` as the audio arrives; `claim` grants room for it."""

    def wait_for_digit(self, timeout: float) -> str | None:
        """Wait for one RFC 2833 digit."""

    def close(self) -> None:
        """Stop everything."""

    def update(self, offer: Any) -> None:
        """Apply a re-INVITE's offer (a parsed SessionDescription)."""


class Screens(Protocol):
    """Screening as the call flow sees it (`gateway.call.screen.Screener`)."""

    def screen(self, caller: Caller, now: datetime) -> Decision:
        """Decide what to do with `caller`; never raises (fails open)."""


class ScreensTexts(Protocol):
    """Screening of texts (`gateway.call.screen.Screener.screen_text`)."""

    def screen_text(self, caller: Caller, now: datetime) -> TextDecision:
        """Decide what to do with a text from `caller`; never raises (fails open)."""


class KeepsTexts(Protocol):
    """Where texts are stored (`gateway.store.messages.Messages`)."""

    def add(self, caller: Caller, decision: TextDecision, *, at: datetime, body: str,
            charset: str = "utf-8", sip_call_id: str | None = None,
            line: str | None = None) -> str:
        """Store one text now; return its reference. Raises if the database does not take it."""


class Records(Protocol):
    """What the call flow writes (`gateway.call.record.CallBook`).

    Writes may reach the database later, in a batch (`gateway.store.writer`): a call is
    referred to by the reference `record_call` returns (the row's `uid`), never by a row id.
    """

    def record_call(
        self, caller: Caller, decision: Decision, *, at: datetime, sip_call_id: str,
        line: str | None,
    ) -> str:
        """Log the call; return its reference for `finish_call` and `save_voicemail`."""

    def finish_call(self, call_ref: str, *, duration_s: float, outcome: str) -> None:
        """Complete the call's log row."""

    @property
    def queues_writes(self) -> bool:
        """Whether `finish_call` only queues (never waits on the database), so that it may run
        on the thread that received the message which ended the call."""

    def start_voicemail(
        self, call_ref: str | None, caller: Caller, path: Path, at: datetime
    ) -> VoicemailSlot | None:
        """Room for a message recorded to `path` (reserved, empty); None when full."""

    def auto_allow(self, number_e164: str, *, label: str = "passed challenge") -> None:
        """Allow a number that passed the challenge."""

    def mark_known(self, number_e164: str) -> None:
        """Remember a number the owner answered."""

    def challenge_digit(self) -> str:
        """The digit callers must press."""


class ReportsLines(Protocol):
    """Where registrations report their line's state."""

    def set_line_state(self, line_name: str, state: str, error: str | None) -> None:
        """Record a line's registration state."""


# (SDP offer text, address announced in our SDP, local address to bind) -> session
MediaFactory = Callable[[str, str, str], Media]
PromptResolver = Callable[[str], Path]


class Work(Protocol):
    """Where the rest of a call runs (`gateway.sip.workers.WorkerPool`)."""

    def follow_up(self, task: Callable[[], None]) -> None:
        """Run `task` soon on a worker (how a parked ring ended: its log row)."""

    def spawn(self, name: str, task: Callable[[], None]) -> object:
        """Run `task` on a thread of its own (a call with media, for minutes)."""


class Scheduler(Protocol):
    """Callbacks at a later time (`gateway.sip.transaction.Timers`)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        """Run `callback` after `delay` seconds; a handle for `cancel`."""

    def cancel(self, handle: int | None) -> None:
        """Forget a pending callback."""


@dataclass
class Capacity:
    """What every call of one gateway process shares: workers, timers, slots and counters."""

    work: Work
    timers: Scheduler
    media: Slots  # calls with media at once: `[gateway] max_calls`
    ringing: Slots = field(default_factory=lambda: Slots(MAX_RINGING))
    counters: LoadCounters = field(default_factory=LoadCounters)


class LearnsRefusals(Protocol):
    """Where screened block-list refusals are noted, to be repeated for a flooding caller
    (`gateway.call.repeats.RepeatRefusals`)."""

    def key(self, invite: SipRequest, internal: bool) -> Hashable | None:
        """What identifies the caller of `invite`; None: never repeated."""

    def learn(self, key: Any, caller: Caller, decision: Decision, status: int,
              reason: str) -> None:
        """Note a screened call's refusal, sent with `status` and `reason`."""


@dataclass
class CallEnvironment:
    """What a call needs besides itself: settings, screening, the log, media, line choices."""

    settings: Settings
    screener: Screens
    book: Records
    media_factory: MediaFactory
    prompt: PromptResolver
    capacity: Capacity
    line: str | None = None
    pass_behaviour: PassBehaviour = "ring"
    redirect_to: str = ""
    refer_to: str = ""
    kind: LineKind = "sip"  # analogue: a block is answered, since a refusal stops no phone
    # Checks a PASSporT's signature (gateway.call.certificates); None: left unverified.
    check_signature: Callable[[str, bytes, bytes, datetime], Signature] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Repeats refusals for a flooding caller on the receive thread; None: every call screened.
    repeats: LearnsRefusals | None = None


@dataclass
class TextEnvironment:
    """What a text needs: settings, screening, where it is kept, and who to wake after."""

    settings: Settings
    screener: ScreensTexts
    keeper: KeepsTexts
    line: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Called after an accepted text is stored: the gateway points it at the scheduler, so a
    # forwarded text goes out now rather than at the next minute's alert tick.
    on_accepted: Callable[[], None] | None = None
