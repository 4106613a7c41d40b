"""Stand-ins: a screener and call book in one (`gateway.call.ports`) whose decisions the test
sets, media for signalling-only tests, and a call without SIP (`FakeCall`, `ScriptedMedia`)
for driving the call flow in unit tests."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import Action, ActionKind
from gateway.sip.message import SipRequest, parse_message
from gateway.sip.transport import Source
from gateway.sip.ua import Call


@dataclass
class CallLog:
    """What the stand-in service was told about one call."""

    caller: Caller
    decision: Decision
    sip_call_id: str
    line: str | None
    outcome: str | None = None
    duration_s: float | None = None
    voicemail: tuple[Path, float, int] | None = None


@dataclass
class FakeService:
    """Screens every call with `action`; remembers everything the gateway reports."""

    action: Action = field(default_factory=lambda: Action(ActionKind.PASS))
    digit: str = "5"
    space_left: int = 10**9
    calls: list[CallLog] = field(default_factory=list)
    line_states: list[tuple[str, str, str | None]] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    raise_in_screen: bool = False
    slots_asked: list[Path] = field(default_factory=list)
    finished: threading.Condition = field(default_factory=threading.Condition)
    queues_writes: bool = True  # finish_call only appends to a list, as the writer queues

    def screen(self, caller: Caller, now: datetime) -> Decision:
        if self.raise_in_screen:
            raise RuntimeError("screening exploded (test)")
        return Decision(self.action, reason="set by the test", step=Step.RULE)

    def record_call(self, caller: Caller, decision: Decision, *, at: datetime,
                    sip_call_id: str, line: str | None) -> str:
        with self.finished:
            self.calls.append(CallLog(caller, decision, sip_call_id, line))
            return str(len(self.calls))

    def finish_call(self, call_ref: str, *, duration_s: float, outcome: str) -> None:
        with self.finished:
            self.calls[int(call_ref) - 1].outcome = outcome
            self.calls[int(call_ref) - 1].duration_s = duration_s
            self.finished.notify_all()

    def save_voicemail(self, call_ref: str | None, path: Path, duration_s: float,
                       size_bytes: int, *, caller: Caller | None = None) -> str:
        assert call_ref is not None
        self.calls[int(call_ref) - 1].voicemail = (path, duration_s, size_bytes)
        return call_ref

    def voicemail_space_left(self) -> int:
        return self.space_left

    def start_voicemail(self, call_ref: str | None, caller: Caller, path: Path,
                        at: datetime) -> FakeSlot | None:
        """Room for a message unless `space_left` says the mailbox is full."""
        self.slots_asked.append(path)
        if self.space_left <= 0:
            return None
        return FakeSlot(self, call_ref, caller, path)

    def auto_allow(self, number_e164: str, *, label: str = "passed challenge") -> None:
        self.allowed.append(number_e164)

    def mark_known(self, number_e164: str) -> None:
        self.known.append(number_e164)

    def challenge_digit(self) -> str:
        return self.digit

    def set_line_state(self, line_name: str, state: str, error: str | None) -> None:
        self.line_states.append((line_name, state, error))

    def wait_finished(self, count: int = 1, timeout: float = 20.0) -> list[CallLog]:
        """Wait until `count` calls have an outcome."""
        with self.finished:
            ok = self.finished.wait_for(
                lambda: sum(1 for c in self.calls if c.outcome is not None) >= count, timeout
            )
        assert ok, f"calls did not finish: {self.calls}"
        return self.calls


@dataclass
class FakeSlot:
    """Room for one message in a `FakeService`: no cap, saved through `save_voicemail`."""

    service: FakeService
    call_ref: str | None
    caller: Caller
    path: Path
    saved: bool = False
    closed: bool = False

    room: bool = True

    def has_room(self) -> bool:
        return self.room

    def claim(self, count: int) -> int:
        return count

    def save(self, duration_s: float, size_bytes: int) -> str:
        self.saved = True
        return self.service.save_voicemail(self.call_ref, self.path, duration_s, size_bytes,
                                           caller=self.caller)

    def close(self) -> None:
        self.closed = True
        if not self.saved:
            self.path.unlink(missing_ok=True)


class SilentMedia:
    """Media stand-in: answers with a fixed SDP and does nothing, for signalling-only tests."""

    def __init__(self, offer: str, local_ip: str, bind_ip: str = "") -> None:
        self.local_ip = local_ip
        self.closed = threading.Event()
        self.played: list[Any] = []

    def answer_sdp(self) -> str:
        return (f"v=0\r\no=- 1 1 IN IP4 {self.local_ip}\r\ns=-\r\nc=IN IP4 {self.local_ip}\r\n"
                "t=0 0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")

    def start(self) -> None:
        pass

    def play(self, path: Path) -> None:
        self.played.append(path)
        self.closed.wait(0.2)

    def play_sit(self) -> None:
        self.played.append("sit")

    def play_beep(self) -> None:
        self.played.append("beep")

    def record(self, path: Path, *, max_seconds: float, silence_seconds: float,
               claim: Callable[[int], int] | None = None) -> None:
        self.closed.wait(max_seconds)
        return None

    def wait_for_digit(self, timeout: float) -> str | None:
        self.closed.wait(timeout)
        return None

    def close(self) -> None:
        self.closed.set()

    def update(self, offer: Any) -> None:
        self.played.append(("update", offer))


# --------------------------------------------------------------------------- calls without SIP

INVITE_SDP = (
    "v=0\r\no=caller 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)


def parsed_invite(*, user: str = "+33612345678", headers: str = "", sdp: str | None = INVITE_SDP,
                  call_id: str = "call-1@192.0.2.9") -> SipRequest:
    """An INVITE as a proxy delivers it, parsed by the gateway's own parser.

    `headers` are extra header lines ("Name: value\\r\\n"); `sdp=None` leaves the body out.
    """
    body = sdp or ""
    content = "Content-Type: application/sdp\r\n" if sdp is not None else ""
    text = (
        "INVITE sip:ringfence@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfake1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Test Caller" <sip:{user}@192.0.2.9>;tag=caller1\r\n'
        "To: <sip:ringfence@192.0.2.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@192.0.2.9:5060>\r\n"
        f"{headers}{content}Content-Length: {len(body.encode())}\r\n\r\n{body}"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


CALLER_SOURCE = Source("udp", "192.0.2.9", 5060)  # where `parsed_invite` comes from


class _FakeTransport:
    def __init__(self, bind_address: str) -> None:
        self.bind_address = bind_address
        self.asked: list[str] = []

    def local_address_towards(self, host: str) -> str:
        self.asked.append(host)
        return self.bind_address


class _FakeUa:
    """The two address questions `answer` asks the user agent, and its T1."""

    def __init__(self, public_address: str, bind_address: str) -> None:
        self.public_address = public_address
        self.transport = _FakeTransport(bind_address)
        self.layer = SimpleNamespace(t1=0.5)
        self.asked: list[str] = []

    def local_host_for(self, host: str) -> str:
        self.asked.append(host)
        return self.public_address


@dataclass
class _FakeServerTransaction:
    source: Source


@dataclass(frozen=True)
class SentResponse:
    """A final response the fake call "sent"."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


