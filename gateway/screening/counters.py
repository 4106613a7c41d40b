"""The rate limits' counts, kept as calls arrive: cost independent of how many calls are recent.

`summarize` (gateway/screening/ratelimit.py) defines the counts over a `History`; rebuilding
a History of every unknown call of the last hour on each INVITE made screening cost ~10 ms
during exactly the floods it is for. `CallCounters` keeps, as each call is added:

- per caller key, the sorted times of its calls (repeat limit, greylist retries): two
  bisections per question;
- the unknown calls in time order, with for each the number of distinct unknown callers in
  the burst window ending at it, a sliding window (a `Counter` of keys) that moves in steps,
  the times of the calls that reached the burst threshold, and the running maxima (the
  "staircase" of suffix maxima): the burst state at a moment is a few bisections.

A call that arrives out of time order (another thread decided it a moment earlier, another
process committed it late) recomputes only the calls after it: the cost is the disorder, not
the window. Calls are identified by uid, so the same call from the writer's queue and from
the database counts once. Times are whole microseconds, so that windows compare exactly as
datetimes do. Pure: no I/O, no clock; the caller says what time it is.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.screening.ratelimit import BurstState, PastCall, RateSummary, RateWindows

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch (exact, unlike a float)."""
    return (at - _EPOCH) // _US


def from_micros(value: int) -> datetime:
    """The aware UTC datetime of `micros`."""
    return _EPOCH + timedelta(microseconds=value)


def _is_number(key: str) -> bool:
    # Numbers are E.164; "withheld"/"invalid" have nothing to tell two callers apart.
    return key.startswith("+")


@dataclass(frozen=True)
class BurstShape:
    """The burst parameters the stored per-call counts depend on."""

    threshold: int
    window_us: int


