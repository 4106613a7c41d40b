"""Stand-ins: a screener and call book in one (`gateway.call.ports`) whose decisions the test
sets, and media for signalling-only tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.screening.caller import Caller
from gateway.screening.decide import Decision
from gateway.screening.rules import Action, ActionKind


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
    finished: threading.Condition = field(default_factory=threading.Condition)

    def screen(self, caller: Caller, now: datetime) -> Decision:
        if self.raise_in_screen:
            raise RuntimeError("screening exploded (test)")
        return Decision(self.action, reason="set by the test", step="rule")

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

    def record(self, path: Path, *, max_seconds: float, silence_seconds: float) -> None:
        self.closed.wait(max_seconds)
        return None

    def wait_for_digit(self, timeout: float) -> str | None:
        self.closed.wait(timeout)
        return None

    def close(self) -> None:
        self.closed.set()

    def update(self, offer: Any) -> None:
        self.played.append(("update", offer))