class FakeCall:
    """What `gateway.call.carry_out` uses of `gateway.sip.ua.Call`, with no SIP underneath.

    Final responses are recorded in `responses`; the test scripts the caller's side with
    `cancel()`, `caller_hangs_up()` and the hooks: `while_ringing` runs when a ring is parked
    (`when_ended`: the moment a ringing call waits for the owner or the caller),
    `refer_accepted` is what the caller answers to a REFER, `cancel_before_answer` makes the
    CANCEL win the race with our 200 OK. Nothing blocks: the end of the call is an event.
    """

    cancelled_by_answer_elsewhere = Call.cancelled_by_answer_elsewhere  # the real parsing

    def __init__(self, invite: SipRequest | None = None, *,
                 source: Source = CALLER_SOURCE,
                 public_address: str = "203.0.113.1", bind_address: str = "10.0.0.2") -> None:
        self.invite = invite if invite is not None else parsed_invite()
        self.call_id = self.invite.call_id
        self.tx = _FakeServerTransaction(source)
        self.ua = _FakeUa(public_address, bind_address)
        self.cancelled = threading.Event()
        self.cancel_reason: str | None = None
        self.remote_hangup = threading.Event()
        self.acked = threading.Event()
        self.ended = threading.Event()
        self.media: Any = None
        self.on_reoffer: Any = None
        self.final_sent = False
        self.answered = False
        self.answer_sdp: str | None = None
        self.responses: list[SentResponse] = []
        self.refers: list[str] = []
        self.byes = 0
        self.hangups = 0
        self.while_ringing: Callable[[], None] | None = None
        self.refer_accepted = False
        self.cancel_before_answer: str | None = None  # a Reason header value, or None
        self.ended_by = ""
        self.unsupported: list[str] = []  # Require option tags we lack
        self.acks = True  # False: the caller never ACKs our 200 OK
        self._on_end: list[Callable[[], None]] = []

    def _end(self, by: str) -> None:
        if self.ended.is_set():
            return
        self.ended_by = by
        self.ended.set()
        callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback()

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Park a ring: `callback` runs when the call ends; `while_ringing` runs now."""
        if self.ended.is_set():
            callback()
            return
        self._on_end.append(callback)
        if self.while_ringing is not None:
            self.while_ringing()

    def wait_confirmed(self, timeout: float) -> bool:
        """The ACK came with our 200 OK (fakes never lose it)."""
        return self.acked.is_set()

    # --- the caller's side, scripted by the test
    def cancel(self, reason: str | None = None) -> None:
        """The caller (or the proxy) sends CANCEL: 487, the call ends."""
        if self.final_sent:
            return
        self.cancel_reason = reason
        self.cancelled.set()
        self.final_sent = True
        self.responses.append(SentResponse(487, "Request Terminated"))
        self._end("cancel")

    def caller_hangs_up(self) -> None:
        """The caller sends BYE."""
        self.remote_hangup.set()
        self._end("bye")

    # --- what carry_out calls
    def reject(self, status: int, reason: str,
               headers: Iterable[tuple[str, str]] = (), *, why: str = "final") -> bool:
        if self.final_sent:
            return False
        self.final_sent = True
        self.responses.append(SentResponse(status, reason, tuple(headers)))
        self._end(why)
        return True

    def redirect(self, contact: str) -> bool:
        target = contact if contact.startswith("<") else f"<{contact}>"
        return self.reject(302, "Moved Temporarily", [("Contact", target)])

    def answer(self, sdp: str) -> bool:
        if self.cancel_before_answer is not None:
            self.cancel(self.cancel_before_answer)
        if self.final_sent or self.cancelled.is_set():
            return False
        self.final_sent = True
        self.answered = True
        self.answer_sdp = sdp
        self.responses.append(SentResponse(200, "OK"))
        if self.acks:
            self.acked.set()
        return True

    def hangup(self, *, wait: bool = True) -> None:
        self.hangups += 1
        if self.ended.is_set():
            return
        if not self.answered and not self.final_sent:
            self.final_sent = True
            self.responses.append(SentResponse(480, "Temporarily Unavailable"))
        self._end("hangup")
        if self.media is not None:
            self.media.close()
        if self.answered and not self.remote_hangup.is_set():
            self.byes += 1

    def refer(self, refer_to: str) -> bool:
        if not self.answered or self.remote_hangup.is_set():
            return False
        self.refers.append(refer_to)
        if self.refer_accepted:
            self.caller_hangs_up()  # the caller's UA calls the extension and says BYE to us
        return self.refer_accepted


class InlineWork:
    """The call flow's `Work` port on the caller's thread: follow-ups and media run at once."""

    def __init__(self) -> None:
        self.spawned: list[str] = []  # names of the threads a real pool would have started

    def follow_up(self, task: Callable[[], None]) -> None:
        task()

    def spawn(self, name: str, task: Callable[[], None]) -> None:
        self.spawned.append(name)
        task()


class TimersByHand:
    """The `Scheduler` port by hand: nothing runs until the test calls `fire()`."""

    def __init__(self) -> None:
        self.delays: list[float] = []  # every delay asked for, in order
        self._pending: dict[int, Callable[[], None]] = {}
        self._next = 0

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        self._next += 1
        self.delays.append(delay)
        self._pending[self._next] = callback
        return self._next

    def cancel(self, handle: int | None) -> None:
        if handle is not None:
            self._pending.pop(handle, None)

    def pending(self) -> int:
        """Callbacks not yet run nor cancelled."""
        return len(self._pending)

    def fire(self) -> None:
        """Run every pending callback, as if their time had come."""
        while self._pending:
            handle = min(self._pending)
            self._pending.pop(handle)()


@dataclass
class Recorded:
    """What `ScriptedMedia.record` reports (the `Recording` port)."""

    duration_s: float
    size_bytes: int = 0
    stopped: str = "silence"


class ScriptedMedia:
    """Media stand-in that keeps a log of what it was asked and answers from a script.

    `digits` are handed out one per `wait_for_digit`; `record` writes `audio` to the path and
    reports `recording_s` seconds (None: nothing recorded, no file); `on_play` runs after each
    prompt (to hang the caller up mid-greeting, say); `fail_on_play` raises from `play`,
    `fail_on_record` from `record` once `audio` is written.
    """

    def __init__(self, offer: str, announced: str, bind: str, *, digits: Iterable[str] = (),
                 recording_s: float | None = 4.0, audio: bytes = b"RIFF-test-audio",
                 on_play: Callable[[Path], None] | None = None,
                 fail_on_play: BaseException | None = None,
                 fail_on_record: BaseException | None = None) -> None:
        self.offer = offer
        self.announced = announced
        self.bind = bind
        self.digits = list(digits)
        self.recording_s = recording_s
        self.audio = audio
        self.on_play = on_play
        self.fail_on_play = fail_on_play
        self.fail_on_record = fail_on_record
        self.events: list[Any] = []
        self.closed = 0

    def answer_sdp(self) -> str:
        return SilentMedia(self.offer, self.announced).answer_sdp()

    def start(self) -> None:
        self.events.append("start")

    def play(self, path: Path) -> None:
        self.events.append(("play", path.name))
        if self.fail_on_play is not None:
            raise self.fail_on_play
        if self.on_play is not None:
            self.on_play(path)

    def play_sit(self) -> None:
        self.events.append("sit")

    def play_beep(self) -> None:
        self.events.append("beep")

    def record(self, path: Path, *, max_seconds: float, silence_seconds: float,
               claim: Callable[[int], int] | None = None) -> Recorded | None:
        self.events.append(("record", max_seconds, silence_seconds))
        if self.recording_s is None:
            path.unlink(missing_ok=True)  # as MediaSession.record: nothing heard, no file
            return None
        if self.fail_on_record is not None:
            path.write_bytes(self.audio)
            raise self.fail_on_record
        audio = self.audio
        stopped = "silence"
        if claim is not None:
            granted = claim(len(audio))
            if granted < len(audio):
                audio, stopped = audio[:granted], "cap"
        path.write_bytes(audio)
        return Recorded(self.recording_s, len(audio), stopped)

    def wait_for_digit(self, timeout: float) -> str | None:
        self.events.append(("digit", timeout))
        return self.digits.pop(0) if self.digits else None

    def close(self) -> None:
        self.closed += 1

    def update(self, offer: Any) -> None:
        self.events.append(("update", offer))

    @property
    def played(self) -> list[str]:
        """The prompt files played and the tones, in order: "greeting.wav", "beep", "sit"."""
        sounds: list[str] = []
        for event in self.events:
            if event in ("sit", "beep"):
                sounds.append(event)
            elif isinstance(event, tuple) and event[0] == "play":
                sounds.append(event[1])
        return sounds


class ManualTimers:
    """The `Timers` API on a clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._pending: set[int] = set()
        self._counter = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        handle = next(self._counter)
        heapq.heappush(self._heap, (self.now + delay, handle, callback))
        self._pending.add(handle)
        return handle

    def cancel(self, handle: int | None) -> None:
        if handle is not None:
            self._pending.discard(handle)

    def pending(self) -> int:
        return len(self._pending)

    def advance(self, seconds: float) -> None:
        """Move the clock on, running every callback that falls due (at its due time)."""
        until = self.now + seconds
        while self._heap and self._heap[0][0] <= until + 1e-9:
            due, handle, callback = heapq.heappop(self._heap)
            if handle not in self._pending:
                continue
            self._pending.discard(handle)
            self.now = due
            callback()
        self.now = until

    def stop(self) -> None:
        pass
