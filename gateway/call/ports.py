"""What the call flow needs from the rest of Ringfence, as protocols.

The flow in `gateway.call.handle` codes against these, never against the store or pyVoIP
directly, so that tests can hand it fakes (tests/peers/fakes.py) while the SIP side stays real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.config import LineKind, PassBehaviour, Settings
from gateway.screening.caller import Caller, Signature
from gateway.screening.decide import Decision
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
        self, path: Path, *, max_seconds: float, silence_seconds: float
    ) -> Recording | None:
        """Record the caller to `path`."""

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

    def save_voicemail(
        self, call_ref: str | None, path: Path, duration_s: float, size_bytes: int, *,
        caller: Caller | None = None,
    ) -> str:
        """Register a recording; return its reference."""

    def voicemail_space_left(self) -> int:
        """Bytes left under the voicemail cap."""

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