class CallCounters:
    """Incremental rate-limit counts over calls added by uid (see the module docstring).

    `max_calls` bounds the calls held; beyond it the oldest are forgotten and
    `complete_since` says from when the per-key counts are still complete (a caller may then
    ask the database). The unknown-call timeline keeps the newest `max_unknown`, as a
    history load's LIMIT did. Not thread-safe: the store holds a lock around it.
    """

    def __init__(self, *, max_calls: int = 40_000, max_unknown: int = 20_000) -> None:
        self.max_calls = max_calls
        self.max_unknown = max_unknown
        self._shape: BurstShape | None = None
        # Every call held: uid -> (time, key, in the per-key lists); a heap to forget by age.
        self._calls: dict[str | int, tuple[int, str, bool]] = {}
        self._heap: list[tuple[int, int, str | int]] = []  # (time, arrival, uid)
        self._arrivals = 0
        self._by_key: dict[str, list[int]] = {}
        self.complete_since = -(1 << 62)  # per-key lists hold every call from then on
        # The unknown calls, sorted by time (ties in arrival order), and per call the distinct
        # unknown callers in the burst window ending at it.
        self._t: list[int] = []
        self._k: list[str] = []
        self._c: list[int] = []
        self._hot: list[int] = []  # times of the calls whose count reached the threshold
        self._stair_t: list[int] = []  # suffix maxima of the counts: times increasing,
        self._stair_c: list[int] = []  # counts strictly decreasing
        # The sliding window: indices [lo, hi) of the unknown calls, their keys counted.
        self._lo = 0
        self._hi = 0
        self._win: Counter[str] = Counter()
        self.forgotten_before = -(1 << 62)  # `forget` was asked to drop calls before this

    # ------------------------------------------------------------------ adding and forgetting

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, uid: object) -> bool:
        return uid in self._calls

    def add(self, uid: str | int, call: PastCall) -> bool:
        """Count a call once; False if this uid is already counted or the call is too old."""
        if uid in self._calls:
            return False
        t = micros(call.at)
        if t < self.forgotten_before:
            return False
        keyed = _is_number(call.key) or call.unknown
        self._calls[uid] = (t, call.key, keyed)
        self._arrivals += 1
        heapq.heappush(self._heap, (t, self._arrivals, uid))
        if keyed:
            times = self._by_key.get(call.key)
            if times is None:
                self._by_key[call.key] = [t]
            elif t >= times[-1]:
                times.append(t)
            else:
                insort(times, t)
        if call.unknown:
            # A withheld caller counts once per call: its own token in the window.
            self._insert_unknown(t, call.key if _is_number(call.key) else f"#{uid}")
        while len(self._calls) > self.max_calls:
            self._drop_oldest()
        if len(self._t) > self.max_unknown:
            self._cut_unknown(len(self._t) - self.max_unknown)
        return True

    def forget(self, before: datetime) -> None:
        """Drop calls older than `before`: no question will look back that far."""
        cutoff = micros(before)
        if cutoff <= self.forgotten_before:
            return
        self.forgotten_before = cutoff
        while self._heap and self._heap[0][0] < cutoff:
            self._drop_oldest(complete=True)
        cut = bisect_left(self._t, cutoff)
        if cut:
            self._cut_unknown(cut)

    def _drop_oldest(self, *, complete: bool = False) -> None:
        t, _, uid = heapq.heappop(self._heap)
        _, key, keyed = self._calls.pop(uid)
        if keyed:
            times = self._by_key[key]
            del times[bisect_left(times, t)]
            if not times:
                del self._by_key[key]
        if not complete:  # forgotten for room, not age: older per-key counts are partial
            self.complete_since = max(self.complete_since, t + 1)

    def _cut_unknown(self, cut: int) -> None:
        """Forget the `cut` oldest unknown calls (counts of the others stay as they were)."""
        self._reset_window(0, 0)
        del self._t[:cut], self._k[:cut], self._c[:cut]
        if self._t:
            first = self._t[0]
            del self._hot[:bisect_left(self._hot, first)]
            keep = bisect_left(self._stair_t, first)
            del self._stair_t[:keep], self._stair_c[:keep]
        else:
            self._hot.clear()
            self._stair_t.clear()
            self._stair_c.clear()

    # ------------------------------------------------------------------ the burst timeline

    def _reset_window(self, lo: int, hi: int) -> None:
        self._win.clear()
        for j in range(lo, hi):
            self._win[self._k[j]] += 1
        self._lo, self._hi = lo, hi

    def _add_at(self, j: int) -> None:
        self._win[self._k[j]] += 1

    def _remove_at(self, j: int) -> None:
        key = self._k[j]
        left = self._win[key] - 1
        if left:
            self._win[key] = left
        else:
            del self._win[key]

    def _move_window(self, lo: int, hi: int) -> None:
        """Make the window hold the unknown calls of indices [lo, hi): cost is the move."""
        if lo >= hi or hi <= self._lo or lo >= self._hi:  # empty or disjoint: start over
            self._reset_window(lo, max(lo, hi))
            return
        while self._lo > lo:
            self._lo -= 1
            self._add_at(self._lo)
        while self._hi < hi:
            self._add_at(self._hi)
            self._hi += 1
        while self._lo < lo:
            self._remove_at(self._lo)
            self._lo += 1
        while self._hi > hi:
            self._hi -= 1
            self._remove_at(self._hi)

    def _insert_unknown(self, t: int, key: str) -> None:
        i = bisect_right(self._t, t)  # after calls of the same time: arrival order
        if self._hi > i or self._lo > i:
            self._move_window(min(self._lo, i), i)
        self._t.insert(i, t)
        self._k.insert(i, key)
        self._c.insert(i, 0)
        if self._shape is not None:
            self._recount_from(i)

    def _recount_from(self, i: int) -> None:
        """Recompute the counts of unknown calls i, i+1, … (those after a new call)."""
        shape = self._shape
        assert shape is not None
        t_i = self._t[i]
        del self._hot[bisect_right(self._hot, t_i):]
        # Staircase entries from i on are recomputed; equal-time ones before i may be popped
        # by the new count, as any push does.
        cut = bisect_right(self._stair_t, t_i)
        del self._stair_t[cut:], self._stair_c[cut:]
        window, threshold = shape.window_us, shape.threshold
        times, keys, counts = self._t, self._k, self._c
        self._move_window(bisect_right(times, t_i - window), i + 1)
        win = self._win
        for j in range(i, len(times)):
            if j > i:
                win[keys[j]] += 1
                self._hi = j + 1
                edge = times[j] - window
                while times[self._lo] <= edge:
                    self._remove_at(self._lo)
                    self._lo += 1
            count = len(win)
            counts[j] = count
            if count >= threshold:
                self._hot.append(times[j])
            while self._stair_c and self._stair_c[-1] <= count:
                self._stair_c.pop()
                self._stair_t.pop()
            self._stair_t.append(times[j])
            self._stair_c.append(count)

    def _set_shape(self, shape: BurstShape) -> None:
        if shape == self._shape:
            return
        self._shape = shape
        self._hot.clear()
        self._stair_t.clear()
        self._stair_c.clear()
        self._reset_window(0, 0)
        if self._t:
            self._recount_from(0)

    def _burst(self, key: str, now: int, threshold: int, window: int,
               duration: int) -> BurstState:
        if threshold <= 0:
            return BurstState(active=False)
        self._set_shape(BurstShape(threshold, window))
        times = self._t
        upto = bisect_right(times, now)  # calls after `now` are not history yet
        self._move_window(bisect_right(times, now - window), upto)
        current = len(self._win) + (0 if _is_number(key) and key in self._win else 1)
        since = now - duration  # moments in (since, now]
        started: int | None = None
        first_hot = bisect_right(self._hot, since)
        if first_hot < len(self._hot) and self._hot[first_hot] <= now:
            started = self._hot[first_hot]
        elif current >= threshold:
            started = now
        if started is None:
            return BurstState(active=False)
        if upto == len(times):
            step = bisect_right(self._stair_t, since)
            earlier = self._stair_c[step] if step < len(self._stair_c) else 0
        else:  # calls after `now` (another thread's, a replay's): look at the range itself
            earlier = max(self._c[bisect_right(times, since):upto], default=0)
        return BurstState(active=True, started_at=from_micros(started),
                          distinct_callers=max(earlier, current))

    # ------------------------------------------------------------------ questions

    def _calls_between(self, key: str, since: int, until: int) -> int:
        times = self._by_key.get(key)
        if not times:
            return 0
        return bisect_left(times, until) - bisect_left(times, since)

    def complete_for(self, now: datetime, windows: RateWindows) -> bool:
        """Whether the per-key counts hold every call these windows look back to."""
        return self.complete_since <= micros(now - _longest_key_window(windows))

    def summary(self, key: str, now: datetime, windows: RateWindows) -> RateSummary:
        """The same as `summarize(History of the calls added, key, now, windows)`.

        Exact as long as no call older than the windows' reach was forgotten (`forget`, the
        caps); `complete_for` tells.
        """
        repeat = 0
        if windows.repeat_window is not None:
            repeat = self._calls_between(key, micros(now - windows.repeat_window), micros(now))
        came_back = False
        if windows.greylist is not None:
            window, too_soon = windows.greylist
            came_back = self._calls_between(key, micros(now - window),
                                            micros(now - too_soon)) > 0
        burst = BurstState(active=False)
        if windows.burst_threshold is not None:
            burst = self._burst(key, micros(now), windows.burst_threshold,
                                windows.burst_window // _US, windows.burst_duration // _US)
        return RateSummary(repeat_count=repeat, came_back=came_back, burst=burst)


def _longest_key_window(windows: RateWindows) -> timedelta:
    spans = [timedelta(0)]
    if windows.repeat_window is not None:
        spans.append(windows.repeat_window)
    if windows.greylist is not None:
        spans.append(windows.greylist[0])
    return max(spans)


def reach(windows: RateWindows) -> timedelta:
    """How far back from `now` a summary over `windows` looks."""
    return max(_longest_key_window(windows), windows.burst_window + windows.burst_duration)
