"""Call history and the counts built from it: repeat calls, bursts, greylist retries. Pure.

`History` and the functions over it are the definition of the rate limits; `RateSummary` is
what `decide()` reads of them for one caller. The gateway keeps the same counts incrementally
(`gateway.screening.counters.CallCounters`) and must agree with `summarize` on any calls
(tests/property/test_counter_properties.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple


class PastCall(NamedTuple):
    """One earlier call, as the rate limits see it.

    A NamedTuple rather than a dataclass: a flood puts thousands of these in one history, and
    a tuple is several times cheaper to build.
    """

    at: datetime
    key: str  # E.164 number, or "withheld"/"invalid"
    unknown: bool  # an unknown caller that no list or rule handled (counts towards bursts)
    action: str = "pass"


@dataclass(frozen=True)
class History:
    """Earlier calls, oldest first. Built from the log; `decide()` only reads it."""

    calls: tuple[PastCall, ...] = ()

    @classmethod
    def of(cls, calls: Iterable[PastCall]) -> History:
        """Build a history, sorting by time so callers need not."""
        return cls(tuple(sorted(calls, key=lambda c: c.at)))

    def calls_from(self, key: str, since: datetime, until: datetime) -> list[PastCall]:
        """Calls from `key` in [since, until)."""
        return [c for c in self.calls if c.key == key and since <= c.at < until]


@dataclass(frozen=True)
class BurstState:
    """Whether burst mode is on at a moment, and since when."""

    active: bool
    started_at: datetime | None = None
    distinct_callers: int = 0  # the peak count that triggered it


def _unknown_numbered(calls: Sequence[PastCall]) -> list[PastCall]:
    return [c for c in calls if c.unknown]


def burst_state(
    history: History,
    now: datetime,
    *,
    threshold: int,
    window: timedelta,
    duration: timedelta,
    current_key: str | None = None,
) -> BurstState:
    """Burst mode is on at `now` if, at some moment t in (now − duration, now], at least
    `threshold` distinct unknown callers called within (t − window, t].

    Deriving the state from the log, instead of storing a flag, means a restart or a second
    process sees the same burst, and `decide()` stays pure. The current call (`current_key`, at
    `now`) counts too: the caller that completes the threshold already meets the shield.
    """
    horizon = now - duration - window
    calls = [c for c in _unknown_numbered(history.calls) if horizon < c.at <= now]
    if current_key is not None:
        calls.append(PastCall(at=now, key=current_key, unknown=True))
    if threshold <= 0 or not calls:
        return BurstState(active=False)
    started: datetime | None = None
    peak = 0
    # Slide a window over the calls (oldest first), each call's time being its right edge.
    # Withheld callers have no number to tell them apart, so each of their calls counts once.
    in_window: Counter[str] = Counter()
    count = 0  # distinct numbers in the window, plus each withheld call
    left = 0
    for edge in calls:
        # Counts are kept up to date as calls enter and leave the window: O(1) per call, so a
        # flood of thousands of strangers costs milliseconds, not seconds.
        in_window[edge.key] += 1
        if not edge.key.startswith("+") or in_window[edge.key] == 1:
            count += 1
        while calls[left].at <= edge.at - window:
            gone = calls[left].key
            in_window[gone] -= 1
            if not gone.startswith("+") or in_window[gone] == 0:
                count -= 1
            if in_window[gone] == 0:
                del in_window[gone]
            left += 1
        if edge.at <= now - duration:
            continue
        if count >= threshold:
            peak = max(peak, count)
            if started is None:
                started = edge.at
    if started is None:
        return BurstState(active=False)
    return BurstState(active=True, started_at=started, distinct_callers=peak)


def repeat_count(history: History, key: str, now: datetime, window: timedelta) -> int:
    """How many times `key` called in the `window` before `now` (not counting this call)."""
    return len(history.calls_from(key, now - window, now))


@dataclass(frozen=True)
class RateWindows:
    """The windows and thresholds of the rate limits, as the policy sets them."""

    repeat_window: timedelta | None  # None: the repeat limit does not apply (off, no number)
    burst_threshold: int | None  # None: burst detection is off
    burst_window: timedelta = timedelta(minutes=10)
    burst_duration: timedelta = timedelta(minutes=60)
    greylist: tuple[timedelta, timedelta] | None = None  # (window, too soon) when greylisting


@dataclass(frozen=True)
class RateSummary:
    """What steps 5 and 6 need to know about earlier calls, for one caller at one moment."""

    repeat_count: int = 0  # calls from the caller's key in [now - repeat window, now)
    came_back: bool = False  # greylist: a call from the key in [now - window, now - too soon)
    burst: BurstState = BurstState(active=False)


def summarize(history: History, key: str, now: datetime, windows: RateWindows) -> RateSummary:
    """The summary of `history` for the caller `key` at `now`: the reference definition."""
    repeat = 0
    if windows.repeat_window is not None:
        repeat = repeat_count(history, key, now, windows.repeat_window)
    burst = BurstState(active=False)
    if windows.burst_threshold is not None:
        burst = burst_state(history, now, threshold=windows.burst_threshold,
                            window=windows.burst_window, duration=windows.burst_duration,
                            current_key=key)
    came_back = False
    if windows.greylist is not None:
        window, too_soon = windows.greylist
        came_back = bool(history.calls_from(key, now - window, now - too_soon))
    return RateSummary(repeat_count=repeat, came_back=came_back, burst=burst)
